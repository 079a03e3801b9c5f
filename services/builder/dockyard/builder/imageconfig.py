"""What each metadata instruction does to an image config, and the history line it leaves (pure).

``apply(config, instruction, state)`` returns the new ``config`` section (the input is not
changed) for ENV LABEL CMD ENTRYPOINT WORKDIR USER EXPOSE VOLUME STOPSIGNAL SHELL HEALTHCHECK
ONBUILD MAINTAINER, as BuildKit does it:

- ENV replaces a name in place (order kept) or appends; LABEL merges into ``Labels``;
- CMD/ENTRYPOINT shell form is the stage's SHELL plus the text; ENTRYPOINT drops a CMD the
  stage inherited (not one it set itself);
- WORKDIR resolves a relative path against the current one; EXPOSE adds ``port/proto`` keys;
- HEALTHCHECK is Docker's ``Healthcheck`` object (durations in ns, zero ones left out);
- ONBUILD appends its expression; MAINTAINER changes nothing in ``config`` (it is history only).

``created_by(...)`` is docker's history line for a step (BuildKit's wording, without its
``# buildkit`` suffix): ``RUN |1 V=2 /bin/sh -c make``, ``COPY src /app``, ``ENV A=1``,
``CMD ["sh" "-c" "x"]`` (Go's ``%q`` of the list, as docker shows it).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

from dockyard.builder import instructions as ins
from dockyard.core.errors import InvalidArgument

DEFAULT_SHELL = ("/bin/sh", "-c")


@dataclass(slots=True)
class StageState:
    """What a stage tracks besides the config: its SHELL, and whether it set CMD itself."""

    shell: tuple[str, ...] = DEFAULT_SHELL
    cmd_set: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def go_quote_list(args: tuple[str, ...] | list[str]) -> str:
    """Go's ``fmt.Sprintf("%q", []string{...})``: ``["a" "b c"]``."""
    return "[" + " ".join(json.dumps(a, ensure_ascii=False) for a in args) + "]"


def command(args: tuple[str, ...], exec_form: bool, shell: tuple[str, ...]) -> list[str]:
    """The argv of CMD/ENTRYPOINT/RUN: exec form as is, shell form through the SHELL."""
    if exec_form:
        return list(args)
    return [*shell, " ".join(args)]


def _env_set(env: list[str], key: str, value: str) -> list[str]:
    for i, entry in enumerate(env):
        if entry.partition("=")[0] == key:
            env[i] = f"{key}={value}"
            return env
    env.append(f"{key}={value}")
    return env


def _port(text: str) -> list[str]:
    port, _, proto = text.partition("/")
    proto = (proto or "tcp").lower()
    low, _, high = port.partition("-")
    try:
        a, b = int(low), int(high or low)
    except ValueError:
        raise InvalidArgument(f"EXPOSE: invalid port {text!r}") from None
    if not 0 < a <= b < 65536 or proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"EXPOSE: invalid port {text!r}")
    return [f"{p}/{proto}" for p in range(a, b + 1)]


def apply(config: dict[str, Any], inst: ins.Instruction, state: StageState) -> dict[str, Any]:
    """The config section after ``inst`` (an expanded metadata instruction): a new dict that
    shares the values it does not change (each branch makes the one it changes anew), so a step
    costs the size of the section it touches, not a deep copy of the whole config."""
    out = dict(config)
    if isinstance(inst, ins.Env):
        env = list(out.get("Env") or [])
        for pair in inst.pairs:
            env = _env_set(env, pair.key, pair.value)
        out["Env"] = env
    elif isinstance(inst, ins.Label):
        labels = dict(out.get("Labels") or {})
        for pair in inst.pairs:
            labels[pair.key] = pair.value
        out["Labels"] = labels
    elif isinstance(inst, ins.Cmd):
        out["Cmd"] = command(inst.args, inst.exec_form, state.shell)
        state.cmd_set = True
    elif isinstance(inst, ins.Entrypoint):
        out["Entrypoint"] = command(inst.args, inst.exec_form, state.shell)
        if not state.cmd_set:
            out["Cmd"] = None
    elif isinstance(inst, ins.Workdir):
        current = out.get("WorkingDir") or "/"
        out["WorkingDir"] = posixpath.normpath(posixpath.join(current, inst.path))
    elif isinstance(inst, ins.User):
        out["User"] = inst.user
    elif isinstance(inst, ins.Expose):
        ports = dict(out.get("ExposedPorts") or {})
        for text in inst.ports:
            for key in _port(text):
                ports[key] = {}
        out["ExposedPorts"] = dict(sorted(ports.items()))
    elif isinstance(inst, ins.Volume):
        volumes = dict(out.get("Volumes") or {})
        for path in inst.paths:
            if not path:
                raise InvalidArgument("VOLUME specified can not be an empty string")
            volumes[path] = {}
        out["Volumes"] = volumes
    elif isinstance(inst, ins.StopSignal):
        out["StopSignal"] = inst.signal
    elif isinstance(inst, ins.Shell):
        out["Shell"] = list(inst.args)
        state.shell = tuple(inst.args)
    elif isinstance(inst, ins.Healthcheck):
        check: dict[str, Any] = {"Test": list(inst.test)}
        for key, value in (
            ("Interval", inst.interval),
            ("Timeout", inst.timeout),
            ("StartPeriod", inst.start_period),
            ("StartInterval", inst.start_interval),
            ("Retries", inst.retries),
        ):
            if value:
                check[key] = value
        out["Healthcheck"] = check
    elif isinstance(inst, ins.Onbuild):
        out["OnBuild"] = [*(out.get("OnBuild") or []), inst.expression]
    elif isinstance(inst, ins.Maintainer):
        pass
    else:
        raise InvalidArgument(f"{inst.keyword} is not a metadata instruction")
    return out


def created_by(inst: ins.Instruction, config: dict[str, Any], build_args: tuple[str, ...] = ()) -> str:
    """Docker's history line for ``inst`` (expanded); ``config`` is the config *after* it."""
    if isinstance(inst, ins.Run):
        raise InvalidArgument("use run_created_by for RUN")
    if isinstance(inst, ins.Env):
        return "ENV " + " ".join(str(p) for p in inst.pairs)
    if isinstance(inst, ins.Label):
        return "LABEL " + " ".join(str(p) for p in inst.pairs)
    if isinstance(inst, ins.Cmd):
        return "CMD " + go_quote_list(config.get("Cmd") or [])
    if isinstance(inst, ins.Entrypoint):
        return "ENTRYPOINT " + go_quote_list(config.get("Entrypoint") or [])
    if isinstance(inst, ins.Workdir):
        return "WORKDIR " + str(config.get("WorkingDir") or "/")
    if isinstance(inst, ins.User):
        return "USER " + inst.user
    if isinstance(inst, ins.Expose):
        return "EXPOSE " + " ".join(inst.ports)
    if isinstance(inst, ins.Volume):
        return "VOLUME " + go_quote_list(inst.paths)
    if isinstance(inst, ins.StopSignal):
        return "STOPSIGNAL " + inst.signal
    if isinstance(inst, ins.Shell):
        return "SHELL " + go_quote_list(inst.args)
    if isinstance(inst, ins.Healthcheck):
        return "HEALTHCHECK " + go_quote_list(inst.test)
    if isinstance(inst, ins.Onbuild):
        return "ONBUILD " + inst.expression
    if isinstance(inst, ins.Maintainer):
        return "MAINTAINER " + inst.name
    if isinstance(inst, ins.Copy | ins.Add):
        flags = []
        if isinstance(inst, ins.Copy) and inst.from_:
            flags.append(f"--from={inst.from_}")
        if inst.chown:
            flags.append(f"--chown={inst.chown}")
        if inst.chmod:
            flags.append(f"--chmod={inst.chmod}")
        srcs = list(inst.sources) + [f"<<{d.name}" for d in inst.contents]
        return " ".join([inst.keyword, *flags, *srcs, inst.dest])
    return inst.original


def run_created_by(argv: list[str], build_args: tuple[str, ...]) -> str:
    """``RUN [|N K=V …] argv…`` as docker writes it (the ARGs in scope prefix the command)."""
    prefix = f"|{len(build_args)} {' '.join(build_args)} " if build_args else ""
    return f"RUN {prefix}{' '.join(argv)}"


def run_argv(inst: ins.Run, shell: tuple[str, ...]) -> list[str]:
    """What a RUN runs: the exec form as is; the shell form (heredocs included) through SHELL."""
    if inst.exec_form:
        return list(inst.args)
    script = " ".join(inst.args)
    if inst.heredocs:
        words = script.split()
        if len(inst.heredocs) == 1 and len(words) == 1 and words[0].lstrip("0123456789").startswith("<<"):
            return [*shell, inst.heredocs[0].data]  # RUN <<EOF: the body is the script
        body = "".join(doc.content + doc.name.strip("'\"") + "\n" for doc in inst.heredocs)
        script = script + "\n" + body  # the shell reads the here-documents itself
    return [*shell, script]
