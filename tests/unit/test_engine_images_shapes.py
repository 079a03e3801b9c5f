"""Docker's shapes for the image verbs and the legacy build (dockyard.engine.imageshapes), pure."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from dockyard.client.types import (
    BuildProgress,
    HistoryEntry,
    ImageRemoval,
    Pruned,
    PullProgress,
    PushedImage,
)
from dockyard.core.errors import InvalidArgument
from dockyard.engine import imageshapes as shapes

IMAGE = "sha256:" + "ab12" * 16


def test_references_from_docker_query_parts() -> None:
    assert shapes.with_tag("docker.io/library/busybox", "latest") == "docker.io/library/busybox:latest"
    assert shapes.with_tag("127.0.0.1:5000/lab/x", "sha256:ff") == "127.0.0.1:5000/lab/x@sha256:ff"
    assert shapes.with_tag("busybox:1", "") == "busybox:1"
    assert shapes.familiar_tag("x") == "x:latest"
    assert shapes.familiar_tag("127.0.0.1:5000/lab/x") == "127.0.0.1:5000/lab/x:latest"
    assert shapes.familiar_tag("127.0.0.1:5000/lab/x:2") == "127.0.0.1:5000/lab/x:2"
    assert shapes.short_id(IMAGE) == "ab12ab12ab12"


def test_progress_messages_as_dockers_cli_prints_them() -> None:
    assert shapes.progress_message(PullProgress("", "Pulling from lab/x", 0, 0), "1") == {
        "status": "Pulling from lab/x",
        "id": "1",
    }
    assert shapes.progress_message(PullProgress("d6f2eeecfdaa", "Downloading", 10, 20)) == {
        "status": "Downloading",
        "id": "d6f2eeecfdaa",
        "progressDetail": {"current": 10, "total": 20},
    }
    assert shapes.progress_message(PullProgress("", "Digest: sha256:aa", 0, 0), "1") == {
        "status": "Digest: sha256:aa"
    }
    assert shapes.error_message("boom") == {"errorDetail": {"message": "boom"}, "error": "boom"}
    assert shapes.push_result("1", PushedImage("sha256:cc", 400, "m")) == {
        "progressDetail": {},
        "aux": {"Tag": "1", "Digest": "sha256:cc", "Size": 400},
    }


def test_registry_auth_is_checked_for_shape() -> None:
    assert shapes.registry_auth("") == {}
    assert shapes.registry_auth("e30=") == {}
    assert shapes.registry_auth("e30") == {}  # docker's URL-safe base64 without padding
    token = base64.urlsafe_b64encode(json.dumps({"username": "u"}).encode()).decode()
    assert shapes.registry_auth(token) == {"username": "u"}
    with pytest.raises(InvalidArgument, match="X-Registry-Auth"):
        shapes.registry_auth("%%%")
    with pytest.raises(InvalidArgument, match="JSON object"):
        shapes.registry_auth(base64.b64encode(b"[1]").decode())


def test_removal_prune_and_history() -> None:
    removal = ImageRemoval(("x:1", "x:2"), (IMAGE,))
    assert shapes.removal_items(removal) == [{"Untagged": "x:1"}, {"Untagged": "x:2"}, {"Deleted": IMAGE}]
    assert shapes.prune_reply(Pruned((), 0)) == {"ImagesDeleted": None, "SpaceReclaimed": 0}
    assert shapes.prune_reply(Pruned((IMAGE,), 5)) == {
        "ImagesDeleted": [{"Deleted": IMAGE}],
        "SpaceReclaimed": 5,
    }
    assert shapes.prune_all(()) is False
    assert shapes.prune_all(("dangling=true",)) is False
    assert shapes.prune_all(("dangling=false",)) is True
    with pytest.raises(InvalidArgument, match="not supported"):
        shapes.prune_all(("until=1h",))
    with pytest.raises(InvalidArgument, match="dangling=maybe"):
        shapes.prune_all(("dangling=maybe",))
    when = datetime(2026, 1, 1, tzinfo=UTC)
    entries = [
        HistoryEntry(IMAGE, when, 'CMD ["sh"]', 0, "", True),
        HistoryEntry("", None, "Imported from -", 100, "c", False),
    ]
    assert shapes.history_items(entries, IMAGE, ("x:1",)) == [
        {
            "Id": IMAGE,
            "Created": int(when.timestamp()),
            "CreatedBy": 'CMD ["sh"]',
            "Tags": ["x:1"],
            "Size": 0,
            "Comment": "",
        },
        {
            "Id": "<missing>",
            "Created": 0,
            "CreatedBy": "Imported from -",
            "Tags": None,
            "Size": 100,
            "Comment": "c",
        },
    ]


def test_json_maps_of_the_build_query() -> None:
    assert shapes.json_map("", "buildargs") == {}
    assert shapes.json_map('{"A": "1", "B": null}', "buildargs") == {"A": "1"}
    for bad, match in (("x", "not JSON"), ("[1]", "JSON object"), ('{"A": 1}', "must be a string")):
        with pytest.raises(InvalidArgument, match=match):
            shapes.json_map(bad, "labels")


def test_commit_config_as_dockerfile_changes() -> None:
    assert shapes.commit_changes(None) == []
    config = {
        "Cmd": ["cat", "/stamp"],
        "Entrypoint": None,
        "Env": ["A=b"],
        "Labels": {"team": "yard"},
        "WorkingDir": "/w",
        "User": "33",
        "ExposedPorts": {"80/tcp": {}},
    }
    assert shapes.commit_changes(config) == [
        'CMD ["cat", "/stamp"]',
        "ENV A=b",
        'LABEL "team"="yard"',
        "WORKDIR /w",
        "USER 33",
        "EXPOSE 80/tcp",
    ]
    with pytest.raises(InvalidArgument, match="JSON object"):
        shapes.commit_changes([1])
    with pytest.raises(InvalidArgument, match="KEY=VALUE"):
        shapes.commit_changes({"Env": ["novalue"]})
    with pytest.raises(InvalidArgument, match="list of strings"):
        shapes.commit_changes({"Cmd": [1]})


def test_the_dockerfile_must_be_inside_the_context() -> None:
    assert shapes.dockerfile_member("") == "Dockerfile"
    assert shapes.dockerfile_member("./docker/../app.Dockerfile") == "app.Dockerfile"
    for outside in ("../Dockerfile", "/etc/Dockerfile", ".."):
        with pytest.raises(InvalidArgument, match="outside the build context"):
            shapes.dockerfile_member(outside)


def _event(status: str, **fields: object) -> BuildProgress:
    values: dict[str, object] = {"step": "", "log": b"", "image_id": "", "error": ""} | fields
    return BuildProgress(status=status, **values)  # type: ignore[arg-type]


def test_build_progress_as_the_legacy_builders_lines() -> None:
    started = _event("started", step="[build 2/5] RUN make", index=3, total=7)
    assert shapes.build_messages(started) == [{"stream": "Step 3/7 : RUN make\n"}]
    assert shapes.build_messages(_event("cached", index=3, total=7)) == [{"stream": " ---> Using cache\n"}]
    assert shapes.build_messages(_event("log", log=b"hi\xff\n")) == [{"stream": "hi\ufffd\n"}]
    assert shapes.build_messages(_event("warning", error="careful")) == [{"stream": "[WARNING]: careful\n"}]
    assert shapes.build_messages(_event("done")) == []
    assert shapes.build_result(IMAGE, ("x", "y:2")) == [
        {"aux": {"ID": IMAGE}},
        {"stream": "Successfully built ab12ab12ab12\n"},
        {"stream": "Successfully tagged x:latest\n"},
        {"stream": "Successfully tagged y:2\n"},
    ]
    assert shapes.build_result(IMAGE, ("x",), quiet=True) == [
        {"aux": {"ID": IMAGE}},
        {"stream": f"{IMAGE}\n"},
    ]


def test_loaded_lines() -> None:
    assert shapes.loaded_lines([(IMAGE, ("x:1",)), ("sha256:ee", ())]) == [
        {"stream": "Loaded image: x:1\n"},
        {"stream": "Loaded image ID: sha256:ee\n"},
    ]
