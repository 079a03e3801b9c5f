"""registries.conf(5), as podman, buildah and skopeo read it: where an image name is pulled from.

Pure: text in, decisions out (the runtime reads the files, ``dockyard.runtime.images.registries_conf``).
Version 2 of the format is understood::

    unqualified-search-registries = ["quay.io", "docker.io"]

    [[registry]]
    prefix = "docker.io"              # what names it applies to (default: location); "*.example.com"
    location = "docker.io"            # where they really are (the prefix is rewritten to this)
    insecure = false                  # plain HTTP allowed, TLS not verified
    blocked = false                   # pulling from it is refused
    mirror-by-digest-only = false     # mirrors only for by-digest pulls
      [[registry.mirror]]
      location = "127.0.0.1:5000/hub" # tried, in order, before the location
      insecure = true
      pull-from-mirror = "all"        # or "digest-only", "tag-only"

    [aliases]
    "busybox" = "docker.io/library/busybox"

Files merge as podman merges them: a later file's ``unqualified-search-registries`` replaces the
earlier one, a ``[[registry]]`` replaces one with the same prefix, aliases override one by one.
The version 1 tables (``[registries.search]`` …) are refused with a line saying so.

**Short names, docker first.** A name written without registry (``busybox``, ``user/app:1``)
resolves, in this order, to: its alias (the key is the name without tag or digest); else each
registry of a non-empty ``unqualified-search-registries``, in order (the first that has it wins);
else Docker Hub, as docker resolves it. Unlike podman, there is no prompt and no error for an
unresolved short name: with no configuration Dockyard behaves like docker.

**Sources.** A fully qualified name is pulled from the mirrors of the ``[[registry]]`` whose
prefix matches it longest, in order, then from its location; with no entry, from the name's own
registry. Docker Hub's location ``docker.io`` is reached at its API endpoint
``registry-1.docker.io``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from dockyard.core.errors import FailedPrecondition, InvalidArgument
from dockyard.core.oci import reference as refs

DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
PULL_FROM_MIRROR = ("all", "digest-only", "tag-only")


@dataclass(frozen=True, slots=True)
class Mirror:
    location: str
    insecure: bool = False
    pull_from: str = "all"


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirror_by_digest_only: bool = False
    mirrors: tuple[Mirror, ...] = ()
    origin: str = ""  # the file it came from, for messages


@dataclass(frozen=True, slots=True)
class RegistriesConf:
    """The merged configuration. ``search`` is None when no file sets it."""

    search: tuple[str, ...] | None = None
    registries: tuple[RegistryEntry, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)

    def merged(self, later: RegistriesConf) -> RegistriesConf:
        """``self`` overridden by ``later`` (a file read after it)."""
        by_prefix = {r.prefix: r for r in self.registries}
        by_prefix.update({r.prefix: r for r in later.registries})
        return RegistriesConf(
            search=later.search if later.search is not None else self.search,
            registries=tuple(by_prefix.values()),
            aliases={**self.aliases, **later.aliases},
        )


@dataclass(frozen=True, slots=True)
class Source:
    """One place to pull a name from: ``ref`` as that host serves it (``ref.registry`` is the host
    to connect to, ``ref.path`` the repository there)."""

    ref: refs.Reference
    insecure: bool
    mirror: bool
    label: str  # how messages name it: "mirror 127.0.0.1:5000" / "docker.io"

    @property
    def endpoint(self) -> str:
        return api_endpoint(self.ref.domain)


def api_endpoint(registry: str) -> str:
    """The ``host[:port]`` a registry's API is at: Docker Hub's is not at docker.io itself."""
    return DOCKER_HUB_ENDPOINT if registry == refs.DOCKER_HUB else registry


# -- parsing ---------------------------------------------------------------------------------


def _bad(origin: str, why: str) -> FailedPrecondition:
    return FailedPrecondition(f"registries configuration {origin}: {why}", file=origin)


def _location(value: Any, origin: str, what: str, *, wildcard: bool = False) -> str:
    """``host[:port][/path]`` as registries.conf writes it (no scheme, no tag)."""
    if not isinstance(value, str) or not value:
        raise _bad(origin, f"{what} must be a non-empty string")
    text = value.rstrip("/")
    if "://" in text:
        raise _bad(origin, f"{what} {value!r}: write HOST[:PORT][/PATH], without a scheme")
    if wildcard and text.startswith("*."):
        host = text[2:]
        if not host or "/" in host or "*" in host:
            raise _bad(origin, f"{what} {value!r}: a wildcard prefix is '*.DOMAIN', nothing after it")
        return text
    host, _, path = text.partition("/")
    probe = f"{host}/{path or 'x'}"
    try:
        parsed = refs.parse(probe)
    except InvalidArgument:
        parsed = None
    if parsed is None or parsed.tag != refs.DEFAULT_TAG or ":" in path or "@" in text:
        raise _bad(origin, f"{what} {value!r} is not HOST[:PORT][/PATH]")
    return text.lower() if not path else f"{host.lower()}/{path}"


def _bool(value: Any, origin: str, what: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(origin, f"{what} must be true or false")
    return value


def parse_conf(text: str, origin: str = "<text>") -> RegistriesConf:
    """One file's settings; FailedPrecondition naming ``origin`` and the problem otherwise."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _bad(origin, f"not valid TOML: {e}") from None
    if "registries" in doc:
        raise _bad(origin, "the version 1 format ([registries.search] …) is not supported; use version 2")
    known = {"unqualified-search-registries", "registry", "aliases", "short-name-mode", "credential-helpers"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise _bad(origin, f"unknown key {unknown[0]!r}")
    search: tuple[str, ...] | None = None
    if "unqualified-search-registries" in doc:
        raw = doc["unqualified-search-registries"]
        if not isinstance(raw, list):
            raise _bad(origin, "unqualified-search-registries must be a list of registries")
        search = tuple(_location(x, origin, "a search registry") for x in raw)
        for s in search:
            if "/" in s:
                raise _bad(origin, f"search registry {s!r}: a registry is HOST[:PORT], without a path")
    entries = doc.get("registry", [])
    if not isinstance(entries, list):
        raise _bad(origin, "[[registry]] must be an array of tables")
    registries = tuple(_entry(e, origin, i) for i, e in enumerate(entries))
    aliases_raw = doc.get("aliases", {})
    if not isinstance(aliases_raw, dict):
        raise _bad(origin, "[aliases] must be a table")
    aliases: dict[str, str] = {}
    for key, value in aliases_raw.items():
        if not refs.is_short_name(key) or _name_only(key) is None:
            raise _bad(origin, f"alias {key!r}: the key must be a short name without tag or digest")
        if not isinstance(value, str) or refs.is_short_name(value):
            raise _bad(origin, f"alias {key!r}: the value must be a fully qualified name (HOST/NAME)")
        try:
            refs.parse(value)
        except InvalidArgument as e:
            raise _bad(origin, f"alias {key!r}: {e}") from None
        aliases[key] = value
    return RegistriesConf(search, registries, aliases)


def _name_only(raw: str) -> str | None:
    """``raw``'s name when it is a valid name with no tag or digest, else None."""
    if "@" in raw or ":" in raw.rpartition("/")[2]:
        return None
    try:
        return refs.parse(raw).repository
    except InvalidArgument:
        return None


def _entry(raw: Any, origin: str, index: int) -> RegistryEntry:
    what = f"[[registry]] #{index + 1}"
    if not isinstance(raw, dict):
        raise _bad(origin, f"{what} must be a table")
    unknown = sorted(
        set(raw) - {"prefix", "location", "insecure", "blocked", "mirror", "mirror-by-digest-only"}
    )
    if unknown:
        raise _bad(origin, f"{what}: unknown key {unknown[0]!r}")
    if "location" not in raw and "prefix" not in raw:
        raise _bad(origin, f"{what} needs a location or a prefix")
    prefix = _location(raw.get("prefix", raw.get("location")), origin, f"{what} prefix", wildcard=True)
    location = _location(raw["location"], origin, f"{what} location") if "location" in raw else ""
    if not location and not prefix.startswith("*."):
        location = prefix
    mirrors_raw = raw.get("mirror", [])
    if not isinstance(mirrors_raw, list):
        raise _bad(origin, f"{what}: [[registry.mirror]] must be an array of tables")
    mirrors = []
    for j, m in enumerate(mirrors_raw):
        mwhat = f"{what} mirror #{j + 1}"
        if not isinstance(m, dict) or "location" not in m:
            raise _bad(origin, f"{mwhat} needs a location")
        extra = sorted(set(m) - {"location", "insecure", "pull-from-mirror"})
        if extra:
            raise _bad(origin, f"{mwhat}: unknown key {extra[0]!r}")
        pull_from = m.get("pull-from-mirror", "all")
        if pull_from not in PULL_FROM_MIRROR:
            raise _bad(origin, f"{mwhat}: pull-from-mirror is one of {', '.join(PULL_FROM_MIRROR)}")
        mirrors.append(
            Mirror(
                _location(m["location"], origin, f"{mwhat} location"),
                _bool(m.get("insecure", False), origin, f"{mwhat} insecure"),
                pull_from,
            )
        )
    return RegistryEntry(
        prefix=prefix,
        location=location,
        insecure=_bool(raw.get("insecure", False), origin, f"{what} insecure"),
        blocked=_bool(raw.get("blocked", False), origin, f"{what} blocked"),
        mirror_by_digest_only=_bool(
            raw.get("mirror-by-digest-only", False), origin, f"{what} mirror-by-digest-only"
        ),
        mirrors=tuple(mirrors),
        origin=origin,
    )


def merge(confs: Iterable[RegistriesConf]) -> RegistriesConf:
    out = RegistriesConf()
    for conf in confs:
        out = out.merged(conf)
    return out


# -- resolving -------------------------------------------------------------------------------


def candidates(conf: RegistriesConf, raw: str) -> list[refs.Reference]:
    """The fully resolved names ``raw`` may mean, to try in order (see the module docstring).

    Each is in the familiar form the store keeps (``busybox:latest`` for Docker Hub's busybox).
    """
    ref = refs.parse(raw)
    if not refs.is_short_name(raw):
        return [ref]
    alias = conf.aliases.get(ref.repository) or conf.aliases.get(ref.path)
    if alias is not None:
        target = refs.parse(alias)
        return [refs.Reference(target.registry, target.repository, ref.tag, ref.digest)]
    if conf.search:
        out = []
        for registry in conf.search:
            qualified = refs.parse(
                f"{registry}/{ref.path if registry == refs.DOCKER_HUB else ref.repository}"
            )
            out.append(refs.Reference(qualified.registry, qualified.repository, ref.tag, ref.digest))
        return out
    return [ref]


def _matches(prefix: str, name: str) -> bool:
    if prefix.startswith("*."):
        host = name.partition("/")[0].rpartition(":")[0] or name.partition("/")[0]
        return host.endswith(prefix[1:])
    return name == prefix or name.startswith(prefix + "/")


def entry_for(conf: RegistriesConf, ref: refs.Reference) -> RegistryEntry | None:
    """The ``[[registry]]`` for ``ref``: the longest matching prefix (an exact one beats a wildcard)."""
    name = ref.qualified_name
    best: RegistryEntry | None = None
    for entry in conf.registries:
        if not _matches(entry.prefix, name):
            continue
        if best is None or _rank(entry) > _rank(best):
            best = entry
    return best


def _rank(entry: RegistryEntry) -> tuple[int, int]:
    return (0 if entry.prefix.startswith("*.") else 1, len(entry.prefix))


def _rewrite(ref: refs.Reference, entry: RegistryEntry, location: str) -> refs.Reference:
    """``ref`` with ``entry``'s prefix replaced by ``location`` (host[:port][/path])."""
    name = ref.qualified_name
    # a wildcard stands for a whole host; a prefix for itself, up to a "/"
    wild = entry.prefix.startswith("*.")
    rest = name.partition("/")[2] if wild else name[len(entry.prefix) :].lstrip("/")
    host, _, base = location.partition("/")
    path = "/".join(p for p in (base, rest) if p)
    return replace(ref, registry=host, repository=path)


def sources(conf: RegistriesConf, ref: refs.Reference) -> list[Source]:
    """Where to pull ``ref`` from, in order: its registry's mirrors, then its location.

    FailedPrecondition when the registry is blocked.
    """
    entry = entry_for(conf, ref)
    if entry is None:
        return [Source(_wire(ref), False, False, ref.domain)]
    if entry.blocked:
        raise FailedPrecondition(
            f"pulling {ref.qualified_name} is blocked by the registries configuration ({entry.origin})",
            registry=ref.domain,
        )
    out = []
    by_digest = ref.digest is not None
    for m in entry.mirrors:
        if (entry.mirror_by_digest_only or m.pull_from == "digest-only") and not by_digest:
            continue
        if m.pull_from == "tag-only" and by_digest:
            continue
        out.append(Source(_wire(_rewrite(ref, entry, m.location)), m.insecure, True, f"mirror {m.location}"))
    location = entry.location or ref.domain
    out.append(
        Source(_wire(_rewrite(ref, entry, location)), entry.insecure, False, location.partition("/")[0])
    )
    return out


def _wire(ref: refs.Reference) -> refs.Reference:
    """``ref`` with ``registry`` set and ``repository`` the path on the wire (no familiar form)."""
    return refs.Reference(ref.domain, ref.path, ref.tag, ref.digest)
