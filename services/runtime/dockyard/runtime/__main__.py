"""dockyard-runtime: images and rootless containers on this node.

Start-up has two halves. As the real user: probe the host once (``dockyard.core.rootless``),
record the facts, make sure the node namespace exists, and re-execute inside it. Inside:
serve. Every flag has an environment variable (``DOCKYARD_RUNTIME_<FLAG>``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from dockyard.adapters.host import HostConfig, ServiceHost, add_host_flags, run_service
from dockyard.core import logging
from dockyard.core.errors import DockyardError
from dockyard.core.private import UMASK
from dockyard.core.rootless import RootlessFacts, detect
from dockyard.runtime import userns

GRPC_PORT = 7072


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dockyard-runtime",
        description="Runs containers rootless on this node: image store, overlay rootfs, runc under conmon.",
    )
    add_host_flags(parser, "runtime", GRPC_PORT)
    parser.add_argument(
        "--platform-auth",
        type=Path,
        default=os.environ.get("DOCKYARD_RUNTIME_PLATFORM_AUTH") or None,
        help="the platform's own registry logins (docker config.json shape), used where the node has "
        "no `dockyard login` of its own; `dockyard up` passes its registry's "
        "[DOCKYARD_RUNTIME_PLATFORM_AUTH]",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    state_dir = Path(args.state_dir).resolve()
    os.umask(UMASK)  # before facts.json; kept across the nsenter re-exec (dockyard.core.private)
    facts_file = state_dir / "facts.json"
    if not userns.in_node_namespace():
        if os.getuid() == 0:
            print("dockyard-runtime: refusing to run as root: start it as an ordinary user", file=sys.stderr)
            return 1
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        facts = detect()
        if not facts.ok:
            failed = [f"{c.name}: {c.detail} (fix: {c.fix})" for c in facts.checks if c.required and not c.ok]
            print(
                "dockyard-runtime: rootless containers cannot run here:", *failed, sep="\n  ", file=sys.stderr
            )
            return 1
        tmp = facts_file.with_suffix(".tmp")
        tmp.write_text(facts.to_json())
        tmp.replace(facts_file)
        try:
            userns.reexec_inside(state_dir, [sys.executable, "-m", "dockyard.runtime", *argv])
        except DockyardError as exc:
            print(f"dockyard-runtime: {exc}", file=sys.stderr)
            return 1
    logging.configure("runtime")
    facts = RootlessFacts.from_json(facts_file.read_text())
    config = HostConfig.from_args("runtime", args)

    async def serve() -> None:
        from dockyard.runtime import app

        # Containers' helpers (slirp4netns, exec'd processes) are our children: watch them with
        # pidfds, not a thread each.
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(asyncio.get_running_loop())
        asyncio.set_child_watcher(watcher)
        host: ServiceHost = app.build(config, facts, platform_auth=args.platform_auth)
        await host.run()

    return run_service("runtime", serve)


if __name__ == "__main__":
    sys.exit(main())
