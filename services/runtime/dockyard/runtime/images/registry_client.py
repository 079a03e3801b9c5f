"""One registry for one operation: the HTTP session, its auth, its retries, its errors.

Auth: every request goes out anonymous (or with what an earlier challenge asked for); a 401's
``WWW-Authenticate`` decides the rest — ``Basic`` → the credentials as basic auth, ``Bearer`` →
a token from the challenge's realm (fetched with basic credentials when there are some), cached
per scope set for the operation. Scheme: https, except http for loopback registries
(``localhost``, ``127.0.0.0/8``, ``::1``) and when the caller says ``insecure``. Docker Hub
(``docker.io``) is spoken to at its API endpoint, ``registry-1.docker.io``.

Connection errors, timeouts and 5xx are retried a few times with a short backoff (the whole
request; a blob restarts from its first byte), then become ``Unavailable`` naming the registry.
401 → ``Unauthenticated``, 403 → ``PermissionDenied``, 404 → ``NotFound``, each one line that
says what to do (``check_response``).

``login`` is the one operation that is nothing but this: ``GET /v2/`` with the credentials.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from dockyard.core.errors import (
    DockyardError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
    StorageFull,
    Unauthenticated,
    Unavailable,
)
from dockyard.core.registries import api_endpoint
from dockyard.runtime.images.credentials import Credentials, normalize_registry

MAX_CONCURRENT = 4  # blobs in flight per pull or push
BLOCK = 1 << 20  # bytes handed to the writing thread at once; also the upload read size
READ_BUFFER = 4 << 20  # aiohttp reads ahead up to twice this while the thread writes
USER_AGENT = "dockyard-runtime"


def is_loopback(registry: str) -> bool:
    """Whether ``host[:port]`` names this machine (then plain http is the default)."""
    host = urlsplit("//" + registry).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- retries ---------------------------------------------------------------------------------


class ServerError(Exception):
    """A 5xx (or a 429) from the registry: worth another try."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status = status


def _transient(exc: BaseException) -> bool:
    return isinstance(
        exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | TimeoutError | ServerError
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


# -- auth and the session --------------------------------------------------------------------

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


class RegistrySession:
    """One registry for one operation: its base URL, the credentials, the auth state, a session."""

    def __init__(self, registry: str, *, insecure: bool, credentials: tuple[str, str] | None) -> None:
        self.registry = registry
        self.scheme = "http" if insecure or is_loopback(registry) else "https"
        self.base = f"{self.scheme}://{api_endpoint(registry)}"
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
        if isinstance(exc, ServerError):
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
                        raise ServerError(resp.status, await error_text(resp))
                    if resp.status != 200:
                        raise Unauthenticated(
                            f"the token service of {self.registry} answered {resp.status}: "
                            f"{await error_text(resp)}",
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
async def open_session(
    registry: str, *, insecure: bool, credentials: tuple[str, str] | None
) -> AsyncIterator[RegistrySession]:
    remote = RegistrySession(registry, insecure=insecure, credentials=credentials)
    try:
        try:
            yield remote
        except (aiohttp.ClientError, TimeoutError, ServerError) as e:
            raise remote.unavailable(e) from None
    finally:
        await remote.close()


async def credentials_for(credentials: Credentials | None, registry: str) -> tuple[str, str] | None:
    if credentials is None:
        return None
    return await asyncio.to_thread(credentials.get, registry)


# -- responses -------------------------------------------------------------------------------


async def error_text(resp: aiohttp.ClientResponse) -> str:
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


async def check_response(
    resp: aiohttp.ClientResponse, remote: RegistrySession, action: str, name: str, what: str
) -> None:
    """Map a failed response to a core error (5xx to the retried ``ServerError``)."""
    status = resp.status
    if status < 400:
        return
    text = await error_text(resp)
    if status == 507:  # the registry's disk is full: retrying at once cannot help; say so
        raise StorageFull(f"{remote.registry}'s storage is full: {text}", registry=remote.registry)
    if status >= 500 or status == 429:
        raise ServerError(status, text)
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
        # a manifest the registry does not have is an image that does not exist (docker's 404)
        reason = Reason.NO_SUCH_IMAGE if what == "manifest" else ""
        raise NotFound(f"{what} unknown: {name}", reason=reason, registry=remote.registry)
    raise InvalidArgument(f"{remote.registry} refused {what} {name}: {text}", status=status)


async def read_capped(resp: aiohttp.ClientResponse, cap: int, what: str) -> bytes:
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


async def run_bounded(jobs: list[Callable[[], Awaitable[None]]], limit: int) -> None:
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


async def login(registry: str, username: str, password: str, insecure: bool = False) -> None:
    """Check ``username``/``password`` against ``registry`` (``GET /v2/``, and its token service
    when it uses bearer tokens); Unauthenticated when they are refused. Stores nothing: the caller
    keeps them (``CredentialStore.set``) once this returns.
    """
    host = normalize_registry(registry)
    async with open_session(host, insecure=insecure, credentials=(username, password)) as remote:
        async for attempt in transfer_retry():
            with attempt:
                resp = await remote.send("GET", remote.url("/v2/"), scopes=())
                async with resp:
                    if resp.status == 401:
                        raise Unauthenticated(
                            f"login to {host} failed: the user name or password was refused", registry=host
                        )
                    if resp.status >= 500 or resp.status == 429:
                        raise ServerError(resp.status, await error_text(resp))
                    if resp.status != 200:
                        raise FailedPrecondition(
                            f"{host} does not look like an OCI registry: GET /v2/ answered {resp.status}"
                        )
