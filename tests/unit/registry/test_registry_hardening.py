"""Core-level pieces of issue #9's hardening: the upload sweep vs. new sessions, session caps and
leaks, strict names, StorageFull through every boundary (gRPC status, CLI line), the guard's
bookkeeping."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import grpc
import pytest
from registry_unit_support import push_blob

from dockyard.adapters.grpc.errors import to_native, to_status
from dockyard.core import errors as core
from dockyard.core.oci.manifest import ManifestInvalid, parse_manifest
from dockyard.registry.config import RegistryConfig
from dockyard.registry.connections import (
    ConnectionGuard,
    RateLimitedExceptionHandler,
    default_connection_limit,
)
from dockyard.registry.errors import NameInvalid, StorageFull, TooManyUploads
from dockyard.registry.registry import Registry, validate_name
from dockyard.registry.storage import FilesystemDriver


def test_sweep_leaves_a_session_that_has_no_file_yet(registry: Registry) -> None:
    """start_upload makes the directory before its files: an empty, fresh directory is not idle."""
    fresh = registry.storage.local_path("uploads/" + "a" * 32)
    assert fresh is not None
    fresh.mkdir(parents=True)
    assert registry.sweep_uploads() == 0
    assert fresh.is_dir()
    old = time.time() - 3600
    os.utime(fresh, (old, old))
    assert registry.sweep_uploads() == 1  # an old empty one still goes


def test_sweep_racing_uploads_loses_none(registry: Registry) -> None:
    """A sweep looping (expiry 0: everything idle is expired) while sessions start and finish."""
    registry.config = RegistryConfig(root=registry.config.root, upload_expiry=0.0)
    stop = threading.Event()
    failures: list[BaseException] = []

    def sweeper() -> None:
        while not stop.is_set():
            registry.sweep_uploads(now=time.time() - 0.5)  # sessions older than half a second

    thread = threading.Thread(target=sweeper)
    thread.start()
    try:
        for i in range(200):
            try:
                push_blob(registry, "race", f"blob {i}".encode())
            except BaseException as exc:
                failures.append(exc)
    finally:
        stop.set()
        thread.join()
    assert failures == []


def test_open_chunk_on_a_swept_session_is_unknown_not_a_resurrection(registry: Registry) -> None:
    status = registry.start_upload("r")
    registry.storage.delete(f"uploads/{status.upload_id}")  # what an expiry sweep does
    with pytest.raises(core.NotFound):
        registry.open_chunk("r", status.upload_id)
    assert registry.storage.stat(f"uploads/{status.upload_id}") is None


def test_session_cap_per_repository(tmp_path: Path) -> None:
    config = RegistryConfig(root=tmp_path / "root", max_uploads_per_repository=2)
    registry = Registry(FilesystemDriver(config.root), _Null(), config)
    a, _ = registry.start_upload("r"), registry.start_upload("r")
    with pytest.raises(TooManyUploads):
        registry.start_upload("r")
    registry.start_upload("other")
    registry.cancel_upload("r", a.upload_id)
    registry.start_upload("r")
    # A restarted registry counts the sessions it finds on disk.
    again = Registry(FilesystemDriver(config.root), _Null(), config)
    with pytest.raises(TooManyUploads):
        again.start_upload("r")


def test_full_disk_while_starting_leaves_no_session(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(path: str, data: bytes) -> None:
        raise StorageFull("registry storage is full (test)")

    monkeypatch.setattr(registry.storage, "put_bytes", full)
    with pytest.raises(StorageFull):
        registry.start_upload("r")
    assert registry.storage.list("uploads") == []


def test_enospc_in_a_chunk_is_storage_full_and_rolled_back(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = registry.start_upload("r")
    writer = registry.open_chunk("r", status.upload_id)
    writer.write(b"kept? no")
    real_write = os.write

    def enospc(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", enospc)
    with pytest.raises(StorageFull) as caught:
        writer.write(b"more")
    monkeypatch.setattr(os, "write", real_write)
    writer.abort()
    assert "storage is full" in str(caught.value)
    assert registry.upload_status("r", status.upload_id).offset == 0


def test_storage_full_maps_to_resource_exhausted_and_one_cli_line(capsys: pytest.CaptureFixture[str]) -> None:
    exc = StorageFull("registry storage is full (write: No space left on device)")
    code, message = to_status(exc)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "storage is full" in message

    class Failed(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return code

        def details(self) -> str:
            return message

    native = to_native(Failed())
    assert isinstance(native, core.ResourceExhausted)
    from dockyard.cli.output import fail

    assert fail(Failed()) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "storage is full" in err and "Traceback" not in err


def test_names_tags_and_manifests_refuse_what_used_to_slip_through() -> None:
    for bad in ("abc\n", "a\nb", "abc\r"):
        with pytest.raises(NameInvalid):
            validate_name(bad)
    with pytest.raises(ManifestInvalid):
        parse_manifest(b"[" * 100_000 + b"]" * 100_000)


def test_connection_limit_leaves_room_and_loop_errors_are_rate_limited(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert default_connection_limit(1024) < 1024 // 2
    assert default_connection_limit(1 << 20) == 10_000
    handler = RateLimitedExceptionHandler(interval=60)
    err = OSError(errno.EMFILE, "Too many open files")
    for _ in range(1000):
        handler(None, {"message": "socket.accept() out of system resource", "exception": err})  # type: ignore[arg-type]
    assert capsys.readouterr().out.count("event loop error") <= 1
    guard = ConnectionGuard(limit=3, idle_timeout=60)
    assert guard.stats()["open"] == 0  # unbound: counts nothing, refuses nothing


class _Null:
    def publish(self, event: object) -> None:
        pass


def test_info_shows_the_registry_free_space() -> None:
    from dockyard.cli.info import storage_line

    details = {"storage_free_bytes": str(3 << 30), "storage_total_bytes": str(20 << 30), "storage": "/s"}
    assert storage_line("registry", details) == "Storage:   registry 3.0 GiB free of 20.0 GiB (15 %) at /s"
    nearly_full = {"storage_free_bytes": "1000", "storage_total_bytes": str(4 << 20)}
    assert "LOW" in storage_line("registry", nearly_full)
    assert storage_line("runtime", {}) == ""
