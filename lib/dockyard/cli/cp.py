"""``dockyard cp``: copy between a container and this machine, as a tar stream.

``cp CONTAINER:SRC DEST`` extracts what the server sends into DEST (``-`` writes the tar to
stdout). Like docker: if DEST is an existing directory SRC lands inside it, otherwise SRC is
copied *as* DEST. Extraction is contained: a member whose path is absolute or climbs with "..",
or that would be written through a symlink (or hard-linked to a file) outside the destination, is
refused and the copy stops with one line.

``cp SRC CONTAINER:DEST`` tars SRC here (``-``: a tar read from stdin) and streams it, in chunks of
at most 1 MiB with bounded memory, to be extracted into the container's directory DEST.
"""

from __future__ import annotations

import argparse
import io
import os
import tarfile
from collections.abc import Iterator
from typing import IO, Any

CHUNK = 1 << 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-L", "--follow-link", action="store_true", help="follow symlinks in SRC")
    parser.add_argument("-a", "--archive", action="store_true", help="accepted for docker compatibility")
    parser.add_argument("-q", "--quiet", action="store_true", help="accepted for docker compatibility")
    parser.add_argument("source", metavar="SRC", help="CONTAINER:SRC_PATH, a local path, or - (a tar)")
    parser.add_argument("dest", metavar="DEST", help="CONTAINER:DEST_PATH, a local path, or - (a tar)")


def split_arg(arg: str) -> tuple[str | None, str]:
    """(container, path) for CONTAINER:PATH; (None, path) for a local path. Docker's rule: an
    absolute path, or anything whose part before ":" starts with ".", is local."""
    if arg == "-" or os.path.isabs(arg):
        return None, arg
    container, sep, path = arg.partition(":")
    if not sep or container.startswith(".") or not container:
        return None, arg
    return container, path


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _member_path(name: str, rename: tuple[str, str] | None) -> str:
    """The member's relative path after the optional first-component rename; refuses escapes."""
    from dockyard.core.errors import InvalidArgument

    if name.startswith("/") or os.path.isabs(name):
        raise InvalidArgument(f"refusing to extract {name!r}: absolute path in the archive")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"refusing to extract {name!r}: it climbs out of the destination")
    if rename and parts:
        if parts[0] != rename[0]:
            raise InvalidArgument(f"refusing to extract {name!r}: outside the copied {rename[0]!r}")
        parts[0] = rename[1]
    return os.path.join(*parts) if parts else ""


def _check_parent(target: str, root: str, name: str) -> None:
    """The nearest existing ancestor of ``target`` must resolve inside ``root`` (no symlink escape)."""
    from dockyard.core.errors import InvalidArgument

    parent = os.path.dirname(target)
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not _inside(os.path.realpath(parent), root):
        raise InvalidArgument(f"refusing to extract {name!r}: it would be written through a symlink outside")


def extract(fileobj: IO[bytes], dest: str, rename: tuple[str, str] | None = None) -> int:
    """Extract a tar stream into directory ``dest``, contained; returns the number of members.

    ``rename`` = (old, new) renames the archive's top-level entry ``old`` to ``new`` (docker's
    copy-as). Ownership is not restored (rootless); modes and mtimes are.
    """
    from dockyard.core.errors import InvalidArgument

    root = os.path.realpath(dest)
    count = 0
    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
        for member in tar:
            rel = _member_path(member.name, rename)
            if not rel:
                continue  # the archive's "." entry: the destination itself, left as it is
            target = os.path.join(root, rel)
            _check_parent(target, root, member.name)
            if member.isdir():
                if os.path.islink(target):
                    raise InvalidArgument(f"refusing to extract {member.name!r}: a symlink is in the way")
                os.makedirs(target, exist_ok=True)
            elif member.isfile() or member.issym() or member.islnk():
                os.makedirs(os.path.dirname(target), exist_ok=True)
                _check_parent(target, root, member.name)
                if os.path.islink(target) or (os.path.lexists(target) and not os.path.isdir(target)):
                    os.unlink(target)
                if member.isfile():
                    source = tar.extractfile(member)
                    assert source is not None
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
                    with os.fdopen(fd, "wb") as out:
                        while block := source.read(CHUNK):
                            out.write(block)
                elif member.issym():
                    os.symlink(member.linkname, target)
                else:
                    link_rel = _member_path(member.linkname, rename)
                    link = os.path.join(root, link_rel)
                    if not link_rel or not _inside(os.path.realpath(link), root):
                        raise InvalidArgument(f"refusing to extract {member.name!r}: hard link outside")
                    os.link(link, target)
            else:
                continue  # devices, fifos: not copied (rootless cannot make devices anyway)
            if not member.issym():
                os.chmod(target, member.mode & 0o777)
                os.utime(target, (member.mtime, member.mtime))
            count += 1
    return count


def tar_chunks(path: str, arcname: str, follow_links: bool = False) -> Iterator[bytes]:
    """Tar ``path`` as ``arcname`` in a thread, yielding chunks of at most 1 MiB (bounded queue)."""
    import queue
    import threading

    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=8)

    class _Writer(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            view = memoryview(data)
            for i in range(0, len(view), CHUNK):
                chunks.put(bytes(view[i : i + CHUNK]))
            return len(view)

    def produce() -> None:
        try:
            with tarfile.open(fileobj=_Writer(), mode="w|", dereference=follow_links) as tar:
                tar.add(path, arcname=arcname)
            chunks.put(None)
        except BaseException as exc:
            chunks.put(exc)

    threading.Thread(target=produce, name="tar", daemon=True).start()
    while (item := chunks.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        yield item


def _read_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while block := stream.read(CHUNK):
        yield block


def run(args: argparse.Namespace) -> int:
    import sys

    from dockyard.api.containers.v1 import containers_pb2 as pb
    from dockyard.api.containers.v1 import containers_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.core.errors import InvalidArgument, NotFound

    src_ctr, src = split_arg(args.source)
    dst_ctr, dst = split_arg(args.dest)
    if src_ctr and dst_ctr:
        raise InvalidArgument("copying between containers is not supported")
    if not src_ctr and not dst_ctr:
        raise InvalidArgument("one of SRC and DEST must be CONTAINER:PATH")
    with channel(args.host) as ch:
        stub = containers_pb2_grpc.ContainersStub(ch)
        if src_ctr:
            chunks = (c.data for c in stub.CopyFrom(pb.CopyFromRequest(id=src_ctr, path=src)))
            if dst == "-":
                out = sys.stdout.buffer
                for block in chunks:
                    out.write(block)
                out.flush()
                return 0
            from dockyard.core.streams import ChunkReader

            reader = io.BufferedReader(ChunkReader(chunks), CHUNK)
            base = os.path.basename(os.path.normpath(src))
            if src.endswith("/.") or not base or base == "/":  # the server sends what is inside
                os.makedirs(dst, exist_ok=True)
                extract(reader, dst)
            elif os.path.isdir(dst):
                extract(reader, dst)
            else:
                parent = os.path.dirname(os.path.abspath(dst))
                if not os.path.isdir(parent):
                    raise NotFound(f"destination directory {parent!r} does not exist")
                extract(reader, parent, rename=(base, os.path.basename(os.path.abspath(dst))))
            return 0
        assert dst_ctr is not None
        if src == "-":
            data = _read_chunks(sys.stdin.buffer)
        else:
            if not os.path.lexists(src):
                raise NotFound(f"no such file or directory: {src}")
            data = tar_chunks(src, os.path.basename(os.path.normpath(src)), args.follow_link)

        def requests() -> Iterator[Any]:
            yield pb.CopyToInput(target=pb.CopyFromRequest(id=dst_ctr, path=dst))
            for block in data:
                yield pb.CopyToInput(data=block)

        stub.CopyTo(requests())
    return 0
