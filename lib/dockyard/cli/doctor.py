"""``dockyard doctor``: what this host lets the current user do rootless, and what to fix.

Runs :func:`dockyard.core.rootless.detect` (real probes, ~0.2 s) and prints one line per check::

    ✔ user namespaces — unshare --user --map-root-user works
    ✘ crun — crun version 1.8.1: container failed: cgroups in hybrid mode not supported (optional)
        fix: unsupported on cgroup v1/hybrid hosts: use runc (chosen automatically), or boot with cgroup v2

then the snapshotter and OCI runtime the runtime service would choose. ``--format json`` prints the
facts as JSON instead. Exit status 0 when every required check passed, 1 otherwise.

Imports only the standard library and the core module, so the CLI starts fast (no grpc).
"""

from __future__ import annotations

import argparse
import os
import sys

from dockyard.core.rootless import RootlessFacts, detect


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text (default): one line per check; json: the recorded facts",
    )
    parser.add_argument(
        "--as-root", action="store_true", help="check root itself (by default root checks the dockyard user)"
    )


def render(facts: RootlessFacts) -> str:
    """The human report: one line per check, a fix line under each failure, then the decisions."""
    lines = []
    for c in facts.checks:
        mark = "✔" if c.ok else "✘"
        optional = "" if c.ok or c.required else " (optional)"
        lines.append(f"{mark} {c.name} — {c.detail}{optional}")
        if not c.ok and c.fix:
            lines.append(f"    fix: {c.fix}")
    limits = "enforced" if facts.limits_enforceable else "not enforceable"
    lines.append("")
    lines.append(f"user: {facts.user} (uid {facts.uid}), kernel {facts.kernel}, cgroup {facts.cgroup}")
    lines.append(f"snapshotter: {facts.snapshotter}")
    lines.append(f"oci runtime: {facts.oci_runtime}")
    lines.append(f"resource limits: {limits}")
    if facts.ok:
        lines.append("rootless containers: ready")
    else:
        failed = ", ".join(c.name for c in facts.checks if c.required and not c.ok) or "no oci runtime"
        lines.append(f"rootless containers: NOT ready ({failed})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Probe, print, and return the exit status (0 ready, 1 not).

    As root, the facts that matter are those of the user the platform runs as (``dockyard up``
    drops to it), so the doctor re-executes itself as that user unless ``--as-root``.
    """
    if os.geteuid() == 0 and not getattr(args, "as_root", False):
        from dockyard.cli.privilege import platform_user, reexec_as

        host = getattr(args, "host", None)  # root's platform, checked by the platform's user
        where = ["-H", str(host)] if host is not None else []
        reexec_as(platform_user(), [*where, "doctor", "--format", getattr(args, "format", "text")])
    facts = detect()
    if getattr(args, "format", "text") == "json":
        print(facts.to_json())
    else:
        print(render(facts))
        if (host := getattr(args, "host", None)) is not None:
            print(platform_report(host))
    return 0 if facts.ok else 1


def platform_report(host: object) -> str:
    """What the running platform (if one answers at ``host``) exposes to other local users.

    Best effort and brief: no platform is a line, not a failure (the host checks above are what
    decides the exit status). A registry without authentication is a warning.
    """
    try:
        from dockyard.api.system.v1 import system_pb2, system_pb2_grpc
        from dockyard.cli.client import channel

        with channel(host) as ch:  # type: ignore[arg-type]
            status = system_pb2_grpc.PlatformStub(ch).Status(system_pb2.StatusRequest(), timeout=5)
    except Exception as exc:  # not running, not allowed: the platform is not checked
        return f"\nplatform: not checked ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    details = next((dict(b.info.details) for b in status.backends if b.name == "registry"), {})
    auth = details.get("auth", "")
    if auth == "none":
        return (
            f"\n✘ registry authentication — none: every local user may push, overwrite and delete "
            f"images at {details.get('http', '')} (dockyard up --registry-auth none)\n"
            "    fix: restart `dockyard up` without --registry-auth none (default: token)"
        )
    if not auth:
        return "\nplatform: the registry did not say how it authenticates"
    anonymous = details.get("anonymous", "none") or "none"
    return f"\n✔ registry authentication — {auth} at {details.get('http', '')}, anonymous {anonymous}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dockyard doctor", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
