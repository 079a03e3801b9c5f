"""Fixtures live in image_test_support (importable by name from the tests, unlike a conftest)."""

from image_test_support import publisher, store

__all__ = ["publisher", "store"]
