"""ADD's remote sources: an http(s) URL is fetched by the builder, as docker does; git is refused.

A URL is downloaded into the build's scratch dir (streamed 1 MiB at a time, hashed on the way)
and then is a file source like a context file (``layers.Source``): not extracted (unless
``ADD --unpack=true``), named after the URL's last path part when the destination is a dir
(BuildKit's ``__unnamed__`` when it has none), mode 0600, its mtime the ``Last-Modified`` the
server sent (clamped to the build's epoch like every entry). ``--checksum`` is checked against
the bytes; a mismatch fails the step before any layer is written.

Proxies come from the builder's environment (``HTTPS_PROXY``, ``NO_PROXY``…), as dockerd's do.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import posixpath
import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from dockyard.builder import instructions as ins
from dockyard.core.errors import DockyardError, FailedPrecondition, InvalidArgument, NotFound, Unavailable

CHUNK = 1 << 20
MAX_DOWNLOAD = 4 << 30  # bytes one ADD <url> may fetch (dockyard-builder --max-download raises it)
_DIGEST = {"sha256": 64, "sha384": 96, "sha512": 128}
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def is_git(source: str) -> bool:
    """A git repository as BuildKit recognises one: ``git@host:…``, ``git://``, ``ssh://``, or an
    http(s) URL whose path ends in ``.git`` (a ``#ref`` may follow)."""
    if source.startswith(("git@", "git://", "ssh://")):
        return True
    return is_url(source) and urlsplit(source).path.endswith(".git")


def url_filename(url: str) -> str:
    """The name an ADD'ed URL gets in a destination dir: its path's last part (BuildKit's rule)."""
    base = posixpath.basename(urlsplit(url).path)
    return base if base not in ("", ".", "..") else "__unnamed__"


def parse_checksum(text: str) -> tuple[str, str]:
    """``--checksum=sha256:<hex>`` (or sha384, sha512) → (algorithm, hex digest)."""
    algorithm, _, hexdigest = text.partition(":")
    if _DIGEST.get(algorithm) != len(hexdigest) or not re.fullmatch(r"[0-9a-f]+", hexdigest):
        raise InvalidArgument(
            f"--checksum={text}: invalid checksum digest format (want sha256:<64 hex digits>)"
        )
    return algorithm, hexdigest


def check_sources(inst: ins.Copy | ins.Add) -> None:
    """The remote-source rules, before anything is fetched: COPY takes no URL, git is not
    supported, ``--checksum`` goes with exactly one http(s) source (BuildKit's messages)."""
    for source in inst.sources:
        if isinstance(inst, ins.Copy) and is_url(source):
            raise InvalidArgument(f"source can't be a URL for COPY: {source}")
        if is_git(source):
            raise InvalidArgument(
                f"{inst.keyword} {source}: git sources are not supported (clone it in a RUN step, "
                "or COPY a checkout from the context)"
            )
    if isinstance(inst, ins.Add) and inst.checksum:
        if len(inst.sources) + len(inst.contents) != 1:
            raise InvalidArgument("checksum can't be specified for multiple sources")
        if not is_url(inst.sources[0] if inst.sources else ""):
            raise InvalidArgument("checksum can't be specified for non-HTTP(S) sources")
        parse_checksum(inst.checksum)


@dataclass(frozen=True, slots=True)
class Downloaded:
    path: Path
    digest: str  # sha256:<hex> of the bytes
    mtime: int | None  # Last-Modified, when the server sent one


async def download(url: str, path: Path, checksum: str = "", limit: int = MAX_DOWNLOAD) -> Downloaded:
    """GET ``url`` into ``path`` (mode 0600); verify ``checksum`` when given.

    NotFound for a 404/410, Unavailable when the server cannot be reached or fails,
    FailedPrecondition for another error status, a checksum mismatch or more than ``limit``
    bytes (an endless response wrote 5.5 GB in 30 s); ``path`` is removed on any failure.
    """
    algorithm, want = parse_checksum(checksum) if checksum else ("sha256", "")
    check = hashlib.new(algorithm)
    sha = hashlib.sha256()
    mtime: int | None = None
    try:
        async with (
            aiohttp.ClientSession(timeout=_TIMEOUT, trust_env=True) as session,
            session.get(url) as resp,
        ):
            if resp.status >= 400:
                kind: type[DockyardError] = FailedPrecondition
                if resp.status in (404, 410):
                    kind = NotFound
                elif resp.status >= 500:
                    kind = Unavailable
                raise kind(f"ADD {url}: the server answered {resp.status} {resp.reason or ''}".rstrip())
            if modified := resp.headers.get("Last-Modified"):
                try:
                    mtime = int(parsedate_to_datetime(modified).timestamp())
                except (TypeError, ValueError):
                    mtime = None
            too_big = FailedPrecondition(
                f"ADD {url}: larger than {limit} bytes (dockyard-builder --max-download raises the limit)"
            )
            if (resp.content_length or 0) > limit:
                raise too_big
            fh = await asyncio.to_thread(open, path, "wb")
            got = 0
            try:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    got += len(chunk)
                    if got > limit:
                        raise too_big
                    check.update(chunk)
                    sha.update(chunk)
                    await asyncio.to_thread(fh.write, chunk)
            finally:
                await asyncio.to_thread(fh.close)
    except FailedPrecondition:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    except aiohttp.InvalidURL:
        raise InvalidArgument(f"ADD {url}: not a valid URL") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise Unavailable(f"ADD {url}: {exc or type(exc).__name__}") from None
    if want and check.hexdigest() != want:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise FailedPrecondition(
            f"ADD {url}: checksum mismatch: expected {algorithm}:{want}, got {algorithm}:{check.hexdigest()}"
        )
    await asyncio.to_thread(os.chmod, path, 0o600)
    return Downloaded(path, "sha256:" + sha.hexdigest(), mtime)
