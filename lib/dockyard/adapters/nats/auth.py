"""Who may do what on the platform's NATS: one identity per service, each with only its own subjects.

``write_auth(directory, settings)`` makes a fresh random password per identity (every ``dockyard
up``), writes each identity's credentials to ``<directory>/<name>.json`` and the nats-server
configuration to ``<directory>/nats-server.conf``: all 0600 in a 0700 directory, so only the
platform's user reads them. A service is handed the *path* of its file (``--nats-credentials``),
never the secret on a command line that ``ps`` shows.

The identities and what each may publish (nothing else is allowed; an identity may subscribe only
to its own inbox prefix ``_INBOX_<name>.>``, where JetStream's replies and deliveries arrive):

- ``registry``, ``runtime``, ``builder``: their own areas' events (``dockyard.registry.>``;
  ``dockyard.container|image|network|volume.>``; ``dockyard.build.>``) and ``dockyard.service.>``.
  A JetStream publish is a plain publish with a reply inbox: no ``$JS.API`` subject at all, so a
  service can neither read the stream, nor delete or purge it, nor create streams or consumers.
- ``gateway``: reads: ``STREAM.INFO`` of the event stream, ``CONSUMER.CREATE`` of ephemeral
  consumers on it (nats-py's ordered consumer) and ``$JS.FC.<stream>.>`` (flow-control replies).
  Of the events it publishes only ``dockyard.service.>`` (its own started/stopping).
- ``admin``: ``dockyard up`` itself, which creates and updates the stream: the whole JetStream API
  of the account, but no event subject either, so not even the owner's identity forges an event.

Because only ``runtime`` may publish on ``dockyard.container.>``, an event there whose CloudEvents
``source`` names the runtime was published by the runtime. JetStream storage is bounded on the
account (``max_file``: the stream's own bound plus slack; one stream; a bounded number of
consumers), so nothing reachable through NATS fills the state directory. There is no
``no_auth_user``: a connection without credentials is refused.

nats-server 2.15 listens for clients on TCP only (no unix socket), so the server binds to loopback
and these credentials are the lock.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bcrypt

from dockyard.core.errors import FailedPrecondition

if TYPE_CHECKING:
    from dockyard.adapters.nats.bus import StreamSettings  # bus imports this module

ACCOUNT = "DOCKYARD"
CONFIG_NAME = "nats-server.conf"

# What each publishing service may emit: its own areas (see dockyard.core.events.Subject).
EVENT_AREAS: Mapping[str, tuple[str, ...]] = {
    "registry": ("registry",),
    "runtime": ("container", "image", "network", "volume"),
    "builder": ("build",),
}
SERVICE_AREA = "service"  # dockyard.service.started / .stopping: every service's own lifecycle
GATEWAY = "gateway"
ADMIN = "admin"
IDENTITIES = (*EVENT_AREAS, GATEWAY, ADMIN)

MAX_MEMORY_STORE = 64 << 20  # the event stream is file-backed; memory only for JetStream's own needs
STORE_SLACK = 256 << 20  # above the stream's max_bytes: its indexes and a message in flight
MIN_SLACK = 8 << 20  # the least of it, for a stream fitted to a small disk
MIN_STREAM_BYTES = 16 << 20  # a stream smaller than this is no event history worth the name
DISK_SHARE = 4  # the event store takes at most a quarter of the space free at start


def store_slack(max_bytes: int) -> int:
    """JetStream's room above the stream's bound: a quarter of it, between MIN_SLACK and STORE_SLACK."""
    return min(STORE_SLACK, max(MIN_SLACK, max_bytes // 4))


def fit_to_disk(settings: StreamSettings, free: int) -> StreamSettings:
    """``settings`` with max_bytes lowered so that the stream and its slack fit in a quarter of
    ``free`` bytes (never below MIN_STREAM_BYTES): a configured bound bigger than the disk makes
    nats-server refuse the stream ("insufficient storage resources") and ``up`` fail."""
    room = free // DISK_SHARE
    # max_bytes + store_slack(max_bytes) <= room: slack is a quarter above 32 MiB, MIN_SLACK below
    fitted = min(settings.max_bytes, max(MIN_STREAM_BYTES, min(room * 4 // 5, room - MIN_SLACK)))
    return replace(settings, max_bytes=fitted) if fitted != settings.max_bytes else settings


BCRYPT_ROUNDS = 10
MAX_CONSUMERS = 1024  # each `dockyard events` holds one ephemeral consumer while it runs


@dataclass(frozen=True, slots=True)
class NatsCredentials:
    """One identity's user and password, as read from its 0600 file."""

    user: str
    password: str

    @property
    def inbox_prefix(self) -> str:
        """The only subjects this identity may subscribe to (JetStream replies, deliveries)."""
        return f"_INBOX_{self.user}"

    @classmethod
    def load(cls, path: Path) -> NatsCredentials:
        try:
            data = json.loads(path.read_text())
            return cls(user=str(data["user"]), password=str(data["password"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FailedPrecondition(f"cannot read NATS credentials from {path}: {exc}") from exc

    def save(self, path: Path) -> None:
        _write_private(path, json.dumps({"user": self.user, "password": self.password}) + "\n")


def permissions(name: str, stream: str) -> dict[str, Any]:
    """The nats-server ``permissions`` block of identity ``name`` (allow lists; the rest is denied)."""
    inbox = f"_INBOX_{name}.>"
    if name in EVENT_AREAS:
        publish = [f"dockyard.{area}.>" for area in (*EVENT_AREAS[name], SERVICE_AREA)]
    elif name == GATEWAY:
        publish = [
            f"$JS.API.STREAM.INFO.{stream}",
            f"$JS.API.CONSUMER.CREATE.{stream}",  # an ephemeral consumer (no name)
            f"$JS.API.CONSUMER.CREATE.{stream}.>",  # the same with a name and filter (server ≥ 2.9)
            f"$JS.FC.{stream}.>",  # flow-control replies of an ordered consumer
            f"dockyard.{SERVICE_AREA}.>",  # its own started/stopping, as every ServiceHost
        ]
    elif name == ADMIN:
        publish = ["$JS.API.>", f"$JS.FC.{stream}.>"]
    else:
        raise ValueError(f"no NATS identity {name!r}")
    return {"publish": {"allow": publish}, "subscribe": {"allow": [inbox]}}


def server_config(credentials: Mapping[str, NatsCredentials], settings: StreamSettings) -> dict[str, Any]:
    """The nats-server configuration (JSON is valid nats-server syntax): users, permissions, limits.

    It holds bcrypt hashes of the passwords, never the passwords (costs the server ≈50 ms per login).
    """
    max_file = settings.max_bytes + store_slack(settings.max_bytes)
    users = [
        {"user": c.user, "password": _hash(c.password), "permissions": permissions(name, settings.name)}
        for name, c in credentials.items()
    ]
    return {
        "jetstream": {"max_file_store": max_file, "max_memory_store": MAX_MEMORY_STORE},
        "accounts": {
            ACCOUNT: {
                "jetstream": {
                    "max_file": max_file,
                    "max_mem": MAX_MEMORY_STORE,
                    "max_streams": 1,
                    "max_consumers": MAX_CONSUMERS,
                },
                "users": users,
            }
        },
    }


@dataclass(frozen=True, slots=True)
class NatsAuth:
    """Where ``write_auth`` put things: the server's config and each identity's credentials file."""

    directory: Path

    @property
    def config_file(self) -> Path:
        return self.directory / CONFIG_NAME

    def credentials_file(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    def credentials(self, name: str) -> NatsCredentials:
        return NatsCredentials.load(self.credentials_file(name))


def write_auth(directory: Path, settings: StreamSettings) -> NatsAuth:
    """Fresh secrets for every identity, their files and the server's config; returns where they are.

    Run before nats-server and the services start: they read these files at start.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)  # also when an older, wider one was there
    auth = NatsAuth(directory)
    made = {name: NatsCredentials(name, secrets.token_urlsafe(32)) for name in IDENTITIES}
    for name, creds in made.items():
        creds.save(auth.credentials_file(name))
    _write_private(auth.config_file, json.dumps(server_config(made, settings), indent=2) + "\n")
    return auth


def adopt_unauthenticated_store(store_dir: Path) -> bool:
    """Move a store written before authentication (account ``$G``) to this account; True if moved.

    nats-server keeps each account's streams under ``<store>/jetstream/<account>/``, so the events
    of a platform that ran without authentication stay readable after the upgrade. Run with the
    server stopped. A store that already has this account's directory is left as it is.
    """
    old, new = store_dir / "jetstream" / "$G", store_dir / "jetstream" / ACCOUNT
    if not old.is_dir() or new.exists():
        return False
    old.rename(new)
    return True


def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new 0600 file renamed over ``path``: never readable by others, even briefly."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
