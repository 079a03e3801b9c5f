"""Conformance suite of the ``StorageDriver`` protocol, run against every driver implementation."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard.core.errors import InvalidArgument, NotFound
from dockyard.registry.storage import FilesystemDriver, StorageDriver

DRIVERS: dict[str, Callable[[Path], StorageDriver]] = {
    "filesystem": lambda root: FilesystemDriver(root),
    # "s3": lambda root: S3Driver(bucket=..., prefix=str(root)),   # when it exists
}


@pytest.fixture(params=sorted(DRIVERS))
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> StorageDriver:
    return DRIVERS[request.param](tmp_path / "store")


def test_put_read_stat_roundtrip(driver: StorageDriver) -> None:
    driver.put_bytes("repositories/a/_manifests/tags/v1", b"sha256:abc")
    assert driver.read_bytes("repositories/a/_manifests/tags/v1", 100) == b"sha256:abc"
    info = driver.stat("repositories/a/_manifests/tags/v1")
    assert info is not None and info.size == 10 and not info.is_dir
    assert driver.stat("repositories/a/_manifests") is not None


def test_put_replaces_atomically(driver: StorageDriver) -> None:
    driver.put_bytes("k/v", b"old")
    driver.put_bytes("k/v", b"new!")
    assert driver.read_bytes("k/v", 10) == b"new!"


def test_missing_paths(driver: StorageDriver) -> None:
    assert driver.stat("nope/x") is None
    assert driver.list("nope") == []
    assert list(driver.walk("nope")) == []
    driver.delete("nope/x")  # no error
    with pytest.raises(NotFound):
        driver.read_bytes("nope/x", 10)
    with pytest.raises(NotFound):
        driver.reader("nope/x")


def test_read_bytes_enforces_limit(driver: StorageDriver) -> None:
    driver.put_bytes("big", b"x" * 11)
    with pytest.raises(InvalidArgument):
        driver.read_bytes("big", 10)


@pytest.mark.parametrize("bad", ["", "/abs", "a/../b", "a//b", "./a", "a/.", "..", "a\\b", "a\x00b"])
def test_path_traversal_rejected(driver: StorageDriver, bad: str) -> None:
    with pytest.raises(InvalidArgument):
        driver.put_bytes(bad, b"x")
    with pytest.raises(InvalidArgument):
        driver.stat(bad)


def test_writer_streams_append_truncate_and_move(driver: StorageDriver) -> None:
    w = driver.writer("uploads/u1/data")
    w.write(b"hello ")
    w.close()
    w = driver.writer("uploads/u1/data", append=True)
    assert w.size == 6
    w.write(b"world, garbage")
    w.truncate(11)
    w.close(sync=True)
    assert driver.stat("blobs/sha256/h") is None  # nothing visible until moved
    driver.move("uploads/u1/data", "blobs/sha256/h")
    assert driver.read_bytes("blobs/sha256/h", 100) == b"hello world"
    assert driver.stat("uploads/u1/data") is None
    with driver.reader("blobs/sha256/h", offset=6) as fh:
        assert fh.read() == b"world"


def test_move_replaces_existing_target(driver: StorageDriver) -> None:
    driver.put_bytes("blobs/sha256/h", b"same")
    driver.put_bytes("ingest/x", b"same")
    driver.move("ingest/x", "blobs/sha256/h")
    assert driver.read_bytes("blobs/sha256/h", 10) == b"same"
    with pytest.raises(NotFound):
        driver.move("ingest/x", "blobs/sha256/h")


def test_list_walk_delete_tree(driver: StorageDriver) -> None:
    for p in ("r/a/1", "r/a/2", "r/b/3"):
        driver.put_bytes(p, p.encode())
    assert driver.list("r") == ["a", "b"]
    assert sorted(i.path for i in driver.walk("r")) == ["r/a/1", "r/a/2", "r/b/3"]
    driver.delete("r/a")
    assert sorted(i.path for i in driver.walk("r")) == ["r/b/3"]


def test_walk_sees_each_file_once_while_they_are_deleted(driver: StorageDriver) -> None:
    # GC's sweep deletes blobs from the very directory it is walking.
    names = {f"blobs/sha256/{i:064x}" for i in range(500)}
    for name in names:
        driver.put_bytes(name, b"x")
    seen = []
    for info in driver.walk("blobs"):
        seen.append(info.path)
        driver.delete(info.path)
    assert sorted(seen) == sorted(names)
    assert list(driver.walk("blobs")) == []


def test_concurrent_put_same_path_never_mixes(driver: StorageDriver) -> None:
    payloads = [bytes([i]) * 200_000 for i in range(8)]

    def put(data: bytes) -> None:
        for _ in range(5):
            driver.put_bytes("blobs/sha256/same", data)

    threads = [threading.Thread(target=put, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert driver.read_bytes("blobs/sha256/same", 300_000) in payloads
    assert list(driver.walk("ingest")) == []
