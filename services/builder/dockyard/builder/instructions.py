"""The typed Dockerfile instructions the parser produces, and their flags.

Every instruction is a frozen dataclass that keeps where it came from (``line``/``end_line``,
1-based, ``end_line`` past any heredoc body) and its ``original`` text (continuations joined,
comments inside them dropped, as BuildKit keeps it). Arguments are stored as written, quotes
and ``$VAR`` intact: the planner (``plan.py``) expands the ones BuildKit expands, in the
environment of the step, and returns new instances of the same classes.

Flags are checked here against the set each instruction accepts (BuildKit's names):

===========  =================================================================================
FROM         --platform
RUN          --mount (repeatable), --network (default|none|host), --security (sandbox|insecure)
COPY         --from --chown --chmod --link --parents --exclude (repeatable)
ADD          --chown --chmod --link --keep-git-dir --checksum --unpack --exclude (repeatable)
HEALTHCHECK  --interval --timeout --start-period --start-interval --retries
===========  =================================================================================

Any other flag, on these or on any other instruction, is an error naming it.
"""

from __future__ import annotations

import csv
import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import ClassVar

from dockyard.core.errors import InvalidArgument

_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)


class DockerfileError(InvalidArgument):
    """A Dockerfile that does not parse or plan: the message says ``<name>:<line>: <what>``."""


def suggest(word: str, choices: list[str]) -> str:
    """`` (did you mean X?)`` when ``word`` looks like a typo of one of ``choices``, else ""."""
    close = difflib.get_close_matches(word.lower(), [c.lower() for c in choices], n=1, cutoff=0.75)
    if not close:
        return ""
    original = next(c for c in choices if c.lower() == close[0])
    return f" (did you mean {original}?)"


@dataclass(frozen=True, slots=True)
class Heredoc:
    """A here-document: ``<<NAME`` (``<<-`` chomps leading tabs; a quoted name: no expansion).

    ``content`` is the body as written, every line with its newline; ``data`` is what the
    builder uses (tabs chomped for ``<<-``). ``fd`` is the descriptor for ``3<<EOF``.
    """

    name: str
    content: str
    expand: bool = True
    chomp: bool = False
    fd: int = 0

    @property
    def data(self) -> str:
        return _LEADING_TABS.sub("", self.content) if self.chomp else self.content


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One ``key=value`` of ENV or LABEL; ``legacy`` for the ``ENV key value`` form."""

    key: str
    value: str
    legacy: bool = False

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


@dataclass(frozen=True, slots=True)
class ArgDef:
    """One name of an ARG line, with its default (None: declared without ``=``)."""

    key: str
    default: str | None = None

    def __str__(self) -> str:
        return self.key if self.default is None else f"{self.key}={self.default}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Instruction:
    """What every instruction has: its lines in the file and its text."""

    keyword: ClassVar[str] = ""
    line: int
    end_line: int
    original: str


@dataclass(frozen=True, slots=True, kw_only=True)
class From(Instruction):
    keyword: ClassVar[str] = "FROM"
    image: str
    stage_name: str | None = None  # lower-cased, as BuildKit compares stage names
    platform: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Run(Instruction):
    """``args`` is the exec-form array, or one string (the shell form, run by the SHELL)."""

    keyword: ClassVar[str] = "RUN"
    args: tuple[str, ...]
    exec_form: bool = False
    heredocs: tuple[Heredoc, ...] = ()
    mounts: tuple[str, ...] = ()  # --mount specs as written; planned into Mount objects
    network: str = "default"
    security: str = "sandbox"


@dataclass(frozen=True, slots=True, kw_only=True)
class Cmd(Instruction):
    keyword: ClassVar[str] = "CMD"
    args: tuple[str, ...]
    exec_form: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Entrypoint(Instruction):
    keyword: ClassVar[str] = "ENTRYPOINT"
    args: tuple[str, ...]
    exec_form: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Shell(Instruction):
    keyword: ClassVar[str] = "SHELL"
    args: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Env(Instruction):
    keyword: ClassVar[str] = "ENV"
    pairs: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Label(Instruction):
    keyword: ClassVar[str] = "LABEL"
    pairs: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Arg(Instruction):
    keyword: ClassVar[str] = "ARG"
    args: tuple[ArgDef, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Expose(Instruction):
    keyword: ClassVar[str] = "EXPOSE"
    ports: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Volume(Instruction):
    keyword: ClassVar[str] = "VOLUME"
    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Workdir(Instruction):
    keyword: ClassVar[str] = "WORKDIR"
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class User(Instruction):
    keyword: ClassVar[str] = "USER"
    user: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StopSignal(Instruction):
    keyword: ClassVar[str] = "STOPSIGNAL"
    signal: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Maintainer(Instruction):
    keyword: ClassVar[str] = "MAINTAINER"
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Healthcheck(Instruction):
    """``test`` as Docker stores it: ``("NONE",)``, ``("CMD", …)`` or ``("CMD-SHELL", "…")``.

    Durations are nanoseconds (Docker's config unit), 0 meaning "the default"; retries 0 too.
    """

    keyword: ClassVar[str] = "HEALTHCHECK"
    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Onbuild(Instruction):
    """A trigger: ``expression`` is what goes into the image config (heredoc bodies included)."""

    keyword: ClassVar[str] = "ONBUILD"
    trigger: Instruction
    expression: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Copy(Instruction):
    """``sources`` are paths/globs; heredoc sources (``COPY <<EOF /x``) are in ``contents``."""

    keyword: ClassVar[str] = "COPY"
    sources: tuple[str, ...]
    dest: str
    contents: tuple[Heredoc, ...] = ()
    exec_form: bool = False
    from_: str | None = None
    chown: str = ""
    chmod: str = ""
    link: bool = False
    parents: bool = False
    excludes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Add(Instruction):
    keyword: ClassVar[str] = "ADD"
    sources: tuple[str, ...]
    dest: str
    contents: tuple[Heredoc, ...] = ()
    exec_form: bool = False
    chown: str = ""
    chmod: str = ""
    link: bool = False
    keep_git_dir: bool | None = None
    checksum: str = ""
    unpack: bool | None = None
    excludes: tuple[str, ...] = ()


# --- flags -----------------------------------------------------------------------------------

BOOL, STRING, STRINGS = "bool", "string", "strings"
FlagValue = bool | str | list[str]

FLAGS: dict[str, dict[str, str]] = {
    "FROM": {"platform": STRING},
    "RUN": {"mount": STRINGS, "network": STRING, "security": STRING},
    "COPY": {
        "from": STRING,
        "chown": STRING,
        "chmod": STRING,
        "link": BOOL,
        "parents": BOOL,
        "exclude": STRINGS,
    },
    "ADD": {
        "chown": STRING,
        "chmod": STRING,
        "link": BOOL,
        "keep-git-dir": BOOL,
        "checksum": STRING,
        "unpack": BOOL,
        "exclude": STRINGS,
    },
    "HEALTHCHECK": {
        "interval": STRING,
        "timeout": STRING,
        "start-period": STRING,
        "start-interval": STRING,
        "retries": STRING,
    },
}


def parse_flags(keyword: str, flags: list[str]) -> dict[str, FlagValue]:
    """The flags given to ``keyword``, checked against what it accepts (ValueError if not)."""
    spec = FLAGS.get(keyword, {})
    used: dict[str, FlagValue] = {}
    for flag in flags:
        if flag == "--":
            break
        if not flag.startswith("--"):
            raise ValueError(f"arg should start with -- : {flag}")
        name, has_value, value = flag.partition("=")
        key = name[2:]
        kind = spec.get(key)
        if kind is None:
            raise ValueError(f"unknown flag: {name}{suggest(key, list(spec))}")
        if key in used and kind != STRINGS:
            raise ValueError(f"duplicate flag specified: {name}")
        if kind == BOOL:
            if has_value and not value:
                raise ValueError(f"missing a value on flag: {name}")
            if value.lower() in ("", "true"):
                used[key] = True
            elif value.lower() == "false":
                used[key] = False
            else:
                raise ValueError(f"expecting boolean value for flag {name}, not: {value}")
        elif not has_value:
            raise ValueError(f"missing a value on flag: {name}")
        elif kind == STRING:
            used[key] = value
        else:
            values = used.setdefault(key, [])
            assert isinstance(values, list)
            values.append(value)
    return used


def flag_str(used: Mapping[str, FlagValue], key: str, default: str = "") -> str:
    value = used.get(key, default)
    return value if isinstance(value, str) else default


def flag_bool(used: Mapping[str, FlagValue], key: str) -> bool | None:
    value = used.get(key)
    return value if isinstance(value, bool) else None


def flag_list(used: Mapping[str, FlagValue], key: str) -> tuple[str, ...]:
    value = used.get(key)
    return tuple(value) if isinstance(value, list) else ()


# --- durations (Go's time.ParseDuration, which HEALTHCHECK options use) -------------------------

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 10**9}
_UNITS.update({"m": 60 * 10**9, "h": 3600 * 10**9})
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]*)")


def parse_go_duration(text: str) -> int:
    """Nanoseconds of a Go duration (``1h30m``, ``1.5s``, ``300ms``, ``0``); ValueError if bad."""
    bad = ValueError(f'time: invalid duration "{text}"')
    s = text
    sign = -1 if s.startswith("-") else 1
    if s[:1] in "+-" and s:
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise bad
    total = 0
    while s:
        m = _DURATION_PART.match(s)
        if not m or (not m.group(1) and not m.group(2)):
            raise bad
        whole, frac, unit = m.group(1), m.group(2) or "", m.group(3)
        if not unit:
            raise ValueError(f'time: missing unit in duration "{text}"')
        if unit not in _UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{text}"')
        scale = _UNITS[unit]
        total += int(whole or "0") * scale
        if frac:
            total += int(frac) * scale // 10 ** len(frac)
        s = s[m.end() :]
    return sign * total


# --- RUN --mount -------------------------------------------------------------------------------

MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
SHARING_MODES = ("shared", "private", "locked")
_MOUNT_KEYS = [
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
]
_SIZE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_SIZE_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


@dataclass(frozen=True, slots=True)
class Mount:
    """One ``RUN --mount``: its fields after expansion, defaults as BuildKit fills them.

    ``from_stage`` is set by the planner when ``from_`` names (or numbers) a stage of the
    Dockerfile; otherwise a non-empty ``from_`` is an image reference.
    """

    type: str = "bind"
    target: str = ""
    source: str = ""
    from_: str = ""
    readonly: bool = True
    id: str = ""
    sharing: str = ""
    required: bool = False
    size: int = 0
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    env: str | None = None
    from_stage: int | None = field(default=None, compare=False)


def _parse_bool(key: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"invalid value for {key}: {value}")


def _parse_uint(value: str, base: int, what: str) -> int:
    try:
        n = int(value, base)
    except ValueError:
        raise ValueError(f"invalid value {value} for {what}") from None
    if n < 0 or n >= 1 << 32 or value.startswith(("+", "-")):
        raise ValueError(f"invalid value {value} for {what}")
    return n


def _parse_size(value: str) -> int:
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"invalid value for size: {value}")
    unit = (m.group(2) or "").lower()
    return int(float(m.group(1)) * _SIZE_UNITS.get(unit, 1))


def parse_mount(spec: str, expand: Callable[[str], str] | None = None) -> Mount:
    """The Mount of a ``--mount=`` value (CSV ``key=value`` fields); ValueError if it is wrong.

    ``expand`` is applied to every value first (the planner passes the step's variables).
    """
    try:
        fields = next(csv.reader([spec], skipinitialspace=False), [])
    except csv.Error as exc:
        raise ValueError(f"failed to parse csv mounts: {exc}") from None
    values: dict[str, object] = {"type": "bind"}
    ro_auto = True
    for item in fields:
        key, has_value, value = item.partition("=")
        key = key.lower()
        mtype = str(values["type"])
        if not has_value:
            if key in ("readonly", "ro"):
                values["readonly"], ro_auto = True, False
            elif key in ("readwrite", "rw"):
                values["readonly"], ro_auto = False, False
            elif key == "required":
                if mtype not in ("secret", "ssh"):
                    raise ValueError(f"unexpected key '{key}' for mount type '{mtype}'")
                values["required"] = True
            else:
                raise ValueError(f"invalid field '{item}' must be a key=value pair")
            continue
        if expand is not None:
            value = expand(value)
        if key == "type":
            if value.lower() not in MOUNT_TYPES:
                raise ValueError(f'unsupported mount type "{value}"{suggest(value, list(MOUNT_TYPES))}')
            values["type"] = value.lower()
        elif key == "from":
            values["from_"] = value
        elif key in ("source", "src"):
            values["source"] = value
        elif key in ("target", "dst", "destination"):
            values["target"] = value
        elif key in ("readonly", "ro"):
            values["readonly"], ro_auto = _parse_bool(key, value), False
        elif key in ("readwrite", "rw"):
            values["readonly"], ro_auto = not _parse_bool(key, value), False
        elif key == "required":
            if mtype not in ("secret", "ssh"):
                raise ValueError(f"unexpected key '{key}' for mount type '{mtype}'")
            values["required"] = _parse_bool(key, value)
        elif key == "size":
            if mtype != "tmpfs":
                raise ValueError(f"unexpected key '{key}' for mount type '{mtype}'")
            values["size"] = _parse_size(value)
        elif key == "id":
            values["id"] = value
        elif key == "sharing":
            if value.lower() not in SHARING_MODES:
                raise ValueError(f'unsupported sharing value "{value}"')
            values["sharing"] = value.lower()
        elif key == "mode":
            values["mode"] = _parse_uint(value, 8, "mode")
        elif key in ("uid", "gid"):
            values[key] = _parse_uint(value, 10, key)
        elif key == "env":
            values["env"] = value
        else:
            raise ValueError(f"unexpected key '{key}' in '{item}'{suggest(key, _MOUNT_KEYS)}")
    mount = Mount(**values)  # type: ignore[arg-type]
    if mount.type not in ("secret", "ssh", "cache"):
        for what in ("mode", "uid", "gid"):
            if getattr(mount, what) is not None:
                raise ValueError(f'{what} not allowed for "{mount.type}" type mounts')
    if ro_auto:
        mount = replace(mount, readonly=mount.type not in ("cache", "tmpfs"))
    if mount.type == "secret":
        if mount.from_:
            raise ValueError("secret mount should not have a from")
        if mount.sharing:
            raise ValueError("secret mount should not define sharing")
        if not (mount.source or mount.target or mount.id):
            raise ValueError("invalid secret mount. one of source, target required")
        if mount.source and mount.id:
            raise ValueError("both source and id can't be set")
    if mount.sharing and mount.type != "cache":
        raise ValueError(f"invalid cache sharing set for {mount.type} mount")
    return mount
