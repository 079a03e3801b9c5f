"""COPY and ADD: a reproducible layer tar (``layers.py``) → ``add_layer``.

- From the context: its entries; ADD extracts a context file that is a tar (by its bytes) and
  downloads a URL (``download.py``) into the build's scratch dir. The key has the layer's digest,
  computed in a hash-only pass (or ADD's ``--checksum``, so that a hit downloads nothing).
- ``COPY --from``: the stage's files fetched through a created (never started) container (a
  wildcard fetches the dir above it and picks the matches); the key has that image's id.
- ``--chown`` names are looked up in the destination image's ``/etc/passwd`` and ``/etc/group``
  (fetched the same way), only when the step is not cached. ``--link`` is accepted and does what
  COPY does: a COPY layer is already made from its sources alone (the parent is only asked for the
  dirs on the way to the destination); the key keeps the parent, so a changed base re-makes the
  step — cheap, it runs nothing.
"""

from __future__ import annotations

import asyncio
import functools
import os
import posixpath
import shutil
from dataclasses import replace
from pathlib import Path

from dockyard.builder import imageconfig
from dockyard.builder import instructions as ins
from dockyard.builder.cache import step_key
from dockyard.builder.download import check_sources, download, is_url, url_filename
from dockyard.builder.head import Head
from dockyard.builder.layers import (
    Chmod,
    HashSink,
    LayerWriter,
    Owner,
    Source,
    TarSource,
    chown_names,
    context_sources,
    copy_from_tar,
    copy_layer,
    destination,
    is_archive,
    mark_archives,
    mode_of,
    parse_chmod,
    parse_chown,
    split_glob,
    tar_sources,
)
from dockyard.builder.node import Image, Runtime, StepSpec
from dockyard.builder.plan import Step
from dockyard.builder.steps.context import StepContext
from dockyard.builder.steps.layering import into, owner_of, stream_from_thread
from dockyard.core.errors import InvalidArgument, NotFound


async def copy_step(ctx: StepContext, step: Step, inst: ins.Copy | ins.Add, head: Head) -> tuple[Image, bool]:
    """The layer goes on the stored image with the head's config and pending history; the key
    has the head's ident (``head.py``), the files come from the stored image (the same files)."""
    check_sources(inst)
    chmod = parse_chmod(inst.chmod)
    by_name = any(chown_names(inst.chown))
    config = head.config
    workdir = str(config.get("WorkingDir") or "/")
    line = imageconfig.created_by(inst, config)
    parent, ident, current = head.parent, head.ident(), head.image
    if isinstance(inst, ins.Copy) and inst.from_:
        return await copy_from_step(ctx, step, inst, head, chmod, workdir, line)
    checksum = inst.checksum if isinstance(inst, ins.Add) else ""
    if checksum:  # the one source is known by its digest: a hit downloads nothing
        unpack = repr(inst.unpack) if isinstance(inst, ins.Add) else ""
        key = step_key("add-checksum", ident, line, checksum, unpack, workdir, str(ctx.epoch))
        hit = await ctx.lookup(key)
        if hit is not None:
            return hit, True
    work = ctx.new_scratch()
    try:
        sources = await _sources(ctx, inst, work)
        count = len(sources) + len(inst.contents)
        single_file = count == 1 and (not sources or not (sources[0].contents or sources[0].unpack))
        dest, as_dir = destination(inst.dest, workdir, count, single_file)
        dest, existing = await into(ctx.rt, parent, dest, as_dir)

        def write(owner: Owner, sink: HashSink) -> None:
            writer = LayerWriter(sink, ctx.epoch, existing)
            archive_owner = owner if inst.chown else Owner(None, None)
            copy_layer(writer, sources, dest, as_dir, owner, chmod, archive_owner)
            for doc in inst.contents:
                rel = posixpath.join(dest, doc.name) if as_dir else dest
                writer.parents(rel)
                writer.data(rel.lstrip("/"), doc.data.encode(), mode_of(chmod, 0o644, False), owner)
            writer.close()

        # --chown names are looked up only on a miss: the key has the line (--chown=name) and
        # the parent, which fix what they resolve to
        owner = Owner() if by_name else parse_chown(inst.chown)
        probe = HashSink()  # a hash-only pass: the key, and any refusal before a layer is sent
        await asyncio.to_thread(write, owner, probe)
        if not checksum:
            key = step_key("copy", ident, line, probe.digest, str(ctx.epoch))
            hit = await ctx.lookup(key)
            if hit is not None:
                return hit, True
        if by_name:
            owner = await owner_of(ctx.rt, inst.chown, current)
        image = await ctx.rt.add_layer(
            StepSpec(parent, config, line, ctx.epoch, history=head.pending),
            stream_from_thread(functools.partial(write, owner)),
        )
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    ctx.remember(key, image)
    return image, False


async def _sources(ctx: StepContext, inst: ins.Copy | ins.Add, work: Path) -> list[Source]:
    """What a COPY/ADD copies, in order: context entries (ADD: tars marked to be extracted
    unless ``--unpack=false``) and, for ADD, URLs downloaded into ``work``."""
    out: list[Source] = []
    for i, raw in enumerate(inst.sources):
        if isinstance(inst, ins.Add) and is_url(raw):
            got = await download(raw, work / f"url-{i}", inst.checksum, ctx.max_download)
            if got.mtime is not None:
                await asyncio.to_thread(os.utime, got.path, (got.mtime, got.mtime))
            src = Source(got.path, url_filename(raw), contents=False)
            if inst.unpack and await asyncio.to_thread(is_archive, got.path):
                src = replace(src, unpack=True)
            out.append(src)
            continue
        found = await asyncio.to_thread(context_sources, ctx.context, [raw], inst.keyword)
        if isinstance(inst, ins.Add) and inst.unpack is not False:
            found = await asyncio.to_thread(mark_archives, found)
        out.extend(found)
    return out


async def copy_from_step(
    ctx: StepContext,
    step: Step,
    inst: ins.Copy,
    head: Head,
    chmod: Chmod | None,
    workdir: str,
    line: str,
) -> tuple[Image, bool]:
    parent, current = head.parent, head.image
    if step.source_stage is not None:
        source = ctx.stage_result(step.source_stage)
        if source is None:
            raise InvalidArgument(f"COPY --from={inst.from_}: that stage is empty")
    else:
        source = await ctx.image(inst.from_ or "")
    parts = (line, source.id, inst.chown, inst.chmod, workdir, str(ctx.epoch))
    key = step_key("copy-from", head.ident(), *parts)
    hit = await ctx.lookup(key)
    if hit is not None:
        return hit, True
    work = ctx.new_scratch()
    try:
        fetched: list[tuple[Path, list[TarSource]]] = []
        for i, src in enumerate(inst.sources):
            path = work / f"src-{i}.tar"
            found = await _fetch(ctx.rt, source, src, path)
            fetched.append((path, found))
        count = sum(len(found) for _, found in fetched)
        single_file = count == 1 and not fetched[0][1][0].is_dir
        dest, as_dir = destination(inst.dest, workdir, count, single_file)
        dest, existing = await into(ctx.rt, parent, dest, as_dir)
        owner = await owner_of(ctx.rt, inst.chown, current) if inst.chown else Owner(None, None)

        def write(sink: HashSink) -> None:
            writer = LayerWriter(sink, ctx.epoch, existing)
            for path, found in fetched:
                with open(path, "rb") as fh:
                    copy_from_tar(writer, fh, found, dest, as_dir, owner, chmod)
            writer.close()

        spec = StepSpec(parent, head.config, line, ctx.epoch, history=head.pending)
        image = await ctx.rt.add_layer(spec, stream_from_thread(write))
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    ctx.remember(key, image)
    return image, False


async def _fetch(rt: Runtime, image: Image, src: str, path: Path) -> list[TarSource]:
    """Fetch COPY --from's ``src`` of ``image`` into the tar ``path``; the sources in it.

    A wildcard fetches the dir above its first wildcard part and keeps the entries that
    match (NotFound, docker's line, when none does); ``/`` and ``dir/.`` are a dir's contents.
    """
    where, pattern = split_glob(src)
    raw = "/" + src.lstrip("/")
    fh = await asyncio.to_thread(open, path, "wb")
    try:
        fetch = raw if pattern is None else where if where == "/" else where + "/"
        await rt.copy_from(image.id, fetch, fh.write)
    except NotFound:
        if pattern is None:
            raise NotFound(f'COPY failed: "{src}" not found in the source image or stage') from None
        missing = True
    else:
        missing = False
    finally:
        await asyncio.to_thread(fh.close)
    if pattern is None and (where == "/" or raw.endswith("/.")):
        return [TarSource("", True)]

    def scan() -> list[TarSource]:
        with open(path, "rb") as tar:
            return tar_sources(tar, pattern)

    found = [] if missing else await asyncio.to_thread(scan)
    if not found:
        raise NotFound(f'COPY failed: no source files were specified: "{src}" matched nothing')
    return found
