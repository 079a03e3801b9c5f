"""Dockerfile-style config changes, as ``docker import/commit --change`` takes them.

``apply_changes(image_config, ["CMD [\\"sh\\"]", "ENV A=1"])`` returns a new OCI image config
document (``{"architecture", "os", "config": {...}, ...}``) whose ``config`` section has the
changes applied in order; the input is not modified. Supported instructions (case-insensitive):

=============  ===========================================================================
CMD            JSON exec form ``["a","b"]`` or shell form ``a b`` → ``["/bin/sh","-c","a b"]``
ENTRYPOINT     the same forms
ENV            ``k=v [k2="v 2" …]`` or ``k v…``; replaces an existing ``k``
EXPOSE         ``80``, ``80/tcp``, ``53/udp``, ``8000-8002`` (expanded); several per line
LABEL          ``k=v [k2="v 2" …]``
USER           ``user[:group]``
WORKDIR        absolute, or relative to the current one
VOLUME         JSON array or space-separated paths
STOPSIGNAL     ``SIGTERM``, ``TERM`` or a number
ONBUILD        stored as written
=============  ===========================================================================

Anything else is InvalidArgument ``unsupported --change instruction X``. No ``$VAR``
substitution is done (docker does it for ENV/WORKDIR/...; changes given on a command line have
already been through the caller's shell).
"""

from __future__ import annotations

import copy
import json
import posixpath
import re
import shlex
from collections.abc import Callable
from typing import Any

from dockyard.core.errors import InvalidArgument

_PORT = re.compile(r"(\d{1,5})(?:-(\d{1,5}))?(?:/(tcp|udp|sctp))?")
_SIGNAL = re.compile(r"(?:SIG)?[A-Z][A-Z0-9+-]*|\d{1,2}")
_KEY = re.compile(r"[^=]+")


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """A copy of the image config ``config`` with ``changes`` applied in order (pure)."""
    out = copy.deepcopy(config)
    section = out.get("config")
    if not isinstance(section, dict):
        section = {}
    out["config"] = section
    for change in changes:
        keyword, _, rest = change.strip().partition(" ")
        if not keyword:
            raise InvalidArgument("empty --change instruction")
        handler = _HANDLERS.get(keyword.upper())
        if handler is None:
            raise InvalidArgument(
                f"unsupported --change instruction {keyword}: use one of {', '.join(sorted(_HANDLERS))}",
                change=change,
            )
        rest = rest.strip()
        if not rest:
            raise InvalidArgument(f"{keyword.upper()} needs an argument", change=change)
        handler(section, rest)
    return out


def _exec_form(rest: str, keyword: str) -> list[str] | None:
    """The JSON array of strings in ``rest``, or None when ``rest`` is not one (shell form)."""
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None  # docker, too, falls back to the shell form
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{keyword} JSON form must be an array of strings: {rest[:200]}")
    return value


def _command(key: str, keyword: str) -> Callable[[dict[str, Any], str], None]:
    def apply(section: dict[str, Any], rest: str) -> None:
        argv = _exec_form(rest, keyword)
        section[key] = argv if argv is not None else ["/bin/sh", "-c", rest]

    return apply


def _pairs(rest: str, keyword: str, *, allow_space_form: bool) -> list[tuple[str, str]]:
    """``k=v k2="v 2"`` (or, for ENV, the legacy ``k v…``) as ordered pairs."""
    first = rest.split(None, 1)[0]
    if "=" not in first:
        if not allow_space_form:
            raise InvalidArgument(f"{keyword} wants key=value: {rest[:200]}")
        key, _, value = rest.partition(" ")
        if not value.strip():
            raise InvalidArgument(f"{keyword} {key} needs a value (ENV key value, or ENV key=value)")
        return [(key, value.strip())]
    try:
        words = shlex.split(rest, posix=True)
    except ValueError as exc:
        raise InvalidArgument(f"{keyword}: {exc}: {rest[:200]}") from None
    pairs = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or _KEY.fullmatch(key) is None:
            raise InvalidArgument(f"{keyword} wants key=value, got {word[:200]!r}")
        pairs.append((key, value))
    return pairs


def _env(section: dict[str, Any], rest: str) -> None:
    env: list[str] = list(section.get("Env") or [])
    for key, value in _pairs(rest, "ENV", allow_space_form=True):
        env = [e for e in env if e.partition("=")[0] != key]
        env.append(f"{key}={value}")
    section["Env"] = env


def _label(section: dict[str, Any], rest: str) -> None:
    labels: dict[str, str] = dict(section.get("Labels") or {})
    for key, value in _pairs(rest, "LABEL", allow_space_form=False):
        labels[key] = value
    section["Labels"] = labels


def _expose(section: dict[str, Any], rest: str) -> None:
    ports: dict[str, Any] = dict(section.get("ExposedPorts") or {})
    for word in rest.split():
        m = _PORT.fullmatch(word.lower())
        if m is None:
            raise InvalidArgument(f"EXPOSE: invalid port {word!r} (want PORT[-PORT][/tcp|udp|sctp])")
        low = int(m.group(1))
        high = int(m.group(2) or low)
        if not 0 < low <= high < 65536:
            raise InvalidArgument(f"EXPOSE: invalid port {word!r}")
        for port in range(low, high + 1):
            ports[f"{port}/{m.group(3) or 'tcp'}"] = {}
    section["ExposedPorts"] = ports


def _user(section: dict[str, Any], rest: str) -> None:
    section["User"] = rest


def _workdir(section: dict[str, Any], rest: str) -> None:
    current = section.get("WorkingDir") or "/"
    section["WorkingDir"] = posixpath.normpath(posixpath.join(current, rest))


def _volume(section: dict[str, Any], rest: str) -> None:
    paths = _exec_form(rest, "VOLUME")
    if paths is None:
        paths = rest.split()
    if not paths or not all(paths):
        raise InvalidArgument(f"VOLUME needs at least one path: {rest[:200]}")
    volumes: dict[str, Any] = dict(section.get("Volumes") or {})
    for path in paths:
        volumes[path] = {}
    section["Volumes"] = volumes


def _stopsignal(section: dict[str, Any], rest: str) -> None:
    if _SIGNAL.fullmatch(rest) is None:
        raise InvalidArgument(f"STOPSIGNAL: invalid signal {rest[:50]!r}")
    section["StopSignal"] = rest


def _onbuild(section: dict[str, Any], rest: str) -> None:
    section["OnBuild"] = [*(section.get("OnBuild") or []), rest]


_HANDLERS: dict[str, Callable[[dict[str, Any], str], None]] = {
    "CMD": _command("Cmd", "CMD"),
    "ENTRYPOINT": _command("Entrypoint", "ENTRYPOINT"),
    "ENV": _env,
    "EXPOSE": _expose,
    "LABEL": _label,
    "USER": _user,
    "WORKDIR": _workdir,
    "VOLUME": _volume,
    "STOPSIGNAL": _stopsignal,
    "ONBUILD": _onbuild,
}
