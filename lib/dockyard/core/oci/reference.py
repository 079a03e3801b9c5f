"""Image references as docker writes them, Docker Hub's familiar names included.

Grammar (that of the distribution project's ``reference`` package)::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] component ( "/" component )*
    domain     := host [ ":" port ]          first part of a name, when it holds "." or ":" or is
                                              "localhost" (otherwise it is a path component)
    component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := sha256:<64 lowercase hex>

As docker does, a name without registry is on Docker Hub: ``busybox`` is
``docker.io/library/busybox`` and ``user/app`` is ``docker.io/user/app``. The parsed form keeps
docker's *familiar* spelling: ``registry`` is None for Docker Hub, and ``docker.io/library/busybox``,
``index.docker.io/busybox`` and ``library/busybox`` all parse to ``busybox`` — so an image pulled
as ``busybox`` is listed as ``busybox:latest`` and found again by any of those names. A name
whose first part holds "." or ":" or is "localhost" keeps its registry (``localhost:5000/x``,
``host.tld/x``). A reference with neither tag nor digest gets the tag ``latest``. ``str()`` is
the canonical form (``busybox:latest``, ``127.0.0.1:5000/team/app:1``, ``x@sha256:…``); the
store keys tags by it. ``domain``/``path`` are where the repository is on the wire
(``docker.io``, ``library/busybox``); which host actually serves it (mirrors, Docker Hub's API
endpoint) is ``dockyard.core.registries``'s business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from dockyard.core.errors import InvalidArgument
from dockyard.core.names import names_registry
from dockyard.core.oci.digest import check_sha256

DEFAULT_TAG = "latest"
DOCKER_HUB = "docker.io"
# Other spellings of Docker Hub that docker folds into "docker.io".
_HUB_ALIASES = frozenset({DOCKER_HUB, "index.docker.io", "registry-1.docker.io"})
OFFICIAL = "library"  # Docker Hub's namespace of official images
MAX_NAME = 255

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = re.compile(
    rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])"  # a host name, an IPv4 or an [IPv6] literal
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}")
REPOSITORY = re.compile(rf"{_COMPONENT.pattern}(?:/{_COMPONENT.pattern})*")
"""A repository path without registry: components joined by "/" (a registry's ``/v2/<name>/``)."""


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed image reference. ``registry`` is ``host[:port]``, or None for Docker Hub (whose
    ``repository`` is then the familiar one: ``busybox``, ``user/app``)."""

    registry: str | None
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """``[registry/]repository``: the part before the tag or digest."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    @property
    def domain(self) -> str:
        """The registry the name is on: ``registry``, or ``docker.io`` for a familiar name."""
        return self.registry or DOCKER_HUB

    @property
    def path(self) -> str:
        """The repository as the registry's API names it (``/v2/<path>/``): Docker Hub's official
        images are under ``library/``."""
        if self.domain == DOCKER_HUB and "/" not in self.repository:
            return f"{OFFICIAL}/{self.repository}"
        return self.repository

    @property
    def qualified_name(self) -> str:
        """``domain/path``, the fully qualified name (``docker.io/library/busybox``)."""
        return f"{self.domain}/{self.path}"

    @property
    def is_digested(self) -> bool:
        return self.digest is not None

    def with_tag(self, tag: str) -> Reference:
        if _TAG.fullmatch(tag) is None:
            raise InvalidArgument(f"invalid tag {tag!r}")
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> Reference:
        check_sha256(digest)
        return replace(self, tag=None, digest=digest)

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out


def _bad(raw: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"invalid reference {raw[:300]!r}: {why}", reference=raw[:300])


def parse(raw: str) -> Reference:
    """Parse ``raw``; InvalidArgument naming what is wrong otherwise. Adds tag ``latest`` if none."""
    if not isinstance(raw, str) or not raw:
        raise _bad(str(raw), "empty")
    if raw != raw.strip() or any(c.isspace() for c in raw):
        raise _bad(raw, "contains whitespace")
    rest, at, digest = raw.partition("@")
    if at:
        try:
            check_sha256(digest)
        except InvalidArgument:
            raise _bad(raw, "the digest must be sha256:<64 lowercase hex>") from None
    # The tag is after the last ":" that comes after the last "/" (a port's ":" precedes a "/").
    tag: str | None = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if _TAG.fullmatch(tag) is None:
            raise _bad(raw, f"invalid tag {tag!r} (letters, digits, '_', '.', '-'; at most 128)")
    if not rest:
        raise _bad(raw, "no repository name")
    registry: str | None = None
    parts = rest.split("/")
    first = parts[0]
    if names_registry(rest):
        registry = first
        parts = parts[1:]
        m = _DOMAIN.fullmatch(first)
        if m is None or (m.group("port") is not None and not 0 < int(m.group("port")) < 65536):
            raise _bad(raw, f"invalid registry {first!r} (want HOST[:PORT])")
    for component in parts:
        if _COMPONENT.fullmatch(component) is None:
            if _COMPONENT.fullmatch(component.lower()) is not None:
                raise _bad(raw, "repository name must be lowercase")
            raise _bad(
                raw,
                f"invalid name component {component!r} "
                "(lowercase letters, digits and single separators '.', '_', '__', '-')",
            )
    if len(rest) > MAX_NAME:
        raise _bad(raw, f"name longer than {MAX_NAME} characters")
    if tag is None and not at:
        tag = DEFAULT_TAG
    if registry is not None and registry.lower() in _HUB_ALIASES:
        registry = None  # docker's familiar form: Docker Hub is implied
    if registry is None and len(parts) == 2 and parts[0] == OFFICIAL:
        parts = parts[1:]
    return Reference(registry, "/".join(parts), tag, digest if at else None)


def is_short_name(raw: str) -> bool:
    """Whether ``raw`` was written without a registry (``busybox``, ``user/app:1``): the names
    that registries.conf's aliases and search list may resolve elsewhere than Docker Hub."""
    return not names_registry(raw.partition("@")[0])


def normalize(raw: str) -> str:
    """The canonical string of a reference (``busybox`` → ``busybox:latest``)."""
    return str(parse(raw))


def registry_ref(raw: str, what: str) -> Reference:
    """``raw`` parsed when it names a registry and a repository; else one InvalidArgument line
    naming ``what`` (a flag, say), which is all a user needs to fix it."""
    try:
        ref = parse(raw)
    except InvalidArgument:
        ref = None
    if ref is None or is_short_name(raw):
        raise InvalidArgument(f"{what} {raw!r}: want HOST[:PORT]/NAME[:TAG] (a registry and a repository)")
    return ref
