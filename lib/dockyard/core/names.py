"""Facts about image names that every layer needs, without parsing them fully."""

from __future__ import annotations


def names_registry(image: str) -> bool:
    """Whether ``image`` says which registry it comes from (``host[:port]/…``, ``localhost/…``).

    A name without one is on Docker Hub (``busybox`` is ``docker.io/library/busybox``), unless
    registries.conf's aliases or search list say otherwise.
    """
    first, slash, _ = image.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def pullable(image: str) -> bool:
    """Whether a missing ``image`` is worth pulling, as docker pulls it: any name but an image ID
    (``sha256:…`` or 64 hex digits, which no registry serves by that name)."""
    if image.startswith("sha256:"):
        return False
    return not (len(image) == 64 and all(c in "0123456789abcdef" for c in image))
