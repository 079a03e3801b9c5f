"""Fixtures live in registry_http_support (importable by name from the tests, unlike a conftest)."""

from registry_http_support import server

__all__ = ["server"]
