"""The runtime's distribution client against real registries, with skopeo as the independent client.

Images get into registries through skopeo (from OCI layouts written here by hand), come out through
our ``pull``, go back through our ``push``, and skopeo inspects the result. Registries: Dockyard's
own (no auth, token auth) and Debian's CNCF distribution 2.8 (no auth, htpasswd basic auth).

``DOCKYARD_BENCH=1`` adds the measurement: a 300 MiB image pulled from the Dockyard registry on
loopback by our client and by ``skopeo copy``, wall times printed side by side.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from distribution_support import (
    CncfRegistry,
    RegistryAuth,
    RegistryServer,
    TransferStore,
    big_layout,
    cncf_registry,
    digest_of,
    dockyard_registry,
    free_port,
    make_image,
    new_store,
    oci_index_layout,
    oci_layout,
    skopeo,
    skopeo_inspect,
    skopeo_push,
    start_cncf,
    start_registry,
    stop_cncf,
    stop_registry,
)

from dockyard.core.errors import InvalidArgument, NotFound, StorageFull, Unauthenticated, Unavailable
from dockyard.core.oci.mediatypes import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from dockyard.core.registries import parse_conf
from dockyard.runtime.images.credentials import CredentialStore, StaticCredentials
from dockyard.runtime.images.manifests import classify, get_manifest, host_platform, put_manifest
from dockyard.runtime.images.progress import Progress
from dockyard.runtime.images.pull import pull
from dockyard.runtime.images.push import push
from dockyard.runtime.images.registry_client import login, parse_challenge

__all__ = ["cncf_registry", "dockyard_registry"]  # fixtures, used by name

TOKEN = RegistryAuth("token", {"alice": "wonderland"})


def statuses(events: list[Progress], digest: str) -> list[str]:
    """The distinct statuses of one layer's events, in order."""
    out: list[str] = []
    for e in events:
        if e.id == digest[7:19] and (not out or out[-1] != e.status):
            out.append(e.status)
    return out


def published(tmp_path: Path, registry: str, repo: str, seed: str = "a", layers: int = 2, *extra: str):  # type: ignore[no-untyped-def]
    image = make_image(seed, layers)
    layout = oci_layout(tmp_path / f"layout-{seed}", "1", image)
    skopeo_push(layout, "1", f"{registry}/{repo}", *extra)
    return image


# -- pull and push, OCI media types ----------------------------------------------------------


async def test_pull_from_dockyard_push_to_distribution_and_back(
    tmp_path: Path, dockyard_registry: RegistryServer, cncf_registry: CncfRegistry
) -> None:
    src = dockyard_registry.address
    image = published(tmp_path, src, "team/x:1", "a", 3)
    store = new_store(tmp_path / "store")
    events: list[Progress] = []

    record = await pull(store, f"{src}/team/x:1", progress=events.append)

    assert record.manifest_digest == image.digest
    assert record.repo_digests == (f"{src}/team/x@{image.digest}",)
    assert store.content.read_bytes(image.digest) == image.manifest
    assert store.content.read_bytes(digest_of(image.config)) == image.config
    for layer, data in zip(image.layer_digests, image.layers, strict=True):
        assert store.content.read_bytes(layer) == data
        seen = statuses(events, layer)
        assert seen[0] == "Pulling fs layer" and seen[-2:] == ["Download complete", "Pull complete"], seen
    assert events[-1].status == f"Status: Downloaded newer image for {src}/team/x:1"
    assert record.repo_tags == (f"{src}/team/x:1",)
    top = store.layer_dirs(record)[-1]  # unpacked by the store, checked against the diff ids
    assert (top / "data/a-2.txt").read_bytes().startswith(b"a:2:")
    assert store.publisher.events == []  # the caller (transfer.Transfers) announces the pull
    assert not list((tmp_path / "store/content/ingest").iterdir())

    # Pulled again: nothing to fetch.
    again: list[Progress] = []
    await pull(store, f"{src}/team/x:1", progress=again.append)
    assert all(statuses(again, d) == ["Already exists"] for d in image.layer_digests)
    assert again[-1].status.startswith("Status: Image is up to date")

    # Push to CNCF distribution: same bytes, same digest, as skopeo sees it.
    dst = f"{cncf_registry.address}/copy/x:2"
    pushed: list[Progress] = []
    desc = await push(store, dst, source_reference=f"{src}/team/x:1", progress=pushed.append)
    assert desc.digest == image.digest and desc.size == len(image.manifest)
    info = skopeo_inspect(dst)
    assert info["Digest"] == image.digest
    assert info["Layers"] == image.layer_digests
    assert (
        skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{dst}").stdout.encode() == image.manifest
    )
    for layer in image.layer_digests:
        assert statuses(pushed, layer)[0] == "Preparing" and statuses(pushed, layer)[-1] == "Pushed"

    # A second push uploads nothing: every layer is found by HEAD.
    uploads_before = cncf_registry.log().count('"POST /v2/copy/x/blobs/uploads/')
    second: list[Progress] = []
    await push(store, dst, source_reference=f"{src}/team/x:1", progress=second.append)
    assert all(statuses(second, d)[-1] == "Layer already exists" for d in image.layer_digests)
    assert cncf_registry.log().count('"POST /v2/copy/x/blobs/uploads/') == uploads_before


async def test_pull_by_digest_and_unknown_manifest(tmp_path: Path, dockyard_registry: RegistryServer) -> None:
    src = dockyard_registry.address
    image = published(tmp_path, src, "team/x:1")
    store = new_store(tmp_path / "store")

    record = await pull(store, f"{src}/team/x@{image.digest}")
    assert record.manifest_digest == image.digest
    assert record.repo_tags == ()  # a pull by digest names no tag

    with pytest.raises(NotFound, match=f"manifest unknown: {src}/team/x:nope"):
        await pull(store, f"{src}/team/x:nope")
    with pytest.raises(NotFound, match="manifest unknown"):
        await pull(store, f"{src}/team/x@sha256:{'0' * 64}")


async def test_docker_schema2_pull_and_push(
    tmp_path: Path, dockyard_registry: RegistryServer, cncf_registry: CncfRegistry
) -> None:
    src = dockyard_registry.address
    published(tmp_path, src, "team/d:1", "d", 2, "--format", "v2s2")
    served = skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{src}/team/d:1").stdout.encode()
    assert json.loads(served)["mediaType"] == DOCKER_MANIFEST
    store = new_store(tmp_path / "store")

    record = await pull(store, f"{src}/team/d:1")
    assert record.manifest_digest == digest_of(served)
    assert record.manifest_media_type == DOCKER_MANIFEST

    desc = await push(store, f"{cncf_registry.address}/d:1", source_reference=f"{src}/team/d:1")
    assert desc.media_type == DOCKER_MANIFEST
    assert skopeo_inspect(f"{cncf_registry.address}/d:1")["Digest"] == digest_of(served)


async def test_index_resolves_to_this_platform(tmp_path: Path, dockyard_registry: RegistryServer) -> None:
    assert host_platform() == ("linux", "amd64", "")  # this machine kind
    src = dockyard_registry.address
    amd, arm = make_image("amd", 2, "amd64"), make_image("arm", 2, "arm64")
    index = oci_index_layout(tmp_path / "multi", "1", {"amd64": amd, "arm64": arm})
    skopeo_push(tmp_path / "multi", "1", f"{src}/team/multi:1", "--all")
    store = new_store(tmp_path / "store")

    record = await pull(store, f"{src}/team/multi:1")
    assert record.manifest_digest == amd.digest
    assert record.repo_digests == (f"{src}/team/multi@{digest_of(index)}",)  # what the tag names
    assert all(store.content.has(d) for d in amd.layer_digests)
    assert not any(store.content.has(d) for d in arm.layer_digests)

    other = new_store(tmp_path / "arm")
    assert (
        await pull(other, f"{src}/team/multi:1", platform=("linux", "arm64", ""))
    ).manifest_digest == arm.digest
    with pytest.raises(NotFound, match=r"no image for linux/s390x in .*: it has linux/amd64, linux/arm64/v8"):
        await pull(other, f"{src}/team/multi:1", platform=("linux", "s390x", ""))


async def test_cross_repository_mount(tmp_path: Path, dockyard_registry: RegistryServer) -> None:
    src = dockyard_registry.address
    image = published(tmp_path, src, "team/x:1")
    store = new_store(tmp_path / "store")
    await pull(store, f"{src}/team/x:1")

    events: list[Progress] = []
    desc = await push(store, f"{src}/team/y:1", source_reference=f"{src}/team/x:1", progress=events.append)
    assert desc.digest == image.digest
    assert all(statuses(events, d)[-1] == "Mounted from team/x" for d in image.layer_digests)
    assert skopeo_inspect(f"{src}/team/y:1")["Digest"] == image.digest


@pytest.fixture
def full_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """A registry whose storage is a 1 MiB tmpfs (mounting one needs root, as CI has)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(disk)], check=True)
    try:
        server = start_registry(disk, RegistryAuth())
        try:
            yield server
        finally:
            stop_registry(server)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


async def test_a_registry_with_a_full_disk_is_reported_as_such(
    tmp_path: Path, dockyard_registry: RegistryServer, full_registry: RegistryServer
) -> None:
    """A 507 from the registry is StorageFull naming it, at once: not retried into Unavailable."""
    src = dockyard_registry.address
    big_layout(tmp_path / "layout", "1", 1, 3)
    skopeo_push(tmp_path / "layout", "1", f"{src}/team/big:1")
    store = new_store(tmp_path / "store")
    await pull(store, f"{src}/team/big:1")
    with pytest.raises(StorageFull, match="storage is full"):
        await push(store, f"{full_registry.address}/team/big:1", source_reference=f"{src}/team/big:1")


# -- verification ---------------------------------------------------------------------------


async def test_wrong_bytes_from_the_registry_are_refused(tmp_path: Path, cncf_registry: CncfRegistry) -> None:
    image = published(tmp_path, cncf_registry.address, "bad/x:1", "z", 2)
    victim = image.layer_digests[1]
    data = cncf_registry.blob_data(victim)
    good = data.read_bytes()
    data.write_bytes(bytes(b ^ 0xFF for b in good))  # same size, other bytes: only a hash notices
    store = new_store(tmp_path / "store")

    with pytest.raises(
        InvalidArgument, match=f"blob {victim[7:19]} from {cncf_registry.address} failed verification"
    ):
        await pull(store, f"{cncf_registry.address}/bad/x:1")
    assert not store.content.has(victim)
    assert store.list() == []
    assert not list((tmp_path / "store/content/ingest").iterdir())

    data.write_bytes(good + b"extra")  # longer than the descriptor says
    with pytest.raises(InvalidArgument, match="failed verification"):
        await pull(store, f"{cncf_registry.address}/bad/x:1")
    assert not store.content.has(victim)


async def test_a_manifest_that_does_not_match_its_digest_is_refused(
    tmp_path: Path, cncf_registry: CncfRegistry
) -> None:
    image = published(tmp_path, cncf_registry.address, "bad/m:1", "m", 1)
    altered = image.manifest + b"\n"  # still valid JSON, another digest
    cncf_registry.blob_data(image.digest).write_bytes(altered)
    store = new_store(tmp_path / "store")
    with pytest.raises(InvalidArgument, match=f"hashes to {digest_of(altered)}"):
        await pull(store, f"{cncf_registry.address}/bad/m@{image.digest}")
    with pytest.raises(
        InvalidArgument, match=f"hashes to {digest_of(altered)}, the registry says {image.digest}"
    ):
        await pull(store, f"{cncf_registry.address}/bad/m:1")
    assert not store.content.has(digest_of(altered))
    assert store.list() == []


async def test_a_cancelled_pull_leaves_nothing_behind(
    tmp_path: Path, dockyard_registry: RegistryServer
) -> None:
    src = dockyard_registry.address
    big_layout(tmp_path / "big", "1", 2, 24)
    skopeo_push(tmp_path / "big", "1", f"{src}/team/big:1")
    store = new_store(tmp_path / "store")
    downloading = asyncio.Event()

    def on_progress(e: Progress) -> None:
        if e.status == "Downloading" and 0 < e.current < e.total:
            downloading.set()

    task = asyncio.create_task(pull(store, f"{src}/team/big:1", progress=on_progress))
    await asyncio.wait_for(downloading.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Returned only after the writing threads stopped: no partial blob, no stray thread writing.
    assert not list((tmp_path / "store/content/ingest").iterdir())
    assert store.list() == []
    await asyncio.sleep(0.2)
    assert not list((tmp_path / "store/content/ingest").iterdir())
    record = await pull(store, f"{src}/team/big:1")  # and a retry completes
    assert len(record.layer_digests) == 2


def test_schema1_is_refused_with_a_reason() -> None:
    body = json.dumps({"schemaVersion": 1, "name": "x", "tag": "1", "fsLayers": []}).encode()
    with pytest.raises(InvalidArgument, match="Docker schema1"):
        classify(body, "application/vnd.docker.distribution.manifest.v1+prettyjws")


# -- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dockyard_registry", [TOKEN], indirect=True)
async def test_token_auth(tmp_path: Path, dockyard_registry: RegistryServer) -> None:
    src = dockyard_registry.address
    image = published(tmp_path, src, "team/x:1", "t", 2, "--dest-creds", "alice:wonderland")
    store = new_store(tmp_path / "store")

    with pytest.raises(
        Unauthenticated, match=rf"pull access denied for {src}/team/x:1: log in with `dockyard login {src}`"
    ):
        await pull(store, f"{src}/team/x:1")
    with pytest.raises(Unauthenticated, match=f"{src} refused the credentials of 'alice'"):
        await pull(store, f"{src}/team/x:1", credentials=StaticCredentials({src: ("alice", "wrong")}))
    with pytest.raises(Unauthenticated, match="refused"):
        await login(src, "alice", "wrong")

    await login(src, "alice", "wonderland")
    creds = CredentialStore(tmp_path / "state/auth.json")
    creds.set(src, "alice", "wonderland")
    record = await pull(store, f"{src}/team/x:1", credentials=creds)
    assert record.manifest_digest == image.digest

    events: list[Progress] = []
    await push(
        store,
        f"{src}/team/z:1",
        source_reference=f"{src}/team/x:1",
        credentials=creds,
        progress=events.append,
    )
    assert all(statuses(events, d)[-1] == "Mounted from team/x" for d in image.layer_digests)
    info = skopeo_inspect(f"{src}/team/z:1", "--creds", "alice:wonderland")
    assert info["Digest"] == image.digest


def _index_over(*images: tuple[bytes, dict[str, str]]) -> bytes:
    entries = [
        {"mediaType": OCI_MANIFEST, "digest": digest_of(m), "size": len(m), "annotations": notes}
        for m, notes in images
    ]
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": "application/vnd.example.cache+json",
        "manifests": entries,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


@pytest.mark.parametrize("dockyard_registry", [TOKEN], indirect=True)
async def test_one_manifest_in_and_out_with_the_stored_credentials(
    tmp_path: Path, dockyard_registry: RegistryServer
) -> None:
    """put_manifest/get_manifest (the builder's cache index): an index over a pushed image goes
    up under a tag byte for byte with the node's credentials, and comes back the same."""
    src = dockyard_registry.address
    image = published(tmp_path, src, "team/x:1", "m", 1, "--dest-creds", "alice:wonderland")
    index = _index_over((image.manifest, {"dev.example.keys": "a,b"}))
    creds = StaticCredentials({src: ("alice", "wonderland")})

    with pytest.raises(Unauthenticated, match="log in with"):
        await put_manifest(f"{src}/team/x:cache", index, OCI_INDEX)
    desc = await put_manifest(f"{src}/team/x:cache", index, OCI_INDEX, credentials=creds)
    assert (desc.media_type, desc.digest, desc.size) == (OCI_INDEX, digest_of(index), len(index))

    got, body = await get_manifest(f"{src}/team/x:cache", credentials=creds)
    assert body == index and got == desc
    assert (await get_manifest(f"{src}/team/x@{desc.digest}", credentials=creds))[1] == index
    raw = skopeo(
        "inspect",
        "--tls-verify=false",
        "--creds",
        "alice:wonderland",
        "--raw",
        f"docker://{src}/team/x:cache",
    )
    assert raw.stdout.encode() == index

    # a child the repository lacks is refused, and the tag keeps what it had
    stranger = make_image("not-pushed", 1)
    with pytest.raises(InvalidArgument, match="refused manifest"):
        await put_manifest(
            f"{src}/team/x:cache", _index_over((stranger.manifest, {})), OCI_INDEX, credentials=creds
        )
    assert (await get_manifest(f"{src}/team/x:cache", credentials=creds))[1] == index
    with pytest.raises(NotFound, match="manifest unknown"):
        await get_manifest(f"{src}/team/x:nothing", credentials=creds)
    with pytest.raises(InvalidArgument, match="hashes to"):
        await put_manifest(f"{src}/team/x@{digest_of(b'other')}", index, OCI_INDEX, credentials=creds)


async def test_an_index_of_ours_on_distribution(tmp_path: Path, cncf_registry: CncfRegistry) -> None:
    """CNCF distribution 2.8 takes the same index (artifactType, annotations, no platforms)."""
    dst = cncf_registry.address
    image = published(tmp_path, dst, "c/x:1", "n", 1)
    index = _index_over((image.manifest, {"dev.example.keys": "c"}))
    desc = await put_manifest(f"{dst}/c/x:cache", index, OCI_INDEX)
    assert desc.digest == digest_of(index)
    assert (await get_manifest(f"{dst}/c/x:cache"))[1] == index


async def test_basic_auth_on_distribution(tmp_path: Path, dockyard_registry: RegistryServer) -> None:
    image = published(tmp_path, dockyard_registry.address, "team/x:1", "b")
    store = new_store(tmp_path / "store")
    await pull(store, f"{dockyard_registry.address}/team/x:1")
    cncf = start_cncf(tmp_path / "cncf-auth", user=("bob", "builder"))
    try:
        dst = f"{cncf.address}/b/x:1"
        with pytest.raises(Unauthenticated, match=f"push access denied for {dst}: log in with"):
            await push(store, dst, source_reference=f"{dockyard_registry.address}/team/x:1")
        with pytest.raises(Unauthenticated):
            await login(cncf.address, "bob", "nope")
        await login(cncf.address, "bob", "builder")
        good = StaticCredentials({cncf.address: ("bob", "builder")})
        await push(store, dst, source_reference=f"{dockyard_registry.address}/team/x:1", credentials=good)
        assert skopeo_inspect(dst, "--creds", "bob:builder")["Digest"] == image.digest
        other = new_store(tmp_path / "other")
        assert (await pull(other, dst, credentials=good)).manifest_digest == image.digest
    finally:
        stop_cncf(cncf)


# -- reachability and names -------------------------------------------------------------------


async def test_unreachable_registry_and_bare_names(tmp_path: Path) -> None:
    store = new_store(tmp_path / "store")
    dead = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(Unavailable, match=f"registry {dead} is unreachable at http://{dead}"):
        await pull(store, f"{dead}/x:1")
    assert time.monotonic() - started < 10  # a few short retries, not a hang
    with pytest.raises(Unavailable, match=dead):
        await login(dead, "u", "p")
    # a bare name is Docker Hub's; here a dead mirror and a dead location: one line naming both
    other = f"127.0.0.1:{free_port()}"
    conf = parse_conf(
        f'[[registry]]\nprefix = "docker.io"\nlocation = "{other}"\n'
        f'[[registry.mirror]]\nlocation = "{dead}"\n'
    )
    with pytest.raises(Unavailable) as both:
        await pull(store, "busybox", registries=conf)
    said = str(both.value)
    assert said.startswith("cannot pull busybox: ") and "\n" not in said, said
    assert f"mirror {dead} ({dead}/library/busybox:latest): registry {dead} is unreachable" in said
    assert f"; {other} ({other}/library/busybox:latest): registry {other} is unreachable" in said


async def test_docker_names_through_a_mirror(tmp_path: Path, dockyard_registry: RegistryServer) -> None:
    """`busybox` is docker.io/library/busybox: pulled from docker.io's mirror, listed as docker lists it."""
    mirror = dockyard_registry.address
    image = published(tmp_path, mirror, "library/busybox:1")
    dead = f"127.0.0.1:{free_port()}"
    conf = parse_conf(
        f"""
        [[registry]]
        prefix = "docker.io"
        location = "{dead}"
          [[registry.mirror]]
          location = "127.0.0.1:{free_port()}"
          [[registry.mirror]]
          location = "{mirror}"
          insecure = true
        """
    )
    store = new_store(tmp_path / "store")
    record = await pull(store, "busybox:1", registries=conf)  # the first mirror is down: the next serves
    assert record.manifest_digest == image.digest
    assert record.repo_tags == ("busybox:1",)
    assert record.repo_digests == (f"busybox@{image.digest}",)
    for name in (
        "busybox:1",
        "docker.io/library/busybox:1",
        "library/busybox:1",
        "index.docker.io/busybox:1",
    ):
        assert store.resolve(name).id == record.id
    # a qualified docker.io name goes the same way; an alias sends a short name elsewhere
    again = await pull(store, "docker.io/library/busybox:1", registries=conf)
    assert again.id == record.id
    published(tmp_path, mirror, "team/tools:2", "t")
    aliased = parse_conf(f'[aliases]\n"tools" = "{mirror}/team/tools"')
    assert (await pull(store, "tools:2", registries=aliased)).repo_tags == (f"{mirror}/team/tools:2",)
    # not on the mirror, and the location is down: each named with its answer; the location's decides
    with pytest.raises(Unavailable) as missing:
        await pull(store, "busybox:nope", registries=conf)
    assert f"mirror {mirror} ({mirror}/library/busybox:nope): manifest unknown" in str(missing.value)


async def test_retries_a_registry_that_comes_up_late_and_names_one_that_fails(tmp_path: Path) -> None:
    first = start_cncf(tmp_path / "cncf")
    image = published(tmp_path, first.address, "late/x:1", "l")
    stop_cncf(first)
    port = free_port()
    servers: list[CncfRegistry] = []

    async def start_late() -> None:
        await asyncio.sleep(0.15)  # the first two attempts are refused
        servers.append(start_cncf(tmp_path / "cncf", port=port, wait=False))

    try:
        store = new_store(tmp_path / "store")
        late = asyncio.create_task(start_late())
        started = time.monotonic()
        record = await pull(store, f"127.0.0.1:{port}/late/x:1")
        assert time.monotonic() - started > 0.15
        assert record.manifest_digest == image.digest
        await late

        # A blob the registry cannot read: HTTP 500, retried, then Unavailable naming the registry.
        blob = servers[0].blob_data(image.layer_digests[0])
        blob.unlink()
        blob.symlink_to(blob.name)  # a loop: the storage driver's stat fails with ELOOP
        with pytest.raises(Unavailable, match=f"registry 127.0.0.1:{port} failed: HTTP 500"):
            await pull(new_store(tmp_path / "other"), f"127.0.0.1:{port}/late/x:1")
        assert servers[0].log().count(f'GET /v2/late/x/blobs/{image.layer_digests[0]} HTTP/1.1" 500') == 4
    finally:
        for server in servers:
            stop_cncf(server)


def test_parse_challenge() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="http://h:1/token",service="reg",scope="repository:a/b:pull,push",error="x\\"y"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "http://h:1/token",
        "service": "reg",
        "scope": "repository:a/b:pull,push",
        "error": 'x"y',
    }
    assert parse_challenge('Basic realm="r"') == ("basic", {"realm": "r"})


# -- credentials ----------------------------------------------------------------------------


def test_credential_store(tmp_path: Path) -> None:
    path = tmp_path / "state/auth.json"
    creds = CredentialStore(path)
    assert creds.get("h:1") is None
    creds.set("h:1", "alice", "p:ss")
    creds.set("https://other.example/v1/", "bob", "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert set(doc["auths"]) == {"h:1", "other.example"}
    assert doc["auths"]["h:1"] == {"auth": "YWxpY2U6cDpzcw=="}  # base64("alice:p:ss"), docker's shape
    assert creds.get("h:1") == ("alice", "p:ss")
    assert creds.get("http://OTHER.example") == ("bob", "x")
    assert creds.registries() == ["h:1", "other.example"]

    doc["credsStore"] = "kept"  # something another tool wrote
    path.write_text(json.dumps(doc))
    assert creds.remove("h:1") is True
    assert creds.remove("h:1") is False
    assert json.loads(path.read_text())["credsStore"] == "kept"
    assert creds.get("h:1") is None
    assert [p.name for p in path.parent.iterdir()] == ["auth.json"]  # no temporary left behind
    with pytest.raises(InvalidArgument):
        creds.set("h:1", "a:b", "x")


# -- measurement ----------------------------------------------------------------------------


@pytest.mark.skipif(not os.environ.get("DOCKYARD_BENCH"), reason="measurement; set DOCKYARD_BENCH=1")
async def test_measure_300mib_pull_vs_skopeo(tmp_path: Path, dockyard_registry: RegistryServer) -> None:
    """Best of 3, each into a fresh store: our pull (transfer only, and into the real ImageStore,
    which also unpacks) against ``skopeo copy docker://… oci:…`` (transfer only), plus how long the
    event loop was ever held up during our pulls (a 5 ms ticker)."""
    src = dockyard_registry.address
    big_layout(tmp_path / "big", "1", 3, 100)
    # skopeo compresses uncompressed layers on the way to a registry: measure what is served.
    skopeo_push(tmp_path / "big", "1", f"{src}/bench/big:1")
    served = json.loads(
        skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{src}/bench/big:1").stdout
    )
    layer_digests = [x["digest"] for x in served["layers"]]
    mib = sum(x["size"] for x in served["layers"]) / (1 << 20)

    lags: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            t = time.monotonic()
            await asyncio.sleep(0.005)
            lags.append(time.monotonic() - t - 0.005)

    best: dict[str, float] = {}
    per_layer: list[int] = []

    async def ours(kind: str, store: object) -> None:
        events: list[Progress] = []
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(stop))
        t0 = time.monotonic()
        await pull(store, f"{src}/bench/big:1", progress=events.append)  # type: ignore[arg-type]
        best[kind] = min(best.get(kind, 1e9), time.monotonic() - t0)
        stop.set()
        await tick
        per_layer[:] = [sum(1 for e in events if e.id == d[7:19]) for d in layer_digests]
        assert all(3 <= n < 200 for n in per_layer), per_layer  # reported, and throttled

    for run in range(3):
        await ours("transfer", TransferStore(tmp_path / f"t-{run}"))
        await ours("store", new_store(tmp_path / f"s-{run}"))
        t0 = time.monotonic()
        skopeo("copy", "--src-tls-verify=false", f"docker://{src}/bench/big:1", f"oci:{tmp_path}/sk-{run}:1")
        best["skopeo"] = min(best.get("skopeo", 1e9), time.monotonic() - t0)
    lags.sort()
    print(
        f"\npull {mib:.0f} MiB (3 gzip layers, random bytes) from Dockyard registry, loopback, best of 3:"
        f"\n  dockyard pull, content only    {best['transfer']:.2f} s  ({mib / best['transfer']:.0f} MiB/s)"
        f"\n  dockyard pull into ImageStore  {best['store']:.2f} s  (+ unpack)"
        f"\n  skopeo copy docker:// oci:     {best['skopeo']:.2f} s  ({mib / best['skopeo']:.0f} MiB/s)"
        f"\n  event-loop lag during our pulls: p50 {lags[len(lags) // 2] * 1000:.1f} ms,"
        f" p99 {lags[int(len(lags) * 0.99)] * 1000:.1f} ms, max {lags[-1] * 1000:.1f} ms"
        f"\n  progress events per layer (last run): {per_layer}"
    )
