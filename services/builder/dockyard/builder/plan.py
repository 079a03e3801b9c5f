"""Stages, variable scopes and the build order: a parsed Dockerfile plus options in, a Plan out.

``plan(dockerfile, BuildOptions(...), resolve)`` is pure: ``resolve(ref, platform)`` is the only
way it learns about images (their ENV and ONBUILD triggers), and the engine supplies it (pulling
or reading the node's store). Without a resolver, image bases have no ENV and no triggers.

What it decides, as BuildKit does:

- **Stages**: every FROM starts one; ``AS name`` names it (case-insensitive). A FROM naming an
  earlier stage builds on it; ``scratch`` is the empty base; anything else is an image.
- **Global ARGs** (before the first FROM) and the platform ARGs (BUILDPLATFORM, BUILDOS,
  BUILDARCH, BUILDVARIANT, TARGETPLATFORM, TARGETOS, TARGETARCH, TARGETVARIANT, TARGETSTAGE)
  are usable in FROM lines only; a stage sees one after re-declaring it (``ARG NAME``).
- **ARG in a stage** comes into effect on its line: its value is the ``--build-arg`` if given,
  else its default (expanded there), else the global value; it is then in the environment of
  the following instructions and RUNs, but not in the image. A stage built FROM another stage
  inherits that stage's ENV and ARG values. ENV values are what a later ENV or ARG of the same
  name overrides (BuildKit's order: the last definition wins while building; only ENV is kept).
- **Proxy ARGs** (HTTP_PROXY, https_proxy, NO_PROXY, …) given as ``--build-arg`` reach every RUN
  (``Plan.proxy_env``) without being declared, and stay out of history and cache keys unless an
  ARG declares them.
- **Expansion**: in ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR, ARG defaults,
  RUN --mount values and COPY/ADD --chown/--chmod/--checksum, with the values before the
  instruction (``ENV a=1 b=$a`` sees the old ``a``). RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK are
  left to the shell; ONBUILD is expanded when it triggers. ``COPY --from`` and mount ``from=``
  must be literal. Heredoc bodies of COPY/ADD are expanded unless their word was quoted.
- **Target and pruning**: ``--target`` (default: the last stage) and the stages it needs through
  FROM, ``COPY --from``, ``RUN --mount from=`` and ONBUILD triggers; the others are skipped.
  ``levels`` groups the needed stages so that each depends only on earlier levels: stages of
  one level can be built concurrently.

Warnings (``Plan.warnings``) are the parser's plus docker's "build-args were not consumed".
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from dockyard.builder import instructions as ins
from dockyard.builder.dockerfile import Dockerfile, parse_instruction
from dockyard.builder.expand import Lexer
from dockyard.builder.instructions import DockerfileError, Instruction, suggest
from dockyard.core.errors import InvalidArgument
from dockyard.core.oci.platform import Platform, parse_platform

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXY_ARGS = frozenset(
    [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "FTP_PROXY",
        "ftp_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
)
PLATFORM_ARGS = (
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDOSVERSION",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETOSVERSION",
    "TARGETARCH",
    "TARGETVARIANT",
    "TARGETSTAGE",
)
#: Build args the builder itself reads: never reported as unused.
BUILTIN_ARGS = frozenset(
    [
        "SOURCE_DATE_EPOCH",
        "BUILDKIT_CACHE_MOUNT_NS",
        "BUILDKIT_CONTEXT_KEEP_GIT_DIR",
        "BUILDKIT_INLINE_CACHE",
        "BUILDKIT_MULTI_PLATFORM",
        "BUILDKIT_SANDBOX_HOSTNAME",
        "BUILDKIT_SYNTAX",
        "BUILDKIT_BUILD_NAME",
    ]
)
_NON_ENV_ARGS = frozenset(("BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"))


LINUX_AMD64 = Platform("linux", "amd64")


@dataclass(frozen=True, slots=True)
class BuildOptions:
    """What the build request says: ``--build-arg``, ``--target``, ``--platform``."""

    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str = ""
    build_platform: Platform = LINUX_AMD64
    target_platform: Platform | None = None


@dataclass(frozen=True, slots=True)
class BaseImage:
    """What planning needs from a base image's config: ``Env`` and ``OnBuild``."""

    env: tuple[str, ...] = ()
    onbuild: tuple[str, ...] = ()


Resolver = Callable[[str, Platform], BaseImage]


@dataclass(frozen=True, slots=True)
class Base:
    """A stage's base: ``image`` (``ref``), ``scratch``, or ``stage`` (``stage`` index)."""

    kind: str
    ref: str = ""
    stage: int | None = None


@dataclass(frozen=True, slots=True)
class EnvAt:
    """The build environment at one point of a stage: the first ``length`` assignments of the
    stage's log (base env first). Steps share the log, so a stage of N ENV lines keeps N
    assignments, not N copies of an environment that grows with each."""

    log: list[tuple[str, str]] = field(default_factory=list)
    length: int = 0

    def pairs(self) -> tuple[str, ...]:
        """``K=V`` in first-assignment order, the last value of each (a dict's order)."""
        return tuple(f"{k}={v}" for k, v in dict(self.log[: self.length]).items())


@dataclass(frozen=True, slots=True)
class Step:
    """One instruction of a stage, expanded, with the environment it runs in.

    ``env`` is the build environment before the step (base ENV, ENV, ARG values: what a RUN
    sees, besides ``Plan.proxy_env``), made when asked (``EnvAt``); ``build_args`` the ARGs in
    scope with their values, in declaration order (docker's ``RUN |N K=V …`` history prefix and
    part of a RUN's cache key).
    """

    instruction: Instruction
    env_at: EnvAt = field(default_factory=EnvAt)
    build_args: tuple[str, ...] = ()
    triggered: bool = False
    mounts: tuple[ins.Mount, ...] = ()
    source_stage: int | None = None

    @property
    def env(self) -> tuple[str, ...]:
        return self.env_at.pairs()


@dataclass(frozen=True, slots=True)
class PlannedStage:
    index: int
    name: str | None
    base: Base
    platform: Platform
    from_: ins.From
    steps: tuple[Step, ...]
    deps: tuple[int, ...]
    level: int
    initial_env: tuple[str, ...] = ()  # the env at the start: the base's, PATH added if missing

    @property
    def display_name(self) -> str:
        return self.name or f"stage-{self.index}"


@dataclass(frozen=True, slots=True)
class Plan:
    stages: tuple[PlannedStage, ...]  # only those the target needs, in Dockerfile order
    target: int
    levels: tuple[tuple[int, ...], ...]
    warnings: tuple[str, ...] = ()
    proxy_env: tuple[str, ...] = ()
    global_args: tuple[str, ...] = ()
    images: tuple[str, ...] = ()  # image references the build reads (bases, --from, mounts)

    def stage(self, index: int) -> PlannedStage:
        for s in self.stages:
            if s.index == index:
                return s
        raise KeyError(index)


@dataclass
class _Stage:
    index: int
    from_: ins.From
    body: list[Instruction]
    base: Base = field(default_factory=lambda: Base("scratch"))
    platform: Platform = LINUX_AMD64
    from_expanded: ins.From | None = None
    deps: set[int] = field(default_factory=set)
    triggers: list[Instruction] = field(default_factory=list)
    image: BaseImage = field(default_factory=BaseImage)
    resolved: bool = False


class _Planner:
    def __init__(self, df: Dockerfile, opts: BuildOptions, resolve: Resolver | None) -> None:
        self.df = df
        self.opts = opts
        self.resolve = resolve
        self.lex = Lexer(df.escape)
        self.target_platform = opts.target_platform or opts.build_platform
        self.meta: list[ins.Arg] = []
        self.stages: list[_Stage] = []
        self.by_name: dict[str, int] = {}
        self.consumed: set[str] = set()
        self.images: list[str] = []
        self.globals: dict[str, str] = {}

    def error(self, inst: Instruction, message: str) -> DockerfileError:
        return DockerfileError(
            f"{self.df.name}:{inst.line}: {message}", line=inst.line, end_line=inst.end_line
        )

    def word(self, inst: Instruction, text: str, env: Mapping[str, str]) -> str:
        try:
            return self.lex.word(text, env)
        except InvalidArgument as exc:
            raise self.error(inst, exc.message) from None

    # -- structure --------------------------------------------------------------------------

    def split(self) -> None:
        current: _Stage | None = None
        for inst in self.df.instructions:
            if isinstance(inst, ins.From):
                current = _Stage(len(self.stages), inst, [])
                self.stages.append(current)
            elif current is None:
                if not isinstance(inst, ins.Arg):
                    raise self.error(inst, "no build stage in current context")
                self.meta.append(inst)
            else:
                current.body.append(inst)
        if not self.stages:
            raise DockerfileError(f"{self.df.name}: dockerfile contains no stages to build")

    def global_args(self) -> dict[str, str]:
        bp, tp = self.opts.build_platform, self.target_platform
        target = self.opts.target or self.stages[-1].from_.stage_name or "default"
        defaults = [str(bp), bp.os, "", bp.architecture, bp.variant]
        defaults += [str(tp), tp.os, "", tp.architecture, tp.variant, target]
        args = dict(zip(PLATFORM_ARGS, defaults, strict=True))
        for key in PLATFORM_ARGS:
            if key in self.opts.build_args:
                args[key] = self.opts.build_args[key]
        for inst in self.meta:
            for d in inst.args:
                self.consumed.add(d.key)
                if d.key in self.opts.build_args:
                    args[d.key] = self.opts.build_args[d.key]
                elif d.default is not None:
                    args[d.key] = self.word(inst, d.default, args)
        return args

    def bases(self, globals_: Mapping[str, str]) -> None:
        for st in self.stages:
            f = st.from_
            image = self.word(f, f.image, globals_)
            if not image:
                raise self.error(f, f"base name ({f.image}) should not be blank")
            platform = None
            if f.platform is not None:
                value = self.word(f, f.platform, globals_)
                if not value:
                    raise self.error(f, f"empty platform value from expression {f.platform}")
                try:
                    platform = parse_platform(value)
                except ValueError as exc:
                    raise self.error(f, f"failed to parse platform {f.platform}: {exc}") from None
            st.from_expanded = replace(f, image=image, platform=str(platform) if platform else None)
            parent = self.by_name.get(image.lower())
            if parent is not None:
                st.base = Base("stage", stage=parent)
                st.deps.add(parent)
                st.platform = platform or self.stages[parent].platform
            else:
                st.base = Base("scratch") if image.lower() == "scratch" else Base("image", ref=image)
                st.platform = platform or self.target_platform
            if f.stage_name:
                if f.stage_name in self.by_name:
                    raise self.error(f, f'duplicate stage name "{f.stage_name}"')
                self.by_name[f.stage_name] = st.index

    def copy_source(self, inst: ins.Copy) -> int | None:
        """The stage a ``COPY --from`` names (by name or index), None for an image."""
        src = inst.from_ or ""
        try:
            literal = self.lex.word(src, {}) == src
        except InvalidArgument:
            literal = False
        if not literal:
            raise self.error(
                inst,
                "variable expansion is not supported for --from, define a new stage with FROM "
                "using ARG from global scope as a workaround",
            )
        if src.isdigit():
            index = int(src)
            if index >= len(self.stages):
                raise self.error(inst, f"invalid stage index {index}")
            return index
        return self.by_name.get(src.lower())

    def mount_sources(self, inst: ins.Run) -> list[int | None]:
        out: list[int | None] = []
        for spec in inst.mounts:
            src = _mount_from(spec)
            out.append(self.by_name.get(src.lower()) if src else None)
        return out

    def static_deps(self, st: _Stage, body: list[Instruction]) -> set[int]:
        deps: set[int] = set()
        for inst in body:
            if isinstance(inst, ins.Copy) and inst.from_:
                src = self.copy_source(inst)
                if src is not None:
                    deps.add(src)
            elif isinstance(inst, ins.Run):
                deps.update(s for s in self.mount_sources(inst) if s is not None)
        return deps

    def onbuild_of(self, st: _Stage) -> None:
        """The triggers that run at the start of ``st``: its base's ONBUILDs."""
        if st.base.kind == "stage" and st.base.stage is not None:
            parent = self.stages[st.base.stage]
            st.triggers = [i.trigger for i in parent.body if isinstance(i, ins.Onbuild)]
        elif st.base.kind == "image" and self.resolve is not None and not st.resolved:
            st.image = self.resolve(st.base.ref, st.platform)
            st.triggers = [parse_instruction(expr, st.from_.line, self.df.name) for expr in st.image.onbuild]
        st.resolved = True
        st.deps |= self.static_deps(st, st.body + st.triggers)

    def needed(self, target: int) -> list[int]:
        seen: set[int] = set()
        changed = True
        while changed:
            changed = False
            todo = [target]
            while todo:
                i = todo.pop()
                if i in seen:
                    continue
                seen.add(i)
                st = self.stages[i]
                if not st.resolved:
                    self.onbuild_of(st)
                    changed = True
                todo.extend(st.deps)
        return sorted(seen)

    def target_index(self) -> int:
        if not self.opts.target:
            return len(self.stages) - 1
        index = self.by_name.get(self.opts.target.lower())
        if index is None:
            names = list(self.by_name)
            raise DockerfileError(
                f'target stage "{self.opts.target}" could not be found{suggest(self.opts.target, names)}'
            )
        return index

    # -- expansion --------------------------------------------------------------------------

    def expand_stage(
        self, st: _Stage, done: dict[int, tuple[dict[str, str], list[tuple[str, str | None]]]]
    ) -> tuple[list[Step], dict[str, str], list[tuple[str, str | None]], tuple[str, ...]]:
        if st.base.kind == "stage" and st.base.stage is not None:
            parent_env, parent_args = done[st.base.stage]
            env = dict(parent_env)
            args = list(parent_args)
        else:
            env = dict(_kv(e) for e in st.image.env)
            args = []
        if "PATH" not in env and st.platform.os != "windows":
            env["PATH"] = DEFAULT_PATH
        initial = tuple(f"{k}={v}" for k, v in env.items())
        log = list(env.items())  # every assignment to ``env`` from here on is appended (EnvAt)
        steps = []
        for triggered, inst in [(True, t) for t in st.triggers] + [(False, b) for b in st.body]:
            steps.append(self.expand_step(st, inst, env, log, args, triggered))
        return steps, env, args, initial

    def expand_step(
        self,
        st: _Stage,
        inst: Instruction,
        env: dict[str, str],
        log: list[tuple[str, str]],
        args: list[tuple[str, str | None]],
        triggered: bool,
    ) -> Step:
        before = EnvAt(log, len(log))
        # words expand against the env before the step: ENV and ARG assign only once theirs are done
        snapshot: Mapping[str, str] = env

        def w(text: str) -> str:
            return self.word(inst, text, snapshot)

        mounts: tuple[ins.Mount, ...] = ()
        source: int | None = None
        out: Instruction = inst
        if isinstance(inst, ins.Arg):
            out = self.apply_arg(inst, env, args, log)
        elif isinstance(inst, ins.Env):
            pairs = tuple(replace(p, key=w(p.key), value=w(p.value)) for p in inst.pairs)
            for p in pairs:
                env[p.key] = p.value
                log.append((p.key, p.value))
            out = replace(inst, pairs=pairs)
        elif isinstance(inst, ins.Label):
            out = replace(inst, pairs=tuple(replace(p, key=w(p.key), value=w(p.value)) for p in inst.pairs))
        elif isinstance(inst, ins.Copy):
            source = self.copy_source(inst) if inst.from_ else None
            if source is not None and source >= st.index:
                raise self.error(
                    inst,
                    f'cannot copy from stage "{inst.from_}", it needs to be defined before current stage '
                    f'"{_display(st)}"',
                )
            if inst.from_ and source is None:
                self.images.append(inst.from_)
            out = replace(
                inst,
                sources=tuple(w(s) for s in inst.sources),
                dest=w(inst.dest),
                chown=w(inst.chown),
                chmod=w(inst.chmod),
                contents=self.expand_contents(inst, inst.contents, snapshot),
            )
        elif isinstance(inst, ins.Add):
            out = replace(
                inst,
                sources=tuple(w(s) for s in inst.sources),
                dest=w(inst.dest),
                chown=w(inst.chown),
                chmod=w(inst.chmod),
                checksum=w(inst.checksum),
                contents=self.expand_contents(inst, inst.contents, snapshot),
            )
        elif isinstance(inst, ins.Expose):
            ports: list[str] = []
            for port in inst.ports:
                try:
                    ports.extend(self.lex.words(port, snapshot))
                except InvalidArgument as exc:
                    raise self.error(inst, exc.message) from None
            out = replace(inst, ports=tuple(ports))
        elif isinstance(inst, ins.Volume):
            out = replace(inst, paths=tuple(w(p) for p in inst.paths))
        elif isinstance(inst, ins.Workdir):
            out = replace(inst, path=w(inst.path))
        elif isinstance(inst, ins.User):
            out = replace(inst, user=w(inst.user))
        elif isinstance(inst, ins.StopSignal):
            out = replace(inst, signal=w(inst.signal))
        elif isinstance(inst, ins.Run):
            mounts = self.plan_mounts(st, inst, w)
        build_args = _history_args(args, env) if isinstance(inst, ins.Run) else ()
        return Step(out, before, build_args, triggered, mounts, source)

    def apply_arg(
        self,
        inst: ins.Arg,
        env: dict[str, str],
        args: list[tuple[str, str | None]],
        log: list[tuple[str, str]],
    ) -> ins.Arg:
        defs = []
        for d in inst.args:
            self.consumed.add(d.key)
            value: str | None = None
            if d.key in self.opts.build_args:
                value = self.opts.build_args[d.key]
            elif d.default is not None:
                value = self.word(inst, d.default, env)
            elif d.key in self.globals:
                value = self.globals[d.key]
            if value is not None and d.key not in _NON_ENV_ARGS:
                env[d.key] = value
                log.append((d.key, value))
            args.append((d.key, value))
            defs.append(ins.ArgDef(d.key, value))
        return replace(inst, args=tuple(defs))

    def expand_contents(
        self, inst: Instruction, contents: tuple[ins.Heredoc, ...], env: Mapping[str, str]
    ) -> tuple[ins.Heredoc, ...]:
        raw = Lexer("\\", skip_quotes=True)
        out = []
        for doc in contents:
            data = doc.data
            if doc.expand:
                try:
                    data = raw.word(data, env)
                except InvalidArgument as exc:
                    raise self.error(inst, exc.message) from None
            out.append(replace(doc, content=data, chomp=False))
        return tuple(out)

    def plan_mounts(self, st: _Stage, inst: ins.Run, w: Callable[[str], str]) -> tuple[ins.Mount, ...]:
        mounts = []
        for spec in inst.mounts:
            try:
                mount = ins.parse_mount(spec, w)
            except ValueError as exc:
                raise self.error(inst, str(exc)) from None
            if mount.from_:
                src = self.by_name.get(mount.from_.lower())
                if src is not None and src >= st.index:
                    raise self.error(
                        inst,
                        f'cannot mount from stage "{mount.from_}" to "{mount.target}", '
                        "stage needs to be defined before current command",
                    )
                if src is None:
                    self.images.append(mount.from_)
                mount = replace(mount, from_stage=src)
            mounts.append(mount)
        return tuple(mounts)

    # -- all together -------------------------------------------------------------------------

    def run(self) -> Plan:
        self.split()
        self.globals = self.global_args()
        self.bases(self.globals)
        target = self.target_index()
        needed = self.needed(target)
        levels: dict[int, int] = {}
        done: dict[int, tuple[dict[str, str], list[tuple[str, str | None]]]] = {}
        planned = []
        for i in needed:
            st = self.stages[i]
            if st.base.kind == "image":
                self.images.append(st.base.ref)
            steps, env, args, initial = self.expand_stage(st, done)  # checks deps come first
            levels[i] = 1 + max((levels[d] for d in st.deps), default=-1)
            done[i] = (env, args)
            assert st.from_expanded is not None
            planned.append(
                PlannedStage(
                    index=i,
                    name=st.from_.stage_name,
                    base=st.base,
                    platform=st.platform,
                    from_=st.from_expanded,
                    steps=tuple(steps),
                    deps=tuple(sorted(st.deps)),
                    level=levels[i],
                    initial_env=initial,
                )
            )
        grouped: dict[int, list[int]] = {}
        for i, lvl in levels.items():
            grouped.setdefault(lvl, []).append(i)
        build_args = self.opts.build_args
        unused = sorted(
            k
            for k in build_args
            if k not in self.consumed
            and k not in PROXY_ARGS
            and k not in BUILTIN_ARGS
            and k not in PLATFORM_ARGS
        )
        warnings = list(self.df.warnings)
        if unused:
            warnings.append(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed")
        return Plan(
            stages=tuple(planned),
            target=target,
            levels=tuple(tuple(grouped[k]) for k in sorted(grouped)),
            warnings=tuple(warnings),
            proxy_env=tuple(f"{k}={build_args[k]}" for k in sorted(build_args) if k in PROXY_ARGS),
            global_args=tuple(f"{k}={v}" for k, v in self.globals.items()),
            images=tuple(dict.fromkeys(self.images)),
        )


def _kv(entry: str) -> tuple[str, str]:
    key, _, value = entry.partition("=")
    return key, value


def _display(st: _Stage) -> str:
    return st.from_.stage_name or f"stage-{st.index}"


def _mount_from(spec: str) -> str:
    try:
        fields = next(csv.reader([spec]), [])
    except csv.Error:
        return ""
    for item in fields:
        key, _, value = item.partition("=")
        if key.lower() == "from":
            return value
    return ""


def _history_args(args: list[tuple[str, str | None]], env: Mapping[str, str]) -> tuple[str, ...]:
    """``K=V`` per ARG in scope, first position kept, the value as the build environment has it."""
    order: dict[str, str] = {}
    for key, value in args:
        order[key] = env.get(key, value if value is not None else "")
    return tuple(f"{k}={v}" for k, v in order.items())


def plan(
    dockerfile: Dockerfile, options: BuildOptions | None = None, resolve: Resolver | None = None
) -> Plan:
    """The stages the target needs, expanded, in an order that lets independent ones overlap.

    Raises DockerfileError (InvalidArgument) naming the line for anything wrong. ``resolve`` is
    called once per image base of a needed stage; it may raise (e.g. NotFound) to abort.
    """
    return _Planner(dockerfile, options or BuildOptions(), resolve).run()
