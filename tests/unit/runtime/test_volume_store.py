"""The volume core in-process: mounts (and old records' -v strings), the store, copy-up.

Real directories; ownership checks need root (CI runs as root), and are skipped otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dockyard.core.errors import FailedPrecondition, InvalidArgument, NotFound
from dockyard.core.events import Event
from dockyard.runtime.mounts import Kind, MountSpec, check_name, mount, parse_mount
from dockyard.runtime.volumes import VolumeStore, copy_tree, resolve_in_root, root_owner

ROOT = os.geteuid() == 0


@dataclass
class Events:
    events: list[Event] = field(default_factory=list)

    def publish(self, event: Event) -> None:
        self.events.append(event)

    def subjects(self) -> list[str]:
        return [e.type.removeprefix("io.") for e in self.events]


def v(*specs: str) -> list[MountSpec]:
    """Mounts written as ``-v`` strings, for short tests."""
    return [parse_mount(s) for s in specs]


def as_v(m: MountSpec) -> str:
    """A resolved bind or volume as its ``-v`` string, for short asserts."""
    opts = ",".join(o for o, on in (("ro", m.read_only), ("nocopy", m.no_copy)) if on)
    return f"{m.source}:{m.target}" + (f":{opts}" if opts else "")


@dataclass
class Config:
    specs: list[str]
    mounts: list[MountSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.mounts = v(*self.specs)


@dataclass
class Record:
    name: str
    config: Config


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[VolumeStore, Events, list[Record]]:
    events = Events()
    containers: list[Record] = []
    store = VolumeStore(tmp_path / "volumes", events, "/dockyard/runtime/test", lambda: containers)
    return store, events, containers


# --- strings ---------------------------------------------------------------------------------------


def test_parse_mount_kinds_and_options() -> None:
    assert parse_mount("/srv/x:/data:ro") == MountSpec(Kind.BIND, "/srv/x", "/data", True)
    assert parse_mount("db:/var/lib/db") == MountSpec(Kind.VOLUME, "db", "/var/lib/db")
    assert parse_mount("db:/d/:ro,nocopy") == MountSpec(Kind.VOLUME, "db", "/d", True, True)
    assert parse_mount("/cache") == MountSpec(Kind.ANONYMOUS, "", "/cache")
    assert parse_mount("/cache:ro") == MountSpec(Kind.ANONYMOUS, "", "/cache", True)
    for bad, why in (
        ("db:relative", "must be absolute"),
        ("db:/", "cannot be '/'"),
        ("d:/x", "invalid volume name"),
        ("bad name:/x", "invalid volume name"),
        ("db:/x:rx", "invalid mode"),
        ("/h:/x:nocopy", "invalid mode"),
        ("a:b:c:d", "invalid volume specification"),
    ):
        with pytest.raises(InvalidArgument, match=why):
            parse_mount(bad)
    for spec in ("db:/x", "/x", "/x:ro", "db:/x:ro"):
        assert parse_mount(spec).kind in (Kind.VOLUME, Kind.ANONYMOUS)


def test_mount_from_the_api() -> None:
    assert mount("volume", "db", "/data", True, True) == MountSpec(Kind.VOLUME, "db", "/data", True, True)
    assert mount("volume", "", "/data/") == MountSpec(Kind.ANONYMOUS, "", "/data")
    assert mount("", "/srv/", "/data") == MountSpec(Kind.BIND, "/srv", "/data")
    tmpfs = mount("tmpfs", "", "/run", True, tmpfs_size=1 << 20, tmpfs_mode=0o1770)
    assert tmpfs == MountSpec(Kind.TMPFS, "", "/run", True, tmpfs_size=1 << 20, tmpfs_mode=0o1770)
    assert tmpfs.tmpfs().options == ("noexec", "nosuid", "nodev", "mode=1770", "size=1048576", "ro")
    assert mount("tmpfs", "", "/t").tmpfs().options == ("noexec", "nosuid", "nodev", "mode=1777")
    for args, why in (
        (("nfs", "x", "/d", False), "invalid mount type"),
        (("volume", "db", "", False), "a target is required"),
        (("volume", "/srv", "/d", False), "use type=bind"),
        (("bind", "srv", "/d", False), "absolute host path"),
        (("tmpfs", "x", "/d", False), "no source"),
        (("bind", "/srv", "/d", False, True), "volume-nocopy needs type=volume"),
    ):
        with pytest.raises(InvalidArgument, match=why):
            mount(*args)  # type: ignore[arg-type]


# --- the store -------------------------------------------------------------------------------------


def test_create_is_atomic_idempotent_and_announced(setup: tuple[VolumeStore, Events, list[Record]]) -> None:
    store, events, _ = setup
    rec = run(store.create("data", {"app": "db"}))
    assert (rec.name, rec.labels, rec.anonymous, rec.populated) == ("data", {"app": "db"}, False, False)
    assert json.loads((store.root / "data" / "volume.json").read_text())["labels"] == {"app": "db"}
    assert store.mountpoint("data").is_dir()
    assert run(store.create("data", {"other": "x"})).labels == {"app": "db"}  # unchanged, no 2nd event
    assert events.subjects() == ["dockyard.volume.created"]
    assert events.events[0].subject == "data" and events.events[0].labels == {"app": "db"}
    unnamed = run(store.create())
    assert len(unnamed.name) == 64
    for bad in ("x", "-x", "a/b", "../x"):
        with pytest.raises(InvalidArgument):
            run(store.create(bad))
    with pytest.raises(InvalidArgument, match="driver"):
        run(store.create("v2", driver="nfs"))
    with pytest.raises(InvalidArgument, match="takes only o=uid=N,gid=N,mode=OCTAL"):
        run(store.create("v2", options={"type": "tmpfs"}))
    # a half-made volume (crash before the rename) is invisible and swept at the next start
    (store.root / ".new-dead").mkdir()
    assert [r.name for r in store.records()] == sorted(["data", unnamed.name])
    VolumeStore(store.root, events, "s")
    assert not (store.root / ".new-dead").exists()
    with pytest.raises(NotFound):
        store.get("nope")
    with pytest.raises(NotFound):
        store.get("../volumes")


def test_create_sets_the_root_owner_and_mode_from_o(setup: tuple[VolumeStore, Events, list[Record]]) -> None:
    store, _, _ = setup
    assert root_owner({}) == (-1, -1, 0o755)
    assert root_owner({"o": "uid=1000,gid=33,mode=0700"}) == (1000, 33, 0o700)
    assert root_owner({"o": "mode=1777"}) == (-1, -1, 0o1777)
    for bad, why in (
        ({"o": "size=1m"}, "'size' is not uid, gid or mode"),
        ({"o": "uid=x"}, "bad uid 'x'"),
        ({"o": "uid=-1"}, "bad uid '-1'"),
        ({"o": "gid=70000"}, "bad gid '70000'"),
        ({"o": "mode=8"}, "bad mode '8'"),
        ({"o": "mode=17777"}, "bad mode '17777'"),
        ({"device": "/dev/sda"}, "takes only"),
    ):
        with pytest.raises(InvalidArgument, match=why):
            root_owner(bad)
        with pytest.raises(InvalidArgument):
            run(store.create("never", options=bad))
    assert not (store.root / "never").exists()  # checked before anything is made
    rec = run(store.create("cache", options={"o": "mode=0700"}))
    assert rec.options == {"o": "mode=0700"}
    assert stat.S_IMODE(store.mountpoint("cache").stat().st_mode) == 0o700
    if ROOT:
        run(store.create("owned", options={"o": "uid=1000,gid=33"}))
        st = store.mountpoint("owned").stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 33, 0o755)


def test_rm_refused_while_used_names_the_containers(setup: tuple[VolumeStore, Events, list[Record]]) -> None:
    store, events, containers = setup
    run(store.create("shared"))
    (store.mountpoint("shared") / "f").write_text("keep")
    containers += [Record("web", Config(["shared:/a"])), Record("job", Config(["shared:/b:ro"]))]
    with pytest.raises(FailedPrecondition, match="in use by containers job, web"):
        run(store.remove("shared"))
    assert (store.mountpoint("shared") / "f").read_text() == "keep"
    containers.clear()
    run(store.remove("shared"))
    assert not (store.root / "shared").exists() and not list(store.root.iterdir())
    assert events.subjects()[-1] == "dockyard.volume.removed"
    with pytest.raises(NotFound):
        run(store.remove("shared"))
    run(store.remove("shared", force=True))  # -f: a missing volume is fine


def test_ls_filters_and_prune(setup: tuple[VolumeStore, Events, list[Record]]) -> None:
    store, _, containers = setup
    for name, labels in (("alpha", {"tier": "db"}), ("beta", {"tier": "web"}), ("gamma", {})):
        run(store.create(name, labels))
    containers.append(Record("c1", Config(["beta:/x", "/host:/y"])))

    def names(*filters: str) -> list[str]:
        return [r.name for r, _ in store.select(filters)]

    assert names() == ["alpha", "beta", "gamma"]
    assert dict((r.name, u) for r, u in store.select())["beta"] == ["c1"]
    assert names("dangling=true") == ["alpha", "gamma"] and names("dangling=false") == ["beta"]
    assert names("label=tier") == ["alpha", "beta"] and names("label=tier=db") == ["alpha"]
    assert names("label!=tier") == ["gamma"] and names("name=mm") == ["gamma"]
    assert names("driver=local", "label=tier=web") == ["beta"]
    for bad in ("color=red", "dangling", "dangling=maybe"):
        with pytest.raises(InvalidArgument):
            names(bad)
    (store.mountpoint("alpha") / "blob").write_bytes(b"x" * 100_000)
    deleted, reclaimed = run(store.prune(["label=tier"]))
    assert deleted == ["alpha"] and reclaimed >= 100_000
    assert run(store.prune()) == (["gamma"], 0)
    assert names() == ["beta"]  # in use: never pruned
    with pytest.raises(InvalidArgument):
        run(store.prune(["dangling=true"]))


def test_resolve_makes_volumes_and_merges_volumes_from_and_image_volumes(
    setup: tuple[VolumeStore, Events, list[Record]], tmp_path: Path
) -> None:
    store, events, _ = setup
    host = tmp_path / "host"
    host.mkdir()
    source = Record("src", Config([f"{host}:/h", "shared:/s", "/tmp-anon-target"]))

    def find(ref: str) -> Record:
        if ref == "src":
            return source
        raise NotFound(f"no such container: {ref}")

    resolved = run(
        store.resolve(
            v("named:/data", "/scratch:ro", f"{host}:/h2"),
            ["/run:size=1m"],
            ["src:ro"],
            {"/data": {}, "/var/log": {}, "/run": {}},
            find,
        )
    )
    binds = [as_v(m) for m in resolved]
    anon = [m for m in resolved if m.kind == Kind.VOLUME and store.get(m.source).anonymous]
    assert binds[0] == "named:/data" and binds[2] == f"{host}:/h2"
    assert resolved[1].target == "/scratch" and resolved[1].read_only
    assert f"{host}:/h:ro" in binds and "shared:/s:ro" in binds  # --volumes-from, mode replaced
    assert {m.target for m in anon} == {"/scratch", "/var/log", "/tmp-anon-target"}
    assert not any(m.target == "/run" for m in resolved)  # the tmpfs covers the image's VOLUME
    assert not store.get("named").anonymous and not store.get("shared").anonymous
    made = len(events.events)
    # everything is checked before anything is made
    for binds_in, vfrom, why in (
        (["named:/a", "other:/a"], [], "duplicate mount point"),
        ([f"{tmp_path}/missing:/m"], [], "does not exist"),
        (["fresh:/f"], ["nobody"], "no such container"),
        (["fresh:/f"], ["src:rx"], "ro or rw"),
    ):
        with pytest.raises((InvalidArgument, NotFound), match=why):
            run(store.resolve(v(*binds_in), [], vfrom, {}, find))
    assert len(events.events) == made and "fresh" not in {r.name for r in store.records()}


def test_release_takes_only_unshared_anonymous_volumes(
    setup: tuple[VolumeStore, Events, list[Record]],
) -> None:
    store, _, containers = setup
    binds = run(store.resolve(v("keep:/k", "/a1", "/a2"), [], [], {}, lambda r: None))
    a1, a2 = (m.source for m in binds[1:])
    containers.append(Record("sharer", Config([f"{a2}:/x"])))
    assert run(store.release(binds, remove_anonymous=False)) == []
    assert run(store.release(binds, remove_anonymous=True)) == [a1]
    assert {r.name for r in store.records()} == {"keep", a2}


# --- copy-up ---------------------------------------------------------------------------------------


def _image_tree(root: Path) -> None:
    (root / "etc").mkdir(parents=True)
    data = root / "srv" / "data"
    (data / "sub").mkdir(parents=True)
    (data / "seed.txt").write_text("seed\n")
    (data / "sub" / "deep").write_text("deep")
    os.link(data / "seed.txt", data / "hard")
    os.symlink("../../etc/passwd", data / "link")
    os.mkfifo(data / "pipe")
    os.chmod(data / "seed.txt", 0o640)
    os.chmod(data, 0o750)
    if ROOT:
        os.chown(data / "seed.txt", 999, 998)
        os.chown(data, 999, 999)
        os.lchown(data / "link", 5, 6)
    os.utime(data / "sub" / "deep", (1_700_000_000, 1_700_000_000))
    os.symlink("/srv/data", root / "via-link")  # absolute: must resolve inside the image
    os.symlink("../../../../..", root / "escape")


def test_resolve_in_root_never_leaves_the_root(tmp_path: Path) -> None:
    _image_tree(tmp_path)
    assert resolve_in_root(tmp_path, "/via-link") == tmp_path / "srv" / "data"
    assert resolve_in_root(tmp_path, "/via-link/sub/../seed.txt") == tmp_path / "srv" / "data" / "seed.txt"
    assert resolve_in_root(tmp_path, "/escape/etc") == tmp_path / "etc"
    assert resolve_in_root(tmp_path, "/../../etc") == tmp_path / "etc"
    assert resolve_in_root(tmp_path, "/missing/x") is None
    os.symlink("loop", tmp_path / "loop")
    with pytest.raises(InvalidArgument, match="symbolic links"):
        resolve_in_root(tmp_path, "/loop")


def test_copy_tree_keeps_what_matters(tmp_path: Path) -> None:
    _image_tree(tmp_path / "img")
    dst = tmp_path / "dst"
    dst.mkdir()
    assert copy_tree(tmp_path / "img" / "srv" / "data", dst) == 6
    assert (dst / "seed.txt").read_text() == "seed\n" and (dst / "sub" / "deep").read_text() == "deep"
    assert stat.S_IMODE(os.stat(dst / "seed.txt").st_mode) == 0o640
    assert os.stat(dst / "hard").st_ino == os.stat(dst / "seed.txt").st_ino
    assert os.readlink(dst / "link") == "../../etc/passwd"
    assert stat.S_ISFIFO(os.lstat(dst / "pipe").st_mode)
    assert os.stat(dst / "sub" / "deep").st_mtime == 1_700_000_000
    if ROOT:
        assert (os.stat(dst / "seed.txt").st_uid, os.stat(dst / "seed.txt").st_gid) == (999, 998)
        assert (os.lstat(dst / "link").st_uid, os.lstat(dst / "link").st_gid) == (5, 6)


def test_first_mount_copies_up_once(setup: tuple[VolumeStore, Events, list[Record]], tmp_path: Path) -> None:
    store, _, _ = setup
    rootfs = tmp_path / "rootfs"
    _image_tree(rootfs)
    binds = run(
        store.resolve(v("data:/via-link", "empty:/nothing-here", "nc:/srv/data:nocopy"), [], [], {}, None)
    )
    mounts = store.mounts(binds, rootfs)
    assert [(m.source, m.target) for m in mounts] == [
        (str(store.mountpoint("data")), "/via-link"),
        (str(store.mountpoint("empty")), "/nothing-here"),
        (str(store.mountpoint("nc")), "/srv/data"),
    ]
    data = store.mountpoint("data")
    assert (data / "seed.txt").read_text() == "seed\n"
    assert stat.S_IMODE(data.stat().st_mode) == 0o750  # the volume's root takes the image dir's mode
    if ROOT:
        assert (data.stat().st_uid, data.stat().st_gid) == (999, 999)
    assert not any(store.mountpoint("nc").iterdir()) and not any(store.mountpoint("empty").iterdir())
    assert all(store.get(n).populated for n in ("data", "empty", "nc"))
    # the first mount decided: emptied later, a volume is not filled again
    for p in data.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    store.mounts(binds, rootfs)
    assert not any(data.iterdir())
    # a volume that vanished is made again, empty, on mount
    run(store.remove("empty"))
    store.mounts(binds, rootfs)
    assert store.get("empty").populated


def test_a_volume_with_data_is_never_overwritten(
    setup: tuple[VolumeStore, Events, list[Record]], tmp_path: Path
) -> None:
    store, _, _ = setup
    rootfs = tmp_path / "rootfs"
    _image_tree(rootfs)
    run(store.create("mine"))
    (store.mountpoint("mine") / "own").write_text("mine")
    store.mounts(v("mine:/srv/data"), rootfs)
    assert sorted(p.name for p in store.mountpoint("mine").iterdir()) == ["own"]


def test_a_name_longer_than_a_file_name_is_invalid_argument() -> None:
    assert check_name("a" * 255) == "a" * 255
    with pytest.raises(InvalidArgument, match="longer than 255 bytes"):
        check_name("a" * 256)
