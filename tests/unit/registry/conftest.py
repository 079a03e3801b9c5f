"""Fixtures live in registry_unit_support (importable by name from the tests, unlike a conftest)."""

from registry_unit_support import publisher, registry

__all__ = ["publisher", "registry"]
