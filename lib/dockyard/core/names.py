"""Facts about image names that every layer needs, without parsing them fully."""

from __future__ import annotations


def names_registry(image: str) -> bool:
    """Whether ``image`` says which registry it comes from (``host[:port]/…``, ``localhost/…``).

    Dockyard has no default registry (no docker.io here), so only such a name can be pulled.
    """
    first, slash, _ = image.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")
