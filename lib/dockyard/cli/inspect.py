"""``dockyard inspect``: containers and images as a JSON array, like docker inspect.

Each object is the API message in proto JSON form (lowerCamelCase fields); an image's ``config``
is the OCI image config, parsed. Without ``--type`` a name is looked up as a container first, then
as an image. ``-f/--format`` renders a Go template over each object instead (a missing key is an
error, as in docker's raw-JSON fallback); a container also has docker's ``State`` there
(``{{.State.Status}}``) while its printed shape has none, and ``.Id`` finds ``id``.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--type", choices=("container", "image"), default=None, help="only this kind")
    parser.add_argument("-f", "--format", default="", help="a Go template per object: '{{.State.Status}}'")
    parser.add_argument("names", nargs="+", metavar="NAME|ID")


def image_dict(image: Any) -> dict[str, Any]:
    """An Image message as a dict, its config bytes parsed as JSON (kept as text if not JSON)."""
    import json

    from google.protobuf.json_format import MessageToDict

    out = MessageToDict(image)
    raw = bytes(image.config)
    out.pop("config", None)
    if raw:
        try:
            out["config"] = json.loads(raw)
        except ValueError:
            out["config"] = raw.decode(errors="replace")
    return out


def container_dict(container: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    from dockyard.cli.human import state_name

    out = MessageToDict(container)
    out["state"] = state_name(container.state)
    from dockyard.cli.health_restart import inspect_defaults

    inspect_defaults(container, out)  # restartCount and health exit codes even when 0
    return out


def docker_state(container: Any) -> dict[str, Any]:
    """docker's ``State`` object of a container, for templates written against docker."""
    from dockyard.cli import human

    state = human.state_name(container.state)

    def when(ts: Any) -> str:
        seconds = human.epoch(ts)
        return human.rfc3339(seconds) if seconds else "0001-01-01T00:00:00Z"

    out: dict[str, Any] = {
        "Status": state,
        "Running": state == "running",
        "Paused": state == "paused",
        "Restarting": bool(container.restarting),
        "OOMKilled": bool(container.oom_killed),
        "Dead": state == "dead",
        "Pid": container.pid,
        "ExitCode": container.exit_code,
        "Error": container.error,
        "StartedAt": when(container.started),
        "FinishedAt": when(container.finished),
    }
    if container.HasField("health"):
        from google.protobuf.json_format import MessageToDict

        health = MessageToDict(container.health)
        out["Health"] = {k[:1].upper() + k[1:]: v for k, v in health.items()}
    return out


def template_view(obj: dict[str, Any], container: Any | None) -> dict[str, Any]:
    """The object a ``-f`` template sees: what inspect prints, and docker's State if it has none."""
    if container is None or "State" in obj:
        return obj
    return {**obj, "State": docker_state(container)}


def run(args: argparse.Namespace) -> int:
    import grpc

    from dockyard.api.containers.v1 import containers_pb2, containers_pb2_grpc
    from dockyard.api.images.v1 import images_pb2, images_pb2_grpc
    from dockyard.cli import gofmt
    from dockyard.cli.client import channel
    from dockyard.cli.output import emit_json, fail
    from dockyard.core.errors import NotFound

    template = getattr(args, "format", "")
    gofmt.check(template)  # a bad template is refused before the platform is asked
    kind = args.type or getattr(args, "inspect_kind", None)
    found: list[dict[str, Any]] = []
    views: list[dict[str, Any]] = []
    status = 0
    with channel(args.host) as ch:
        containers = containers_pb2_grpc.ContainersStub(ch)
        images = images_pb2_grpc.ImagesStub(ch)
        for name in args.names:
            try:
                if kind != "image":
                    try:
                        c = containers.Inspect(containers_pb2.InspectContainerRequest(id=name))
                        found.append(container_dict(c))
                        views.append(template_view(found[-1], c))
                        continue
                    except grpc.RpcError as exc:
                        if kind == "container" or exc.code() != grpc.StatusCode.NOT_FOUND:
                            raise
                try:
                    found.append(image_dict(images.Inspect(images_pb2.InspectImageRequest(reference=name))))
                    views.append(template_view(found[-1], None))
                except grpc.RpcError as exc:
                    if kind is None and exc.code() == grpc.StatusCode.NOT_FOUND:
                        raise NotFound(f"no such object: {name}") from None
                    raise
            except Exception as exc:
                status = fail(exc)
    if not template:
        emit_json(found)
        return status
    for view in views:
        try:
            print(gofmt.render_one(template, view, missing_key_error=True), end="")
        except Exception as exc:
            status = fail(exc)
    return status
