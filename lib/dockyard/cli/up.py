"""``dockyard up``: run the whole platform on this machine until Ctrl-C.

Run as root (the default on lab machines), it does not run the platform as root: it hands
the state directory to the unprivileged user (``dockyard``, made by ``make setup``; or
``$DOCKYARD_USER``) and re-executes itself as that user with ``setpriv``, so every service —
and every container the runtime starts — is rootless. ``--allow-root`` skips that (for
debugging only).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    parser.add_argument(
        "--state-dir",
        default=os.environ.get("DOCKYARD_STATE_DIR", os.path.join(data_home, "dockyard")),
        help="where everything is kept [DOCKYARD_STATE_DIR, default ~/.local/share/dockyard]",
    )
    parser.add_argument("--nats-port", type=int, default=int(os.environ.get("DOCKYARD_NATS_PORT", "4222")))
    parser.add_argument(
        "--registry-listen",
        default=os.environ.get("DOCKYARD_REGISTRY_LISTEN", "127.0.0.1:5000"),
        help="the registry's HTTP address [DOCKYARD_REGISTRY_LISTEN, default 127.0.0.1:5000]",
    )
    parser.add_argument(
        "--grpc-base-port",
        type=int,
        default=int(os.environ.get("DOCKYARD_GRPC_BASE_PORT", "7070")),
        help="gateway on this port, registry/runtime/builder on the next three [default 7070]",
    )
    parser.add_argument("--allow-root", action="store_true", help="run the services as root (not rootless)")


def run(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir).resolve()
    if os.geteuid() == 0 and not args.allow_root:
        _become_unprivileged(state_dir, args)  # does not return

    import asyncio

    from dockyard.core import logging
    from dockyard.local.supervisor import PlatformConfig, Supervisor

    logging.configure("up")
    base = args.grpc_base_port
    config = PlatformConfig(
        state_dir=state_dir,
        nats_port=args.nats_port,
        registry_http=args.registry_listen,
        gateway_grpc=f"127.0.0.1:{base}",
        registry_grpc=f"127.0.0.1:{base + 1}",
        runtime_grpc=f"127.0.0.1:{base + 2}",
        builder_grpc=f"127.0.0.1:{base + 3}",
    )

    def ready(sup: Supervisor) -> None:
        print(f"dockyard up: platform ready (state in {state_dir}, uid {os.geteuid()})", flush=True)
        print(f"  gateway   {config.gateway_grpc}   (dockyard -H {config.gateway_grpc} info)")
        print(f"  registry  http://{config.registry_http}   admin {config.registry_grpc}")
        print(f"  runtime   {config.runtime_grpc}")
        print(f"  builder   {config.builder_grpc}")
        print(f"  nats      {config.nats_url}   (JetStream in {state_dir / 'nats'})")
        print(f"  logs      {sup.log_dir}/<service>.log      Ctrl-C stops everything", flush=True)

    return asyncio.run(Supervisor(config).run(on_ready=ready))


def _become_unprivileged(state_dir: Path, args: argparse.Namespace) -> None:
    from dockyard.cli.privilege import give_to, platform_user, reexec_as

    user = platform_user()
    give_to(user, state_dir)
    reexec_as(
        user,
        ["up", "--state-dir", str(state_dir), "--nats-port", str(args.nats_port),
         "--registry-listen", args.registry_listen, "--grpc-base-port", str(args.grpc_base_port)],
    )  # fmt: skip
