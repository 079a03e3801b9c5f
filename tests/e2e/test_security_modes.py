"""What a container may do to the platform's user, and what another local user may read.

- the kernel key quota is per host user and every container is the platform's user: a container
  of 300 processes each joining a new session keyring gets EPERM, and a later ``run`` still works;
- ``unshare -U`` (a nested user namespace, every capability inside it) is EPERM;
- after containers, a build and a push, every directory the platform made under the state
  directory is 0700 and every file 0600 (the documented exception: the gateway's socket, 0660),
  and ``dockyard-outsider`` can read neither a registry blob nor the events outbox.

Image content (overlay layers, a container's rootfs, volume data) keeps the modes the image
gives it, inside a private directory: the walk checks those directories, not their insides.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from build_helpers import build_context
from e2e_platform import Platform, busybox_platform, make_workdir

OUTSIDER = "dockyard-outsider"

#: A static helper: ``keys N`` forks N processes that each join a new session keyring and hold it
#: until stdin closes (prints how many were refused with EPERM and how many joined); ``clone``
#: tries clone(CLONE_NEWUSER) and prints the errno.
HELPER_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#define KEYCTL_JOIN_SESSION_KEYRING 1
static char stack[65536];
static int child(void *arg) { (void)arg; return 0; }
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "clone") == 0) {
        int pid = clone(child, stack + sizeof stack, CLONE_NEWUSER | SIGCHLD, NULL);
        printf("clone-newuser %s\n", pid < 0 ? strerrorname_np(errno) : "ok");
        return 0;
    }
    int n = argc > 2 ? atoi(argv[2]) : 300, fds[2], refused = 0, joined = 0, other = 0;
    if (pipe(fds) != 0) return 2;
    for (int i = 0; i < n; i++) {
        int report[2];
        if (pipe(report) != 0) return 2;
        pid_t pid = fork();
        if (pid < 0) { other++; close(report[0]); close(report[1]); continue; }
        if (pid == 0) {
            char c = syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) >= 0 ? 'j'
                   : errno == EPERM ? 'p' : 'o';
            write(report[1], &c, 1);
            close(fds[1]);
            read(fds[0], &c, 1);  /* hold the keyring until the parent lets go */
            _exit(0);
        }
        char c = 'o';
        read(report[0], &c, 1);
        close(report[0]); close(report[1]);
        if (c == 'j') joined++; else if (c == 'p') refused++; else other++;
    }
    printf("keys refused=%d joined=%d other=%d\n", refused, joined, other);
    fflush(stdout);
    close(fds[1]);
    char c;
    while (read(0, &c, 1) > 0) {}  /* hold while stdin is open */
    close(fds[0]);
    while (wait(NULL) > 0) {}
    return 0;
}
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workdir(Path(tmp_path_factory.mktemp("security-e2e", numbered=True)))


@pytest.fixture(scope="module")
def platform(workdir: Path) -> Iterator[Platform]:
    with busybox_platform(workdir) as p:
        yield p


@pytest.fixture(scope="module")
def helper_image(platform: Platform, workdir: Path) -> str:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler for the keyring helper")
    ctx = build_context(workdir / "helper", "FROM busybox\nCOPY helper /helper\n")
    (ctx / "helper.c").write_text(HELPER_C)
    subprocess.run([gcc, "-static", "-O1", "-o", str(ctx / "helper"), str(ctx / "helper.c")], check=True)
    (ctx / "helper").chmod(0o755)
    platform.ok("build", "-q", "-t", "keyhelper", str(ctx), timeout=180)
    return "keyhelper"


def test_a_container_cannot_spend_the_users_key_quota(platform: Platform, helper_image: str) -> None:
    holder = subprocess.Popen(
        [*platform_cli(platform), "run", "--rm", "-i", helper_image, "/helper", "keys", "300"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline()
        assert line.strip() == "keys refused=300 joined=0 other=0", (line, holder.stderr)
        # while the 300 processes live, a new container still gets going (runc makes no keyring)
        for _ in range(3):
            assert platform.ok("run", "--rm", "busybox", "echo", "fine").strip() == "fine"
    finally:
        if holder.stdin is not None:
            holder.stdin.close()
        holder.wait(timeout=60)


def test_no_nested_user_namespace(platform: Platform, helper_image: str) -> None:
    done = platform.cli("run", "--rm", "busybox", "unshare", "-U", "true")
    assert done.returncode != 0
    assert "Operation not permitted" in done.stderr + done.stdout, done
    out = platform.ok("run", "--rm", helper_image, "/helper", "clone")
    assert out.strip() == "clone-newuser EPERM"
    # a plain fork (clone without namespace flags) still works
    assert platform.ok("run", "--rm", "busybox", "sh", "-c", "(echo child) | cat").strip() == "child"


def platform_cli(platform: Platform) -> list[str]:
    import sys

    return [sys.executable, "-m", "dockyard.cli", "-H", platform.gateway]


#: Under the state directory: trees whose *insides* are image or user content (the modes the image
#: or the container gives them). The directory itself must still sit in a private parent.
CONTENT = (
    "runtime/images/layers/*/fs",
    "runtime/snapshots/*/upper",
    "runtime/snapshots/*/work",
    "runtime/snapshots/*/merged",
    "runtime/volumes/*/_data",
)
#: The documented exceptions (dockyard.core.private), by pattern: the mode they must have.
EXCEPTIONS = (
    ("dockyard.sock", 0o660),  # the gateway's socket: group dockyard may connect
    ("docker.sock", 0o660),  # the Docker Engine API's, beside it: the same group
    ("runtime/containers/*/etc/*", 0o644),  # bind-mounted into the container, read by its users
)


GROUP_SOCKETS = (Path("dockyard.sock"), Path("docker.sock"))


def _modes(state: Path) -> list[str]:
    wrong: list[str] = []
    top = stat.S_IMODE(state.stat().st_mode)
    if top != 0o700:
        wrong.append(f"{oct(top)} (want 0o700) .")
    for root, dirs, files in os.walk(state):
        dirs[:] = [d for d in dirs if not any((Path(root) / d).relative_to(state).match(c) for c in CONTENT)]
        for name in [*dirs, *files]:
            path = Path(root) / name
            rel = path.relative_to(state)
            info = path.lstat()
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                continue
            if stat.S_ISSOCK(info.st_mode) and not mode & 0o077 and rel not in GROUP_SOCKETS:
                continue  # a private socket: 0600 or 0700, connecting needs write
            want = next((m for pattern, m in EXCEPTIONS if rel.match(pattern)), None)
            if want is None:
                want = 0o700 if stat.S_ISDIR(info.st_mode) else 0o600
            if mode != want:
                wrong.append(f"{oct(mode)} (want {oct(want)}) {rel}")
    return wrong


def _as_outsider(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", "--reuid", OUTSIDER, "--regid", OUTSIDER, "--clear-groups", "--", *argv],
        capture_output=True,
        text=True,
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as dockyard-outsider")
def test_the_state_tree_is_private_after_a_full_run(platform: Platform, workdir: Path) -> None:
    # containers (one with a volume), a build with a RUN step, a push
    platform.ok("volume", "create", "data")
    platform.ok("run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo x > /data/f")
    platform.ok("run", "-d", "--name", "stays", "busybox", "sleep", "300")
    ctx = build_context(workdir / "modes", "FROM busybox\nRUN echo built > /stamp\n")
    platform.ok("build", "-q", "-t", "modes", str(ctx), timeout=180)
    image = f"{platform.registry_http}/lab/modes:1"
    platform.ok("tag", "modes", image)
    platform.ok("push", image)
    platform.ok("exec", "stays", "true")
    # image content keeps the image's modes: a non-root user in a container still reads / and /etc
    out = platform.ok(
        "run", "--rm", "--user", "33", "modes", "sh", "-c", "cat /stamp /etc/hosts >/dev/null; ls /"
    )
    assert "bin" in out.split()

    state = platform.state_dir
    wrong = _modes(state)
    assert not wrong, "\n".join(wrong)

    blobs = [p for p in (state / "registry").rglob("*") if p.is_file() and p.stat().st_size > 0]
    assert blobs, "the push left no registry blob"
    outboxes = sorted(state.glob("*/outbox"))
    assert outboxes, "no service outbox"
    for path in (blobs[0], *outboxes):
        verb = ["cat", str(path)] if path.is_file() else ["ls", str(path)]
        done = _as_outsider(*verb)
        assert done.returncode != 0 and "Permission denied" in done.stderr, (path, done)
    assert _as_outsider("ls", str(state)).returncode != 0
