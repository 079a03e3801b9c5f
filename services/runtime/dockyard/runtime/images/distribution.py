"""An OCI Distribution client: pull images into the node's store, push them out, log in.

Pull (``pull``)::

    GET  /v2/<repo>/manifests/<tag|digest>   Accept: OCI manifest + index, Docker schema2 + list
      └─ an index / manifest list → the entry for this node's platform → GET …/manifests/<digest>
    GET  /v2/<repo>/blobs/<config>           ┐ at most MAX_CONCURRENT at a time, blobs already in
    GET  /v2/<repo>/blobs/<layer> …          ┘ content skipped; each verified while streaming
    store.add_image(manifest, reference, repo_digest="<registry>/<repo>@<digest>")

Push (``push``), per blob (layers, then the config), MAX_CONCURRENT at a time::

    HEAD /v2/<repo>/blobs/<digest>                       200 → skipped ("Layer already exists")
    POST /v2/<repo>/blobs/uploads/?mount=<d>&from=<src>  201 → mounted (when the image came from
                                                         <src> on the same registry)
    POST /v2/<repo>/blobs/uploads/  →  PUT <location>?digest=<d>   streamed from disk
    PUT  /v2/<repo>/manifests/<tag>                      the stored manifest bytes, unchanged

One manifest as is (``get_manifest``, ``put_manifest``): the same GET or PUT of one document
that the store never sees — the builder's cache index in a registry goes out and comes back so.

Auth: every request goes out anonymous (or with what an earlier challenge asked for); a 401's
``WWW-Authenticate`` decides the rest — ``Basic`` → the credentials as basic auth, ``Bearer`` →
a token from the challenge's realm (fetched with basic credentials when there are some), cached
per scope set for the operation. Scheme: https, except http for loopback registries
(``localhost``, ``127.0.0.0/8``, ``::1``) and when the caller says ``insecure``.

Contracts and costs:

* The event loop never touches a blob's bytes on disk: a download is hashed and written by
  ``ContentStore.ingest`` in a worker thread that pulls blocks (≤ 1 MiB) from the response on the
  loop; aiohttp keeps reading ahead (up to ``2 * READ_BUFFER``) while the thread writes, so network
  and disk overlap. An upload reads the blob file in a worker thread, 1 MiB at a time. Memory per
  transfer is bounded (≈ 2 * READ_BUFFER + BLOCK = 9 MiB per download) whatever the blob size.
* Nothing unverified becomes visible: a blob whose digest or size differs from its descriptor
  is refused by ingest (InvalidArgument) and leaves nothing in content; a manifest pulled by
  digest must hash to that digest. The image is recorded only after every blob is in content.
* Connection errors, timeouts and 5xx are retried a few times with a short backoff (the whole
  request; a blob restarts from its first byte), then become ``Unavailable`` naming the registry.
  401 → ``Unauthenticated``, 403 → ``PermissionDenied``, 404 → ``NotFound``, each one line that
  says what to do. Docker schema1 is refused (InvalidArgument), as is a bare name without registry
  (there is no Docker Hub to default to).
* Progress is reported per layer and throttled: at most one "Downloading"/"Pushing" event per
  layer every ``PROGRESS_INTERVAL`` seconds, plus one per state change. The callback runs on the
  event loop and must not block.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import ipaddress
import json
import platform as _platform
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import aiohttp
import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from dockyard.core.errors import (
    DockyardError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StorageFull,
    Unauthenticated,
    Unavailable,
)
from dockyard.core.oci.digest import check_sha256, sha256_digest
from dockyard.core.oci.manifest import ManifestDescriptor
from dockyard.core.oci.mediatypes import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1,
    IMAGE_TYPES,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
)
from dockyard.core.oci.reference import Reference, parse
from dockyard.runtime.images.content import ContentStore
from dockyard.runtime.images.credentials import Credentials, normalize_registry
from dockyard.runtime.images.store import ImageRecord

log = structlog.get_logger("dockyard.runtime.distribution")

ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))

MAX_CONCURRENT = 4  # blobs in flight per pull or push
MAX_MANIFEST = 4 << 20  # the size limit the distribution reference implementation uses
BLOCK = 1 << 20  # bytes handed to the writing thread at once; also the upload read size
READ_BUFFER = 4 << 20  # aiohttp reads ahead up to twice this while the thread writes
PROGRESS_INTERVAL = 0.1  # seconds between two byte-count events of one layer
USER_AGENT = "dockyard-runtime"

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


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress event of a pull or push, shaped like docker's JSON progress messages.

    ``id`` is a layer's short digest (12 hex), or "" for an event about the whole image;
    ``current``/``total`` are bytes (0 when not a byte count).
    """

    id: str
    status: str
    current: int = 0
    total: int = 0


class ImageStoreLike(Protocol):
    """What the client needs of the node's image store (``dockyard.runtime.images.store.ImageStore``)."""

    @property
    def content(self) -> ContentStore: ...

    def add_image(
        self, manifest: bytes, reference: str | None, repo_digest: str | None = None
    ) -> ImageRecord: ...

    def resolve(self, ref: str) -> ImageRecord: ...

    def manifest_bytes(self, record: ImageRecord) -> bytes: ...


ProgressFn = Callable[[Progress], None]


def short_id(digest: str) -> str:
    """The 12-hex short form docker shows for a layer."""
    return digest.partition(":")[2][:12]


def is_loopback(registry: str) -> bool:
    """Whether ``host[:port]`` names this machine (then plain http is the default)."""
    host = urlsplit("//" + registry).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- retries -------------------------------------------------------------------------------


class _ServerError(Exception):
    """A 5xx (or a 429) from the registry: worth another try."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status = status


def _transient(exc: BaseException) -> bool:
    return isinstance(
        exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | TimeoutError | _ServerError
    )


def transfer_retry(**overrides: Any) -> AsyncRetrying:
    """A few attempts with a short jittered backoff, on connection errors, timeouts and 5xx.

    Kept next to its only user; it is the shape ``dockyard.core.retry`` names its policies by.
    """
    kwargs: dict[str, Any] = {
        "stop": stop_after_attempt(4),
        "wait": wait_exponential_jitter(multiplier=0.1, max=2.0, jitter=0.1),
        "retry": retry_if_exception(_transient),
        "reraise": True,
    }
    kwargs.update(overrides)
    return AsyncRetrying(**kwargs)


# -- one registry ---------------------------------------------------------------------------

_CHALLENGE_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``WWW-Authenticate: Bearer realm="…",service="…"`` → ``("bearer", {"realm": …, …})``."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _CHALLENGE_PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else (m.group(3) or "")
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return scheme.lower(), params


class _Remote:
    """One registry for one operation: its base URL, the credentials, the auth state, a session."""

    def __init__(self, registry: str, *, insecure: bool, credentials: tuple[str, str] | None) -> None:
        self.registry = registry
        self.scheme = "http" if insecure or is_loopback(registry) else "https"
        self.base = f"{self.scheme}://{registry}"
        self.credentials = credentials
        self._basic = False
        self._tokens: dict[frozenset[str], str] = {}
        self._token_lock = asyncio.Lock()
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=60),
            connector=aiohttp.TCPConnector(limit=2 * MAX_CONCURRENT),
            headers={"User-Agent": USER_AGENT},
            auto_decompress=False,  # blob bytes are hashed exactly as served
            read_bufsize=READ_BUFFER,
        )

    async def close(self) -> None:
        await self.session.close()

    def url(self, path: str) -> str:
        return self.base + path

    def unavailable(self, exc: BaseException) -> Unavailable:
        hint = ""
        if self.scheme == "https" and isinstance(
            exc, aiohttp.ClientSSLError | aiohttp.ServerDisconnectedError
        ):
            hint = " (if it serves plain HTTP, mark it insecure)"
        what = str(exc) or type(exc).__name__
        if isinstance(exc, _ServerError):
            return Unavailable(f"registry {self.registry} failed: {what}", registry=self.registry)
        return Unavailable(
            f"registry {self.registry} is unreachable at {self.base}: {what}{hint}", registry=self.registry
        )

    # -- requests ----------------------------------------------------------------------------

    async def send(
        self,
        method: str,
        url: str,
        *,
        scopes: tuple[str, ...],
        headers: dict[str, str] | None = None,
        body: bytes | Callable[[], AsyncIterator[bytes]] | None = None,
    ) -> aiohttp.ClientResponse:
        """One request, answering one auth challenge; the caller releases the response.

        ``body`` is bytes, or a factory of a fresh async byte stream (called again when the first
        try was refused with 401 and is repeated with credentials).
        """
        challenged = False
        while True:
            hdrs = dict(headers or {})
            sent = self._authorization(scopes)
            hdrs.update(sent)
            data = body() if callable(body) else body
            resp = await self.session.request(method, url, headers=hdrs, data=data)
            if resp.status != 401 or challenged:
                return resp
            challenged = True
            try:
                again = await self._answer(resp.headers.get("WWW-Authenticate", ""), scopes, sent)
            except BaseException:
                resp.release()
                raise
            if not again:
                return resp  # nothing more to try: the caller maps the 401
            resp.release()

    def _authorization(self, scopes: tuple[str, ...]) -> dict[str, str]:
        if self._basic and self.credentials:
            return _basic(self.credentials)
        token = self._tokens.get(frozenset(scopes))
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def _answer(self, challenge: str, scopes: tuple[str, ...], sent: dict[str, str]) -> bool:
        """React to a 401's challenge to a request sent with ``sent`` (its Authorization, if any);
        True when a repeat may now succeed. Concurrent requests share what one of them learnt:
        a challenge to a request that went out before the answer was known just repeats it.
        """
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self.credentials is None or sent == _basic(self.credentials):
                return False
            self._basic = True
            return True
        if scheme != "bearer" or not params.get("realm"):
            return False
        key = frozenset(scopes)
        async with self._token_lock:
            current = self._tokens.get(key)
            if current is not None and sent.get("Authorization") != f"Bearer {current}":
                return True  # another request fetched a token meanwhile
            wanted = list(scopes)
            for extra in params.get("scope", "").split(" "):
                if extra and extra not in wanted:
                    wanted.append(extra)
            self._tokens[key] = await self._fetch_token(params["realm"], params.get("service", ""), wanted)
        return True

    async def _fetch_token(self, realm: str, service: str, scopes: list[str]) -> str:
        query: list[tuple[str, str]] = [("service", service)] if service else []
        query += [("scope", s) for s in scopes]
        if self.credentials:
            query.append(("account", self.credentials[0]))
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        headers = _basic(self.credentials) if self.credentials else {}
        async for attempt in transfer_retry():
            with attempt:
                async with self.session.get(url, headers=headers) as resp:
                    if resp.status in (401, 403):
                        if self.credentials is None:
                            raise Unauthenticated(
                                f"{self.registry} wants credentials: "
                                f"log in with `dockyard login {self.registry}`",
                                registry=self.registry,
                            )
                        raise Unauthenticated(
                            f"{self.registry} refused the credentials of {self.credentials[0]!r}: "
                            f"log in again with `dockyard login {self.registry}`",
                            registry=self.registry,
                        )
                    if resp.status >= 500 or resp.status == 429:
                        raise _ServerError(resp.status, await _error_text(resp))
                    if resp.status != 200:
                        raise Unauthenticated(
                            f"the token service of {self.registry} answered {resp.status}: "
                            f"{await _error_text(resp)}",
                            registry=self.registry,
                        )
                    doc = await resp.json(content_type=None)
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise Unauthenticated(f"the token service of {self.registry} returned no token")
        return token


def _basic(credentials: tuple[str, str]) -> dict[str, str]:
    raw = f"{credentials[0]}:{credentials[1]}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


@contextlib.asynccontextmanager
async def _open(
    registry: str, *, insecure: bool, credentials: tuple[str, str] | None
) -> AsyncIterator[_Remote]:
    remote = _Remote(registry, insecure=insecure, credentials=credentials)
    try:
        try:
            yield remote
        except (aiohttp.ClientError, TimeoutError, _ServerError) as e:
            raise remote.unavailable(e) from None
    finally:
        await remote.close()


async def _error_text(resp: aiohttp.ClientResponse) -> str:
    """The registry's error message: the first OCI error's message (or code), else the body's start."""
    try:
        raw = await resp.content.read(64 << 10)
    except aiohttp.ClientError:
        return f"HTTP {resp.status}"
    try:
        doc = json.loads(raw)
        first = doc["errors"][0]
        return str(first.get("message") or first.get("code"))[:300]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        text = raw.decode(errors="replace").strip()
        return text[:300] or f"HTTP {resp.status}"


async def _check(resp: aiohttp.ClientResponse, remote: _Remote, action: str, name: str, what: str) -> None:
    """Map a failed response to a core error (5xx to the retried ``_ServerError``)."""
    status = resp.status
    if status < 400:
        return
    text = await _error_text(resp)
    if status == 507:  # the registry's disk is full: retrying at once cannot help; say so
        raise StorageFull(f"{remote.registry}'s storage is full: {text}", registry=remote.registry)
    if status >= 500 or status == 429:
        raise _ServerError(status, text)
    if status == 401:
        if remote.credentials is None:
            hint = f"log in with `dockyard login {remote.registry}`"
        else:
            hint = (
                f"the credentials for {remote.registry} were not enough; "
                f"log in again with `dockyard login {remote.registry}`"
            )
        raise Unauthenticated(f"{action} access denied for {name}: {hint}", registry=remote.registry)
    if status == 403:
        raise PermissionDenied(f"{action} access denied for {name}: {text}", registry=remote.registry)
    if status == 404:
        raise NotFound(f"{what} unknown: {name}", registry=remote.registry)
    raise InvalidArgument(f"{remote.registry} refused {what} {name}: {text}", status=status)


async def _read_capped(resp: aiohttp.ClientResponse, cap: int, what: str) -> bytes:
    length = resp.content_length
    if length is not None and length > cap:
        raise InvalidArgument(f"{what} is {length} bytes, more than the limit of {cap}")
    parts: list[bytes] = []
    total = 0
    while chunk := await resp.content.read(BLOCK):
        total += len(chunk)
        if total > cap:
            raise InvalidArgument(f"{what} is more than the limit of {cap} bytes")
        parts.append(chunk)
    return b"".join(parts)


# -- streaming a response into content ------------------------------------------------------


class _Aborted(Exception):
    """The download was cancelled; ingest must stop and remove its partial file."""


async def _ingest_response(
    content: ContentStore,
    resp: aiohttp.ClientResponse,
    expected: str,
    size: int,
    on_bytes: Callable[[int], None],
) -> None:
    """Hash and write ``resp``'s body into content in a worker thread; verified against ``expected``.

    The thread asks the loop for the next block (``run_coroutine_threadsafe``); between two asks
    aiohttp keeps filling its read-ahead buffer from the socket, so the network never waits for
    the disk for long, and the loop never waits for either.
    """
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    pending: list[Future[bytes]] = []

    async def next_block() -> bytes:
        if stop.is_set():
            raise _Aborted()
        parts: list[bytes] = []
        n = 0
        while n < BLOCK:
            data = await resp.content.read(BLOCK - n)
            if not data:
                break
            parts.append(data)
            n += len(data)
            on_bytes(len(data))
        return b"".join(parts) if len(parts) != 1 else parts[0]

    def blocks() -> Iterator[bytes]:
        while True:
            if stop.is_set():
                raise _Aborted()
            future = asyncio.run_coroutine_threadsafe(next_block(), loop)
            pending[:] = [future]
            block = future.result()
            if not block:
                return
            yield block

    work = loop.run_in_executor(None, functools.partial(content.ingest, blocks(), expected, size))
    try:
        await asyncio.shield(work)
    except BaseException:
        # Cancelled (a sibling blob failed, or the caller gave up) or failed: stop the thread and
        # wait until it has removed its partial file, so nothing is in flight once pull returns.
        stop.set()
        for future in pending:
            future.cancel()
        with contextlib.suppress(BaseException):
            await work
        raise


# -- the manifest ---------------------------------------------------------------------------


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


def _descriptor(raw: object, what: str) -> tuple[str, int, str]:
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


# -- progress ---------------------------------------------------------------------------------


class _LayerProgress:
    """Byte counts of one layer, reported at most every PROGRESS_INTERVAL seconds."""

    def __init__(self, emit: ProgressFn | None, digest: str, total: int, status: str) -> None:
        self.emit = emit
        self.id = short_id(digest)
        self.total = total
        self.status = status
        self.current = 0
        self._last = 0.0

    def event(self, status: str, current: int = 0, total: int = 0) -> None:
        if self.emit is not None:
            self.emit(Progress(self.id, status, current, total))

    def restart(self) -> None:
        self.current = 0

    def add(self, n: int) -> None:
        self.current += n
        now = time.monotonic()
        if now - self._last >= PROGRESS_INTERVAL or self.current >= self.total:
            self._last = now
            self.event(self.status, self.current, self.total)


# -- pull -------------------------------------------------------------------------------------


async def _credentials_for(credentials: Credentials | None, registry: str) -> tuple[str, str] | None:
    if credentials is None:
        return None
    return await asyncio.to_thread(credentials.get, registry)


async def pull(
    store: ImageStoreLike,
    reference: str,
    *,
    platform: Platform | None = None,
    insecure: bool = False,
    credentials: Credentials | None = None,
    progress: ProgressFn | None = None,
) -> ImageRecord:
    """Pull ``reference`` (``HOST[:PORT]/NAME[:TAG|@DIGEST]``) into ``store``; returns its ImageRecord.

    An index / manifest list resolves to ``platform`` (default: this node's). The record's repo
    digest is that of what the reference names (the index, for a multi-platform image). Emits no
    event: the caller does (``dockyard.runtime.transfer``), once this returns. Cost: one
    manifest request (two for an index), then one GET per blob not yet in content,
    MAX_CONCURRENT at a time; bytes are written once, by the content store.
    """
    ref = parse(reference)
    registry = ref.domain
    creds = await _credentials_for(credentials, registry)
    async with _open(registry, insecure=insecure, credentials=creds) as remote:
        return await _Pull(store, ref, remote, platform or host_platform(), progress).run()


class _Pull:
    def __init__(
        self,
        store: ImageStoreLike,
        ref: Reference,
        remote: _Remote,
        want: Platform,
        progress: ProgressFn | None,
    ) -> None:
        self.store = store
        self.ref = ref
        self.remote = remote
        self.want = want
        self.emit = progress
        self.scopes = (f"repository:{ref.repository}:pull",)
        self.log = log.bind(reference=str(ref))

    def _event(self, status: str) -> None:
        if self.emit is not None:
            self.emit(Progress("", status))

    async def run(self) -> ImageRecord:
        ref = self.ref
        self._event(f"Pulling from {ref.repository}")
        started = time.monotonic()
        target = ref.digest or ref.tag or "latest"
        body, media, doc = await self._manifest(target, verify=ref.digest)
        repo_digest = f"{ref.name}@{sha256_digest(body)}"
        if media in INDEX_TYPES:
            child = choose_platform(doc, self.want, str(ref))
            body, media, doc = await self._manifest(child, verify=child)
            if media in INDEX_TYPES:
                raise InvalidArgument(f"{ref}: an index inside an index is not supported")
        config_digest, config_size, _ = _descriptor(doc.get("config"), "the config")
        raw_layers = doc.get("layers")
        if not isinstance(raw_layers, list):
            raise InvalidArgument(f"malformed manifest for {ref}: no layers")
        layers = [_descriptor(x, f"layer {i}") for i, x in enumerate(raw_layers)]

        content = self.store.content
        await asyncio.to_thread(content.write_bytes, body)
        wanted = [(config_digest, config_size, False)] + [(d, s, True) for d, s, _ in layers]
        present = await asyncio.to_thread(lambda: {d for d, _, _ in wanted if content.has(d)})
        downloaded: list[str] = []
        seen: set[str] = set()
        jobs: list[Callable[[], Awaitable[None]]] = []
        for digest, size, is_layer in wanted:
            if digest in seen:
                continue
            seen.add(digest)
            tracker = _LayerProgress(self.emit if is_layer else None, digest, size, "Downloading")
            if digest in present:
                tracker.event("Already exists")
                continue
            tracker.event("Pulling fs layer")
            if is_layer:
                downloaded.append(digest)
            jobs.append(functools.partial(self._blob, digest, size, tracker))
        await _bounded(jobs, MAX_CONCURRENT)

        reference = None if ref.digest else str(ref)
        record = await asyncio.to_thread(self.store.add_image, body, reference, repo_digest)
        for digest in downloaded:
            _LayerProgress(self.emit, digest, 0, "").event("Pull complete")
        self._event(f"Digest: {repo_digest.rpartition('@')[2]}")
        self._event(
            f"Status: Downloaded newer image for {ref}" if jobs else f"Status: Image is up to date for {ref}"
        )
        self.log.info(
            "pulled", blobs=len(jobs), seconds=round(time.monotonic() - started, 3), repo_digest=repo_digest
        )
        return record

    async def _manifest(self, target: str, *, verify: str | None) -> tuple[bytes, str, dict[str, Any]]:
        return await _get_manifest(self.remote, self.ref, self.scopes, target, verify=verify)

    async def _blob(self, digest: str, size: int, tracker: _LayerProgress) -> None:
        url = self.remote.url(f"/v2/{self.ref.repository}/blobs/{digest}")
        async for attempt in transfer_retry():
            with attempt:
                tracker.restart()
                resp = await self.remote.send("GET", url, scopes=self.scopes)
                async with resp:
                    await _check(resp, self.remote, "pull", f"{self.ref.name}@{digest}", "blob")
                    try:
                        await _ingest_response(self.store.content, resp, digest, size, tracker.add)
                    except InvalidArgument as e:
                        raise InvalidArgument(
                            f"{self.ref.name}: blob {short_id(digest)} from {self.remote.registry} "
                            f"failed verification: {e}",
                            digest=digest,
                        ) from None
        tracker.event("Download complete")


async def _get_manifest(
    remote: _Remote, ref: Reference, scopes: tuple[str, ...], target: str, *, verify: str | None
) -> tuple[bytes, str, dict[str, Any]]:
    """``GET …/manifests/<target>``: the body (capped, checked against ``verify`` and the served
    digest), its media type and its parsed document."""
    url = remote.url(f"/v2/{ref.repository}/manifests/{target}")
    name = f"{ref.name}@{target}" if target.startswith("sha256:") else f"{ref.name}:{target}"
    async for attempt in transfer_retry():
        with attempt:
            resp = await remote.send("GET", url, scopes=scopes, headers={"Accept": ACCEPT})
            async with resp:
                await _check(resp, remote, "pull", name, "manifest")
                body = await _read_capped(resp, MAX_MANIFEST, f"the manifest of {name}")
                content_type = resp.headers.get("Content-Type", "")
                served = resp.headers.get("Docker-Content-Digest", "")
    digest = sha256_digest(body)
    if verify is not None and digest != verify:
        raise InvalidArgument(f"the registry sent a manifest for {name} that hashes to {digest}")
    if served and served.startswith("sha256:") and served != digest:
        raise InvalidArgument(f"the manifest of {name} hashes to {digest}, the registry says {served}")
    media, doc = classify(body, content_type)
    return body, media, doc


async def _bounded(jobs: list[Callable[[], Awaitable[None]]], limit: int) -> None:
    """Run ``jobs`` at most ``limit`` at a time; the first failure cancels the rest and is raised."""
    if not jobs:
        return
    sem = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with sem:
            await job()

    try:
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(one(job))
    except BaseExceptionGroup as eg:
        errors = list(_leaves(eg))
        # Prefer the error that says most: a typed one, then a transport one; never a cancellation.
        for kind in (DockyardError, Exception):
            for err in errors:
                if isinstance(err, kind):
                    raise err from None
        raise


def _leaves(eg: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for e in eg.exceptions:
        if isinstance(e, BaseExceptionGroup):
            yield from _leaves(e)
        else:
            yield e


# -- push -------------------------------------------------------------------------------------


async def push(
    store: ImageStoreLike,
    reference: str,
    *,
    insecure: bool = False,
    credentials: Credentials | None = None,
    progress: ProgressFn | None = None,
    source_reference: str | None = None,
) -> ManifestDescriptor:
    """Push the local image ``source_reference`` (default: ``reference``) to ``reference``.

    Blobs the registry has are skipped (HEAD), blobs of an image pulled from another repository
    of the same registry are mounted from it, the rest is uploaded monolithically (POST, then PUT
    streamed from disk). The manifest goes up byte for byte as stored, so its digest does not
    change. Returns the manifest's descriptor.
    """
    ref = parse(reference)
    registry = ref.domain
    record = await asyncio.to_thread(store.resolve, source_reference or reference)
    manifest = await asyncio.to_thread(store.manifest_bytes, record)
    media, doc = classify(manifest, record.manifest_media_type)
    if media not in IMAGE_TYPES:
        raise FailedPrecondition(f"{source_reference or reference} is not a single-platform image manifest")
    digest = sha256_digest(manifest)
    if ref.digest is not None and ref.digest != digest:
        raise InvalidArgument(f"{reference}: the local image's manifest is {digest}, not {ref.digest}")
    config = _descriptor(doc.get("config"), "the config")
    layers = [_descriptor(x, f"layer {i}") for i, x in enumerate(doc.get("layers") or [])]
    mount_from = _mount_source(record.repo_digests, registry, ref.repository)
    creds = await _credentials_for(credentials, registry)
    async with _open(registry, insecure=insecure, credentials=creds) as remote:
        return await _Push(store, ref, remote, progress, mount_from).run(
            manifest, media, digest, config, layers
        )


def _mount_source(repo_digests: tuple[str, ...], registry: str, repository: str) -> str | None:
    """Another repository of ``registry`` this image was pulled from (for cross-repo mounts)."""
    for raw in repo_digests:
        try:
            other = parse(str(raw))
        except InvalidArgument:
            continue
        if other.registry == registry and other.repository != repository:
            return other.repository
    return None


class _Push:
    def __init__(
        self,
        store: ImageStoreLike,
        ref: Reference,
        remote: _Remote,
        progress: ProgressFn | None,
        mount_from: str | None,
    ) -> None:
        self.content = store.content
        self.ref = ref
        self.remote = remote
        self.emit = progress
        self.mount_from = mount_from
        scopes = [f"repository:{ref.repository}:pull,push"]
        if mount_from:
            scopes.append(f"repository:{mount_from}:pull")
        self.scopes = tuple(scopes)
        self.log = log.bind(reference=str(ref))

    async def run(
        self,
        manifest: bytes,
        media: str,
        digest: str,
        config: tuple[str, int, str],
        layers: list[tuple[str, int, str]],
    ) -> ManifestDescriptor:
        started = time.monotonic()
        if self.emit is not None:
            self.emit(Progress("", f"The push refers to repository [{self.ref.name}]"))
        seen: set[str] = set()
        jobs: list[Callable[[], Awaitable[None]]] = []
        for d, size, _ in layers:
            if d in seen:
                continue
            seen.add(d)
            tracker = _LayerProgress(self.emit, d, size, "Pushing")
            tracker.event("Preparing")
            jobs.append(functools.partial(self._blob, d, tracker))
        await _bounded(jobs, MAX_CONCURRENT)
        if config[0] not in seen:  # after the layers, as docker does: a config names finished layers
            await self._blob(config[0], _LayerProgress(None, config[0], config[1], "Pushing"))

        target = self.ref.digest or self.ref.tag or "latest"
        await _put_manifest(self.remote, self.ref, self.scopes, manifest, media, digest)
        if self.emit is not None:
            self.emit(Progress("", f"{target}: digest: {digest} size: {len(manifest)}"))
        self.log.info("pushed", digest=digest, seconds=round(time.monotonic() - started, 3))
        return ManifestDescriptor(media, digest, len(manifest))

    async def _blob(self, digest: str, tracker: _LayerProgress) -> None:
        path = await asyncio.to_thread(self.content.path, digest)
        size = tracker.total
        repo = self.ref.repository
        name = str(self.ref)  # what the user pushes: errors name it, not one of its blobs
        async for attempt in transfer_retry():
            with attempt:
                tracker.restart()
                resp = await self.remote.send(
                    "HEAD", self.remote.url(f"/v2/{repo}/blobs/{digest}"), scopes=self.scopes
                )
                async with resp:
                    if resp.status == 200:
                        tracker.event("Layer already exists")
                        return
                    if resp.status != 404:
                        await _check(resp, self.remote, "push", name, "blob")
                query = {"mount": digest, "from": self.mount_from} if self.mount_from else {}
                start = self.remote.url(f"/v2/{repo}/blobs/uploads/") + (
                    f"?{urlencode(query)}" if query else ""
                )
                resp = await self.remote.send("POST", start, scopes=self.scopes, body=b"")
                async with resp:
                    if resp.status == 201 and self.mount_from:
                        tracker.event(f"Mounted from {self.mount_from}")
                        return
                    await _check(resp, self.remote, "push", name, "upload")
                    location = resp.headers.get("Location")
                if resp.status != 202 or not location:
                    raise InvalidArgument(
                        f"{self.remote.registry} started no upload for {name} (HTTP {resp.status})"
                    )
                put_url = _with_query(urljoin(start, location), digest=digest)
                resp = await self.remote.send(
                    "PUT",
                    put_url,
                    scopes=self.scopes,
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                    body=lambda: _file_chunks(path, tracker.add),
                )
                async with resp:
                    await _check(resp, self.remote, "push", name, "blob")
        tracker.event("Pushed")


async def _put_manifest(
    remote: _Remote, ref: Reference, scopes: tuple[str, ...], body: bytes, media: str, digest: str
) -> None:
    """``PUT …/manifests/<digest or tag>``, ``body`` unchanged; the registry must store it as ``digest``."""
    target = ref.digest or ref.tag or "latest"
    url = remote.url(f"/v2/{ref.repository}/manifests/{target}")
    async for attempt in transfer_retry():
        with attempt:
            resp = await remote.send("PUT", url, scopes=scopes, headers={"Content-Type": media}, body=body)
            async with resp:
                await _check(resp, remote, "push", str(ref), "manifest")
                served = resp.headers.get("Docker-Content-Digest", "")
    if served and served != digest:
        raise InvalidArgument(f"{remote.registry} stored the manifest as {served}, not {digest}")


# -- one manifest, as is (the builder's cache index) -------------------------------------------


async def get_manifest(
    reference: str, *, insecure: bool = False, credentials: Credentials | None = None
) -> tuple[ManifestDescriptor, bytes]:
    """The manifest or index ``reference`` names, as the registry serves it; nothing is stored.

    Verified as a pull verifies it (the digest of a by-digest reference, the served digest);
    Docker schema1 and non-manifests are InvalidArgument. Cost: one request.
    """
    ref = parse(reference)
    creds = await _credentials_for(credentials, ref.domain)
    async with _open(ref.domain, insecure=insecure, credentials=creds) as remote:
        scopes = (f"repository:{ref.repository}:pull",)
        body, media, _ = await _get_manifest(
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
    creds = await _credentials_for(credentials, ref.domain)
    async with _open(ref.domain, insecure=insecure, credentials=creds) as remote:
        await _put_manifest(remote, ref, (f"repository:{ref.repository}:pull,push",), body, media, digest)
    log.info("manifest_pushed", reference=str(ref), digest=digest, media_type=media)
    return ManifestDescriptor(media, digest, len(body))


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit(parts._replace(query=query))


async def _file_chunks(path: Path, on_bytes: Callable[[int], None]) -> AsyncIterator[bytes]:
    """The file's bytes, read BLOCK at a time in a worker thread (never on the loop)."""
    fh = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(fh.read, BLOCK):
            on_bytes(len(chunk))
            yield chunk
    finally:
        fh.close()


# -- login ------------------------------------------------------------------------------------


async def login(registry: str, username: str, password: str, insecure: bool = False) -> None:
    """Check ``username``/``password`` against ``registry`` (``GET /v2/``, and its token service
    when it uses bearer tokens); Unauthenticated when they are refused. Stores nothing: the caller
    keeps them (``CredentialStore.set``) once this returns.
    """
    host = normalize_registry(registry)
    async with _open(host, insecure=insecure, credentials=(username, password)) as remote:
        async for attempt in transfer_retry():
            with attempt:
                resp = await remote.send("GET", remote.url("/v2/"), scopes=())
                async with resp:
                    if resp.status == 401:
                        raise Unauthenticated(
                            f"login to {host} failed: the user name or password was refused", registry=host
                        )
                    if resp.status >= 500 or resp.status == 429:
                        raise _ServerError(resp.status, await _error_text(resp))
                    if resp.status != 200:
                        raise FailedPrecondition(
                            f"{host} does not look like an OCI registry: GET /v2/ answered {resp.status}"
                        )


__all__ = [
    "ACCEPT",
    "ImageStoreLike",
    "Platform",
    "Progress",
    "choose_platform",
    "classify",
    "get_manifest",
    "host_platform",
    "is_loopback",
    "login",
    "parse_challenge",
    "pull",
    "push",
    "put_manifest",
    "transfer_retry",
]
