"""Registry credentials the node keeps for ``dockyard login``, in docker's ``config.json`` shape.

One JSON file, readable by the runtime's user only::

    <state>/auth.json            mode 0600, replaced in whole (tmp + fsync + rename)
    <state>/.auth.json.<random>  a new version being written: created 0600 from the first byte

    {"auths": {"127.0.0.1:5000": {"auth": "<base64 of user:password>"}, ...}, ...}

Keys are registries as they appear in image references (``host[:port]``); keys written by other
tools with a scheme or a path (``https://host:port/v1/``) are read too. Members other than
``auths`` and entries other than ``auth`` (``username``/``password`` are also read) are kept as
found, so the file can be shared with docker or podman.

Contracts: a reader never sees half a file; a password never lands in a file another user could
read, not even for the instant between create and chmod. Costs: every call reads the file (it is a
few hundred bytes); writes take a process-wide lock so two logins never lose one another's entry.
Call from a worker thread in async code (it does disk I/O and an fsync on writes).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any, Protocol

from dockyard.core.errors import FailedPrecondition, InvalidArgument
from dockyard.core.fsutil import fsync_dir


class Credentials(Protocol):
    """Where the distribution client finds a registry's user name and password (role interface)."""

    def get(self, registry: str) -> tuple[str, str] | None:
        """``(user, password)`` for ``registry`` (``host[:port]``), or None to stay anonymous."""
        ...


class StaticCredentials:
    """Credentials held in memory: ``{"host:port": (user, password)}`` (for the builder and tests)."""

    def __init__(self, entries: dict[str, tuple[str, str]] | None = None) -> None:
        self._entries = {normalize_registry(k): v for k, v in (entries or {}).items()}

    def get(self, registry: str) -> tuple[str, str] | None:
        return self._entries.get(normalize_registry(registry))


class ChainedCredentials:
    """The first of several sources that knows a registry: the node's own logins before the
    platform's (so a user's ``dockyard login`` wins, and the platform's never overwrites it)."""

    def __init__(self, *sources: Credentials) -> None:
        self._sources = sources

    def get(self, registry: str) -> tuple[str, str] | None:
        for source in self._sources:
            if (found := source.get(registry)) is not None:
                return found
        return None


def normalize_registry(registry: str) -> str:
    """``host[:port]`` from what people and tools write: strips a scheme, a path and a trailing slash."""
    name = registry.strip()
    for scheme in ("https://", "http://"):
        if name.lower().startswith(scheme):
            name = name[len(scheme) :]
    name = name.split("/", 1)[0].lower()
    if not name or any(c.isspace() for c in name):
        raise InvalidArgument(f"invalid registry {registry[:100]!r}: want HOST[:PORT]")
    return name


class CredentialStore:
    """The node's ``auth.json`` (see the module docstring). Implements :class:`Credentials`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    # -- reading ---------------------------------------------------------------------------

    def get(self, registry: str) -> tuple[str, str] | None:
        """``(user, password)`` stored for ``registry``, or None. A corrupt entry is FailedPrecondition."""
        want = normalize_registry(registry)
        for key, entry in self._load().get("auths", {}).items():
            try:
                if normalize_registry(key) != want:
                    continue
            except InvalidArgument:
                continue
            return _decode_entry(key, entry, self.path)
        return None

    def registries(self) -> list[str]:
        """The registries with stored credentials, normalized and sorted."""
        out = set()
        for key in self._load().get("auths", {}):
            with contextlib.suppress(InvalidArgument):
                out.add(normalize_registry(key))
        return sorted(out)

    # -- writing ---------------------------------------------------------------------------

    def set(self, registry: str, user: str, password: str) -> None:
        """Store (or replace) the credentials of ``registry``. Durable when this returns."""
        key = normalize_registry(registry)
        if not user or ":" in user:
            raise InvalidArgument("a user name must be non-empty and must not contain ':'")
        if not password:
            raise InvalidArgument("a password must not be empty")
        auth = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        with self._lock:
            doc = self._load()
            auths = {k: v for k, v in doc.get("auths", {}).items() if not _same(k, key)}
            auths[key] = {"auth": auth}
            doc["auths"] = auths
            self._write(doc)

    def remove(self, registry: str) -> bool:
        """Forget ``registry``'s credentials; returns whether there were any."""
        key = normalize_registry(registry)
        with self._lock:
            doc = self._load()
            before = doc.get("auths", {})
            after = {k: v for k, v in before.items() if not _same(k, key)}
            if len(after) == len(before):
                return False
            doc["auths"] = after
            self._write(doc)
            return True

    # -- the file --------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {"auths": {}}
        try:
            doc = json.loads(raw) if raw.strip() else {}
        except ValueError as e:
            raise FailedPrecondition(f"{self.path} is not valid JSON: {e}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("auths", {}), dict):
            raise FailedPrecondition(f"{self.path} is not a credentials file: want {{'auths': {{...}}}}")
        doc.setdefault("auths", {})
        return doc

    def _write(self, doc: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.parent / f".{self.path.name}.{uuid.uuid4().hex}"
        data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
        # O_EXCL + mode 0600 at creation: no window where the secret is readable by others.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            fsync_dir(self.path.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _same(key: str, normalized: str) -> bool:
    try:
        return normalize_registry(key) == normalized
    except InvalidArgument:
        return False


def _decode_entry(key: str, entry: object, path: Path) -> tuple[str, str] | None:
    if not isinstance(entry, dict):
        raise FailedPrecondition(f"{path}: the entry for {key!r} is not an object")
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return entry["username"], entry["password"]
    auth = entry.get("auth")
    if not auth:
        return None
    try:
        user, sep, password = base64.b64decode(str(auth), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        sep = ""
    if not sep:
        raise FailedPrecondition(f"{path}: the entry for {key!r} is not base64 of user:password")
    return user, password
