"""Manifests as registries serve them: fetched, checked, classified, sent back byte for byte.

A manifest pulled by digest must hash to that digest, and one a registry serves must hash to the
``Docker-Content-Digest`` it states. Docker schema1 is refused (InvalidArgument). An index or
manifest list resolves to one platform's manifest (``choose_platform``).

One manifest as is (``get_manifest``, ``put_manifest``): the same GET or PUT of one document
that the store never sees — the builder's cache index in a registry goes out and comes back so.
"""

from __future__ import annotations

import json
import platform as _platform
from typing import Any

import structlog

from dockyard.core.errors import InvalidArgument, NotFound
from dockyard.core.oci.digest import check_sha256, sha256_digest
from dockyard.core.oci.manifest import ManifestDescriptor
from dockyard.core.oci.mediatypes import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1,
    IMAGE_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
)
from dockyard.core.oci.reference import Reference, parse
from dockyard.runtime.images.credentials import Credentials
from dockyard.runtime.images.registry_client import (
    RegistrySession,
    check_response,
    credentials_for,
    open_session,
    read_capped,
    transfer_retry,
)

log = structlog.get_logger("dockyard.runtime.distribution")

ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))

MAX_MANIFEST = 4 << 20  # the size limit the distribution reference implementation uses

# GOARCH (and variant) of this machine, as OCI platform objects name them.
_GOARCH = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
    "mips64": ("mips64", ""),
}

Platform = tuple[str, str, str]
"""``(os, architecture, variant)`` in OCI/Go names, e.g. ``("linux", "amd64", "")``."""


def host_platform() -> Platform:
    """This node's platform: linux + ``platform.machine()`` mapped to its GOARCH (and ARM variant)."""
    machine = _platform.machine().lower()
    arch, variant = _GOARCH.get(machine, (machine, ""))
    return ("linux", arch, variant)


def classify(body: bytes, content_type: str) -> tuple[str, dict[str, Any]]:
    """The media type and parsed document of a manifest; InvalidArgument for schema1 or junk."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise InvalidArgument("the registry sent a manifest that is not JSON") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("the registry sent a manifest that is not a JSON object")
    media = content_type.split(";", 1)[0].strip().lower()
    if doc.get("schemaVersion") == 1 or media in DOCKER_SCHEMA1:
        raise InvalidArgument(
            "this image has a Docker schema1 manifest, which Dockyard does not support "
            "(deprecated since 2017): push it again with a current client to get schema2/OCI"
        )
    body_media = doc.get("mediaType")
    if isinstance(body_media, str) and body_media:
        media = body_media
    elif media not in MANIFEST_TYPES:
        media = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media not in MANIFEST_TYPES:
        raise InvalidArgument(f"unsupported manifest media type {media[:100]!r}")
    return media, doc


def descriptor_fields(raw: object, what: str) -> tuple[str, int, str]:
    """``(digest, size, mediaType)`` of a descriptor in a manifest; InvalidArgument if malformed."""
    if not isinstance(raw, dict):
        raise InvalidArgument(f"malformed manifest: {what} is not a descriptor")
    digest, size = raw.get("digest"), raw.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidArgument(f"malformed manifest: {what} has no valid size")
    check_sha256(str(digest))
    return str(digest), size, str(raw.get("mediaType", ""))


def choose_platform(doc: dict[str, Any], want: Platform, name: str) -> str:
    """The digest of the manifest for ``want`` in an index; NotFound listing what there is."""
    os_, arch, variant = want
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise InvalidArgument(f"malformed image index for {name}: no manifests")
    exact: list[str] = []
    loose: list[str] = []
    seen: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        p = entry.get("platform") or {}
        e_os, e_arch, e_var = str(p.get("os", "")), str(p.get("architecture", "")), str(p.get("variant", ""))
        seen.append("/".join(x for x in (e_os, e_arch, e_var) if x))
        if entry.get("mediaType") not in (*IMAGE_TYPES, None) or e_os != os_ or e_arch != arch:
            continue
        digest = str(entry.get("digest"))
        check_sha256(digest)
        same_variant = e_var == variant or (arch == "arm64" and {e_var, variant} <= {"", "v8"})
        (exact if same_variant else loose).append(digest)
    if exact:
        return exact[0]
    if loose and not variant:
        return loose[0]
    wanted = "/".join(x for x in want if x)
    raise NotFound(
        f"no image for {wanted} in {name}: it has {', '.join(sorted(set(seen))) or 'no platforms'}",
        platform=wanted,
    )


async def fetch_manifest(
    remote: RegistrySession, ref: Reference, scopes: tuple[str, ...], target: str, *, verify: str | None
) -> tuple[bytes, str, dict[str, Any]]:
    """``GET …/manifests/<target>``: the body (capped, checked against ``verify`` and the served
    digest), its media type and its parsed document."""
    url = remote.url(f"/v2/{ref.path}/manifests/{target}")
    name = f"{ref.name}@{target}" if target.startswith("sha256:") else f"{ref.name}:{target}"
    async for attempt in transfer_retry():
        with attempt:
            resp = await remote.send("GET", url, scopes=scopes, headers={"Accept": ACCEPT})
            async with resp:
                await check_response(resp, remote, "pull", name, "manifest")
                body = await read_capped(resp, MAX_MANIFEST, f"the manifest of {name}")
                content_type = resp.headers.get("Content-Type", "")
                served = resp.headers.get("Docker-Content-Digest", "")
    digest = sha256_digest(body)
    if verify is not None and digest != verify:
        raise InvalidArgument(f"the registry sent a manifest for {name} that hashes to {digest}")
    if served and served.startswith("sha256:") and served != digest:
        raise InvalidArgument(f"the manifest of {name} hashes to {digest}, the registry says {served}")
    media, doc = classify(body, content_type)
    return body, media, doc


async def send_manifest(
    remote: RegistrySession, ref: Reference, scopes: tuple[str, ...], body: bytes, media: str, digest: str
) -> None:
    """``PUT …/manifests/<digest or tag>``, ``body`` unchanged; the registry must store it as ``digest``."""
    target = ref.digest or ref.tag or "latest"
    url = remote.url(f"/v2/{ref.path}/manifests/{target}")
    async for attempt in transfer_retry():
        with attempt:
            resp = await remote.send("PUT", url, scopes=scopes, headers={"Content-Type": media}, body=body)
            async with resp:
                await check_response(resp, remote, "push", str(ref), "manifest")
                served = resp.headers.get("Docker-Content-Digest", "")
    if served and served != digest:
        raise InvalidArgument(f"{remote.registry} stored the manifest as {served}, not {digest}")


# -- one manifest, as is (the builder's cache index) -----------------------------------------


async def get_manifest(
    reference: str, *, insecure: bool = False, credentials: Credentials | None = None
) -> tuple[ManifestDescriptor, bytes]:
    """The manifest or index ``reference`` names, as the registry serves it; nothing is stored.

    Verified as a pull verifies it (the digest of a by-digest reference, the served digest);
    Docker schema1 and non-manifests are InvalidArgument. Cost: one request.
    """
    ref = parse(reference)
    creds = await credentials_for(credentials, ref.domain)
    async with open_session(ref.domain, insecure=insecure, credentials=creds) as remote:
        scopes = (f"repository:{ref.path}:pull",)
        body, media, _ = await fetch_manifest(
            remote, ref, scopes, ref.digest or ref.tag or "latest", verify=ref.digest
        )
    return ManifestDescriptor(media, sha256_digest(body), len(body)), body


async def put_manifest(
    reference: str,
    body: bytes,
    media_type: str,
    *,
    insecure: bool = False,
    credentials: Credentials | None = None,
) -> ManifestDescriptor:
    """Push ``body`` (a manifest or index) to ``reference``'s tag or digest, byte for byte.

    What it references must already be in the repository (the registry refuses it otherwise).
    The document is checked first (JSON, not schema1, its mediaType agrees with ``media_type``).
    """
    ref = parse(reference)
    media, _ = classify(body, media_type)
    if media_type and media != media_type:
        raise InvalidArgument(f"the manifest says it is {media}, not {media_type}")
    digest = sha256_digest(body)
    if ref.digest is not None and ref.digest != digest:
        raise InvalidArgument(f"{reference}: the manifest given hashes to {digest}")
    creds = await credentials_for(credentials, ref.domain)
    async with open_session(ref.domain, insecure=insecure, credentials=creds) as remote:
        await send_manifest(remote, ref, (f"repository:{ref.path}:pull,push",), body, media, digest)
    log.info("manifest_pushed", reference=str(ref), digest=digest, media_type=media)
    return ManifestDescriptor(media, digest, len(body))
