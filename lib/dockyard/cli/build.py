"""``dockyard build``: build an image from a Dockerfile and a context directory, as docker does.

The context directory is walked and streamed by the client library (``dockyard.client.builds``:
``.dockerignore``'d, a tar in 1 MiB chunks, never whole in memory). The Dockerfile (``-f``,
anywhere, ``-`` for stdin) travels in the options. Progress goes to stderr
(``buildprogress``: plain ``#N`` lines for CI logs, or a live tty view); ``-q`` prints only
the image id, on stdout. ``SOURCE_DATE_EPOCH`` in the environment sets the image's timestamps
(default: the git context's commit time, else the newest base's; see the builder's engine).
``--cache-to``/``--cache-from`` take buildx's ``type=registry,ref=…`` values, checked here
(``dockyard.core.cacheoptions``) so that a bad one fails before the context is sent.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="the build context directory")
    parser.add_argument(
        "-t", "--tag", action="append", default=[], help="name:tag for the image (repeatable)"
    )
    parser.add_argument(
        "-f", "--file", default="", help="the Dockerfile (default PATH/Dockerfile; - for stdin)"
    )
    parser.add_argument(
        "--build-arg", action="append", default=[], metavar="K=V", help="set a build-time variable"
    )
    parser.add_argument(
        "--label", action="append", default=[], metavar="K=V", help="set a label on the image"
    )
    parser.add_argument("--target", default="", help="build this stage (default: the last)")
    parser.add_argument("--no-cache", action="store_true", help="do not use the build cache")
    parser.add_argument(
        "--pull", action="store_true", help="pull base images that name a registry, even if present"
    )
    parser.add_argument(
        "--squash", action="store_true", help="merge the layers the target stage adds into one"
    )
    parser.add_argument(
        "--cache-from",
        action="append",
        default=[],
        metavar="type=registry,ref=REF",
        help="use the build cache a --cache-to pushed to REF (repeatable)",
    )
    parser.add_argument(
        "--cache-to",
        action="append",
        default=[],
        metavar="type=registry,ref=REF[,mode=min|max]",
        help="export the build cache to REF (mode=max: every stage's steps)",
    )
    parser.add_argument("--push", action="store_true", help="push every -t tag after the build")
    parser.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="id=ID[,src=FILE|env=VAR]",
        help="a secret for RUN --mount=type=secret (repeatable)",
    )
    parser.add_argument(
        "--progress", default="auto", choices=("auto", "plain", "tty"), help="how progress is shown"
    )
    parser.add_argument("--iidfile", default="", help="write the image id to this file")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the image id")


def secrets_option(values: list[str]) -> dict[str, bytes]:
    """``--secret`` values (docker's syntax) read now: id → bytes; a bad or unreadable one is
    InvalidArgument, one line, before anything is sent."""
    if not values:
        return {}
    from dockyard.cli.buildsecrets import parse_secret_flag, read_secret
    from dockyard.core.errors import InvalidArgument

    out: dict[str, bytes] = {}
    for value in values:
        source = parse_secret_flag(value)
        if source.id in out:
            raise InvalidArgument(f"--secret id={source.id} is given twice")
        out[source.id] = read_secret(source, os.environ)
    return out


def cache_options(values: list[str], flag: str) -> list[Any]:
    """``--cache-from``/``--cache-to`` values (buildx's syntax) as BuildCache messages; a bad one
    is InvalidArgument, one line, before anything is sent."""
    if not values:
        return []
    from dockyard.api.builds.v1 import builds_pb2 as pb
    from dockyard.core.cacheoptions import parse_cache_option

    out = []
    for value in values:
        spec = parse_cache_option(value, flag)
        out.append(pb.BuildCache(ref=spec.ref, mode=spec.mode, ignore_error=spec.ignore_error))
    return out


def _pairs(values: list[str], what: str, from_env: bool) -> dict[str, str]:
    from dockyard.core.errors import InvalidArgument

    out: dict[str, str] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"{what} {item!r}: want KEY=VALUE")
        if not eq:
            if not from_env:
                raise InvalidArgument(f"{what} {item!r}: want KEY=VALUE")
            if key not in os.environ:
                continue  # docker: a --build-arg without a value and not in the environment is unset
            value = os.environ[key]
        out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    from dockyard.api.builds.v1 import builds_pb2 as pb
    from dockyard.cli.buildprogress import display
    from dockyard.client import Client
    from dockyard.client.builds import read_dockerfile
    from dockyard.core.errors import InvalidArgument

    root = Path(args.path)
    content, name = (
        (sys.stdin.buffer.read(), "Dockerfile") if args.file == "-" else read_dockerfile(root, args.file)
    )
    options = pb.BuildOptions(
        dockerfile=name,
        dockerfile_content=content,
        tags=args.tag,
        build_args=_pairs(args.build_arg, "--build-arg", from_env=True),
        labels=_pairs(args.label, "--label", from_env=False),
        target=args.target,
        no_cache=args.no_cache,
        squash=args.squash,
        pull=args.pull,
        push=args.push,
        cache_from=cache_options(args.cache_from, "--cache-from"),
        cache_to=cache_options(args.cache_to, "--cache-to"),
        secrets=secrets_option(args.secret),
    )
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    if epoch:
        try:
            options.source_date_epoch = int(epoch)
        except ValueError:
            raise InvalidArgument(f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds") from None

    view = None if args.quiet else display(args.progress, sys.stderr)
    image_id = ""
    with Client(args.host) as client, contextlib.ExitStack() as cleanup:
        if view is not None:
            cleanup.callback(view.close)
        for event in client.builds.build_from_options(options, root):
            if event.status == "result":
                image_id = event.image_id
                if view is not None:
                    view.close()
                    sys.stderr.write(
                        f"writing image {image_id} done ({event.cached_steps}/{event.total} steps cached, "
                        f"{event.seconds:.1f}s)\n"
                    )
                    for tag in args.tag:
                        sys.stderr.write(f"naming to {tag} done\n")
            elif view is not None:
                view.event(event)
    if args.iidfile:
        Path(args.iidfile).write_text(image_id)
    if args.quiet:
        print(image_id)
    return 0
