"""Metadata steps (ENV LABEL CMD ENTRYPOINT USER …): a new config and an ``empty_layer`` history
entry (``imageconfig.apply``) → ``configure``; ARG leaves no history (BuildKit).

WORKDIR sets the config and, as BuildKit does, makes the directory when the image lacks it
(``mkdir -p``, 0755, owned by the USER): a layer then, an ``empty_layer`` entry otherwise.
"""

from __future__ import annotations

from typing import Any

from dockyard.builder import imageconfig
from dockyard.builder import instructions as ins
from dockyard.builder.cache import step_key
from dockyard.builder.imageconfig import StageState
from dockyard.builder.layers import HashSink, LayerWriter, Owner
from dockyard.builder.node import Image, StepSpec
from dockyard.builder.steps.context import StepContext, config_key
from dockyard.builder.steps.layering import into, owner_of, path_prefixes, stream_from_thread
from dockyard.core.errors import InvalidArgument

METADATA = (
    ins.Env,
    ins.Label,
    ins.Cmd,
    ins.Entrypoint,
    ins.Workdir,
    ins.User,
    ins.Expose,
    ins.Volume,
    ins.StopSignal,
    ins.Shell,
    ins.Healthcheck,
    ins.Onbuild,
    ins.Maintainer,
)


async def workdir_step(
    ctx: StepContext, inst: ins.Workdir, current: Image | None, config: dict[str, Any], state: StageState
) -> tuple[Image | None, bool]:
    """WORKDIR: the config, and the dir made when the image lacks it (see the module docstring)."""
    new = imageconfig.apply(config, inst, state)
    line = imageconfig.created_by(inst, new)
    parent = current.id if current is not None else ""
    user = str(config.get("User") or "")
    # whether the dir exists is a function of the parent: a hit needs no look at the image
    key = step_key("workdir", parent, line, config_key(new), user, str(ctx.epoch))
    hit = await ctx.lookup(key)
    if hit is not None:
        return hit, True
    wd = str(new.get("WorkingDir") or "/")
    dest, existing = await into(ctx.rt, parent, wd, True) if wd != "/" else ("/", {})
    cached = False
    if dest == "/" or dest.strip("/") in existing:
        image, cached = await meta_step(ctx, current, new, line)
    else:
        try:  # BuildKit's mkdir takes the USER's ids, 0:0 for one it cannot find
            owner = await owner_of(ctx.rt, user, current)
        except InvalidArgument:
            owner = Owner()

        def write(sink: HashSink) -> None:
            writer = LayerWriter(sink, ctx.epoch, existing)
            for prefix in path_prefixes(dest):
                writer.dir(prefix.lstrip("/"), 0o755, owner)
            writer.close()

        image = await ctx.rt.add_layer(StepSpec(parent, new, line, ctx.epoch), stream_from_thread(write))
    ctx.remember(key, image)
    return image, cached


async def meta_step(
    ctx: StepContext, parent: Image | None, config: dict[str, Any], line: str
) -> tuple[Image, bool]:
    """A metadata step: ``parent`` with ``config`` and an empty_layer history entry."""
    key = step_key("meta", parent.id if parent else "", line, config_key(config), str(ctx.epoch))
    hit = await ctx.lookup(key)
    if hit is not None:
        return hit, True
    image = await ctx.rt.configure(StepSpec(parent.id if parent else "", config, line, ctx.epoch))
    ctx.remember(key, image)
    return image, False
