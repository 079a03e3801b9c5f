"""Metadata steps (ENV LABEL CMD ENTRYPOINT USER …): a new config and a pending history line on
the stage's ``Head`` (``imageconfig.apply``), in memory: no image is stored for them (``head.py``).
ARG leaves no history (BuildKit).

WORKDIR sets the config and, as BuildKit does, makes the directory when the image lacks it
(``mkdir -p``, 0755, owned by the USER): a layer then, stored with what is pending; a metadata
step otherwise.

``store_head``: a head with pending steps as an image (a stage's end, the build's ``--label``):
one ``configure`` with the last pending line as its entry and the others before it.
"""

from __future__ import annotations

from dockyard.builder import imageconfig
from dockyard.builder import instructions as ins
from dockyard.builder.cache import step_key
from dockyard.builder.head import Head
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


def meta_step(head: Head, inst: ins.Instruction, state: StageState) -> Head:
    """A metadata step: the head with its config and its history line pending."""
    new = imageconfig.apply(head.config, inst, state)
    return head.then(new, imageconfig.created_by(inst, new))


async def workdir_step(
    ctx: StepContext, inst: ins.Workdir, head: Head, state: StageState
) -> tuple[Head, bool | None]:
    """WORKDIR: the config, and the dir made when the image lacks it (see the module docstring);
    whether it was cached, None when it stored nothing (a metadata step)."""
    new = imageconfig.apply(head.config, inst, state)
    line = imageconfig.created_by(inst, new)
    user = str(head.config.get("User") or "")
    # whether the dir exists is a function of the parent: a hit needs no look at the image
    key = step_key("workdir", head.ident(), line, config_key(new), user, str(ctx.epoch))
    hit = await ctx.lookup(key)
    if hit is not None:
        return Head.of(hit), True
    wd = str(new.get("WorkingDir") or "/")
    dest, existing = await into(ctx.rt, head.parent, wd, True) if wd != "/" else ("/", {})
    if dest == "/" or dest.strip("/") in existing:
        return head.then(new, line), None
    try:  # BuildKit's mkdir takes the USER's ids, 0:0 for one it cannot find
        owner = await owner_of(ctx.rt, user, head.image)
    except InvalidArgument:
        owner = Owner()

    def write(sink: HashSink) -> None:
        writer = LayerWriter(sink, ctx.epoch, existing)
        for prefix in path_prefixes(dest):
            writer.dir(prefix.lstrip("/"), 0o755, owner)
        writer.close()

    spec = StepSpec(head.parent, new, line, ctx.epoch, history=head.pending)
    image = await ctx.rt.add_layer(spec, stream_from_thread(write))
    ctx.remember(key, image)
    return Head.of(image), False


async def store_head(ctx: StepContext, head: Head) -> tuple[Image | None, bool]:
    """``head`` as a stored image (see the module docstring); whether it was cached."""
    if not head.pending:  # an ONBUILD-cleared config and no step since: nothing to store (as before)
        if head.image is None or not head.config_changed:
            return head.image, True
        return Image(head.image.id, {**head.image.doc, "config": head.config}), True
    key = step_key("head", head.ident(), str(ctx.epoch))
    hit = await ctx.lookup(key)
    if hit is not None:
        return hit, True
    *before, last = head.pending
    spec = StepSpec(head.parent, head.config, last, ctx.epoch, history=tuple(before))
    image = await ctx.rt.configure(spec)
    ctx.remember(key, image)
    return image, False
