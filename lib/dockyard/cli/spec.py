"""The flags of ``create`` and ``run``, and how they become a ContainerSpec.

Parsing is docker's: ``-e KEY`` and bare ``KEY`` lines of an ``--env-file`` take the value from this
process's environment (and are dropped when it has none); ``-p [IP:][HOST:]CONTAINER[/PROTO]`` with
ranges; ``-v SRC:DST[:ro|rw]`` where SRC is a host path (absolute, or starting with ".") or a volume
name, and ``-v DST`` an anonymous volume. Mistakes are InvalidArgument with one clear line.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from dockyard.cli import limits
from dockyard.client.grammar import parse_labels, parse_publish, parse_volume
from dockyard.client.types import add_to_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every flag docker's ``create`` and ``run`` share, then IMAGE [COMMAND [ARG...]]."""
    a = parser.add_argument
    a("--name", default="", help="assign a name to the container")
    a("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]", help="set an environment variable")
    a("--env-file", action="append", default=[], metavar="FILE", help="read KEY=VALUE lines from a file")
    a("-w", "--workdir", default="", help="working directory inside the container")
    a("-u", "--user", default="", help="user[:group] to run as (name or id)")
    a("--entrypoint", default=None, help="override the image's ENTRYPOINT")
    a("--hostname", default="", help="the container's host name")
    a("-l", "--label", action="append", default=[], metavar="KEY[=VALUE]", help="set metadata")
    a("--read-only", action="store_true", help="mount the root filesystem read-only")
    a(
        "--tmpfs",
        action="append",
        default=[],
        metavar="PATH[:OPTS]",
        help="mount a tmpfs (e.g. /run:size=64m)",
    )
    a("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]", help="bind mount or volume")
    a(
        "-p",
        "--publish",
        action="append",
        default=[],
        metavar="[IP:][HOST:]PORT[/PROTO]",
        help="publish a port",
    )
    a("-P", "--publish-all", action="store_true", help="publish every EXPOSEd port on a free host port")
    a("--network", "--net", default="", help="none, host, bridge (slirp4netns: the default) or NAME")
    from dockyard.cli import network  # networks: --network-alias, --ip, --dns, --add-host

    network.add_run_arguments(parser)
    a("--rm", action="store_true", help="remove the container when it exits")
    from dockyard.cli import health_restart  # --restart and the --health-* flags

    health_restart.add_arguments(parser)
    a("-i", "--interactive", action="store_true", help="keep stdin open")
    a("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    a("--stop-signal", default="", help="signal that stops the container (default: image's or SIGTERM)")
    a("--stop-timeout", default="0", metavar="SECONDS", help="seconds before SIGKILL on stop (default 10)")
    a(
        "--log-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="max-size=SIZE (default 20m, -1: unbounded) or max-file=N (default 5): rotate the log",
    )
    limits.add_arguments(parser)  # resource limits: --memory, --cpus, --pids-limit, …
    a("--cap-add", action="append", default=[], metavar="CAP", help="add a capability (NET_ADMIN, ALL)")
    a("--cap-drop", action="append", default=[], metavar="CAP", help="drop a capability (CHOWN, ALL)")
    a(
        "--privileged",
        action="store_true",
        help="every capability, no seccomp filter or masked paths (within your user namespace only)",
    )
    a("--init", action="store_true", help="run an init (catatonit) as PID 1 that reaps zombies")
    a("--platform", default="", help="os/arch[/variant] of the image to pull and run (no emulation)")
    from dockyard.cli import mountspec  # volumes: --mount, --volumes-from

    mountspec.add_arguments(parser)
    a("image", help="image reference")
    a("argv", nargs=argparse.REMAINDER, metavar="COMMAND", help="command and arguments")


def parse_env_file(text: str, environ: dict[str, str] | os._Environ[str] | None = None) -> list[str]:
    """docker's --env-file: KEY=VALUE lines taken verbatim, # comments and blank lines skipped,
    a bare KEY takes this process's value (and is left out when unset)."""
    from dockyard.core.errors import InvalidArgument

    env = os.environ if environ is None else environ
    out: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not key:
            raise InvalidArgument(f"env file line {number}: no variable name before '='")
        if any(c.isspace() for c in key):
            raise InvalidArgument(f"env file line {number}: variable {key.strip()!r} contains whitespace")
        if sep:
            out.append(f"{key}={value}")
        elif key in env:
            out.append(f"{key}={env[key]}")
    return out


def parse_env(values: list[str], environ: dict[str, str] | os._Environ[str] | None = None) -> list[str]:
    """``-e KEY=VALUE`` as is; ``-e KEY`` with this process's value, or dropped when it has none."""
    from dockyard.core.errors import InvalidArgument

    env = os.environ if environ is None else environ
    out = []
    for item in values:
        key, sep, _ = item.partition("=")
        if not key:
            raise InvalidArgument(f"bad -e {item!r}: no variable name before '='")
        if sep:
            out.append(item)
        elif key in env:
            out.append(f"{key}={env[key]}")
    return out


def parse_log_opts(values: list[str]) -> dict[str, str]:
    """``--log-opt KEY=VALUE`` (repeatable); the runtime checks the keys and values."""
    from dockyard.core.errors import InvalidArgument

    opts = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not key or not sep:
            raise InvalidArgument(f"bad --log-opt {item[:60]!r}: want KEY=VALUE (max-size=10m, max-file=3)")
        opts[key] = value
    return opts


def build_spec(args: argparse.Namespace) -> Any:
    """The ContainerSpec for these flags (imports the generated types: call from ``run`` only)."""
    from dockyard.api.containers.v1 import containers_pb2 as pb

    env: list[str] = []
    for path in args.env_file:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            from dockyard.core.errors import InvalidArgument

            raise InvalidArgument(
                f"cannot read --env-file {path}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        env.extend(parse_env_file(text))
    env.extend(parse_env(args.env))
    spec = pb.ContainerSpec(
        image=args.image,
        name=args.name,
        command=args.argv,
        env=env,
        workdir=args.workdir,
        user=args.user,
        tty=args.tty,
        interactive=args.interactive,
        labels=parse_labels(args.label),
        network=args.network,
        read_only=args.read_only,
        auto_remove=args.rm,
        hostname=args.hostname,
        publish_all=args.publish_all,
        tmpfs=args.tmpfs,
        stop_signal=args.stop_signal,
        stop_timeout=limits.integer(
            str(args.stop_timeout), "--stop-timeout", low=-limits.INT32_MAX - 1, high=limits.INT32_MAX
        ),
        log_opts=parse_log_opts(args.log_opt),
        cap_add=args.cap_add,
        cap_drop=args.cap_drop,
        privileged=args.privileged,
        init=args.init,
        platform=args.platform,
    )
    if args.entrypoint is not None:
        spec.entrypoint.append(args.entrypoint)
    from dockyard.cli import health_restart  # --restart and the --health-* flags

    health_restart.apply(args, spec)
    for item in args.publish:
        for port in parse_publish(item):
            add_to_spec(spec, port)
    for item in args.volume:
        add_to_spec(spec, parse_volume(item))
    for item in args.tmpfs:
        path, _, _ = item.partition(":")
        if not path.startswith("/"):
            from dockyard.core.errors import InvalidArgument

            raise InvalidArgument(f"bad --tmpfs {item!r}: the path must be absolute")
    limits.apply(args, spec.resources)  # resource limits
    from dockyard.cli import mountspec  # volumes: --mount, --volumes-from

    mountspec.apply(args, spec)
    from dockyard.cli import network  # networks: --network-alias, --ip, --dns, --add-host

    network.apply(args, spec)
    return spec
