"""``/docs`` works without internet: Swagger UI's files come from the web node itself.

The web node runs as a real process (``rexec web``); Debian's headless Chromium loads
the page with every host name but 127.0.0.1 made unresolvable and must render the API's
operations.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.conftest import UTF8, free_port, headless_dom, launch_web

URL = re.compile(r"(?:https?:)?//[^\s\"'<>()]+", re.IGNORECASE)


@pytest.fixture(scope="module")
def web_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``rexec web`` on a free loopback port; no compute node is needed to serve /docs."""
    root = tmp_path_factory.mktemp("docs-offline")
    port = free_port()
    log = root / "web.log"
    process = launch_web(
        [
            *(sys.executable, "-m", "rexec.cli", "web", "--host", "127.0.0.1"),
            *("--port", str(port), "--compute", f"127.0.0.1:{free_port()}"),
            *("--database-url", f"sqlite:///{root / 'web.db'}", "--log-level", "warning"),
        ],
        port,
        log,
        {**UTF8, "REXEC_ADMIN_PASSWORD": "admin-password-1"},
        root,
        timeout=60,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


class References(HTMLParser):
    """Every ``src`` and ``href`` in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [value for name, value in attrs if name in ("src", "href") and value]


def foreign_urls(text: str) -> list[str]:
    return [u for u in URL.findall(text) if urlsplit(u).hostname not in ("127.0.0.1", None)]


def test_docs_html_references_only_the_web_node(web_url: str) -> None:
    page = httpx.get(f"{web_url}/docs")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert not re.search(r"https?://", page.text), page.text
    assert foreign_urls(page.text) == []

    parser = References()
    parser.feed(page.text)
    assert len(parser.found) >= 3, parser.found  # the script, the style sheet, the favicon
    openapi = re.search(r"url: '([^']+)'", page.text)
    assert openapi, page.text
    types = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "json"}
    for reference in [*parser.found, openapi.group(1), "/docs/oauth2-redirect"]:
        assert not urlsplit(reference).netloc, reference
        reply = httpx.get(urljoin(f"{web_url}/docs", reference))
        assert reply.status_code == 200, reference
        suffix = Path(urlsplit(reference).path).suffix
        if suffix in types:
            assert types[suffix] in reply.headers["content-type"], reference
        if suffix in ("", ".html"):
            assert not re.search(r"https?://", reply.text), reference


def test_redoc_from_a_cdn_is_gone(web_url: str) -> None:
    assert httpx.get(f"{web_url}/redoc").status_code == 404


def test_a_browser_without_network_renders_the_operations(web_url: str, tmp_path: Path) -> None:
    net_log = tmp_path / "net.json"
    dom = headless_dom(f"{web_url}/docs", tmp_path / "profile", f"--log-net-log={net_log}")

    assert 'class="swagger-ui' in dom, dom[:4000]
    assert "Failed to load API definition" not in dom
    assert "Unable to render this definition" not in dom
    assert "opblock" in dom, dom[:4000]
    assert 'data-path="/login"' in dom and 'data-path="/sessions"' in dom, dom[:4000]
    login = re.search(r'data-path="/login".{0,400}?opblock-summary-description">([^<]*)<', dom)
    assert login and login.group(1) == "Login", dom[:4000]  # the route's summary
    assert "rexec web node" in dom

    # what the page asked for (Chromium's own background requests, keyed to no site, aside)
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    page_requests = [
        event["params"]["url"]
        for event in log["events"]
        if event["type"] == start_job
        and event.get("params", {}).get("network_isolation_key", "").startswith("http://127.0.0.1")
    ]
    assert f"{web_url}/docs/assets/swagger-ui-bundle.js" in page_requests, page_requests
    assert f"{web_url}/openapi.json" in page_requests, page_requests
    assert foreign_urls(" ".join(page_requests)) == [], page_requests
