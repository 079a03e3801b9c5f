"""``client.builds``: build an image from a Dockerfile and a context directory, as docker does.

The context is walked once, filtered by ``.dockerignore`` (``<Dockerfile>.dockerignore`` first)
with pruning of excluded directories, and streamed to the builder as an uncompressed tar in 1 MiB
chunks by a producer thread (a bounded queue: never the whole context in memory).

What the tar holds: regular files, dirs, symlinks (never followed), and hard links — the
second and later names of one inode go as tar hard links to the first name sent, so both
reach the build (the builder links them again, inside the context only). Sockets, fifos and
device nodes are left out: docker skips sockets, and the builder makes none of them anyway
(no COPY can carry one into a layer), so sending them could only fail or block.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from dockyard.api.builds.v1 import builds_pb2 as pb
from dockyard.api.builds.v1 import builds_pb2_grpc
from dockyard.client.calls import Stream
from dockyard.client.types import BuildOptions, BuildProgress
from dockyard.core.errors import DockyardError, Internal, InvalidArgument

CHUNK = 1 << 20


class Builds:
    def __init__(self, channel: Any) -> None:
        self._stub = builds_pb2_grpc.BuildsStub(channel)

    def build(
        self, options: BuildOptions, *, on_progress: Callable[[BuildProgress], None] | None = None
    ) -> str:
        """Build ``options.context``; the new image's id. ``on_progress`` sees every step and line."""
        root = Path(options.context)
        content, name = read_dockerfile(root, str(root / options.dockerfile))  # / keeps an absolute one
        for event in self.build_from_options(options.to_pb(name, content), root):
            if event.status == "result":
                return str(event.image_id)
            if on_progress is not None:
                on_progress(BuildProgress.from_pb(event))
        raise Internal("the build ended without a result")

    def build_from_options(self, options: Any, context: Path) -> Stream[Any]:
        """The builder's progress messages for the wire BuildOptions ``options`` (the CLI's, whose
        flags reach beyond :class:`BuildOptions`) and the context directory ``context``."""

        unreadable: list[OSError] = []
        if not options.HasField("source_date_epoch") and "SOURCE_DATE_EPOCH" not in options.build_args:
            commit_time = git_commit_time(context)
            if commit_time is not None:  # the image's time is its commit's (engine.py, "Reproducible")
                options.source_date_epoch = commit_time

        def requests() -> Iterator[Any]:
            yield pb.BuildInput(options=options)
            try:
                for block in context_chunks(context, options.dockerfile or "Dockerfile"):
                    yield pb.BuildInput(context_chunk=block)
            except OSError as exc:  # gRPC cancels the call (the builder gets no half context) and
                unreadable.append(exc)  # says only "Exception iterating requests!": the stream says why
                raise

        return _ContextStream(self._stub.Build(requests()), lambda event: event, unreadable)

    def build_from_tar(
        self, options: BuildOptions, dockerfile: bytes, context: Iterable[bytes]
    ) -> Stream[BuildProgress]:
        """Build from a context that is already a tar (uncompressed, streamed from ``context``),
        with the Dockerfile's bytes given (``options.dockerfile`` names it in messages;
        ``options.context`` is not read). Each step and line, the last one ``result`` with the id."""
        wire = options.to_pb(options.dockerfile, dockerfile)

        def requests() -> Iterator[Any]:
            yield pb.BuildInput(options=wire)
            for block in context:
                yield pb.BuildInput(context_chunk=block)

        return Stream(self._stub.Build(requests()), BuildProgress.from_pb)


class _ContextStream(Stream[Any]):
    """A build's progress; when reading the context failed, that failure is the call's error."""

    def __init__(self, call: Any, convert: Callable[[Any], Any], unreadable: list[OSError]) -> None:
        super().__init__(call, convert)
        self._unreadable = unreadable

    def __next__(self) -> Any:
        try:
            return super().__next__()
        except DockyardError:
            if self._unreadable:
                exc = self._unreadable[0]
                where = f": {exc.filename}" if exc.filename else ""
                raise InvalidArgument(f"error from sender: {exc.strerror or exc}{where}") from None
            raise


def git_commit_time(root: Path) -> int | None:
    """HEAD's commit time when ``root`` is in a git work tree; None otherwise, or without git."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run(
            [git, "-C", str(root), "log", "-1", "--format=%ct"],
            capture_output=True,
            text=True,
            timeout=10,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = done.stdout.strip()
    return int(out) if done.returncode == 0 and out.isdigit() else None


def read_dockerfile(root: Path, file: str = "") -> tuple[bytes, str]:
    """The Dockerfile's bytes and its name relative to the context (``file``: empty for
    ``<root>/Dockerfile``, else a path as docker's ``-f`` takes it: anywhere)."""
    if not root.is_dir():
        raise InvalidArgument(f"unable to prepare context: path {str(root)!r} is not a directory")
    path = Path(file) if file else root / "Dockerfile"
    try:
        content = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise InvalidArgument(
            f"failed to read the Dockerfile: open {path}: no such file or directory"
        ) from None
    try:
        name = str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        name = path.name
    return content, name


def context_entries(root: Path, dockerfile: str = "Dockerfile") -> Iterator[tuple[str, Path]]:
    """``(relative path, path)`` of what the context sends, sorted, dirs before their contents;
    a symlink is sent as one, never descended."""
    from dockyard.core.dockerignore import DockerIgnore, MatchInfo, ignore_file_candidates

    ignore = DockerIgnore([])
    for name in ignore_file_candidates(dockerfile):
        candidate = root / name
        if candidate.is_file():
            ignore = DockerIgnore.from_text(candidate.read_bytes())
            break

    def walk(directory: Path, prefix: str, info: MatchInfo | None) -> Iterator[tuple[str, Path]]:
        for name in sorted(os.listdir(directory)):
            path = directory / name
            rel = prefix + name
            excluded, sub = ignore.match(rel, info)
            is_dir = path.is_dir() and not path.is_symlink()
            if is_dir:
                if excluded and ignore.can_prune(rel):
                    continue
                if not excluded:
                    yield rel, path
                yield from walk(path, rel + "/", sub)
            elif not excluded:
                yield rel, path

    yield from walk(root, "", None)


def context_chunks(root: Path, dockerfile: str) -> Iterator[bytes]:
    """The context as an uncompressed tar, in chunks, made by a producer thread (bounded queue)."""
    import queue
    import tarfile
    import threading

    q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=8)
    stop = threading.Event()

    class Sink:
        def __init__(self) -> None:
            self.buf = bytearray()

        def write(self, data: bytes) -> int:
            self.buf.extend(data)
            if len(self.buf) >= CHUNK:
                self.flush()
            return len(data)

        def flush(self) -> None:
            if self.buf:
                while not stop.is_set():
                    try:
                        q.put(bytes(self.buf), timeout=0.5)
                        break
                    except queue.Full:
                        continue
                self.buf.clear()

    def produce() -> None:
        sink = Sink()
        try:
            with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                for rel, path in context_entries(root, dockerfile):
                    if stop.is_set():
                        return
                    info = tar.gettarinfo(str(path), rel)  # a second name of an inode: LNKTYPE
                    if info is None or not (info.isreg() or info.islnk() or info.isdir() or info.issym()):
                        continue  # a socket, fifo or device: not part of a context (see module doc)
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    if info.isreg():
                        with open(path, "rb") as fh:
                            tar.addfile(info, fh)
                    else:
                        tar.addfile(info)
            sink.flush()
            q.put(None)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)

    thread = threading.Thread(target=produce, name="context", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
