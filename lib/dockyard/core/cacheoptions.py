"""``--cache-to``/``--cache-from`` values in docker buildx's syntax, parsed and checked.

Pure, so that the CLI rejects a bad value before it sends the build context, and the builder
(``dockyard.builder.cachesync``, which does the registry work) reads the same options.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from dockyard.core.errors import InvalidArgument
from dockyard.core.oci.reference import registry_ref

MODES = ("min", "max")


@dataclass(frozen=True, slots=True)
class CacheSpec:
    """One ``--cache-to``/``--cache-from`` of ``type=registry``."""

    ref: str
    mode: str = "min"
    ignore_error: bool = False

    def checked(self, flag: str) -> CacheSpec:
        """Self when valid for ``flag`` (``--cache-to`` or ``--cache-from``); else InvalidArgument."""
        if not self.ref:
            raise InvalidArgument(f"{flag}: ref=HOST[:PORT]/NAME[:TAG] is required")
        parsed = registry_ref(self.ref, f"{flag} ref")
        if flag == "--cache-to" and parsed.digest:
            raise InvalidArgument(f"{flag} ref {self.ref!r}: the cache is pushed under a tag, not a digest")
        if self.mode not in MODES:
            raise InvalidArgument(f"{flag} mode={self.mode}: want mode=min or mode=max")
        return self

    @property
    def tagged(self) -> str:
        """The reference the index is pushed to: ``ref`` with ``latest`` when it has no tag."""
        return str(registry_ref(self.ref, "cache ref"))  # the canonical form adds only ``:latest``


def parse_cache_option(value: str, flag: str) -> CacheSpec:
    """A ``--cache-to``/``--cache-from`` value in docker buildx's syntax.

    ``type=registry,ref=HOST/NAME:TAG[,mode=min|max][,ignore-error=true]`` (CSV, so a field may
    be quoted), or just the reference (buildx's shorthand for ``type=registry,ref=…``). Only the
    registry type exists here; anything else is one InvalidArgument line naming the flag.
    """
    text = value.strip()
    if not text:
        raise InvalidArgument(f"{flag}: empty value; want type=registry,ref=HOST[:PORT]/NAME[:TAG]")
    if "=" not in text and "," not in text:
        return CacheSpec(text).checked(flag)
    try:
        fields = next(csv.reader([text]))
    except csv.Error as exc:
        raise InvalidArgument(f"{flag} {value!r}: {exc}") from None
    options: dict[str, str] = {}
    for item in fields:
        key, eq, val = item.partition("=")
        if not eq:
            raise InvalidArgument(f"{flag} {value!r}: {item!r} is not KEY=VALUE")
        options[key.strip().lower()] = val
    kind = options.pop("type", "registry")
    if kind != "registry":  # first: other types' options are not ours to judge
        raise InvalidArgument(f"{flag} type={kind}: only type=registry is supported")
    ignore = options.pop("ignore-error", "false")
    if ignore.lower() not in ("true", "false", "1", "0"):
        raise InvalidArgument(f"{flag} ignore-error={ignore}: want true or false")
    spec = CacheSpec(options.pop("ref", ""), options.pop("mode", "min"), ignore.lower() in ("true", "1"))
    if options:
        unknown = next(iter(options))
        raise InvalidArgument(
            f"{flag}: unknown option {unknown!r} (type=registry takes ref, mode, ignore-error)"
        )
    return spec.checked(flag)
