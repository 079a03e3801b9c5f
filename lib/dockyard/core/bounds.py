"""How big what a client asks for may be: names, labels, environment, arguments, a whole spec.

Docker bounds a container's name by its pattern only, and its environment and arguments by
what ``execve(2)`` takes (each string at most ``MAX_ARG_STRLEN``, 128 KiB; all of them within
``ARG_MAX``, 2 MiB by default, which E2BIG refuses only at start). Here every bound is checked
at create, before anything is made, so a record, its events (NATS refuses a message past its
``max_payload``, 1 MiB by default) and a page of a listing stay small whatever a client sends:

- a container name: ``[a-zA-Z0-9][a-zA-Z0-9_.-]+`` (docker's pattern), at most 255 bytes;
- each argument and environment entry at most 128 KiB; command, entrypoint and environment
  together at most 1 MiB counted as ``execve`` counts them (bytes + NUL + a pointer each),
  which leaves half of ARG_MAX for the image's own environment;
- labels: keys at most 1 KiB, keys and values together at most 256 KiB;
- a whole ``ContainerSpec`` message at most 2 MiB (the gRPC limit is 4 MiB).

A bound broken is InvalidArgument with one line naming it. Pure: no I/O, no gRPC.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from dockyard.core.errors import InvalidArgument

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
NAME_MAX = 255
ARG_MAX_ENTRY = 128 << 10
EXEC_MAX = 1 << 20
LABEL_KEY_MAX = 1 << 10
LABELS_MAX = 256 << 10
SPEC_MAX = 2 << 20

_POINTER = 8


def _size(text: str) -> int:
    return len(text.encode(errors="surrogatepass"))


def check_container_name(name: str) -> str:
    if _size(name) > NAME_MAX:
        raise InvalidArgument(f"invalid container name {name[:24]!r}…: longer than {NAME_MAX} bytes")
    if not NAME_RE.match(name):
        raise InvalidArgument(f"invalid container name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]+")
    return name


def check_exec(command: Iterable[str], entrypoint: Iterable[str], env: Iterable[str]) -> None:
    """The strings ``execve`` will be handed: each and all of them within the bounds above."""
    total = 0
    for what, items in (("argument", command), ("entrypoint", entrypoint), ("environment entry", env)):
        for item in items:
            size = _size(item)
            if size > ARG_MAX_ENTRY:
                raise InvalidArgument(
                    f"an {what} of {size} bytes is longer than {ARG_MAX_ENTRY // 1024} KiB ({item[:24]!r}…)"
                )
            total += size + 1 + _POINTER
            if total > EXEC_MAX:
                raise InvalidArgument(
                    f"arguments and environment are over {EXEC_MAX >> 20} MiB together "
                    "(as execve counts them)"
                )


def check_labels(labels: Mapping[str, str]) -> None:
    total = 0
    for key, value in labels.items():
        if not key:
            raise InvalidArgument("a label needs a key")
        if _size(key) > LABEL_KEY_MAX:
            raise InvalidArgument(f"label key {key[:24]!r}… is longer than {LABEL_KEY_MAX} bytes")
        total += _size(key) + _size(value)
        if total > LABELS_MAX:
            raise InvalidArgument(f"labels are over {LABELS_MAX >> 10} KiB together")


def check_message_size(size: int, what: str, limit: int = SPEC_MAX) -> None:
    if size > limit:
        raise InvalidArgument(f"{what} is {size} bytes: at most {limit >> 20} MiB")
