"""``dockyard logs``: a container's output, stdout to stdout and stderr to stderr.

``--since`` takes what ``dockyard events`` takes: RFC 3339, Unix seconds, or a duration back from
now (10m). ``-t`` prefixes each entry with its RFC 3339 time (nanoseconds), as docker does.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--follow", action="store_true", help="keep streaming new output")
    parser.add_argument("--tail", default="all", help="number of lines from the end, or all")
    parser.add_argument("--since", help="from this time (RFC 3339, Unix seconds, or 10m/2h ago)")
    parser.add_argument("-t", "--timestamps", action="store_true", help="prefix each line with its time")
    parser.add_argument("container", metavar="CONTAINER")


def parse_tail(value: str) -> int:
    """``--tail``: "all" (or negative) → 0, which the API reads as everything; else N lines."""
    from dockyard.core.errors import InvalidArgument

    if value == "all":
        return 0
    try:
        n = int(value)
    except ValueError:
        raise InvalidArgument(f"bad --tail {value!r}: a number of lines, or all") from None
    return min(max(n, 0), (1 << 31) - 1)  # more lines than any log holds is the whole log


def run(args: argparse.Namespace) -> int:
    import sys

    import grpc

    from dockyard.adapters.grpc.convert import timestamp
    from dockyard.api.containers.v1 import containers_pb2 as pb
    from dockyard.api.containers.v1 import containers_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.cli.events import parse_time
    from dockyard.cli.human import rfc3339

    tail = parse_tail(args.tail)
    if args.tail.strip() == "0" and not args.follow:
        return 0  # docker: --tail 0 shows nothing of the past
    request = pb.LogsRequest(id=args.container, follow=args.follow, tail=tail)
    if args.since:
        request.since.CopyFrom(timestamp(parse_time(args.since)))
    out, err = sys.stdout.buffer, sys.stderr.buffer
    with channel(args.host) as ch:
        stream = containers_pb2_grpc.ContainersStub(ch).Logs(request)
        try:
            for entry in stream:
                target = err if entry.stream == pb.STREAM_STDERR else out
                if args.timestamps:
                    when = entry.time.seconds + entry.time.nanos / 1e9
                    target.write(rfc3339(when, entry.time.nanos).encode() + b" ")
                target.write(entry.data)
                target.flush()
        except KeyboardInterrupt:
            stream.cancel()
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise
    return 0
