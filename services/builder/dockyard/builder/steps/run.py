"""RUN: a container of the current image (argv through the SHELL, the step's environment, the
image's WorkingDir and User, ``--network``, ``--mount``), attached (output streamed as progress,
secrets redacted), its writable layer committed with docker's ``RUN …`` history line, then removed.

The key: parent image id, the history line, the step's environment, workdir, user and network,
what each mount reads (a ``from=`` image's id, a context bind's files) and the epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import Sequence

from dockyard.builder import imageconfig, mounts
from dockyard.builder import instructions as ins
from dockyard.builder.cache import step_key
from dockyard.builder.head import Head
from dockyard.builder.imageconfig import StageState
from dockyard.builder.node import Image, RunSpec, StepSpec
from dockyard.builder.plan import Step
from dockyard.builder.redact import Redactor
from dockyard.builder.steps.context import StepContext
from dockyard.core.errors import FailedPrecondition, InvalidArgument


async def run_step(
    ctx: StepContext,
    proxy_env: Sequence[str],
    step: Step,
    inst: ins.Run,
    head: Head,
    state: StageState,
    title: str,
    index: int,
) -> tuple[Image, bool]:
    """The container runs the stored image (metadata steps change no file) with the head's
    environment, workdir and user; its commit stores the head's config and pending history."""
    if head.image is None:
        raise InvalidArgument("RUN in a stage FROM scratch with nothing in it: there is no shell to run")
    argv = imageconfig.run_argv(inst, state.shell)
    line = imageconfig.run_created_by(argv, step.build_args)
    config = head.config
    env = [*step.env, *proxy_env]
    # "none": a network namespace with only lo; "host": the node's (rootless: the runtime's
    # namespace, NATed by slirp4netns), as `dockyard run --network` has them
    network = {"default": "", "none": "none", "host": "host"}.get(inst.network, "")
    workdir = str(config.get("WorkingDir") or "/")
    user = str(config.get("User") or "")
    planned = mounts.plan(step.mounts, workdir, ctx.secrets.keys())
    images: list[str] = []  # the image a from= bind reads ("" for the others)
    reads: list[str] = []  # each mount, and what it reads: that image's id, a context bind's files
    for m in planned:
        source = await _mount_image(ctx, m.mount)
        images.append(source)
        if m.mount.type == "bind" and not source:
            source = await asyncio.to_thread(mounts.context_digest, ctx.context, m.mount)
        reads += [m.key, source]
    parts = (head.ident(), line, "\n".join(step.env), workdir, user, network, str(ctx.epoch))
    key = step_key("run", *parts, *reads)  # no mounts: the key RUN had before mounts existed
    hit = await ctx.lookup(key)
    if hit is not None:
        return hit, True

    secrets = Redactor(ctx.secrets.values())  # no secret value leaves the step

    async def output(stream: str, data: bytes) -> None:
        data = secrets.feed(stream, data)
        if data:
            await ctx.log(title, index, stream, data)

    work = ctx.new_scratch() if planned else None
    try:
        async with mounts.mounted(
            planned,
            images,
            context=ctx.context,
            secrets=ctx.secrets,
            scratch=work or ctx.scratch,
            runtime=ctx.rt,
            caches=ctx.cache_volumes,
        ) as (run_mounts, secret_env):
            spec = RunSpec(head.parent, argv, env + secret_env, workdir, user, network, tuple(run_mounts))
            container, code = await ctx.rt.run(spec, output)
            for stream, rest in secrets.flush():
                await ctx.log(title, index, stream, rest)
            try:
                if code != 0:
                    raise FailedPrecondition(
                        f"process {json.dumps(' '.join(argv))} did not complete successfully: "
                        f"exit code: {code}",
                        exit_code=code,
                    )
                keep = head.config if head.config_changed else None  # None: the same ids as before
                step_spec = StepSpec(head.parent, keep, line, ctx.epoch, ctx.epoch, head.pending)
                image = await ctx.rt.commit(container, step_spec)
            finally:
                with contextlib.suppress(Exception):
                    await ctx.rt.remove_container(container)
    finally:
        if work is not None:  # secret files, fetched and copied binds
            await asyncio.to_thread(shutil.rmtree, work, True)
    ctx.remember(key, image)
    return image, False


async def _mount_image(ctx: StepContext, mount: ins.Mount) -> str:
    """The id of the stage or image a ``from=`` bind mount reads; "" for the others."""
    if mount.type != "bind" or not mount.from_:
        return ""
    if mount.from_stage is not None:
        source = ctx.stage_result(mount.from_stage)
        if source is None:
            raise InvalidArgument(f"RUN --mount from={mount.from_}: that stage is empty")
        return source.id
    return (await ctx.image(mount.from_)).id
