"""RUN --mount in-process: the flag's parser (every error), the step's mount plan (targets, ids,
refusals), ``--secret`` values, the digest a context bind adds to the cache key, and the cache
volumes' sharing and pruning bookkeeping. The mounts in a real build: tests/e2e/test_build_mounts.py.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from dockyard.builder import instructions as ins
from dockyard.builder.mounts import (
    CACHE_LABEL,
    CacheVolumes,
    Planned,
    context_digest,
    context_source,
    inside,
    plan,
    prune_volumes,
)
from dockyard.core.errors import FailedPrecondition, InvalidArgument, NotFound

# --- the --mount flag ------------------------------------------------------------------------------


def test_parse_mount_defaults_as_buildkit_fills_them() -> None:
    m = ins.parse_mount("target=/src")
    assert (m.type, m.target, m.readonly) == ("bind", "/src", True)
    assert ins.parse_mount("type=bind,target=/src,rw").readonly is False
    assert ins.parse_mount("type=bind,target=/src,readwrite=true").readonly is False
    assert ins.parse_mount("type=cache,target=/c").readonly is False
    assert ins.parse_mount("type=cache,target=/c,ro").readonly is True
    assert ins.parse_mount("type=tmpfs,target=/t").readonly is False
    assert ins.parse_mount("type=tmpfs,dst=/t,size=1.5g").size == 1610612736
    assert ins.parse_mount("type=tmpfs,destination=/t,size=64m").size == 64 << 20
    cache = ins.parse_mount("type=cache,target=/c,id=go,sharing=LOCKED,uid=1000,gid=100,mode=0700")
    assert (cache.id, cache.sharing, cache.uid, cache.gid, cache.mode) == ("go", "locked", 1000, 100, 0o700)
    secret = ins.parse_mount("type=secret,id=npm,required,mode=0444,env=NPM_TOKEN")
    assert (secret.id, secret.required, secret.mode, secret.env) == ("npm", True, 0o444, "NPM_TOKEN")
    assert ins.parse_mount("type=secret,src=npm,required=false").source == "npm"
    with_from = ins.parse_mount("type=bind,from=build,source=/out,target=/o")
    assert (with_from.from_, with_from.source) == ("build", "/out")
    expanded = ins.parse_mount("type=cache,target=$D", lambda v: v.replace("$D", "/root/.cache"))
    assert expanded.target == "/root/.cache"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("type=bind,target=/x,required", "unexpected key 'required' for mount type 'bind'"),
        ("type=cache,target=/x,required=true", "unexpected key 'required' for mount type 'cache'"),
        ("target=/x,bogus", "invalid field 'bogus' must be a key=value pair"),
        ("type=nfs,target=/x", 'unsupported mount type "nfs"'),
        ("type=bnd,target=/x", 'unsupported mount type "bnd" (did you mean bind?)'),
        ("type=bind,target=/x,ro=maybe", "invalid value for ro: maybe"),
        ("type=bind,target=/x,rw=maybe", "invalid value for rw: maybe"),
        ("type=secret,id=x,required=maybe", "invalid value for required: maybe"),
        ("type=bind,size=1m,target=/x", "unexpected key 'size' for mount type 'bind'"),
        ("type=cache,size=1m,target=/x", "unexpected key 'size' for mount type 'cache'"),
        ("type=tmpfs,target=/x,size=lots", "invalid value for size: lots"),
        ("type=cache,target=/x,sharing=maybe", 'unsupported sharing value "maybe"'),
        ("type=cache,target=/x,mode=9", "invalid value 9 for mode"),
        ("type=cache,target=/x,mode=-1", "invalid value -1 for mode"),
        ("type=cache,target=/x,uid=x", "invalid value x for uid"),
        ("type=cache,target=/x,uid=+1", "invalid value +1 for uid"),
        ("type=cache,target=/x,gid=4294967296", "invalid value 4294967296 for gid"),
        ("taget=/x", "unexpected key 'taget' in 'taget=/x' (did you mean target?)"),
        ("type=bind,mode=0700,target=/x", 'mode not allowed for "bind" type mounts'),
        ("type=bind,uid=1,target=/x", 'uid not allowed for "bind" type mounts'),
        ("type=tmpfs,gid=1,target=/x", 'gid not allowed for "tmpfs" type mounts'),
        ("type=secret,id=x,from=stage", "secret mount should not have a from"),
        ("type=secret,id=x,sharing=locked", "secret mount should not define sharing"),
        ("type=secret", "invalid secret mount. one of source, target required"),
        ("type=secret,source=a,id=b", "both source and id can't be set"),
        ("type=bind,target=/x,sharing=shared", "invalid cache sharing set for bind mount"),
        ("type=tmpfs,target=/x,sharing=private", "invalid cache sharing set for tmpfs mount"),
    ],
)
def test_parse_mount_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        ins.parse_mount(spec)
    assert str(err.value) == message


# --- a step's mounts ---------------------------------------------------------------------------------


def _plan(*specs: str, workdir: str = "/", secrets: tuple[str, ...] = ()) -> list[tuple[str, str, str]]:
    return [
        (p.mount.type, p.target, p.id) for p in plan([ins.parse_mount(s) for s in specs], workdir, secrets)
    ]


def test_plan_places_targets_and_names_ids() -> None:
    assert _plan(
        "type=cache,target=/root/.cache/go-build",
        "type=cache,target=cache,id=npm",
        "type=bind,target=src",
        "type=tmpfs,target=/tmp/x/",
        "type=bind,source=a",  # no target: the WORKDIR
        workdir="/app",
    ) == [
        ("cache", "/root/.cache/go-build", "/root/.cache/go-build"),  # the id defaults to the target
        ("cache", "/app/cache", "npm"),
        ("bind", "/app/src", ""),
        ("tmpfs", "/tmp/x", ""),
        ("bind", "/app", ""),
    ]
    assert _plan(
        "type=secret,id=npm",
        "type=secret,source=aws",  # source is the id too
        "type=secret,target=/etc/token",  # no id: the target's base name
        "type=secret,id=k,target=key.pem",
        "type=secret,id=gh,env=GH_TOKEN",  # env alone: no file
        "type=secret,id=both,env=B,target=/b",
        workdir="/w",
    ) == [
        ("secret", "/run/secrets/npm", "npm"),
        ("secret", "/run/secrets/aws", "aws"),
        ("secret", "/etc/token", "token"),
        ("secret", "/w/key.pem", "k"),
        ("secret", "", "gh"),
        ("secret", "/b", "both"),
    ]
    # a required secret that was given, an optional one that was not: both fine
    assert len(_plan("type=secret,id=a,required", "type=secret,id=b", secrets=("a",))) == 2


@pytest.mark.parametrize(
    ("specs", "workdir", "message"),
    [
        (["type=ssh"], "/", "ssh mounts are not supported (no SSH agent forwarding yet)"),
        (["type=cache,target=/c,env=X"], "/", "env= is for secret mounts only"),
        (["type=cache,target=/c,from=base"], "/", "a cache seeded from a stage or an image (from=)"),
        (["type=cache,target=/c,source=sub"], "/", "source= (a sub-directory of the cache)"),
        (["type=bind,target=/"], "/app", 'invalid mount target "/"'),
        (["type=tmpfs"], "/", 'invalid mount target "/"'),
        (["type=cache,target=.."], "/app", 'invalid mount target "/"'),
        (
            ["type=bind,target=/x", "type=tmpfs,target=/x/"],
            "/",
            "another mount of this step has the target /x",
        ),
        (["type=secret,id=a,target=/s", "type=bind,target=/s"], "/", "the target /s"),
        (["type=secret,id=a,uid=1000"], "/", "uid/gid other than 0 are not supported yet for secrets"),
        (["type=secret,id=a,gid=5"], "/", "use mode=0444"),
        (["type=secret,id=npm,required"], "/", "secret 'npm' is required but was not given"),
        (["type=secret,source=aws,required=true"], "/", "--secret id=aws,src=FILE"),
    ],
)
def test_plan_refuses_with_one_line(specs: list[str], workdir: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        plan([ins.parse_mount(s) for s in specs], workdir, ())
    assert message in err.value.message and "\n" not in err.value.message


def test_cache_keys_and_volume_names() -> None:
    def one(spec: str) -> Planned:
        return plan([ins.parse_mount(spec)], "/", ("s",))[0]

    a = one("type=cache,target=/c,id=go")
    assert a.volume == one("type=cache,target=/other,id=go").volume  # a cache is its id
    assert a.volume == one("type=cache,target=/c,id=go,uid=0,gid=0,mode=755").volume  # the defaults
    assert a.volume != one("type=cache,target=/c,id=go,uid=1000").volume  # made with another owner
    assert a.volume.startswith("buildcache-") and len(a.volume) == len("buildcache-") + 24
    assert a.volume_options == {"o": "uid=0,gid=0,mode=755"}
    assert one("type=cache,target=/c,uid=1,gid=2,mode=0700").volume_options == {"o": "uid=1,gid=2,mode=700"}
    # the key says what a mount is, so a different target or sharing is a different step
    assert a.key != one("type=cache,target=/other,id=go").key
    assert a.key != one("type=cache,target=/c,id=go,sharing=locked").key
    assert one("type=secret,id=s").key == one("type=secret,id=s").key


# --- context binds --------------------------------------------------------------------------------------


def test_inside_never_leaves_the_root(tmp_path: Path) -> None:
    root = tmp_path / "ctx"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f").write_text("x")
    (root / "abs").symlink_to("/a")
    (root / "up").symlink_to("../../..")
    (root / "hostetc").symlink_to("/etc")
    assert inside(root, "a/b/f") == root / "a" / "b" / "f"
    assert inside(root, "abs/b") == root / "a" / "b"
    assert inside(root, "up/a") == root / "a"  # .. stops at the root
    assert inside(root, "/../a/./b/") == root / "a" / "b"
    assert inside(root, "") == root
    with pytest.raises(NotFound):
        inside(root, "hostetc/passwd")  # /etc of the context (there is none), not of the host
    (root / "loop").symlink_to("loop")
    with pytest.raises(InvalidArgument, match="too many levels of symbolic links"):
        inside(root, "loop")


def test_context_digest_follows_content_not_times(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "src" / "main.go").write_text("package main\n")
    (ctx / "go.sum").write_text("sum\n")

    def digest(source: str) -> str:
        return context_digest(ctx, ins.parse_mount(f"type=bind,source={source},target=/m"))

    whole, src, file = digest("."), digest("src"), digest("go.sum")
    assert len({whole, src, file}) == 3
    os.utime(ctx / "go.sum", (1, 1))
    assert digest("go.sum") == file  # times do not matter
    (ctx / "go.sum").write_text("changed\n")
    assert digest("go.sum") != file and digest(".") != whole
    assert digest("src") == src  # only what the bind shows counts
    (ctx / "go.sum").chmod(0o600)
    changed_mode = digest("go.sum")
    (ctx / "go.sum").chmod(0o644)
    assert digest("go.sum") != changed_mode
    with pytest.raises(NotFound, match="source /missing not found in the build context"):
        context_source(ctx, ins.parse_mount("type=bind,source=missing,target=/m"))


# --- cache volumes --------------------------------------------------------------------------------------


def test_cache_volume_sharing(tmp_path: Path) -> None:
    caches = CacheVolumes(tmp_path / "cache-volumes.json")
    order: list[str] = []

    async def step(name: str, sharing: str, tag: str, hold: asyncio.Event | None = None) -> str:
        async with caches.use(name, sharing) as volume:
            order.append(f"{tag}+")
            if hold is not None:
                await hold.wait()
            order.append(f"{tag}-")
            return volume

    async def scenario() -> None:
        release = asyncio.Event()
        first = asyncio.create_task(step("v", "private", "p1", release))
        await asyncio.sleep(0)
        assert await step("v", "private", "p2") == "v-1"  # the first is busy: another volume
        assert await step("v", "shared", "s") == "v"  # shared: the same one, busy or not
        release.set()
        assert await first == "v"
        assert await step("v", "private", "p3") == "v"  # free again

        gate = asyncio.Event()
        held = asyncio.create_task(step("l", "locked", "l1", gate))
        await asyncio.sleep(0)
        waiting = asyncio.create_task(step("l", "locked", "l2"))
        await asyncio.sleep(0.01)
        assert order[-1] == "l1+"  # l2 waits for l1
        gate.set()
        await asyncio.gather(held, waiting)
        assert order[-4:] == ["l1+", "l1-", "l2+", "l2-"]

    asyncio.run(scenario())
    again = CacheVolumes(tmp_path / "cache-volumes.json")  # last uses are kept across restarts
    assert again.stale(["v", "v-1", "l", "unknown"], 3600) == ["unknown"]
    assert again.stale(["v", "l"], 0) == ["l", "v"]


def test_prune_volumes_removes_stale_unused_ones(tmp_path: Path) -> None:
    caches = CacheVolumes(tmp_path / "c.json")

    class Node:
        def __init__(self) -> None:
            self.volumes = {"buildcache-a", "buildcache-b", "buildcache-c"}
            self.filters: list[str] = []

        async def create_volume(self, name: str, labels: object, opts: object) -> None:
            self.volumes.add(name)

        async def list_volumes(self, filters: Sequence[str]) -> list[str]:
            self.filters = list(filters)
            return sorted(self.volumes)

        async def remove_volume(self, name: str) -> None:
            if name == "buildcache-b":
                raise FailedPrecondition("in use by container x")
            self.volumes.remove(name)

    async def use(name: str) -> None:
        async with caches.use(name, "shared"):
            pass

    node = Node()
    asyncio.run(use("buildcache-a"))
    assert asyncio.run(prune_volumes(node, caches, 3600)) == 1  # c: never used by this builder
    assert node.filters == [f"label={CACHE_LABEL}"]
    assert node.volumes == {"buildcache-a", "buildcache-b"}
    assert asyncio.run(prune_volumes(node, caches, 0)) == 1  # all but b, which a container uses
    assert node.volumes == {"buildcache-b"}


def test_builder_prune_filter() -> None:
    from dockyard.cli.builder import keep_seconds

    assert keep_seconds([]) == 0
    assert keep_seconds(["until=24h"]) == 86400
    assert keep_seconds(["until=1m30s"]) == 90
    for bad in (["dangling=true"], ["until"], ["until=soon"]):
        with pytest.raises(InvalidArgument):
            keep_seconds(bad)
