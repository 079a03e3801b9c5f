"""Who may push to the platform's registry under ``dockyard up``: two logins, made by ``up``.

The registry's HTTP port is a TCP port on loopback, so every local user reaches it; these
credentials are the lock (``--registry-auth token``, the default, or ``basic``). ``write_registry_auth``
puts everything in ``<state-dir>/registry-auth/`` (0700, files 0600)::

    htpasswd           bcrypt hashes of both users (the registry's --htpasswd)
    access             the registry's --access rules: both users pull and push (push implies
                       delete); ``anonymous:pull`` only with --registry-anonymous-pull
    token-secret       the HS256 key of bearer tokens (--token-secret-file), fresh every start
    client.json        {"username": "dockyard", "password": …}: the login the registry hands out
                       through RegistryAdmin.GetCredentials (``dockyard registry credentials``),
                       for skopeo, podman and ``dockyard login``; kept across starts, so an authfile
                       made once keeps working
    platform-auth.json the runtime's own login (user ``dockyard-platform``) in docker's config.json
                       shape (the runtime's --platform-auth), under every name the registry is
                       reached by (``127.0.0.1:5000``, ``localhost:5000``); kept across starts

The runtime reads ``platform-auth.json`` after the node's own ``dockyard login`` entries
(``<state>/runtime/auth.json``, which this never writes): a user's login for the platform's
registry wins, and every other registry is unaffected. The builder pulls and pushes through the
runtime, so it needs nothing of its own. Secrets are handed over by path, never on a command line.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import bcrypt

MODES = ("token", "basic", "none")
CLIENT_USER = "dockyard"
PLATFORM_USER = "dockyard-platform"
BCRYPT_ROUNDS = 10
_WILDCARDS = ("", "0.0.0.0", "::", "[::]")


@dataclass(frozen=True, slots=True)
class RegistryAuth:
    """Where ``write_registry_auth`` put things (see the module docstring)."""

    directory: Path

    @property
    def htpasswd(self) -> Path:
        return self.directory / "htpasswd"

    @property
    def access(self) -> Path:
        return self.directory / "access"

    @property
    def token_secret(self) -> Path:
        return self.directory / "token-secret"

    @property
    def client(self) -> Path:
        return self.directory / "client.json"

    @property
    def platform(self) -> Path:
        return self.directory / "platform-auth.json"

    def registry_flags(self, mode: str) -> tuple[str, ...]:
        """The registry's ``serve`` flags for ``mode`` (paths only)."""
        if mode == "none":
            return ("--auth", "none")
        flags = ["--auth", mode, "--htpasswd", str(self.htpasswd), "--access", str(self.access)]
        flags += ["--credentials-file", str(self.client)]
        if mode == "token":
            flags += ["--token-secret-file", str(self.token_secret)]
        return tuple(flags)


def registry_names(registry_http: str) -> list[str]:
    """The ``host:port`` names image references use for the registry listening on ``registry_http``."""
    host, _, port = registry_http.rpartition(":")
    if host in _WILDCARDS or host == "127.0.0.1":
        return [f"127.0.0.1:{port}", f"localhost:{port}"]
    if host == "localhost":
        return [f"localhost:{port}", f"127.0.0.1:{port}"]
    return [f"{host}:{port}"]


def write_registry_auth(directory: Path, registry_http: str, *, anonymous_pull: bool = False) -> RegistryAuth:
    """Both logins (kept from an earlier start when there is one), the registry's files, a fresh
    token secret; returns where they are. Run before the registry and the runtime start."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    auth = RegistryAuth(directory)
    client = _kept_password(auth.client) or secrets.token_urlsafe(32)
    platform = _kept_platform_password(auth.platform) or secrets.token_urlsafe(32)
    _write_private(auth.client, json.dumps({"username": CLIENT_USER, "password": client}) + "\n")
    basic = base64.b64encode(f"{PLATFORM_USER}:{platform}".encode()).decode("ascii")
    auths = {name: {"auth": basic} for name in registry_names(registry_http)}
    _write_private(auth.platform, json.dumps({"auths": auths}, indent=2) + "\n")
    hashes = "".join(
        f"{user}:{_hash(pw)}\n" for user, pw in ((CLIENT_USER, client), (PLATFORM_USER, platform))
    )
    _write_private(auth.htpasswd, hashes)
    rules = f"{CLIENT_USER}:pull,push\n{PLATFORM_USER}:pull,push\n"
    if anonymous_pull:
        rules += "anonymous:pull\n"
    _write_private(auth.access, "# written by `dockyard up` on every start\n" + rules)
    _write_private(auth.token_secret, secrets.token_urlsafe(48) + "\n")
    return auth


def _kept_password(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text())
        password = data["password"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return password if isinstance(password, str) and len(password) >= 32 else None


def _kept_platform_password(path: Path) -> str | None:
    try:
        entry = next(iter(json.loads(path.read_text())["auths"].values()))
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        return None
    return password if user == PLATFORM_USER and len(password) >= 32 else None


def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()


def _write_private(path: Path, text: str) -> None:
    """A new 0600 file renamed over ``path``: never readable by others, not even briefly."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
