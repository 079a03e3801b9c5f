"""``dockyard stats``: live CPU, memory, network, block I/O and pids of containers, as docker shows them.

Without names: every running container. The server samples once a second (the first row comes
after one second: CPU % is a difference); ``--no-stream`` prints one table and exits. On a
terminal each table replaces the last; otherwise tables follow each other. ``--format json``
prints one object a line per container and sample, with docker's keys (``Container``, ``Name``,
``CPUPerc``, ``MemUsage``, ``MemPerc``, ``NetIO``, ``BlockIO``, ``PIDs``) plus the raw numbers
(``CPUPercent``, ``MemoryBytes``, ``MemoryLimitBytes``, ``PIDsCurrent``, ``PIDsLimit``, …).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

HEADERS = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-stream", action="store_true", help="print one sample and exit")
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate ids")
    parser.add_argument(
        "--format",
        default="table",
        help="table, json (one object a line), or a Go template: 'table {{.Name}}\\t{{.CPUPerc}}'",
    )
    parser.add_argument("containers", nargs="*", metavar="CONTAINER", help="default: every running one")


# docker's column titles for ``stats --format 'table …'`` (cli/command/container/formatter_stats.go)
TEMPLATE_HEADERS = {
    "Container": "CONTAINER ID",
    "ID": "CONTAINER ID",
    "Name": "NAME",
    "CPUPerc": "CPU %",
    "MemUsage": "MEM USAGE / LIMIT",
    "MemPerc": "MEM %",
    "NetIO": "NET I/O",
    "BlockIO": "BLOCK I/O",
    "PIDs": "PIDS",
}


def binary_size(size: float) -> str:
    """docker's memory sizes: "1.5MiB", "23.45GiB"."""
    unit = 0
    while size >= 1024 and unit < len(_BINARY) - 1:
        size /= 1024.0
        unit += 1
    return f"{size:.4g}{_BINARY[unit]}"


def row(s: Any, no_trunc: bool = False) -> dict[str, Any]:
    """One ContainerStats message as docker's stats fields (strings) plus the raw numbers."""
    from dockyard.cli.human import human_size

    return {
        "Container": s.id if no_trunc else s.id[:12],
        "ID": s.id,
        "Name": s.name,
        "CPUPerc": f"{s.cpu_percent:.2f}%",
        "MemUsage": f"{binary_size(s.memory_usage)} / {binary_size(s.memory_limit)}",
        "MemPerc": f"{s.memory_percent:.2f}%",
        "NetIO": f"{human_size(s.net_rx_bytes)} / {human_size(s.net_tx_bytes)}",
        "BlockIO": f"{human_size(s.block_read_bytes)} / {human_size(s.block_write_bytes)}",
        "PIDs": str(s.pids),
        "CPUPercent": s.cpu_percent,
        "CPUTotalNs": s.cpu_total_ns,
        "MemoryBytes": s.memory_usage,
        "MemoryLimitBytes": s.memory_limit,
        "NetRxBytes": s.net_rx_bytes,
        "NetTxBytes": s.net_tx_bytes,
        "BlockReadBytes": s.block_read_bytes,
        "BlockWriteBytes": s.block_write_bytes,
        "PIDsCurrent": s.pids,
        "PIDsLimit": s.pids_limit,
        "FromCgroup": s.from_cgroup,
    }


def run(args: argparse.Namespace) -> int:
    import json

    from dockyard.api.containers.v1 import containers_pb2 as pb
    from dockyard.api.containers.v1 import containers_pb2_grpc
    from dockyard.cli import gofmt
    from dockyard.cli.client import channel
    from dockyard.cli.gofmt import struct
    from dockyard.cli.output import table

    gofmt.check(args.format)  # a bad template is refused before the platform is asked
    tty = sys.stdout.isatty()
    request = pb.StatsRequest(ids=args.containers, stream=not args.no_stream)
    with channel(args.host) as ch:
        for report in containers_pb2_grpc.ContainersStub(ch).Stats(request):
            rows = [row(s, args.no_trunc) for s in report.stats]
            if gofmt.is_template(args.format):
                if tty and not args.no_stream and gofmt.prepare(args.format)[0]:
                    print("\033[2J\033[H", end="")
                contexts = [struct("*container.statsContext", r) for r in rows]
                print(gofmt.render(args.format, contexts, TEMPLATE_HEADERS), end="", flush=True)
                continue
            if args.format.strip() == "json":
                for r in rows:
                    print(json.dumps(r), flush=True)
                continue
            if tty and not args.no_stream:
                print("\033[2J\033[H", end="")
            keys = ("Container", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs")
            table(HEADERS, [[r[k] for k in keys] for r in rows])
            sys.stdout.flush()
    return 0
