"""Resource-limit flags, shared by ``run``/``create`` and ``update``: parsed docker's way.

``-m/--memory`` and ``--memory-swap`` take a size: a number with an optional binary unit
``b k m g t p`` (any case, optional trailing "b": "256m", "1.5GiB" is not docker's but "1.5g" is),
``--memory-swap -1`` means unlimited swap; ``--cpus`` a decimal number of CPUs ("0.5"), sent as
nano-CPUs; ``-c/--cpu-shares`` and ``--pids-limit`` integers (``--pids-limit 0`` or ``-1``: no
limit, as docker; without the flag the runtime applies its default). Every value must fit the
int64 field it travels in (a number past that is no limit anyone means). A bad value is
InvalidArgument with one line naming the flag. Standard library only (imported while the parser
is built).
"""

from __future__ import annotations

import argparse
import re
from decimal import Decimal, InvalidOperation
from typing import Any

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmgtp]?)b?$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
INT64_MAX = (1 << 63) - 1
INT32_MAX = (1 << 31) - 1


def _invalid(message: str) -> Exception:
    from dockyard.core.errors import InvalidArgument

    return InvalidArgument(message)


def parse_size(text: str, flag: str, *, allow_unlimited: bool = False) -> int:
    """ "256m" → 268435456; "-1" → -1 when ``allow_unlimited``."""
    value = text.strip()
    if allow_unlimited and value == "-1":
        return -1
    m = _SIZE.match(value)
    if not m:
        raise _invalid(f"invalid size for {flag}: {text!r} (e.g. 512m, 1g, 1048576)")
    number, unit = m.groups()
    size = int(Decimal(number) * _UNITS[unit.lower()])
    if size > INT64_MAX:
        raise _invalid(f"invalid size for {flag}: {text!r} is too large (at most 8191p)")
    return size


def parse_cpus(text: str) -> int:
    """ "0.5" → 500000000 nano-CPUs."""
    try:
        cpus = Decimal(text.strip())
    except InvalidOperation:
        raise _invalid(f"invalid value for --cpus: {text!r} (a number of CPUs, e.g. 0.5)") from None
    if not cpus.is_finite() or cpus < 0:
        raise _invalid(f"invalid value for --cpus: {text!r} (a number of CPUs, e.g. 0.5)")
    nano = int(cpus * 10**9)
    if nano > INT64_MAX:
        raise _invalid(f"invalid value for --cpus: {text!r} is too large")
    return nano


def integer(text: str, flag: str, *, low: int = -INT64_MAX - 1, high: int = INT64_MAX) -> int:
    """``text`` as an int in [low, high]; InvalidArgument naming ``flag`` otherwise."""
    try:
        value = int(text.strip())
    except ValueError:
        raise _invalid(f"invalid value for {flag}: {text!r} (an integer)") from None
    if not low <= value <= high:
        raise _invalid(f"invalid value for {flag}: {text!r} is out of range ({low} to {high})")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The limit flags (kept as strings here; :func:`apply` parses them, so errors are one line)."""
    a = parser.add_argument
    a("-m", "--memory", default=None, metavar="BYTES", help="memory limit (e.g. 256m, 1g)")
    a("--memory-swap", default=None, metavar="BYTES", help="memory plus swap limit; -1: unlimited swap")
    a("--cpus", default=None, metavar="N", help="number of CPUs (e.g. 0.5)")
    a("-c", "--cpu-shares", default=None, metavar="N", help="relative CPU weight (default 1024)")
    a(
        "--pids-limit",
        default=None,
        metavar="N",
        help="most processes at once (default: the runtime's, 2048); 0 or -1: unlimited",
    )


def parse(args: argparse.Namespace) -> dict[str, int]:
    """The limits given on the command line, as Resources field → value."""
    out: dict[str, int] = {}
    if args.memory is not None:
        out["memory"] = parse_size(args.memory, "--memory")
    if args.memory_swap is not None:
        out["memory_swap"] = parse_size(args.memory_swap, "--memory-swap", allow_unlimited=True)
    if args.cpus is not None:
        out["nano_cpus"] = parse_cpus(args.cpus)
    if args.cpu_shares is not None:
        out["cpu_shares"] = integer(args.cpu_shares, "--cpu-shares")
    if args.pids_limit is not None:
        out["pids_limit"] = integer(args.pids_limit, "--pids-limit", low=-1)
    return out


def apply(args: argparse.Namespace, resources: Any) -> None:
    """Set the given limits on a ``Resources`` message (fields left out stay unset)."""
    for name, value in parse(args).items():
        setattr(resources, name, value)
