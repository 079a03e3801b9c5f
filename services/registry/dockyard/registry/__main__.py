"""``dockyard-registry``: serve the OCI Distribution API, or collect garbage.

    dockyard-registry serve [--root DIR] [--host H] [--port P] [--auth none|basic|token] ...
    dockyard-registry gc [--dry-run] [--root DIR] [--grace SECONDS]

Every flag has an environment variable ``DOCKYARD_REGISTRY_<FLAG>`` (``--token-secret`` →
``DOCKYARD_REGISTRY_TOKEN_SECRET``); a flag given on the command line wins. Until ``app.py`` exists
this module builds the object graph itself: storage, an on-disk event outbox, the core, the app.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import structlog
from aiohttp import web
from dockyard.core.errors import DockyardError
from dockyard.core.outbox import Outbox, OutboxPublisher
from dockyard.registry.auth import Authorizer
from dockyard.registry.config import AuthMode, RegistryConfig
from dockyard.registry.gc import run_gc
from dockyard.registry.http import make_http_app
from dockyard.registry.registry import Registry
from dockyard.registry.storage import FilesystemDriver

ENV_PREFIX = "DOCKYARD_REGISTRY_"

# (flag, config field, type, help)
_SERVE_FLAGS: list[tuple[str, str, type, str]] = [
    ("--host", "host", str, "address to listen on (default 127.0.0.1)"),
    ("--port", "port", int, "port to listen on (default 5000)"),
    ("--auth", "auth_mode", AuthMode, "none | basic | token (default none)"),
    ("--htpasswd", "htpasswd_path", Path, "htpasswd file with bcrypt hashes (basic and token modes)"),
    ("--access", "access_path", Path, "access rules file, lines user:pull[,push][:repo-glob]"),
    ("--token-secret", "token_secret", str, "HS256 secret for bearer tokens (token mode, >= 32 chars)"),
    ("--token-ttl", "token_ttl", int, "token lifetime in seconds (default 300)"),
    ("--realm", "realm", str, "public URL of the token endpoint (default http(s)://host:port/token)"),
    ("--tls-cert", "tls_cert", Path, "PEM certificate; with --tls-key serves HTTPS"),
    ("--tls-key", "tls_key", Path, "PEM private key"),
    ("--upload-expiry", "upload_expiry", float, "seconds an idle upload session lives (default 3600)"),
    ("--gc-grace", "gc_grace", float, "seconds a new unreferenced blob is safe from GC (default 3600)"),
    ("--nats-url", "nats_url", str, "NATS server for events (used by app.py's outbox drainer)"),
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
        _add(p, "--root", "root", Path, "storage root directory (default /var/lib/dockyard/registry)")
    for flag, dest, kind, help_ in _SERVE_FLAGS:
        _add(serve, flag, dest, kind, help_)
    gc.add_argument("--dry-run", action="store_true", help="report what would be freed, delete nothing")
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
    return RegistryConfig(**values)  # type: ignore[arg-type]


def build(config: RegistryConfig) -> tuple[Registry, web.Application]:
    """The object graph ``serve`` runs (``app.py`` will take this over)."""
    storage = FilesystemDriver(config.root)
    publisher = OutboxPublisher(Outbox(config.root / "outbox"))
    registry = Registry(storage, publisher, config)
    return registry, make_http_app(registry, Authorizer(config))


def _ssl_context(config: RegistryConfig) -> ssl.SSLContext | None:
    if not config.tls:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(config.tls_cert), str(config.tls_key))
    return ctx


def main(argv: Sequence[str] | None = None) -> int:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(),
        ]
    )
    args = build_parser().parse_args(argv)
    try:
        config = config_from(args)
        registry, app = build(config)
    except (DockyardError, ValueError, OSError) as exc:
        print(f"dockyard-registry: {exc}", file=sys.stderr)
        return 2
    if args.command == "gc":
        result = run_gc(registry, dry_run=args.dry_run)
        out = asdict(result)
        out.pop("deleted")
        print(json.dumps(out))
        return 0
    web.run_app(app, host=config.host, port=config.port, ssl_context=_ssl_context(config), print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["build", "build_parser", "config_from", "main"]
