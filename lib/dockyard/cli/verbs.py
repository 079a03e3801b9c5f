"""Docker's verbs, for the CLI's COMMANDS: verb -> (module in dockyard.cli, one-line help).

Every module has add_arguments(parser) and run(args) and imports only the standard library at
import time (grpc and the generated API inside ``run``), so building the parser for one verb stays
cheap. ``image`` / ``container`` / ``system`` are docker's management forms; their actions reuse
the top-level verbs' modules.
"""

from __future__ import annotations

VERBS: dict[str, tuple[str, str]] = {
    # containers
    "run": ("run", "Create and run a container, attached unless -d"),
    "create": ("create", "Create a container without starting it"),
    "start": ("start", "Start stopped containers (-a: attach)"),
    "stop": ("stop", "Stop running containers"),
    "restart": ("restart", "Restart containers"),
    "kill": ("kill", "Send a signal to containers"),
    "rm": ("rm", "Remove containers"),
    "ps": ("ps", "List containers"),
    "logs": ("logs", "Show a container's output"),
    "exec": ("exec", "Run a command in a running container"),
    "attach": ("attach", "Attach this terminal to a running container"),
    "wait": ("wait", "Wait for containers to exit, print their exit codes"),
    "commit": ("commit", "Make an image from a container's changes"),
    "diff": ("diff", "Show files changed in a container"),
    "cp": ("cp", "Copy files between a container and this machine"),
    "top": ("top", "Show a container's processes"),
    "pause": ("pause", "Pause every process of containers"),
    "unpause": ("unpause", "Unpause containers"),
    "rename": ("rename", "Rename a container"),
    "port": ("port", "Show a container's published ports"),
    "update": ("update", "Change containers' resource limits (--memory, --cpus, --pids-limit, ...)"),
    "stats": ("stats", "Live CPU, memory, network, block I/O and pids of containers"),
    # images
    "build": ("build", "Build an image from a Dockerfile"),
    "builder": ("builder", "Manage the build cache: prune"),
    "images": ("images", "List images"),
    "pull": ("pull", "Pull an image from a registry"),
    "push": ("push", "Push an image to a registry"),
    "tag": ("tag", "Give an image another name"),
    "rmi": ("rmi", "Remove images"),
    "history": ("history", "Show the layers of an image"),
    "import": ("import_", "Make an image from a tarball"),
    "save": ("save", "Write images to a tar archive"),
    "load": ("load", "Read images from a tar archive"),
    "login": ("login", "Log in to a registry (the node keeps the credentials)"),
    "logout": ("logout", "Log out of a registry"),
    # both
    "inspect": ("inspect", "Show containers or images in detail (JSON)"),
    "image": ("image", "Manage images: ls, pull, push, tag, rm, prune, history, inspect, import, save, load"),
    "container": ("container", "Manage containers: ls, create, run, start, stop, rm, logs, exec, prune, ..."),
    "system": (
        "system",
        "Platform-wide: df, prune, events, info; as root, delegate a user its cgroup subtree",
    ),
    "network": ("network", "Manage networks: create, ls, inspect, rm, connect, disconnect, prune"),
    "volume": ("volume", "Manage volumes: create, ls, inspect, rm, prune"),
}
