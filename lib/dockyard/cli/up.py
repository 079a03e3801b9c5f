"""``dockyard up``: run the whole platform on this machine until Ctrl-C.

Run as root (the default on lab machines), it does not run the platform as root: it hands
the state directory to the unprivileged user (``dockyard``, made by ``make setup``; or
``$DOCKYARD_USER``) and re-executes itself as that user with ``setpriv``, so every service —
and every container the runtime starts — is rootless. ``--allow-root`` skips that (for
debugging only).

Access (who may use the platform): the gateway listens on a unix socket, mode 0660 and group
``dockyard`` — ``/run/dockyard/dockyard.sock`` when root starts it (root makes /run/dockyard,
0750 dockyard:dockyard, before dropping), else ``$XDG_RUNTIME_DIR/dockyard/dockyard.sock``, else
``<state-dir>/dockyard.sock``. ``--listen tcp://HOST:PORT`` serves TCP instead, with mutual TLS
only: the CA, a server and a client certificate are made in ``<state-dir>/tls/``.

The registry's HTTP port requires credentials (``--registry-auth token``, the default, or
``basic``): the runtime and the builder use the platform's own, users get a login for skopeo,
podman or ``dockyard login`` from ``dockyard registry credentials``. ``--registry-anonymous-pull``
lets anyone pull; ``--registry-auth none`` lets anyone push and delete too (``info`` and
``doctor`` warn).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    parser.add_argument(
        "--state-dir",
        default=os.environ.get("DOCKYARD_STATE_DIR", os.path.join(data_home, "dockyard")),
        help="where everything is kept [DOCKYARD_STATE_DIR, default ~/.local/share/dockyard]",
    )
    nats = os.environ.get("DOCKYARD_NATS_PORT")
    parser.add_argument(
        "--nats-port",
        type=int,
        default=int(nats) if nats else None,
        help="NATS's port on 127.0.0.1 [DOCKYARD_NATS_PORT, default 4222, or a free one kept for the "
        "state dir when another user holds 4222]",
    )
    parser.add_argument(
        "--registry-listen",
        default=os.environ.get("DOCKYARD_REGISTRY_LISTEN"),
        help="the registry's HTTP address [DOCKYARD_REGISTRY_LISTEN, default 127.0.0.1:5000, or a free "
        "port kept for the state dir when another user holds 5000]",
    )
    parser.add_argument(
        "--registry-auth",
        choices=("token", "basic", "none"),
        default=os.environ.get("DOCKYARD_REGISTRY_AUTH") or "token",
        help="the registry's HTTP authentication: bearer tokens (token), htpasswd (basic), or none, "
        "which lets every local user push and delete [DOCKYARD_REGISTRY_AUTH, default token]",
    )
    parser.add_argument(
        "--registry-anonymous-pull",
        action="store_true",
        default=os.environ.get("DOCKYARD_REGISTRY_ANONYMOUS_PULL", "") not in ("", "0", "false"),
        help="let callers without credentials pull (never push or delete) [DOCKYARD_REGISTRY_ANONYMOUS_PULL]",
    )
    parser.add_argument(
        "--listen",
        default=os.environ.get("DOCKYARD_LISTEN", ""),
        help="the gateway's address: unix:///path, or tcp://host:port with mutual TLS (certificates "
        "in <state-dir>/tls) [DOCKYARD_LISTEN, default unix:///run/dockyard/dockyard.sock as root, "
        "else $XDG_RUNTIME_DIR/dockyard/dockyard.sock, else <state-dir>/dockyard.sock]",
    )
    parser.add_argument(
        "--log-max-bytes",
        type=int,
        default=int(os.environ.get("DOCKYARD_LOG_MAX_BYTES") or 10 * 1024 * 1024),
        help="rotate each log in <state-dir>/logs at this size [DOCKYARD_LOG_MAX_BYTES, default 10 MiB]",
    )
    parser.add_argument(
        "--log-files",
        type=int,
        default=int(os.environ.get("DOCKYARD_LOG_FILES") or 3),
        help="files kept per log, the current one included [DOCKYARD_LOG_FILES, default 3]",
    )
    parser.add_argument("--allow-root", action="store_true", help="run the services as root (not rootless)")


def run(args: argparse.Namespace) -> int:
    from dockyard.adapters.grpc.server import grpc_target
    from dockyard.adapters.host import platform_group, public_socket
    from dockyard.core.errors import InvalidArgument

    state_dir = Path(args.state_dir).resolve()
    if args.registry_anonymous_pull and args.registry_auth == "none":
        raise InvalidArgument("--registry-anonymous-pull needs --registry-auth token or basic")
    try:
        listen = grpc_target(args.listen or f"unix:{public_socket(state_dir)}")
    except ValueError as exc:
        raise InvalidArgument(f"--listen: {exc}") from None
    if os.geteuid() == 0 and not args.allow_root:
        _become_unprivileged(state_dir, listen, args)  # does not return

    import asyncio

    from dockyard.core import logging
    from dockyard.local.logs import Rotation
    from dockyard.local.ports import default_port
    from dockyard.local.supervisor import PlatformConfig, Supervisor

    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    notes = []
    if args.nats_port is None:
        args.nats_port, note = default_port(state_dir, "nats", "127.0.0.1", 4222)
        notes.append(note)
    if args.registry_listen is None:
        port, note = default_port(state_dir, "registry", "127.0.0.1", 5000)
        args.registry_listen = f"127.0.0.1:{port}"
        notes.append(note)
    for note in filter(None, notes):
        print(f"dockyard up: {note}", file=sys.stderr)
    try:
        rotation = Rotation(max_bytes=args.log_max_bytes, files=args.log_files)
    except ValueError as exc:
        raise InvalidArgument(f"--log-max-bytes/--log-files: {exc}") from None
    logging.configure("up")
    config = PlatformConfig(
        state_dir=state_dir,
        nats_port=args.nats_port,
        registry_http=args.registry_listen,
        registry_auth=args.registry_auth,
        registry_anonymous_pull=args.registry_anonymous_pull,
        gateway_listen=listen,
        socket_group=platform_group(),
        logs=rotation,
    )

    def ready(sup: Supervisor) -> None:
        took = f"in {sup.ready_after_s:.1f} s, " if sup.ready_after_s is not None else ""
        print(f"dockyard up: platform ready ({took}state in {state_dir}, uid {os.geteuid()})", flush=True)
        if config.tls is None:
            where = f"unix://{config.gateway_socket}"
            print(f"  gateway   {where}   (dockyard -H {where} info)")
        else:
            certs, where = config.tls.directory, f"tcp://{config.gateway_grpc}"
            print(f"  gateway   {where}   mutual TLS, certificates in {certs}")
            print(f"            (DOCKYARD_CERT_PATH={certs} dockyard --tlsverify -H {where} info)")
        if config.tls is None:
            print(f"  docker    {config.docker_api}   (DOCKER_HOST={config.docker_api} docker ps)")
        else:
            print(f"  docker    {config.docker_api}   mutual TLS, the same certificates")
            print(
                f"            (DOCKER_CERT_PATH={config.tls.directory} DOCKER_TLS_VERIFY=1 "
                f"DOCKER_HOST={config.docker_api} docker ps)"
            )
        print(f"  registry  http://{config.registry_http}   admin {config.registry_grpc}")
        if config.registry_auth == "none":
            print(
                "            WARNING: no authentication (--registry-auth none): "
                "every local user may push and delete"
            )
        else:
            anonymous = ", anonymous pull" if config.registry_anonymous_pull else ""
            print(
                f"            auth {config.registry_auth}{anonymous}   (login: dockyard registry credentials)"
            )
        print(f"  runtime   {config.runtime_grpc}")
        print(f"  builder   {config.builder_grpc}")
        print(f"  nats      {config.nats_url}   (JetStream in {state_dir / 'nats'})")
        limit = f"{config.logs.max_bytes} bytes x {config.logs.files} files"
        print(
            f"  logs      {sup.log_dir}/<service>.log  (rotated: {limit})   Ctrl-C stops everything",
            flush=True,
        )

    return asyncio.run(Supervisor(config).run(on_ready=ready))


def _become_unprivileged(state_dir: Path, listen: str, args: argparse.Namespace) -> None:
    from dockyard.adapters.grpc.server import unix_path
    from dockyard.cli.privilege import give_socket_dir, give_to, platform_user, reexec_as

    user = platform_user()
    give_to(user, state_dir)
    socket = unix_path(listen)
    if socket is not None:
        give_socket_dir(user, socket.parent)
    # cgroup v2 (resource limits): live inside the delegated /dockyard subtree, so the unprivileged
    # runtime may move containers into cgroups there; a no-op on v1.
    from dockyard.core.cgroups import enter_v2_subtree

    enter_v2_subtree(user.pw_uid, user.pw_gid)
    reexec_as(
        user,
        ["up", "--state-dir", str(state_dir), "--listen", listen,
         *(["--nats-port", str(args.nats_port)] if args.nats_port is not None else []),
         *(["--registry-listen", args.registry_listen] if args.registry_listen is not None else []),
         "--registry-auth", args.registry_auth,
         *(["--registry-anonymous-pull"] if args.registry_anonymous_pull else []),
         "--log-max-bytes", str(args.log_max_bytes), "--log-files", str(args.log_files)],
    )  # fmt: skip
