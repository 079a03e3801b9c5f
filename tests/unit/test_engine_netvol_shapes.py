"""Docker's Engine API shapes of networks, volumes, events, disk usage and a container's
NetworkSettings, made from the client library's types without a platform."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dockyard.client import dockerjson
from dockyard.client.grammar import Port
from dockyard.client.types import (
    ContainerInfo,
    DiskUsage,
    Event,
    ImageInfo,
    ImageUsage,
    NetworkEndpoint,
    NetworkInfo,
    NetworkMember,
    VolumeInfo,
    VolumeUsage,
)
from dockyard.core.errors import InvalidArgument
from dockyard.engine import convert
from dockyard.engine import resource_shapes as shapes

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _container(**overrides: object) -> ContainerInfo:
    fields: dict[str, object] = dict(
        id="c0ffee" * 10 + "abcd",
        name="web",
        image="busybox",
        image_id="sha256:feed",
        state="running",
        exit_code=0,
        pid=42,
        command=("httpd",),
        ports=(Port("", 8080, 80, "tcp"),),
        labels={},
        created=NOW,
        started=NOW,
        finished=None,
    )
    fields.update(overrides)
    return ContainerInfo(**fields)  # type: ignore[arg-type]


def _network(**overrides: object) -> NetworkInfo:
    fields: dict[str, object] = dict(
        id="n" * 64,
        name="appnet",
        driver="bridge",
        subnet="10.89.0.0/24",
        gateway="10.89.0.1",
        labels={"tier": "front"},
        builtin=False,
        created=NOW,
        members=(NetworkMember("c1", "web", "10.89.0.2", 24, ("www",), "eth0", True),),
    )
    fields.update(overrides)
    return NetworkInfo(**fields)  # type: ignore[arg-type]


def _event(kind: str, subject: str, **data: object) -> Event:
    return Event("e1", f"io.dockyard.{kind}", "/dockyard/runtime/h", subject, NOW, data, 7)


# --- a container's NetworkSettings ---------------------------------------------------------------


def test_a_user_network_container_has_its_address_per_network_and_at_the_top() -> None:
    info = _container(
        network="appnet",
        networks=(NetworkEndpoint("appnet", "n" * 64, "10.89.0.2", 24, "10.89.0.1", ("www",)),),
        ip_address="10.89.0.2",
    )
    settings = dockerjson.container_inspect(info)["NetworkSettings"]
    endpoint = settings["Networks"]["appnet"]
    assert endpoint["IPAddress"] == "10.89.0.2" and endpoint["Gateway"] == "10.89.0.1"
    assert endpoint["IPPrefixLen"] == 24 and endpoint["NetworkID"] == "n" * 64
    assert endpoint["Aliases"] == ["www"] and endpoint["MacAddress"] == ""
    assert len(endpoint["EndpointID"]) == 64 and endpoint["EndpointID"] == dockerjson.endpoint_id(
        info.id, "n" * 64
    )
    assert endpoint["DNSNames"] == ["web", info.id[:12], "www"]
    assert settings["IPAddress"] == "10.89.0.2" and settings["Gateway"] == "10.89.0.1"
    assert settings["EndpointID"] == endpoint["EndpointID"]
    assert settings["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
    assert dockerjson.container_inspect(info)["HostConfig"]["NetworkMode"] == "appnet"


def test_the_default_network_is_bridge_with_slirp4netns_address() -> None:
    info = _container(ip_address="10.0.2.100")
    shape = dockerjson.container_inspect(info)
    assert shape["HostConfig"]["NetworkMode"] == "bridge"
    assert list(shape["NetworkSettings"]["Networks"]) == ["bridge"]
    bridge = shape["NetworkSettings"]["Networks"]["bridge"]
    assert (bridge["IPAddress"], bridge["Gateway"], bridge["NetworkID"]) == (
        "10.0.2.100",
        "10.0.2.2",
        "bridge",
    )
    assert shape["NetworkSettings"]["IPAddress"] == "10.0.2.100"
    assert dockerjson.container_summary(info, NOW)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == (
        "10.0.2.100"
    )


def test_a_stopped_container_has_no_address_and_host_none_have_none() -> None:
    stopped = _container(
        state="exited",
        network="appnet",
        networks=(NetworkEndpoint("appnet", "n1", "10.89.0.2", 24, "10.89.0.1"),),
    )
    endpoint = dockerjson.container_inspect(stopped)["NetworkSettings"]["Networks"]["appnet"]
    assert endpoint["IPAddress"] == "" and endpoint["EndpointID"] == "" and endpoint["NetworkID"] == "n1"
    for mode in ("host", "none"):
        settings = dockerjson.container_inspect(_container(network=mode))["NetworkSettings"]
        assert list(settings["Networks"]) == [mode] and settings["IPAddress"] == ""


# --- networks ------------------------------------------------------------------------------------


def test_network_inspect_shape() -> None:
    shape = shapes.network(_network())
    assert (
        shape["Name"] == "appnet" and shape["Id"] == "n" * 64 and shape["Created"] == "2026-01-01T12:00:00Z"
    )
    assert (shape["Scope"], shape["Driver"], shape["Internal"], shape["Attachable"]) == (
        "local",
        "bridge",
        False,
        True,
    )
    assert shape["IPAM"]["Config"] == [{"Subnet": "10.89.0.0/24", "Gateway": "10.89.0.1"}]
    assert shape["Containers"]["c1"]["Name"] == "web"
    assert shape["Containers"]["c1"]["IPv4Address"] == "10.89.0.2/24"
    assert shape["Containers"]["c1"]["MacAddress"] == ""
    assert shape["Labels"] == {"tier": "front"}


def test_the_builtin_modes_look_like_dockers_default_networks() -> None:
    bridge = shapes.network(
        _network(id="bridge", name="bridge", driver="slirp4netns", builtin=True, created=None, members=())
    )
    assert (bridge["Name"], bridge["Driver"], bridge["Attachable"]) == ("bridge", "bridge", False)
    assert bridge["Created"] == "0001-01-01T00:00:00Z"  # docker's CLI parses it: never ""
    none = shapes.network(
        _network(id="none", name="none", driver="null", builtin=True, subnet="", members=())
    )
    assert none["Driver"] == "null" and none["IPAM"]["Config"] == []


@pytest.mark.parametrize(
    ("filters", "matches"),
    [
        ({}, True),
        ({"name": ["app"]}, True),
        ({"name": ["db", "app"]}, True),
        ({"name": ["db"]}, False),
        ({"id": ["nnn"]}, True),
        ({"id": ["x"]}, False),
        ({"label": ["tier"]}, True),
        ({"label": ["tier=front"]}, True),
        ({"label": ["tier=back"]}, False),
        ({"driver": ["bridge"]}, True),
        ({"type": ["custom"]}, True),
        ({"type": ["builtin"]}, False),
        ({"name": ["app"], "driver": ["null"]}, False),
    ],
)
def test_network_filters(filters: dict[str, list[str]], matches: bool) -> None:
    assert shapes.network_matches(_network(), filters) is matches


def test_a_bad_network_filter_is_the_clients_mistake() -> None:
    with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
        shapes.network_matches(_network(), {"colour": ["red"]})
    with pytest.raises(InvalidArgument):
        shapes.parse_filters("not json")
    assert shapes.parse_filters('{"dangling": {"true": true}, "name": ["a"]}') == {
        "dangling": ["true"],
        "name": ["a"],
    }


def test_network_create_body() -> None:
    wanted = shapes.network_create(
        {
            "Name": "appnet",
            "CheckDuplicate": True,
            "Driver": "bridge",
            "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.90.1.0/24", "Gateway": "10.90.1.1"}]},
            "Labels": {"a": "b"},
            "Options": {"com.docker.network.bridge.name": "br9"},
        }
    )
    assert (wanted.name, wanted.subnet, wanted.gateway, dict(wanted.labels)) == (
        "appnet",
        "10.90.1.0/24",
        "10.90.1.1",
        {"a": "b"},
    )
    assert "com.docker.network.bridge.name" in wanted.warning
    assert shapes.network_create({"Name": "plain"}).subnet == ""


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ([], "JSON object"),
        ({}, "Name is required"),
        ({"Name": "x", "Driver": "overlay"}, "only bridge"),
        ({"Name": "x", "Internal": True}, "internal"),
        ({"Name": "x", "EnableIPv6": True}, "IPv6"),
        ({"Name": "x", "IPAM": {"Config": "nope"}}, "IPAM.Config"),
        ({"Name": "x", "Labels": ["a"]}, "Labels"),
    ],
)
def test_network_create_refuses_what_it_cannot_do(body: object, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        shapes.network_create(body)


def test_connect_and_disconnect_bodies() -> None:
    body = {
        "Container": "web",
        "EndpointConfig": {"Aliases": ["w"], "IPAMConfig": {"IPv4Address": "10.1.1.5"}},
    }
    assert shapes.network_connect(body) == ("web", ["w"], "10.1.1.5")
    assert shapes.network_connect({"Container": "web"}) == ("web", [], "")
    assert shapes.network_disconnect({"Container": "web", "Force": True}) == ("web", True)
    for bad in ({}, {"Container": ""}, {"Container": "w", "EndpointConfig": {"Aliases": "w"}}):
        with pytest.raises(InvalidArgument):
            shapes.network_connect(bad)
    with pytest.raises(InvalidArgument):
        shapes.network_disconnect({"Force": True})


# --- volumes -------------------------------------------------------------------------------------


def test_volume_shape_and_filters() -> None:
    info = VolumeInfo("data", "local", "/state/volumes/data/_data", {"k": "v"}, False, ("web",), NOW, {})
    shape = shapes.volume(info)
    assert shape == {
        "Name": "data",
        "Driver": "local",
        "Mountpoint": "/state/volumes/data/_data",
        "CreatedAt": "2026-01-01T12:00:00Z",
        "Labels": {"k": "v"},
        "Scope": "local",
        "Options": {},
    }
    assert shapes.volume(info, (4096, 1))["UsageData"] == {"Size": 4096, "RefCount": 1}
    assert shapes.volume_filters({"dangling": ["true"], "label": ["a", "b=c"]}) == [
        "dangling=true",
        "label=a",
        "label=b=c",
    ]
    with pytest.raises(InvalidArgument):
        shapes.volume_filters({"until": ["1h"]})
    assert shapes.volume_create({"Name": "d", "Labels": {"a": "1"}}) == ("d", "", {"a": "1"}, {})
    assert shapes.volume_create({}) == ("", "", {}, {})
    with pytest.raises(InvalidArgument):
        shapes.volume_create({"Name": 3})
    assert shapes.prune_all({"all": ["true"]}) and not shapes.prune_all({"label": ["a"]})


# --- events --------------------------------------------------------------------------------------


def test_container_event_message() -> None:
    event = _event("container.started", "cid1", id="cid1", name="web", image="busybox", pid=9)
    event = Event(
        event.id, event.type, event.source, event.subject, NOW + timedelta(microseconds=5), event.data, 7
    )
    message = shapes.event_message(event)
    assert message is not None
    assert message["Type"] == "container" and message["Action"] == "start" and message["status"] == "start"
    assert message["Actor"] == {"ID": "cid1", "Attributes": {"name": "web", "image": "busybox"}}
    assert message["id"] == "cid1" and message["from"] == "busybox" and message["scope"] == "local"
    assert message["time"] == int(NOW.timestamp())
    assert message["timeNano"] == int(NOW.timestamp()) * 1_000_000_000 + 5000


def test_event_actions_and_attributes_in_dockers_words() -> None:
    died = shapes.event_message(
        _event("container.died", "c", name="w", image="b", exitCode=3, oomKilled=False)
    )
    assert died is not None and died["Action"] == "die" and died["Actor"]["Attributes"]["exitCode"] == "3"
    removed = shapes.event_message(_event("container.removed", "c", name="w", image="b"))
    assert removed is not None and removed["Action"] == "destroy"
    health = shapes.event_message(
        _event("container.health_status", "c", name="w", image="b", status="healthy")
    )
    assert health is not None and health["Action"] == "health_status: healthy"
    deleted = shapes.event_message(_event("image.removed", "busybox:latest", name="busybox:latest"))
    assert deleted is not None and deleted["Action"] == "delete"
    assert deleted["Actor"]["Attributes"] == {"name": "busybox:latest"}
    connect = shapes.event_message(
        _event("network.connected", "n1", id="n1", name="appnet", container="c", containerName="w", ip="x")
    )
    assert connect is not None and connect["Action"] == "connect" and "status" not in connect
    assert connect["Actor"]["Attributes"] == {"name": "appnet", "type": "bridge", "container": "c"}
    volume = shapes.event_message(
        _event("volume.created", "data", name="data", driver="local", anonymous=False)
    )
    assert volume is not None and volume["Actor"] == {"ID": "data", "Attributes": {"driver": "local"}}
    # the platform's own areas are not docker's
    assert shapes.event_message(_event("build.started", "b1", tags=[], target="", dockerfile="")) is None
    assert shapes.event_message(_event("registry.tag_changed", "r:t")) is None


def _message(kind: str = "container.started", subject: str = "cid1", **data: object) -> dict[str, object]:
    message = shapes.event_message(_event(kind, subject, **({"name": "web", "image": "busybox:1"} | data)))
    assert message is not None
    return message


@pytest.mark.parametrize(
    ("filters", "matches"),
    [
        ({}, True),
        ({"type": ["container"]}, True),
        ({"type": ["image"]}, False),
        ({"event": ["start", "die"]}, True),
        ({"event": ["die"]}, False),
        ({"container": ["web"]}, True),
        ({"container": ["cid"]}, True),  # an id prefix
        ({"container": ["db"]}, False),
        ({"image": ["busybox"]}, True),  # without its tag
        ({"image": ["busybox:1"]}, True),
        ({"image": ["alpine"]}, False),
        ({"network": ["appnet"]}, False),  # a container event is not a network's
        ({"type": ["container"], "event": ["stop"]}, False),
    ],
)
def test_event_filters(filters: dict[str, list[str]], matches: bool) -> None:
    assert shapes.event_matches(_message(), filters) is matches


def test_event_filters_health_and_server_side_types() -> None:
    health = _message("container.health_status", status="healthy")
    assert shapes.event_matches(health, {"event": ["health_status"]})
    assert shapes.server_filters({}) == ("type=container", "type=image", "type=network", "type=volume")
    assert shapes.server_filters({"type": ["volume"], "event": ["create"]}) == ("type=volume",)
    with pytest.raises(InvalidArgument):
        shapes.server_filters({"colour": ["red"]})


def test_event_times_as_dockers_cli_sends_them() -> None:
    assert shapes.event_time("") is None
    assert shapes.event_time("1767268800") == NOW
    assert shapes.event_time("1767268800.000005000") == NOW + timedelta(microseconds=5)
    assert shapes.event_time("2026-01-01T12:00:00Z") == NOW
    for bad in ("yesterday", "99999999999999999999"):
        with pytest.raises(InvalidArgument):
            shapes.event_time(bad)


# --- system df -----------------------------------------------------------------------------------


def test_disk_usage_shape() -> None:
    image = ImageInfo("sha256:aa", ("busybox:latest",), (), 5000, NOW, {}, {})
    usage = DiskUsage(
        images=(ImageUsage(image, 1000, 4000, 1),),
        images_size=5000,
        containers=1,
        containers_size=123,
        volumes=(VolumeUsage("data", 4096, 1, False), VolumeUsage("cache1", 77, 0, True)),
    )
    volumes = [
        VolumeInfo("data", "local", "/v/data/_data", {}, False, ("web",), NOW),
        VolumeInfo("cache1", "local", "/v/cache1/_data", {}, False, (), NOW),
    ]
    shape = shapes.disk_usage(usage, [_container()], volumes, NOW)
    assert shape["LayersSize"] == 5000
    assert shape["Images"][0]["Id"] == "sha256:aa"
    assert (
        shape["Images"][0]["Size"],
        shape["Images"][0]["SharedSize"],
        shape["Images"][0]["Containers"],
    ) == (
        5000,
        1000,
        1,
    )
    assert [c["Names"] for c in shape["Containers"]] == [["/web"]]
    assert [v["Name"] for v in shape["Volumes"]] == ["data"]
    assert shape["Volumes"][0]["UsageData"] == {"Size": 4096, "RefCount": 1}
    assert [(b["ID"], b["Size"], b["InUse"], b["Type"]) for b in shape["BuildCache"]] == [
        ("cache1", 77, False, "exec.cachemount")
    ]


def test_a_default_network_container_connected_to_a_user_network_is_on_both() -> None:
    info = _container(
        ip_address="10.0.2.100", networks=(NetworkEndpoint("appnet", "n1", "10.89.0.7", 24, "10.89.0.1"),)
    )
    settings = dockerjson.container_inspect(info)["NetworkSettings"]
    assert sorted(settings["Networks"]) == ["appnet", "bridge"]
    assert (
        settings["IPAddress"] == "10.0.2.100" and settings["Networks"]["appnet"]["IPAddress"] == "10.89.0.7"
    )
    orphan = dockerjson.container_inspect(_container(network="gone"))["NetworkSettings"]
    assert orphan["Networks"] == {} and orphan["IPAddress"] == ""


def test_config_volumes_are_anonymous_volumes() -> None:
    options = convert.run_options({"Image": "busybox", "Volumes": {"/scratch": {}}, "HostConfig": {}}, "")
    assert list(options.volumes) == ["/scratch"]
    with pytest.raises(InvalidArgument, match="Volumes"):
        convert.run_options({"Image": "busybox", "Volumes": ["/scratch"]}, "")
