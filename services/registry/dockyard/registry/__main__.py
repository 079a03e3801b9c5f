"""``dockyard-registry``: serve the OCI Distribution API, or collect garbage.

    dockyard-registry serve [--root DIR] [--host H] [--port P] [--auth none|basic|token] ...
    dockyard-registry gc [--dry-run] [--grace SECONDS] [--offline]   (online through the running server)

Every flag has an environment variable ``DOCKYARD_REGISTRY_<FLAG>`` (``--token-secret`` →
``DOCKYARD_REGISTRY_TOKEN_SECRET``); a flag given on the command line wins. Secrets are better
given by file (``--token-secret-file``, ``--htpasswd``): every local user sees a command line.
The object graph is wired in ``app.py``; this module parses flags and runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from dockyard.adapters.host import HostConfig, add_host_flags
from dockyard.core import logging
from dockyard.core.errors import DockyardError
from dockyard.core.outbox import Outbox, OutboxPublisher
from dockyard.registry import app
from dockyard.registry.config import AuthMode, RegistryConfig
from dockyard.registry.gc import run_gc
from dockyard.registry.registry import Registry
from dockyard.registry.storage import FilesystemDriver

GRPC_PORT = 7071
ENV_PREFIX = "DOCKYARD_REGISTRY_"

# (flag, config field, type, help)
_SERVE_FLAGS: list[tuple[str, str, type, str]] = [
    ("--host", "host", str, "address to listen on (default 127.0.0.1)"),
    ("--port", "port", int, "port to listen on (default 5000)"),
    ("--auth", "auth_mode", AuthMode, "none | basic | token (default none)"),
    ("--htpasswd", "htpasswd_path", Path, "htpasswd file with bcrypt hashes (basic and token modes)"),
    ("--access", "access_path", Path, "access rules file, lines user:pull[,push][:repo-glob]"),
    ("--token-secret", "token_secret", str, "HS256 secret for bearer tokens (token mode, >= 32 chars)"),
    (
        "--token-secret-file",
        "token_secret_file",
        Path,
        "file holding the token secret (what `dockyard up` passes: a command line is visible in ps)",
    ),
    (
        "--credentials-file",
        "credentials_path",
        Path,
        "JSON {username, password}: the login RegistryAdmin.GetCredentials hands to the gateway's users",
    ),
    ("--token-ttl", "token_ttl", int, "token lifetime in seconds (default 300)"),
    ("--realm", "realm", str, "public URL of the token endpoint (default http(s)://host:port/token)"),
    ("--tls-cert", "tls_cert", Path, "PEM certificate; with --tls-key serves HTTPS"),
    ("--tls-key", "tls_key", Path, "PEM private key"),
    ("--upload-expiry", "upload_expiry", float, "seconds an idle upload session lives (default 3600)"),
    ("--body-idle-timeout", "body_idle_timeout", float, "seconds a stalled body is kept (default 60)"),
    ("--gc-grace", "gc_grace", float, "seconds a new unreferenced blob is safe from GC (default 3600)"),
    (
        "--idle-timeout",
        "idle_timeout",
        float,
        "seconds a connection may sit idle or take to send its request head (default 60)",
    ),
    (
        "--max-connections",
        "max_connections",
        int,
        "open HTTP connections; beyond, the longest-idle one is closed (default: from the open-files limit)",
    ),
    (
        "--max-uploads-per-repository",
        "max_uploads_per_repository",
        int,
        "open upload sessions per repository; beyond it POST answers 429 (default 1000)",
    ),
]


def _env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def _add(parser: argparse.ArgumentParser, flag: str, dest: str, kind: type, help_: str) -> None:
    parser.add_argument(flag, dest=dest, type=kind, default=None, help=f"{help_} [env {_env_name(flag)}]")


def build_parser() -> argparse.ArgumentParser:
    env_list = ", ".join(_env_name(f) for f, *_ in _SERVE_FLAGS)
    parser = argparse.ArgumentParser(
        prog="dockyard-registry",
        description="Dockyard's OCI Distribution v1.1 registry.",
        epilog=f"Environment variables: {_env_name('--root')}, {env_list}.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the registry HTTP API")
    gc = sub.add_parser("gc", help="delete blobs no manifest references")
    for p in (serve, gc):
        add_host_flags(p, "registry", GRPC_PORT)
        _add(p, "--root", "root", Path, "storage root directory (default <state-dir>/storage)")
    for flag, dest, kind, help_ in _SERVE_FLAGS:
        _add(serve, flag, dest, kind, help_)
    gc.add_argument("--dry-run", action="store_true", help="report what would be freed, delete nothing")
    gc.add_argument(
        "--offline",
        action="store_true",
        help="collect in this process even if a registry serves at --grpc-listen (only when none runs!)",
    )
    _add(gc, "--grace", "gc_grace", float, "seconds a new unreferenced blob is safe (default 3600)")
    return parser


def config_from(
    args: argparse.Namespace, environ: dict[str, str] | os._Environ[str] = os.environ
) -> RegistryConfig:
    """Flags first, then ``DOCKYARD_REGISTRY_*`` variables, then the dataclass defaults."""
    values: dict[str, object] = {}
    flags = [("--root", "root", Path), *((f, d, k) for f, d, k, _ in _SERVE_FLAGS)]
    for flag, dest, kind in flags:
        value = getattr(args, dest, None)
        if value is None and (raw := environ.get(_env_name(flag))):
            value = kind(raw)
        if value is not None:
            values[dest] = value
    return RegistryConfig(**values).with_secret_file()  # type: ignore[arg-type]


def _gc_online(address: str, dry_run: bool, grace: float | None) -> dict[str, object] | None:
    """Ask the registry serving at ``address`` to collect; None when nothing answers there.

    Online is the safe way while the registry serves: the sweep runs in the serving process,
    which knows the uploads and manifest pushes in flight. ``address`` is the registry's
    ``--grpc-listen``: by default its private socket ``<state-dir>/../sockets/registry.sock``,
    where ``dockyard up`` runs it too (reachable by its user and root only).
    """
    import grpc

    from dockyard.adapters.grpc.errors import to_native
    from dockyard.adapters.grpc.server import grpc_target
    from dockyard.api.registry.v1 import registry_pb2, registry_pb2_grpc

    request = registry_pb2.GarbageCollectRequest(dry_run=dry_run)
    if grace is not None:
        request.grace_seconds = int(grace)
    with grpc.insecure_channel(grpc_target(address)) as channel:
        try:
            reply = registry_pb2_grpc.RegistryAdminStub(channel).GarbageCollect(request, timeout=3600)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                return None
            raise to_native(exc) from None
    return {
        "mode": "online",
        "dry_run": reply.dry_run,
        "marked": reply.blobs_marked,
        "deleted_blobs": reply.blobs_swept,
        "freed_bytes": reply.bytes_freed,
    }


def _tune_malloc() -> None:
    """Serve big, short-lived buffers (the 1 MiB upload batches, in worker threads) from mmap.

    glibc raises its mmap threshold after the first such buffer is freed and then carves them from
    per-thread arenas, whose fragmentation shows as RSS creeping up for as long as a mixed load
    runs (bench/soak.py without this: arenas 18 -> 50 MB in 10 minutes, 36 MB of it free but kept).
    A fixed threshold (M_MMAP_THRESHOLD, which also turns the adjustment off) returns each one to
    the kernel when freed. Best effort: glibc only.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-3, 128 << 10)  # -3: M_MMAP_THRESHOLD


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.configure("registry")
    host_config = HostConfig.from_args("registry", args)
    if args.root is None and not os.environ.get(_env_name("--root")):
        args.root = host_config.state_dir / "storage"
    try:
        config = config_from(args)
        if args.command == "gc":
            online = None
            if not args.offline:
                online = _gc_online(host_config.grpc_listen, args.dry_run, args.gc_grace)
            if online is not None:
                print(json.dumps(online))
                return 0
            # No registry serves this state: collect here. Events go to the outbox the server
            # drains when it next starts.
            publisher = OutboxPublisher(Outbox(host_config.state_dir / "outbox"))
            registry = Registry(FilesystemDriver(config.root), publisher, config)
            result = run_gc(registry, dry_run=args.dry_run)
            summary = {k: v for k, v in asdict(result).items() if k != "deleted"}
            print(json.dumps({"mode": "offline", **summary}))
            return 0

        _tune_malloc()

        async def serve() -> None:  # gRPC's aio server must be built inside the running loop
            host, _ = app.build(config, host_config)
            await host.run()

        asyncio.run(serve())
    except (DockyardError, ValueError, OSError) as exc:
        print(f"dockyard-registry: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["build_parser", "config_from", "main"]
