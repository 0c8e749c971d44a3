"""Fixtures for the client packages' tests: the web tests' servers."""

from tests.web.conftest import *  # noqa: F403
