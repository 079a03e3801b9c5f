"""What the builder asks of a node: a build step stored as an image (the builder owns the semantics).

The builder (``dockyard.builder``) decides what every Dockerfile instruction does to an image
config and makes COPY/ADD layers itself; a node only stores the results, so a step is one call:

- :meth:`BuildSteps.add_layer` — a layer tar (streamed) on a parent, with a history entry and
  the new config section (COPY, ADD);
- :meth:`BuildSteps.configure` — the parent with a new config section and an ``empty_layer``
  history entry (ENV, LABEL, CMD, …);
- :meth:`BuildSteps.commit_container` — a RUN step's container's writable layer, without the
  mount stubs runc made (``/proc``, ``/dev``, ``/etc/resolv.conf`` … that the image lacked), with
  file times clamped to ``clamp_mtime`` when given (reproducible layers), the config unchanged;
- :meth:`BuildSteps.squash` — the layers an image has above a base merged into one (``--squash``);
- :meth:`BuildSteps.stat_paths` — what a COPY writes into: existing directories' owner and mode,
  symlinks followed (read from the unpacked layers, no container needed).

Every result is an ordinary (untagged unless asked) image of the node's store; the same step on
the same parent with the same bytes and times is the same image id. Costs: one pass over a
streamed layer (spooled to the store's tmp, then ingested); a commit writes the layer once and
rewrites it once more (filter and clamp) — about twice the bytes of the change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dockyard.core.errors import InvalidArgument
from dockyard.core.fsutil import follow_in_root
from dockyard.runtime.images.store import ImageRecord, ImageStore
from dockyard.runtime.layerdiff import LowerView, write_layer
from dockyard.runtime.squash import merge_layers

_CHUNK = 1 << 20


class BuildSteps:
    """Build steps on one node's store; ``manager`` is the ContainerManager (for RUN commits)."""

    def __init__(self, store: ImageStore, manager: Any) -> None:
        self.store = store
        self.m = manager

    def _parent(self, ref: str) -> ImageRecord | None:
        return self.store.resolve(ref) if ref else None

    def add_layer(
        self,
        parent: str,
        chunks: Iterable[bytes],
        *,
        config: dict[str, Any] | None,
        created_by: str,
        created: str | None,
        comment: str = "",
        reference: str | None = None,
        history: list[dict[str, Any]] | None = None,
    ) -> ImageRecord:
        """``chunks`` (an uncompressed layer tar) on ``parent`` ("" = scratch); ``history``:
        entries without a layer to put before the step's (the builder's metadata steps)."""
        base = self._parent(parent)
        fd, name = tempfile.mkstemp(prefix="step-", suffix=".tar", dir=self.store.tmp)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
            _check_tar(tmp)
            return self.store.add_step(
                base,
                tmp,
                config=config,
                created_by=created_by,
                created=created,
                comment=comment,
                reference=reference,
                history=history,
            )
        finally:
            tmp.unlink(missing_ok=True)

    def configure(
        self,
        parent: str,
        *,
        config: dict[str, Any] | None,
        created_by: str,
        created: str | None,
        comment: str = "",
        reference: str | None = None,
        history: list[dict[str, Any]] | None = None,
    ) -> ImageRecord:
        """``parent`` with a new config section and an empty_layer history entry (after ``history``)."""
        return self.store.add_step(
            self._parent(parent),
            None,
            config=config,
            created_by=created_by,
            created=created,
            comment=comment,
            reference=reference,
            history=history,
        )

    async def commit_container(
        self,
        container: str,
        *,
        created_by: str,
        created: str | None,
        clamp_mtime: int | None,
        config: dict[str, Any] | None = None,
        comment: str = "",
        reference: str | None = None,
        history: list[dict[str, Any]] | None = None,
    ) -> ImageRecord:
        """The container's changes as a layer on its image (the image's config kept unless given)."""
        record = self.m.get(container)
        image = await asyncio.to_thread(self.store.resolve, record.image_id)
        lowers = await asyncio.to_thread(self.store.layer_dirs, image)
        stubs = _mount_targets(self.m.root / record.id / "bundle" / "config.json")
        fd, raw_name = tempfile.mkstemp(prefix="run-", suffix=".tar", dir=self.store.tmp)
        raw = Path(raw_name)
        clean = raw.with_name(raw.name + ".clean")
        try:
            with os.fdopen(fd, "wb") as out:
                await asyncio.to_thread(self.m.snapshots.write_layer, record.id, lowers, out)
            await asyncio.to_thread(rewrite_layer, raw, clean, stubs, lowers, clamp_mtime)
            return await asyncio.to_thread(
                self.store.add_step,
                image,
                clean,
                config=config,
                created_by=created_by,
                created=created,
                comment=comment,
                reference=reference,
                history=history,
            )
        finally:
            await asyncio.to_thread(_unlink, raw, clean)

    def squash(self, image: str, base: str, *, created_by: str, created: str | None) -> ImageRecord:
        """``image`` with the layers it has above ``base`` ("" = scratch) merged into one (see
        ``squash.py``); their history entries are kept, marked ``empty_layer``."""
        record = self.store.resolve(image)
        under = self._parent(base)
        below = under.chain_ids if under is not None else []
        if record.chain_ids[: len(below)] != below:
            raise InvalidArgument(f"cannot squash: {base} is not a base of {image}")
        dirs = self.store.layer_dirs(record)
        if len(dirs) - len(below) <= 1:
            return record  # nothing to merge
        doc = self.store.config(record)
        kept = len(self.store.config(under).get("history", [])) if under is not None else 0
        history = [{**h, "empty_layer": True} for h in doc.get("history", [])[kept:]]
        upper = Path(tempfile.mkdtemp(prefix="squash-", dir=self.store.tmp))
        tar = upper.with_name(upper.name + ".tar")
        try:
            merge_layers(dirs[len(below) :], upper)
            with open(tar, "wb") as out:
                write_layer(upper, dirs[: len(below)], out)
            return self.store.add_step(
                under, tar, config=doc.get("config"), created_by=created_by, created=created, history=history
            )
        finally:
            shutil.rmtree(upper, ignore_errors=True)
            tar.unlink(missing_ok=True)

    def stat_paths(self, image: str, paths: Iterable[str]) -> list[tuple[str, str, os.stat_result]]:
        """``(path, resolved path, stat)`` of each absolute path that exists in ``image``."""
        lowers = self.store.layer_dirs(self.store.resolve(image))
        out = []
        for path in paths:
            found = resolve_in_layers(lowers, path)
            if found is not None:
                out.append((path, *found))
        return out


def resolve_in_layers(lowers: list[Path], path: str) -> tuple[str, os.stat_result] | None:
    """Follow ``path`` (absolute, inside the image the ``lowers`` make) through symlinks, never
    above its root; the resolved path and its stat, or None if it does not exist."""
    view = LowerView(lowers)

    def look(rel: str) -> os.stat_result | None:
        found = view.lookup(rel)
        return found[0] if found is not None else None

    def readlink(rel: str) -> str:
        found = view.lookup(rel)
        return os.readlink(found[1]) if found is not None else ""

    reached = follow_in_root(path, look, readlink)
    if reached is None:
        return None
    rel, st = reached
    st = st if st is not None else look("")  # the root
    return ("/" + rel, st) if st is not None else None


def _unlink(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _check_tar(path: Path) -> None:
    try:
        with tarfile.open(path, "r:") as tf:
            for m in tf:
                parts = m.name.split("/")
                if m.name.startswith("/") or ".." in parts:
                    raise InvalidArgument(f"layer member {m.name!r} leaves the root")
    except tarfile.TarError as exc:
        raise InvalidArgument(f"not an uncompressed tar: {exc}") from None


def _mount_targets(config_json: Path) -> set[str]:
    """The mount destinations of a container's OCI spec, relative (``proc``, ``etc/hosts``)."""
    try:
        spec = json.loads(config_json.read_bytes())
    except (OSError, ValueError):
        return set()
    out = set()
    for mount in spec.get("mounts") or []:
        dest = posixpath.normpath("/" + str(mount.get("destination") or "")).lstrip("/")
        if dest:
            out.add(dest)
    return out


def rewrite_layer(
    src: Path, dst: Path, mount_targets: set[str], lowers: list[Path], clamp_mtime: int | None
) -> None:
    """Copy layer tar ``src`` to ``dst`` without mount stubs, file times clamped to ``clamp_mtime``.

    A stub is a member at a mount target (or a parent dir made only for one) that the image did
    not have and that holds nothing else: runc makes them to mount on; docker's builds drop them.
    Member order and everything else is kept; PAX time records are dropped when clamping.
    """
    view = LowerView(lowers)
    candidates: set[str] = set()
    soft: dict[str, os.stat_result] = {}  # parents the image has: dropped only if unchanged
    for target in mount_targets:
        path = target
        while path and view.lookup(path) is None:
            candidates.add(path)
            path = posixpath.dirname(path)
        while path and path != target:
            found = view.lookup(path)
            if found is not None and stat.S_ISDIR(found[0].st_mode):
                soft[path] = found[0]
                candidates.add(path)
            path = posixpath.dirname(path)
    with tarfile.open(src, "r:") as tf:
        members = tf.getmembers()
        names = [m.name.rstrip("/") for m in members]
        keep_under: set[str] = set()  # candidates with a non-candidate member below them
        for name in names:
            if name in candidates:
                continue
            parent = posixpath.dirname(name)
            while parent:
                if parent in candidates:
                    keep_under.add(parent)
                parent = posixpath.dirname(parent)
        drop = candidates - keep_under
        with open(dst, "wb") as fh, tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as out:
            for member, name in zip(members, names, strict=True):
                if name in drop:
                    low = soft.get(name)
                    if low is None or (
                        member.isdir()
                        and member.mode == stat.S_IMODE(low.st_mode)
                        and (member.uid, member.gid) == (low.st_uid, low.st_gid)
                    ):
                        continue
                if clamp_mtime is not None and member.mtime > clamp_mtime:
                    member.mtime = clamp_mtime
                if clamp_mtime is not None:
                    times = ("mtime", "atime", "ctime")
                    member.pax_headers = {k: v for k, v in member.pax_headers.items() if k not in times}
                member.uname = member.gname = ""
                data = tf.extractfile(member) if member.isreg() else None
                with contextlib.closing(data) if data is not None else contextlib.nullcontext():
                    out.addfile(member, data)
