"""The OCI Distribution Spec v1.1 HTTP API over the registry core (aiohttp).

Handlers are thin: parse the request, authorize, call one ``Registry`` method, render. Errors
raised by the core are mapped to the spec's JSON error body once, in ``_error_middleware``;
anything unexpected is logged and answered 500 — a client mistake never reaches that path.

Cost model: blob bodies stream from ``request.content`` in ≤1 MiB pieces straight into the
upload session (hashing as they go; aiohttp's stream reader applies back-pressure, so memory is
bounded whatever the size); downloads are served with ``sendfile`` via ``FileResponse`` (which
also implements ``Range``). Steps that fsync or bcrypt run in a worker thread so the event loop
stays responsive. Manifests are read into memory, capped at ``config.manifest_max_bytes``.

Content negotiation: a manifest is always returned in the media type it was pushed with (no
schema conversion), which is what skopeo/podman/oras expect as they accept every modern type.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlencode

import structlog
from aiohttp import web
from multidict import CIMultiDict

from dockyard.core import errors as core
from dockyard.core.oci.digest import Digest, DigestInvalid, is_digest, new_hasher
from dockyard.core.oci.mediatypes import MANIFEST_TYPES, OCI_INDEX
from dockyard.registry.auth import Access, Authorizer
from dockyard.registry.config import RegistryConfig
from dockyard.registry.connections import ConnectionGuard
from dockyard.registry.errors import (
    BlobUploadInvalid,
    ManifestTooLarge,
    ManifestUnknown,
    RangeInvalid,
    StorageFull,
    TagInvalid,
    TooManyTags,
    TooManyUploads,
)
from dockyard.registry.registry import BlobInfo, ChunkWriter, Registry, UploadStatus
from dockyard.registry.storage import CHUNK_SIZE

log = structlog.get_logger("dockyard.registry.http")

API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}
REGISTRY_KEY = web.AppKey("registry", Registry)
REPOSITORY_KEY = web.RequestKey("repository", str)
AUTH_KEY = web.AppKey("authorizer", Authorizer)
GUARD_KEY = web.AppKey("connections", ConnectionGuard)

# Spec error code → HTTP status.
OCI_STATUS: dict[str, int] = {
    "BLOB_UNKNOWN": 404,
    "BLOB_UPLOAD_INVALID": 400,
    "BLOB_UPLOAD_UNKNOWN": 404,
    "DIGEST_INVALID": 400,
    "MANIFEST_BLOB_UNKNOWN": 400,
    "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "SIZE_INVALID": 400,
    "TAG_INVALID": 400,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "UNSUPPORTED": 405,
    "TOOMANYREQUESTS": 429,
}
# Core errors without an OCI code of their own (class → (status, code)); most specific first.
_FALLBACK: list[tuple[type[core.DockyardError], int, str]] = [
    (core.Unauthenticated, 401, "UNAUTHORIZED"),
    (core.PermissionDenied, 403, "DENIED"),
    (core.NotFound, 404, "NAME_UNKNOWN"),
    (core.OutOfRange, 416, "BLOB_UPLOAD_INVALID"),
    (core.StorageFull, 507, "UNAVAILABLE"),
    (core.ResourceExhausted, 429, "TOOMANYREQUESTS"),
    (core.Unimplemented, 405, "UNSUPPORTED"),
    (core.Unavailable, 503, "UNAVAILABLE"),
    (core.InvalidArgument, 400, "UNSUPPORTED"),
    (core.FailedPrecondition, 400, "UNSUPPORTED"),
    (core.AlreadyExists, 409, "UNSUPPORTED"),
]

# Matched with fullmatch and DOTALL: a name or reference holding "%0A" (a newline once decoded)
# reaches its handler and is refused there as invalid, in OCI JSON like every other refusal.
_ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"", re.DOTALL), "base"),
    (re.compile(r"_catalog", re.DOTALL), "catalog"),
    (re.compile(r"(?P<name>.+)/tags/list", re.DOTALL), "tags"),
    (re.compile(r"(?P<name>.+)/manifests/(?P<ref>[^/]+)", re.DOTALL), "manifest"),
    (re.compile(r"(?P<name>.+)/blobs/uploads/?(?P<upload>[^/]*)", re.DOTALL), "upload"),
    (re.compile(r"(?P<name>.+)/blobs/(?P<digest>[^/]+)", re.DOTALL), "blob"),
    (re.compile(r"(?P<name>.+)/referrers/(?P<digest>[^/]+)", re.DOTALL), "referrers"),
]
_PULL, _PUSH, _DELETE = frozenset({"pull"}), frozenset({"pull", "push"}), frozenset({"delete"})
_CONTENT_RANGE_RE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?$")
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")
_INT_RE = re.compile(r"[0-9]{1,18}")  # ASCII digits only: str.isdigit() also accepts "²"
RETRY_AFTER = "30"  # seconds, on 429 and 507


def oci_error(
    status: int, code: str, message: str, detail: Any = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"errors": [{"code": code, "message": message, "detail": detail or {}}]}
    return web.json_response(body, status=status, headers=headers)


def _map_error(exc: core.DockyardError) -> tuple[int, str]:
    code = getattr(exc, "oci_code", None)
    if code is not None:
        if isinstance(exc, RangeInvalid):
            return 416, code
        if isinstance(exc, StorageFull):
            return 507, code  # Insufficient Storage: the server's condition; reads still work
        if isinstance(exc, TooManyUploads):
            return 429, code
        if isinstance(exc, TooManyTags):
            return 414, code
        if isinstance(exc, core.ResourceExhausted):
            return 413, code
        return OCI_STATUS.get(code, 400), code
    for cls, status, fallback in _FALLBACK:
        if isinstance(exc, cls):
            return status, fallback
    return 500, "UNKNOWN"


@web.middleware
async def _error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    guard, protocol = request.app[GUARD_KEY], request.protocol
    guard.begin(protocol)  # busy: this connection is not evicted or reaped meanwhile
    # Busy until the response is sent, not only until it is built: aiohttp sends it (a FileResponse
    # streams the whole blob) after the middlewares return, in the same task.
    task = asyncio.current_task()
    if task is None:
        try:
            return await _handle(request, handler)
        finally:
            guard.end(protocol)
    task.add_done_callback(lambda _: guard.end(protocol))
    return await _handle(request, handler)


async def _handle(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex[:16]
    bound = log.bind(request_id=request_id, method=request.method, path=request.path)
    started = time.monotonic()
    try:
        response = await handler(request)
    except core.DockyardError as exc:
        status, code = _map_error(exc)
        headers: dict[str, str] = {}
        if isinstance(exc, RangeInvalid):
            headers["Range"] = _range(exc.offset)
            if (upload := exc.detail.get("upload")) and (name := request.get(REPOSITORY_KEY)):
                headers["Location"] = f"/v2/{name}/blobs/uploads/{upload}"
        if (challenge := getattr(exc, "challenge", None)) is not None:
            headers["WWW-Authenticate"] = challenge
        if status in (429, 503, 507):
            headers["Retry-After"] = RETRY_AFTER
        log_fn = bound.error if status >= 500 else bound.info
        log_fn("request refused", status=status, code=code, error=exc.message)
        detail = {k: v for k, v in exc.detail.items() if isinstance(v, str | int)}
        response = oci_error(status, code, exc.message, detail, headers)
        if request.body_exists and not request.content.at_eof():
            # We refused without reading the body: close rather than drain (or misparse) the rest.
            response.force_close()
    except web.HTTPNotFound:  # no route at all: still an OCI error body
        response = oci_error(404, "NAME_UNKNOWN", "no such endpoint")
    except web.HTTPException as exc:
        response = exc
    except (ConnectionError, asyncio.CancelledError):
        raise  # the client went away; nobody to answer
    except Exception:
        bound.exception("request failed")
        response = oci_error(500, "UNKNOWN", "internal error")
    response.headers.update(API_VERSION_HEADER)
    response.headers["X-Request-Id"] = request_id
    bound.debug("request", status=response.status, ms=round((time.monotonic() - started) * 1000, 1))
    return response


def _range(offset: int) -> str:
    """The ``Range`` header distribution sends for an upload holding ``offset`` bytes."""
    return f"0-{max(offset - 1, 0)}"


def _satisfiable(header: str, size: int) -> bool:
    """Whether a ``Range`` header names bytes a blob of ``size`` has (RFC 9110 14.1.2).

    One range only (what aiohttp's FileResponse serves); ``bytes=-0`` (a suffix of no bytes) and
    a start at or past the end are unsatisfiable. Anything else malformed is unsatisfiable too,
    rather than silently served whole.
    """
    m = _RANGE_RE.fullmatch(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return False
    if not m.group(1):  # suffix: the last N bytes
        return int(m.group(2)) > 0 and size > 0
    first = int(m.group(1))
    return first < size and (not m.group(2) or int(m.group(2)) >= first)


def accepts(accept_headers: list[str], media_type: str) -> bool:
    """Whether a client's ``Accept`` values admit a manifest of ``media_type``.

    Only a client that names manifest types explicitly is held to them (a Docker client that
    cannot read an index, say); no ``Accept``, wildcards, or only non-manifest types admit all.
    """
    named = {
        part.split(";", 1)[0].strip().lower()
        for value in accept_headers
        for part in value.split(",")
        if part.strip()
    }
    if named & {"*/*", "application/*"} or not named & MANIFEST_TYPES:
        return True
    return media_type.lower() in named


def _upload_headers(status: UploadStatus) -> dict[str, str]:
    return {
        "Location": f"/v2/{status.repository}/blobs/uploads/{status.upload_id}",
        "Range": _range(status.offset),
        "Docker-Upload-UUID": status.upload_id,
        "Content-Length": "0",
    }


def _int_param(request: web.Request, key: str) -> int | None:
    raw = request.query.get(key)
    if raw is None or raw == "":
        return None
    if not _INT_RE.fullmatch(raw):
        raise core.InvalidArgument(f"{key} must be a non-negative integer")
    return int(raw)


class _Handlers:
    """Request handlers bound to one registry and authorizer."""

    def __init__(self, registry: Registry, authorizer: Authorizer) -> None:
        self.registry = registry
        self.auth = authorizer
        self.config: RegistryConfig = registry.config
        # Hashing and writing upload bodies, so the event loop keeps reading sockets meanwhile.
        self.writers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="upload-write")

    # ------------------------------------------------------------ dispatch + auth

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info.get("tail", "")
        found = next(((m, kind) for pattern, kind in _ROUTES if (m := pattern.fullmatch(tail))), None)
        if found is None:
            return oci_error(404, "NAME_UNKNOWN", "no such endpoint")
        m, kind = found
        params = m.groupdict()
        if "name" in params:
            request[REPOSITORY_KEY] = params["name"]
        method = "GET" if request.method == "HEAD" else request.method
        handler = getattr(self, f"{kind}_{method.lower()}", None)
        if handler is None:
            return oci_error(405, "UNSUPPORTED", f"{request.method} not supported on this endpoint")
        await self._authorize(request, kind, params)
        response: web.StreamResponse = await handler(request, **params)
        return response

    async def _authorize(self, request: web.Request, kind: str, params: dict[str, str]) -> None:
        if not self.auth.enabled:
            return
        required: list[Access] = []
        if kind == "catalog":
            required = [Access("registry", "catalog", frozenset({"*"}))]
        elif "name" in params:
            actions = {"GET": _PULL, "HEAD": _PULL, "DELETE": _DELETE}.get(request.method, _PUSH)
            required = [Access("repository", params["name"], actions)]
        header = request.headers.get("Authorization", "")
        await asyncio.to_thread(self.auth.authorize, header, required)

    async def _may_pull(self, request: web.Request, name: str) -> bool:
        if not self.auth.enabled:
            return True
        need = [Access("repository", name, _PULL)]
        try:
            await asyncio.to_thread(self.auth.authorize, request.headers.get("Authorization", ""), need)
        except core.DockyardError:
            return False
        return True

    # ------------------------------------------------------------ base, catalog, tags

    async def base_get(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({})

    async def catalog_get(self, request: web.Request) -> web.StreamResponse:
        n, last = _int_param(request, "n"), request.query.get("last", "")
        names = await asyncio.to_thread(self.registry.list_repositories, None if n is None else n + 1, last)
        return self._paged(request, "/v2/_catalog", {"repositories": names}, "repositories", n)

    async def tags_get(self, request: web.Request, name: str) -> web.StreamResponse:
        n, last = _int_param(request, "n"), request.query.get("last", "")
        tags = await asyncio.to_thread(self.registry.list_tags, name, None if n is None else n + 1, last)
        return self._paged(request, f"/v2/{name}/tags/list", {"name": name, "tags": tags}, "tags", n)

    @staticmethod
    def _paged(
        request: web.Request, path: str, body: dict[str, Any], key: str, n: int | None
    ) -> web.StreamResponse:
        headers = {}
        items: list[str] = body[key]
        if n is not None and len(items) > n:
            del items[n:]
            if items:  # n=0 asks for an empty page: nothing to continue from
                query = urlencode({"n": n, "last": items[-1]})
                headers["Link"] = f'<{path}?{query}>; rel="next"'
        return web.json_response(body, headers=headers)

    # ------------------------------------------------------------ blobs

    async def blob_get(self, request: web.Request, name: str, digest: str) -> web.StreamResponse:
        info = self.registry.stat_blob(name, Digest.parse(digest))
        headers = {"Docker-Content-Digest": str(info.digest), "Content-Type": "application/octet-stream"}
        if request.method == "HEAD":
            headers["Content-Length"] = str(info.size)
            headers["Accept-Ranges"] = "bytes"
            return web.Response(status=200, headers=headers)
        if (wanted := request.headers.get("Range")) is not None and not _satisfiable(wanted, info.size):
            return oci_error(
                416,
                "SIZE_INVALID",
                f"range {wanted[:100]!r} not satisfiable for a blob of {info.size} bytes",
                headers={"Content-Range": f"bytes */{info.size}"},
            )
        local = self.registry.storage.local_path(info.path)
        if local is not None:
            return web.FileResponse(local, chunk_size=CHUNK_SIZE, headers=headers)
        return await self._stream_blob(request, info.path, info.size, headers)

    async def _stream_blob(
        self, request: web.Request, path: str, size: int, headers: dict[str, str]
    ) -> web.StreamResponse:
        """Serve from a driver without local files (no Range support on this path yet)."""
        response = web.StreamResponse(status=200, headers=headers)
        response.content_length = size
        await response.prepare(request)
        with self.registry.storage.reader(path) as fh:
            while chunk := await asyncio.to_thread(fh.read, CHUNK_SIZE):
                await response.write(chunk)
        await response.write_eof()
        return response

    async def blob_delete(self, request: web.Request, name: str, digest: str) -> web.StreamResponse:
        await asyncio.to_thread(self.registry.delete_blob, name, Digest.parse(digest))
        return web.Response(status=202, headers={"Content-Length": "0"})

    # ------------------------------------------------------------ uploads

    async def upload_post(self, request: web.Request, name: str, upload: str) -> web.StreamResponse:
        if upload:
            return oci_error(405, "UNSUPPORTED", "POST goes to /blobs/uploads/")
        # Parse everything before a session exists: a refusal must leave nothing behind.
        raw_digest = request.query.get("digest")
        digest = Digest.parse(raw_digest) if raw_digest is not None else None
        mount = Digest.parse(raw) if (raw := request.query.get("mount")) else None
        algorithm = digest.algorithm if digest else request.query.get("digest-algorithm") or "sha256"
        new_hasher(algorithm)  # DigestInvalid for an algorithm we do not know
        if mount is not None and (info := await self._mount(request, name, mount)) is not None:
            headers = {"Location": f"/v2/{name}/blobs/{info.digest}", "Docker-Content-Digest": str(mount)}
            return web.Response(status=201, headers=headers)
        # Not mountable (or not by this caller): the spec's fallback, an ordinary upload session,
        # which looks the same whether or not the digest exists anywhere.
        status = await asyncio.to_thread(self.registry.start_upload, name, algorithm)
        if digest is not None:
            return await self._finish(request, status, digest, monolithic=True)
        return web.Response(status=202, headers=_upload_headers(status))

    async def _mount(self, request: web.Request, name: str, digest: Digest) -> BlobInfo | None:
        """Mount ``digest`` into ``name`` from a repository the caller may pull, if one holds it.

        With ``from`` that repository is the only candidate. Without, and with auth off, any stored
        blob may be mounted (everyone may pull everything); with auth on, the candidates are the
        repositories holding the blob that the caller may pull (cost: a walk of repositories/).
        """
        source = request.query.get("from")
        if source is None and not self.auth.enabled:
            return await asyncio.to_thread(self.registry.mount_blob, name, digest, None)
        candidates = (
            [source]
            if source is not None
            else await asyncio.to_thread(self.registry.repositories_linking, digest)
        )
        for candidate in candidates:
            if await self._may_pull(request, candidate):
                info = await asyncio.to_thread(self.registry.mount_blob, name, digest, candidate)
                if info is not None:
                    return info
        return None

    async def upload_patch(self, request: web.Request, name: str, upload: str) -> web.StreamResponse:
        start, length = self._content_range(request)
        writer = await asyncio.to_thread(self.registry.open_chunk, name, upload, start, length)
        status = await self._pump(request, writer, self.writers, self.config.body_idle_timeout)
        return web.Response(status=202, headers=_upload_headers(status))

    async def upload_put(self, request: web.Request, name: str, upload: str) -> web.StreamResponse:
        raw_digest = request.query.get("digest")
        if not raw_digest:
            raise DigestInvalid("PUT must carry ?digest=")
        digest = Digest.parse(raw_digest)
        status = await asyncio.to_thread(self.registry.upload_status, name, upload)
        return await self._finish(request, status, digest, monolithic=False)

    async def _finish(
        self, request: web.Request, status: UploadStatus, digest: Digest, *, monolithic: bool
    ) -> web.StreamResponse:
        """Stream an optional final chunk into the session, then verify and commit it."""
        try:
            if request.body_exists:
                start, length = self._content_range(request)
                writer = await asyncio.to_thread(
                    self.registry.open_chunk, status.repository, status.upload_id, start, length
                )
                await self._pump(request, writer, self.writers, self.config.body_idle_timeout)
            info = await asyncio.to_thread(
                self.registry.finish_upload, status.repository, status.upload_id, digest
            )
        except BaseException:
            if monolithic:  # the session was ours alone; leave nothing behind
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.registry.cancel_upload, status.repository, status.upload_id)
            raise
        headers = {
            "Location": f"/v2/{status.repository}/blobs/{info.digest}",
            "Docker-Content-Digest": str(info.digest),
            "Content-Length": "0",
        }
        return web.Response(status=201, headers=headers)

    @staticmethod
    def _content_range(request: web.Request) -> tuple[int | None, int | None]:
        """(start, length) from Content-Range if any, else (None, Content-Length or None)."""
        declared = request.content_length
        raw = request.headers.get("Content-Range")
        if raw is None:
            return None, declared
        m = _CONTENT_RANGE_RE.match(raw.strip())
        if m is None or int(m.group(2)) < int(m.group(1)):
            raise BlobUploadInvalid(f"malformed Content-Range {raw[:100]!r}")
        start, length = int(m.group(1)), int(m.group(2)) - int(m.group(1)) + 1
        if declared is not None and declared != length:
            raise BlobUploadInvalid(f"Content-Range covers {length} bytes but Content-Length is {declared}")
        return start, length

    @staticmethod
    async def _pump(
        request: web.Request, writer: ChunkWriter, pool: ThreadPoolExecutor, idle_timeout: float
    ) -> UploadStatus:
        """Stream the request body into ``writer``; on any failure the chunk is rolled back.

        A client that sends nothing for ``idle_timeout`` seconds loses its chunk (400
        BLOB_UPLOAD_INVALID) instead of holding the session and a connection forever.

        Reading and writing overlap: each ~1 MiB batch is hashed and written in ``pool`` (hashlib
        and file writes release the GIL) while the next batch is read from the socket. At most one
        batch is in flight, so writes stay in order and memory stays at about two batches.
        """
        in_flight: Future[None] | None = None
        try:
            batch = bytearray()
            while True:
                try:
                    async with asyncio.timeout(idle_timeout):
                        data = await request.content.read(CHUNK_SIZE)
                except TimeoutError:
                    raise BlobUploadInvalid(f"no body bytes for {idle_timeout:g}s; chunk dropped") from None
                if not data:
                    break
                batch += data
                if len(batch) >= CHUNK_SIZE:
                    if in_flight is not None:
                        await asyncio.wrap_future(in_flight)
                    in_flight = pool.submit(writer.write, bytes(batch))
                    batch.clear()
            if in_flight is not None:
                await asyncio.wrap_future(in_flight)
            writer.write(bytes(batch))
            return writer.commit()
        except BaseException as exc:
            if in_flight is not None:  # never roll back under a write still running
                wait([in_flight])
            writer.abort()
            if isinstance(
                exc, core.DockyardError | ConnectionError | asyncio.CancelledError
            ) or not isinstance(exc, Exception):
                raise
            # A malformed chunked body and the like: the client's fault.
            raise BlobUploadInvalid(f"request body unreadable: {type(exc).__name__}") from None

    async def upload_get(self, request: web.Request, name: str, upload: str) -> web.StreamResponse:
        status = await asyncio.to_thread(self.registry.upload_status, name, upload)
        return web.Response(status=204, headers=_upload_headers(status))

    async def upload_delete(self, request: web.Request, name: str, upload: str) -> web.StreamResponse:
        await asyncio.to_thread(self.registry.cancel_upload, name, upload)
        return web.Response(status=204)

    # ------------------------------------------------------------ manifests

    async def manifest_get(self, request: web.Request, name: str, ref: str) -> web.StreamResponse:
        stored = await asyncio.to_thread(self.registry.get_manifest, name, ref)
        # By digest the client asked for exact bytes; by tag it may only read some manifest types.
        if not is_digest(ref) and not accepts(request.headers.getall("Accept", []), stored.media_type):
            raise ManifestUnknown(
                f"{name}:{ref} is a {stored.media_type}, which the request's Accept header excludes",
                media_type=stored.media_type,
            )
        headers = {"Docker-Content-Digest": str(stored.digest), "Content-Type": stored.media_type}
        if request.method == "HEAD":
            headers["Content-Length"] = str(stored.size)
            return web.Response(status=200, headers=headers)
        return web.Response(status=200, body=stored.data, headers=headers)

    async def manifest_put(self, request: web.Request, name: str, ref: str) -> web.StreamResponse:
        tags = request.query.getall("tag", [])
        if tags and not is_digest(ref):
            raise TagInvalid("?tag= goes with a manifest pushed by digest, not by tag")
        if len(tags) > self.config.max_tags_per_push:  # before reading a body we would refuse
            raise TooManyTags(f"at most {self.config.max_tags_per_push} tags per manifest push")
        data = await self._read_bounded(
            request, self.config.manifest_max_bytes, self.config.body_idle_timeout
        )
        content_type = request.headers.get("Content-Type", "")
        result = await asyncio.to_thread(self.registry.put_manifest, name, ref, data, content_type, tags)
        headers = CIMultiDict(
            {
                "Location": f"/v2/{name}/manifests/{result.digest}",
                "Docker-Content-Digest": str(result.digest),
                "Content-Length": "0",
            }
        )
        if result.subject is not None:
            headers["OCI-Subject"] = str(result.subject)
        if tags:  # the spec: one OCI-Tag header per accepted tag
            for tag in result.tags:
                headers.add("OCI-Tag", tag)
        return web.Response(status=201, headers=headers)

    @staticmethod
    async def _read_bounded(request: web.Request, limit: int, idle_timeout: float) -> bytes:
        """The whole body, at most ``limit`` bytes; a body that stalls ``idle_timeout`` is refused."""
        if request.content_length is not None and request.content_length > limit:
            raise ManifestTooLarge(f"manifest larger than {limit} bytes")
        parts, total = [], 0
        try:
            while True:
                try:
                    async with asyncio.timeout(idle_timeout):
                        data = await request.content.read(64 << 10)
                except TimeoutError:
                    raise BlobUploadInvalid(f"no body bytes for {idle_timeout:g}s") from None
                if not data:
                    break
                total += len(data)
                if total > limit:
                    raise ManifestTooLarge(f"manifest larger than {limit} bytes")
                parts.append(data)
        except (core.DockyardError, ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise BlobUploadInvalid(f"request body unreadable: {type(exc).__name__}") from None
        return b"".join(parts)

    async def manifest_delete(self, request: web.Request, name: str, ref: str) -> web.StreamResponse:
        await asyncio.to_thread(self.registry.delete_manifest, name, ref)
        return web.Response(status=202, headers={"Content-Length": "0"})

    # ------------------------------------------------------------ referrers

    async def referrers_get(self, request: web.Request, name: str, digest: str) -> web.StreamResponse:
        subject = Digest.parse(digest)
        artifact_type = request.query.get("artifactType", "")
        manifests = await asyncio.to_thread(self.registry.referrers, name, subject, artifact_type)
        headers = {"Content-Type": OCI_INDEX}
        if artifact_type:
            headers["OCI-Filters-Applied"] = "artifactType"
        body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        return web.Response(status=200, body=json.dumps(body).encode(), headers=headers)

    # ------------------------------------------------------------ token endpoint

    async def token_get(self, request: web.Request) -> web.StreamResponse:
        scopes = request.query.getall("scope", [])
        service = request.query.get("service", "")
        header = request.headers.get("Authorization", "")
        body = await asyncio.to_thread(self.auth.issue_token, header, service, scopes)
        return web.json_response(body)


async def _sweep_uploads_forever(registry: Registry) -> None:
    period = max(1.0, min(registry.config.upload_expiry / 4, 300.0))
    while True:
        await asyncio.sleep(period)
        try:
            await asyncio.to_thread(registry.sweep_uploads)
        except Exception:
            log.exception("upload sweep failed")


def make_http_app(
    registry: Registry, authorizer: Authorizer | None = None, guard: ConnectionGuard | None = None
) -> web.Application:
    """The aiohttp application serving ``/v2/…`` (and ``/token`` in token mode) for ``registry``.

    Expired upload sessions are swept in the background while the app runs. ``client_max_size`` is
    left small: blob bodies never go through it (they are streamed), manifests are capped separately.
    """
    authorizer = authorizer or Authorizer(registry.config)
    handlers = _Handlers(registry, authorizer)
    app = web.Application(middlewares=[_error_middleware], client_max_size=registry.config.manifest_max_bytes)
    app[REGISTRY_KEY] = registry
    app[AUTH_KEY] = authorizer
    # Bound to the server by app.HttpServer; unbound (it only counts) where a test serves the app.
    app[GUARD_KEY] = guard or ConnectionGuard(10_000, registry.config.idle_timeout)
    # [\s\S], not ".": a decoded "%0A" in the path must still reach dispatch (and its OCI errors).
    app.router.add_route("*", r"/v2/{tail:[\s\S]*}", handlers.dispatch)
    app.router.add_route("*", "/v2", handlers.dispatch)
    app.router.add_get("/token", handlers.token_get)

    async def sweeper(app: web.Application) -> Any:
        task = asyncio.create_task(_sweep_uploads_forever(registry))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        handlers.writers.shutdown(wait=True)

    app.cleanup_ctx.append(sweeper)
    return app


__all__ = ["API_VERSION_HEADER", "OCI_STATUS", "make_http_app", "oci_error"]
