"""The web node fixtures for the web client's tests (tests/client/test_web_client.py)."""

from tests.web.conftest import ADMIN_PASSWORD, services_compute, services_web

__all__ = ["ADMIN_PASSWORD", "services_compute", "services_web"]
