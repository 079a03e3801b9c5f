"""``dockyard``: docker's verbs over Dockyard's gateway.

Start-up cost matters (people type this): the parser is built from the standard library
only, and only the chosen command's module is imported; it imports grpc and the generated
API inside ``run`` when it needs them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dockyard.cli import client
from dockyard.cli.verbs import VERBS

# verb -> (module in dockyard.cli, one-line help). Modules expose add_arguments(parser) and run(args).
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("up", "Start the whole platform on this machine (NATS, registry, runtime, builder, gateway)"),
    "info": ("info", "Show the platform: gateway, backends, health, versions, events"),
    "events": ("events", "Stream lifecycle events, replaying from any point the stream keeps"),
    "doctor": ("doctor", "Check this host's rootless prerequisites and say what to fix"),
    "registry": ("registry", "Administer the registry: ls, tags, inspect, rm, gc, du"),
    "version": ("version", "Show the client version"),
    **VERBS,
}


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; only ``verb``'s module is imported, to declare its flags."""
    parser = argparse.ArgumentParser(
        prog="dockyard",
        description="Dockyard: build, ship and run containers without root.",
        epilog="Run 'dockyard COMMAND --help' for a command's flags.",
    )
    client.add_flags(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, summary) in COMMANDS.items():
        cmd = sub.add_parser(name, help=summary, description=summary)
        cmd.set_defaults(module=module)
        if name == verb:
            importlib.import_module(f"dockyard.cli.{module}").add_arguments(cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = next((a for a in argv if a in COMMANDS), None)
    args = build_parser(verb).parse_args(argv)
    if not getattr(args, "module", None):
        build_parser().print_help()
        return 0
    from dockyard.cli.output import fail

    try:
        args.host = client.endpoint(args)  # commands pass it to client.channel; str() prints it
        code: int = importlib.import_module(f"dockyard.cli.{args.module}").run(args)
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `dockyard events | head`
        sys.stderr.close()
        return 0
    except Exception as exc:
        return fail(exc)


if __name__ == "__main__":
    sys.exit(main())
