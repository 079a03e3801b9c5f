"""The flags of ``create`` and ``run``, and how they become a ContainerSpec.

Parsing is docker's: ``-e KEY`` and bare ``KEY`` lines of an ``--env-file`` take the value from this
process's environment (and are dropped when it has none); ``-p [IP:][HOST:]CONTAINER[/PROTO]`` with
ranges; ``-v SRC:DST[:ro|rw]`` where SRC is a host path (absolute, or starting with ".") or a volume
name, and ``-v DST`` an anonymous volume. Mistakes are InvalidArgument with one clear line.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any

from dockyard.cli import limits


@dataclass(frozen=True)
class Port:
    host_ip: str
    host_port: int
    container_port: int
    protocol: str


@dataclass(frozen=True)
class Volume:
    source: str
    target: str
    read_only: bool
    type: str
    no_copy: bool = False  # volumes: -v NAME:/path:nocopy leaves an empty volume empty


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


def parse_labels(values: list[str]) -> dict[str, str]:
    labels = {}
    for item in values:
        key, _, value = item.partition("=")
        labels[key] = value
    return labels


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


def _port_range(text: str, what: str, spec: str) -> list[int]:
    from dockyard.core.errors import InvalidArgument

    first, sep, last = text.partition("-")
    try:
        lo = int(first)
        hi = int(last) if sep else lo
    except ValueError:
        raise InvalidArgument(f"bad -p {spec!r}: {what} port {text!r} is not a number or range") from None
    if not (0 < lo <= hi <= 65535):
        raise InvalidArgument(f"bad -p {spec!r}: {what} port {text!r} is out of 1-65535")
    return list(range(lo, hi + 1))


def parse_publish(spec: str) -> list[Port]:
    """``-p``: CONTAINER, HOST:CONTAINER, IP:HOST:CONTAINER or IP::CONTAINER, each ``/tcp|udp|sctp``;
    ranges ("8000-8001:80-81") expand to one mapping per port. Host port 0 means any free port."""
    from dockyard.core.errors import InvalidArgument

    rest, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"bad -p {spec!r}: protocol must be tcp, udp or sctp")
    ip = ""
    if rest.startswith("["):  # [::1]:8080:80
        end = rest.find("]")
        if end < 0 or rest[end + 1 : end + 2] != ":":
            raise InvalidArgument(f"bad -p {spec!r}: expected [IPv6]:HOST:CONTAINER")
        ip, rest = rest[1:end], rest[end + 2 :]
        parts = rest.split(":")
        if len(parts) != 2:
            raise InvalidArgument(f"bad -p {spec!r}: expected [IPv6]:HOST:CONTAINER")
    else:
        parts = rest.split(":")
        if len(parts) == 3:
            ip = parts.pop(0)
        elif len(parts) > 3:
            raise InvalidArgument(f"bad -p {spec!r}: expected [IP:][HOST:]CONTAINER[/PROTO]")
    if not parts[-1]:
        raise InvalidArgument(f"bad -p {spec!r}: no container port")
    container = _port_range(parts[-1], "container", spec)
    host_text = parts[0] if len(parts) == 2 else ""
    host = _port_range(host_text, "host", spec) if host_text else [0] * len(container)
    if len(host) == 1 and len(container) > 1 and host_text:
        raise InvalidArgument(f"bad -p {spec!r}: a port range needs a host range of the same length")
    if len(host) != len(container):
        raise InvalidArgument(f"bad -p {spec!r}: host and container ranges differ in length")
    return [Port(ip, h, c, proto) for h, c in zip(host, container, strict=True)]


def parse_volume(spec: str, cwd: str | None = None) -> Volume:
    """``-v``: /host:/ctr[:ro|rw], ./rel:/ctr, name:/ctr (a named volume) or /ctr (anonymous)."""
    from dockyard.core.errors import InvalidArgument

    parts = spec.split(":")
    if not spec or "" in parts[:2] or (len(parts) == 3 and not parts[2]):
        raise InvalidArgument(f"bad -v {spec!r}: empty section between colons")
    if len(parts) == 1:
        source, target, opts = "", parts[0], ""
    elif len(parts) == 2 and parts[0].startswith("/") and not parts[1].startswith("/"):
        source, target, opts = "", parts[0], parts[1]  # volumes: "/ctr:ro", an anonymous volume
    elif len(parts) == 2:
        source, target, opts = parts[0], parts[1], ""
    elif len(parts) == 3:
        source, target, opts = parts
    else:
        raise InvalidArgument(f"bad -v {spec!r}: expected SRC:DST[:OPTIONS]")
    if not target.startswith("/"):
        raise InvalidArgument(f"bad -v {spec!r}: the container path {target!r} must be absolute")
    read_only = no_copy = False
    for opt in filter(None, opts.split(",")):
        if opt == "ro":
            read_only = True
        elif opt == "nocopy" and not source.startswith((".", "/", "~")):  # volumes only
            no_copy = True
        elif opt not in ("rw", "z", "Z"):
            raise InvalidArgument(f"bad -v {spec!r}: unknown option {opt!r} (ro, rw, nocopy for a volume)")
    if not source:
        return Volume("", target, read_only, "volume", no_copy)
    if source.startswith((".", "/", "~")):
        path = os.path.expanduser(source)
        return Volume(os.path.normpath(os.path.join(cwd or os.getcwd(), path)), target, read_only, "bind")
    return Volume(source, target, read_only, "volume", no_copy)


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
    )
    if args.entrypoint is not None:
        spec.entrypoint.append(args.entrypoint)
    from dockyard.cli import health_restart  # --restart and the --health-* flags

    health_restart.apply(args, spec)
    for item in args.publish:
        for p in parse_publish(item):
            spec.ports.add(
                host_ip=p.host_ip, host_port=p.host_port, container_port=p.container_port, protocol=p.protocol
            )
    for item in args.volume:
        v = parse_volume(item)
        spec.mounts.add(
            source=v.source, target=v.target, read_only=v.read_only, type=v.type, no_copy=v.no_copy
        )
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
