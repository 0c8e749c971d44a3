"""Swagger UI at ``/docs`` from files installed with rexec, never from a CDN.

FastAPI's default page loads Swagger UI's JavaScript, CSS and favicon from public
hosts, so on a server without internet access it stays blank. The same files ship in
the ``fastapi-offline`` package (swagger-ui-dist 5, kept up to date there); they are
served here under ``/docs/assets``. Only that package's ``static`` folder is used, not
its app factory.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
ASSETS_PACKAGE = ("fastapi_offline", "static")


def install(app: FastAPI) -> None:
    """Serve ``/docs`` and its OAuth2 redirect with local assets (the app's docs_url is None)."""
    assert app.docs_url is None and app.openapi_url, "create FastAPI with docs_url=None"
    openapi_url = app.openapi_url
    oauth2_url = app.swagger_ui_oauth2_redirect_url
    app.mount(ASSETS_URL, StaticFiles(packages=[ASSETS_PACKAGE]), name="docs-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=root + oauth2_url if oauth2_url else None,
            init_oauth=app.swagger_ui_init_oauth,
            # no badge from the public online validator
            swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})},
        )

    if oauth2_url:

        @app.get(oauth2_url, include_in_schema=False)
        async def swagger_ui_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()
