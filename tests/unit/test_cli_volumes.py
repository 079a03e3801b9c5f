"""The CLI's volume pieces without a platform: --mount parsing, --volumes-from, volume inspect's shape."""

from __future__ import annotations

import argparse

import pytest

from dockyard.api.containers.v1 import containers_pb2 as cpb
from dockyard.api.volumes.v1 import volumes_pb2 as vpb
from dockyard.cli.mountspec import apply
from dockyard.cli.volume import render, volume_dict
from dockyard.client.grammar import Mount, Volume, parse_mount, parse_volume
from dockyard.core.errors import InvalidArgument


def test_mount_fields_as_docker_spells_them() -> None:
    assert parse_mount("type=volume,source=db,target=/var/lib/db,readonly") == Mount(
        "volume", "db", "/var/lib/db", read_only=True
    )
    assert parse_mount("src=db,dst=/d,ro=false,volume-nocopy=true") == Mount(
        "volume", "db", "/d", no_copy=True
    )
    assert parse_mount("target=/anon") == Mount("volume", "", "/anon")
    assert parse_mount(
        "type=bind,source=/srv,destination=/srv,bind-propagation=rprivate,consistency=cached"
    ) == (Mount("bind", "/srv", "/srv"))
    assert parse_mount("type=bind,src=./conf,dst=/c", cwd="/home/me") == Mount("bind", "/home/me/conf", "/c")
    assert parse_mount('type=tmpfs,"target=/run",tmpfs-size=64m,tmpfs-mode=1770') == Mount(
        "tmpfs", "", "/run", tmpfs_size=64 << 20, tmpfs_mode=0o1770
    )
    assert parse_mount("type=tmpfs,dst=/t,tmpfs-size=4096").tmpfs_size == 4096


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("type=nfs,target=/x", "mount type 'nfs'"),
        ("source=v", "target is required"),
        ("target=rel", "must be an absolute path"),
        ("type=bind,target=/x", "needs a source"),
        ("type=bind,src=host,dst=/x", "absolute host path"),
        ("type=volume,src=/abs,dst=/x", "use type=bind"),
        ("type=tmpfs,src=x,dst=/x", "takes no source"),
        ("type=tmpfs,dst=/x,volume-nocopy", "only goes with type=volume"),
        ("dst=/x,tmpfs-size=1m", "only goes with type=tmpfs"),
        ("type=tmpfs,dst=/x,tmpfs-size=big", "tmpfs-size"),
        ("type=tmpfs,dst=/x,tmpfs-mode=9", "octal"),
        ("dst=/x,readonly=maybe", "true or false"),
        ("dst=/x,colour=red", "unexpected key 'colour'"),
        ("dst=/x,volume-opt=type=nfs", "not supported"),
        ("type=bind,src=/a,dst=/x,bind-propagation=shared", "rprivate only"),
        ('dst="/x', "--mount"),
    ],
)
def test_a_bad_mount_is_one_line_naming_the_flag(spec: str, says: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_mount(spec)
    assert "--mount" in str(caught.value) and says in str(caught.value) and "\n" not in str(caught.value)


def test_apply_puts_mounts_and_volumes_from_in_the_spec() -> None:
    spec = cpb.ContainerSpec(image="busybox")
    args = argparse.Namespace(
        mount=["type=tmpfs,dst=/t,tmpfs-size=1k", "src=v,dst=/v,ro"], volumes_from=["db:ro"]
    )
    apply(args, spec)
    assert [(m.type, m.source, m.target, m.read_only, m.tmpfs_size) for m in spec.mounts] == [
        ("tmpfs", "", "/t", False, 1024),
        ("volume", "v", "/v", True, 0),
    ]
    assert list(spec.volumes_from) == ["db:ro"]
    with pytest.raises(InvalidArgument, match="CONTAINER"):
        apply(argparse.Namespace(mount=[], volumes_from=["db:rx"]), cpb.ContainerSpec())


def test_volume_inspect_shape_and_templates() -> None:
    v = vpb.Volume(
        name="data", driver="local", mountpoint="/s/volumes/data/_data", scope="local", labels={"a": "b"}
    )
    v.created.seconds = 1_800_000_000
    d = volume_dict(v)
    assert d["Name"] == "data" and d["Labels"] == {"a": "b"} and d["Options"] is None
    assert d["CreatedAt"] == "2027-01-15T08:00:00Z" and d["UsedBy"] == [] and d["Anonymous"] is False
    assert render("{{.Name}} {{ .Mountpoint }} {{json .Labels}} {{.Anonymous}}", d) == (
        'data /s/volumes/data/_data {"a":"b"} false'
    )
    with pytest.raises(InvalidArgument, match="can't evaluate field Nope in type"):
        render("{{.Nope}}", d)


def test_v_takes_nocopy_for_volumes_and_a_mode_on_an_anonymous_one() -> None:
    assert parse_volume("db:/d:ro,nocopy") == Volume("db", "/d", True, "volume", True)
    assert parse_volume("/cache:ro") == Volume("", "/cache", True, "volume")
    assert parse_volume("/srv:/srv") == Volume("/srv", "/srv", False, "bind")
    with pytest.raises(InvalidArgument, match="nocopy for a volume"):
        parse_volume("/srv:/srv:nocopy")
