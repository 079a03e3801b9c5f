"""``dockyard info``: the gateway, every backend, their health and versions, and the event bus."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        default="text",
        help="text, json, or a Go template over the json object: '{{.ServerVersion}}', '{{json .gateway}}'",
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the gateway")


def run(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    from dockyard.api.system.v1 import system_pb2, system_pb2_grpc
    from dockyard.cli import gofmt
    from dockyard.cli.client import channel
    from dockyard.cli.output import emit_json, table

    gofmt.check(args.format)
    with channel(args.host) as ch:
        status = system_pb2_grpc.PlatformStub(ch).Status(system_pb2.StatusRequest(), timeout=args.timeout)
    docker = status.gateway.details.get("docker", "")
    if gofmt.is_template(args.format):
        view = MessageToDict(status, preserving_proto_field_name=True)
        view["docker"] = docker
        # docker's names for what both have, so `docker info --format` habits carry over
        view.setdefault("ServerVersion", status.gateway.version)
        view.setdefault("Name", status.gateway.node)
        print(gofmt.render_one(args.format, view, missing_key_error=True), end="")
        return 0
    if args.format.strip() == "json":
        emit_json({**MessageToDict(status, preserving_proto_field_name=True), "docker": docker})
        return 0
    state = system_pb2.ServiceState.Name
    gw = status.gateway
    print(f"Gateway:   {args.host} (dockyard {gw.version}, node {gw.node})")
    connected = "connected" if status.events_connected else "NOT connected"
    dead = [
        f"{name} {n}"
        for name, details in (("gateway", gw.details), *((b.name, b.info.details) for b in status.backends))
        if (n := details.get("events_dead_letter", "0")) != "0"
    ]
    aside = f"; set aside as never publishable (dead letter): {', '.join(dead)}" if dead else ""
    print(f"Events:    stream {status.events_stream}, {connected}{aside}")
    if docker:
        print(f"Docker:    {docker} (DOCKER_HOST for docker's CLI, compose and SDKs)")
    print()
    rows = [
        (
            b.name,
            b.address,
            b.health,
            state(b.info.state).removeprefix("SERVICE_STATE_").lower(),
            b.info.version or "-",
            b.info.message,
        )
        for b in status.backends
    ]
    table(("SERVICE", "ADDRESS", "HEALTH", "STATE", "VERSION", "MESSAGE"), rows)
    for b in status.backends:
        if line := storage_line(b.name, dict(b.info.details)):
            print(line)
    for b in status.backends:
        if b.name == "registry" and (line := registry_auth_line(dict(b.info.details))):
            print(line)
    for b in status.backends:
        if pids := b.info.details.get("default_pids_limit"):
            print(f"Limits:    {b.name} default --pids-limit {pids}")
    return 0


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"


def registry_auth_line(details: dict[str, str]) -> str:
    """``Registry:  http://… auth token, …`` from the registry's Info details, a WARNING line when it
    runs without authentication (every local user may push, overwrite and delete), "" if unknown."""
    auth = details.get("auth", "")
    where = details.get("http", "")
    if not auth:
        return ""
    if auth == "none":
        return (
            f"WARNING:   registry {where} has NO authentication (dockyard up --registry-auth none): "
            "every local user may push, overwrite and delete images"
        )
    anonymous = details.get("anonymous", "none") or "none"
    return f"Registry:  {where} auth {auth}, anonymous {anonymous} (a login: dockyard registry credentials)"


def storage_line(service: str, details: dict[str, str]) -> str:
    """``Storage:  registry 1.2 GiB free of 20.0 GiB (6 %) at /path`` from a backend's Info details,
    or "" when it reports none. Under 5 % free it says so: writes will soon answer "storage full"."""
    free, total = details.get("storage_free_bytes", ""), details.get("storage_total_bytes", "")
    if not free:
        return ""
    where = f" at {details['storage']}" if details.get("storage") else ""
    if not (free.isdigit() and total.isdigit() and int(total) > 0):
        return f"Storage:   {service} free space {free}{where}"
    pct = 100 * int(free) // int(total)
    low = "  LOW: pushes will be refused when it is full" if pct < 5 else ""
    return f"Storage:   {service} {_size(int(free))} free of {_size(int(total))} ({pct} %){where}{low}"
