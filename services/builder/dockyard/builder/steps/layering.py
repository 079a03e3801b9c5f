"""What the layer-making steps share: where a path lands in the parent image, ``--chown`` names,
and a layer tar streamed from the thread that writes it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import posixpath
from collections.abc import AsyncIterator, Callable

from dockyard.builder.layers import Existing, HashSink, Owner, chown_names, parse_chown, tar_file_text
from dockyard.builder.node import Image, Runtime
from dockyard.core.errors import InvalidArgument, NotFound

CHUNK = 1 << 20


async def into(rt: Runtime, parent: str, dest: str, as_dir: bool) -> tuple[str, dict[str, Existing]]:
    """Where a COPY to ``dest`` lands in the ``parent`` image, and the directories on the way
    that the image has: a layer must keep their owner and mode (COPY into /tmp leaves it
    1777) and must follow their symlinks (/bin -> usr/bin), as docker's COPY does."""
    if not parent:
        return dest, {}
    folder = dest if as_dir else posixpath.dirname(dest)
    prefixes = path_prefixes(folder)
    found = await rt.stat_paths(parent, prefixes)
    deepest = next((p for p in reversed(prefixes) if p in found), None)
    if deepest is not None and found[deepest].resolved != deepest:
        resolved = posixpath.join(found[deepest].resolved, posixpath.relpath(folder, deepest))
        folder = posixpath.normpath(resolved)
        dest = folder if as_dir else posixpath.join(folder, posixpath.basename(dest))
        found = await rt.stat_paths(parent, path_prefixes(folder))
    existing = {
        path.lstrip("/"): Existing(st.mode & 0o7777, Owner(st.uid, st.gid))
        for path, st in found.items()
        if st.is_dir
    }
    return dest, existing


async def owner_of(rt: Runtime, chown: str, current: Image | None) -> Owner:
    """``--chown`` as ids: names through the destination image's /etc/passwd and /etc/group."""
    user_named, group_named = chown_names(chown)
    passwd = await etc_text(rt, current, "passwd") if user_named else None
    group = await etc_text(rt, current, "group") if group_named else None
    return parse_chown(chown, passwd, group)


async def etc_text(rt: Runtime, image: Image | None, name: str) -> str | None:
    """The text of ``/etc/<name>`` in ``image`` (None when it has none), at most 16 MiB."""
    if image is None:
        return None
    buf = io.BytesIO()

    def out(data: bytes) -> None:
        if buf.tell() + len(data) > 16 << 20:
            raise InvalidArgument(f"--chown: the image's /etc/{name} is larger than 16 MiB")
        buf.write(data)

    try:
        await rt.copy_from(image.id, f"/etc/{name}", out)
    except NotFound:
        return None
    return tar_file_text(buf.getvalue())


def path_prefixes(path: str) -> list[str]:
    """``/a/b/c`` → ``["/a", "/a/b", "/a/b/c"]``."""
    parts = [p for p in path.split("/") if p]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


async def stream_from_thread(write: Callable[[HashSink], None]) -> AsyncIterator[bytes]:
    """Run ``write`` in a thread; yield what it writes, in chunks of about 1 MiB (bounded queue)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)
    buf = bytearray()

    def put(data: bytes) -> None:
        buf.extend(data)
        if len(buf) >= CHUNK:
            asyncio.run_coroutine_threadsafe(queue.put(bytes(buf)), loop).result()
            buf.clear()

    def produce() -> None:
        try:
            write(HashSink(put))
            if buf:
                asyncio.run_coroutine_threadsafe(queue.put(bytes(buf)), loop).result()
        finally:
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

    task = asyncio.ensure_future(asyncio.to_thread(produce))
    try:
        while (chunk := await queue.get()) is not None:
            yield chunk
    finally:
        if not task.done():
            # the consumer went away: drain so the producer can finish
            while not task.done():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                await asyncio.sleep(0)
        await task
