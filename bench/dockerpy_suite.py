"""docker-py's own integration suite against Dockyard's Engine API and rootless podman 4.3's, in one run.

    .venv/bin/python bench/dockerpy_suite.py --repo PATH          # make compat-docker-py DOCKER_PY_REPO=PATH
    .venv/bin/python bench/dockerpy_suite.py --repo PATH --side dockyard -k test_create

PATH is a git clone (bare or not) of the docker/docker-py repository. Nothing of it is kept in
this project: at run time the tag matching the installed docker package (``--tag``) gives, through
``git archive`` into a scratch dir, ``tests/integration`` with what it imports (``tests/__init__.py``,
``tests/helpers.py``) and its ``pytest.ini``. Left out, as issue #16 counts "tests that do not need
swarm": the swarm, service, node, secret, config and plugin files, and every other test that calls
``init_swarm`` (found in the source, so a new one is left out too; the count is printed); and
``credentials/``, which tests docker's credential helpers and no engine.

No public registry is reachable, so the images the suite pulls (``alpine:3.10`` its TEST_IMG,
``alpine:latest``, ``busybox:latest``, ``hello-world:latest``) are made here from Debian's
busybox-static (runtime_bench's rootfs; an "alpine" is that busybox, CMD /bin/sh; hello-world's
/hello is a script that greets) and pushed with skopeo to a CNCF distribution (``docker-registry``)
on loopback. Both sides reach docker.io through it: a registries.conf(5) whose ``docker.io`` entry
has that registry as an insecure mirror, named by ``CONTAINERS_REGISTRIES_CONF`` for ``dockyard up``
and written to podman's ``~/.config/containers/registries.conf``.

Everything runs as the unprivileged user (``--user``, default ``dockyard``): the registry, ``dockyard
up``, ``podman system service`` (runtime_bench's throw-away store) and pytest with ``DOCKER_HOST`` at
each socket. The sides run one after the other (the suite binds fixed host ports), each test with a
``--timeout`` and each side within ``--budget`` seconds (pytest-timeout's session timeout). Counts
come from pytest's junit XML. Prints passed / failed / errored / skipped per side and the tests
that fail on Dockyard but pass on podman; writes every test's outcome and first message line to
``.cache/bench/dockerpy-suite.json``. Reports; never fails on a missed goal.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import platform
import pwd
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE_DIR, fmt_table, free_port, save_results, terminate, wait_http
from docker_bench import PodmanService
from runtime_bench import OURS, PEER, VENV_BIN, Dockyard, Podman, User, all_pids, busybox_tar, cmdline, run

# Files that are about swarm mode or plugins, none of which either side offers.
# credentials/ tests docker's credential helpers, not the engine, and its utils_test assigns a plain
# dict to os.environ: DOCKER_HOST is gone for every test after it (upstream runs on the default socket).
EXCLUDED = (
    "api_config_test.py",
    "api_plugin_test.py",
    "api_secret_test.py",
    "api_service_test.py",
    "api_swarm_test.py",
    "models_configs_test.py",
    "models_nodes_test.py",
    "models_secrets_test.py",
    "models_services_test.py",
    "models_swarm_test.py",
)
SWARM_CALLS = {"init_swarm", "_init_swarm"}
EXTRACTED = ("pytest.ini", "tests/__init__.py", "tests/helpers.py", "tests/integration")

PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HELLO = b'#!/bin/sh\necho "Hello from Docker!"\n'
# docker.io name -> (Cmd, extra files): what the suite pulls or builds FROM
IMAGES: dict[str, tuple[list[str], dict[str, bytes]]] = {
    "library/alpine:3.10": (["/bin/sh"], {}),
    "library/alpine:latest": (["/bin/sh"], {}),
    "library/busybox:latest": (["sh"], {}),
    "library/hello-world:latest": (["/hello"], {"hello": HELLO}),
}
MIRRORED = """\
[[registry]]
prefix = "docker.io"
location = "docker.io"

  [[registry.mirror]]
  location = "{mirror}"
  insecure = true
"""
SKOPEO_COPY = ("skopeo", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


# --------------------------------------------------------------------------- the suite


def git_dir(repo: Path) -> Path:
    return repo / ".git" if (repo / ".git").is_dir() else repo


def extract_suite(repo: Path, tag: str, into: Path) -> tuple[Path, list[str]]:
    """The suite at ``tag`` under ``into`` (without the excluded files); the swarm tests to deselect."""
    into.mkdir()
    archive = ["git", f"--git-dir={git_dir(repo)}", "archive", "--format=tar", tag, *EXTRACTED]
    with subprocess.Popen(archive, stdout=subprocess.PIPE) as git:
        subprocess.run(["tar", "-x", "-C", str(into)], stdin=git.stdout, check=True)
    if git.returncode != 0:
        raise RuntimeError(f"git archive of {tag} from {repo} failed ({git.returncode})")
    suite = into / "tests" / "integration"
    for name in EXCLUDED:
        (suite / name).unlink(missing_ok=True)
    shutil.rmtree(suite / "credentials")
    return suite, swarm_tests(suite)


def swarm_tests(suite: Path) -> list[str]:
    """Node ids (relative to the suite's root) of test methods that call ``init_swarm``."""
    found = []
    for path in sorted(suite.glob("*_test.py")):
        tree = ast.parse(path.read_text())
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")):
                calls = {
                    node.func.attr
                    for node in ast.walk(fn)
                    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                }
                if calls & SWARM_CALLS:
                    found.append(f"tests/integration/{path.name}::{cls.name}::{fn.name}")
    return found


# --------------------------------------------------------------------------- the images


def _blob(blobs: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def image_layout(out: Path, cmd: list[str], files: dict[str, bytes]) -> Path:
    """An OCI layout of one gzip layer: the busybox rootfs plus ``files`` (mode 0755), ``cmd`` its CMD."""
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    rootfs = io.BytesIO(busybox_tar().read_bytes())
    if files:
        with tarfile.open(fileobj=rootfs, mode="a") as tar:
            for name, body in files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(body), 0o755, 0
                tar.addfile(info, io.BytesIO(body))
    raw = rootfs.getvalue()
    layer = _blob(blobs, gzip.compress(raw, mtime=0))
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Env": [f"PATH={PATH_ENV}"], "Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(raw).hexdigest()}"]},
        "history": [{"created_by": "dockerpy_suite: busybox-static rootfs"}],
    }
    config_desc = _blob(blobs, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **config_desc},
        "layers": [{"mediaType": OCI_LAYER_GZIP, **layer}],
    }
    manifest_desc = _blob(blobs, json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, **manifest_desc}]}
    (out / "index.json").write_text(json.dumps(index))
    (out / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return out


class Registry:
    """A CNCF distribution on loopback, as the user, holding the images the suite pulls."""

    def __init__(self, user: User, scratch: Path) -> None:
        self.user, self.dir = user, scratch / "registry"
        self.dir.mkdir()
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        config = self.dir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'storage'}\n"
            f"http:\n  addr: {self.addr}\n"
        )
        self.user.own(self.dir)
        env = {"PATH": PATH_ENV, "HOME": str(self.dir)}
        with (self.dir / "server.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [*self.user.prefix(), "docker-registry", "serve", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        wait_http(f"http://{self.addr}/v2/", self.proc)

    def push_images(self, scratch: Path) -> None:
        for name, (cmd, files) in IMAGES.items():
            layout = image_layout(scratch / "layouts" / name.replace("/", "_").replace(":", "_"), cmd, files)
            run(
                [*SKOPEO_COPY, f"oci:{layout}", f"docker://{self.addr}/{name}"],
                {"PATH": PATH_ENV, "HOME": str(scratch)},
            )

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)


# --------------------------------------------------------------------------- running it


def run_side(
    side: str,
    user: User,
    sock: Path,
    suite_root: Path,
    scratch: Path,
    args: argparse.Namespace,
    deselect: list[str],
) -> dict[str, Any]:
    home = scratch / f"home-{side}"
    (home / ".docker").mkdir(parents=True)
    for d in (home, home / ".docker"):
        user.own(d)
    junit = scratch / f"junit-{side}.xml"
    cmd = [*user.prefix(), str(VENV_BIN / "python"), "-m", "pytest", "tests/integration"]
    cmd += ["-p", "no:cacheprovider", "-q", "-o", "addopts=", "-o", "junit_family=xunit2", "-rN"]
    cmd += ["--timeout", str(args.timeout), "--session-timeout", str(args.budget), f"--junitxml={junit}"]
    cmd += [f"--deselect={d}" for d in deselect]
    if args.k:
        cmd += ["-k", args.k]
    env = {
        "PATH": PATH_ENV,
        "HOME": str(home),
        "DOCKER_HOST": f"unix://{sock}",
        "DOCKER_CONFIG": str(home / ".docker"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
    }
    log = scratch / f"pytest-{side}.log"
    print(f"\n== {side}: docker-py's integration suite at {sock}", flush=True)
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=suite_root, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            proc.wait(args.budget + 300)  # the session timeout ends it first; this is the backstop
        except subprocess.TimeoutExpired:
            pass
        finally:
            terminate(proc, timeout=30)
    elapsed = time.monotonic() - started
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
    print(f"   {tail[0]}  ({elapsed:.0f} s)", flush=True)
    shutil.copy(log, CACHE_DIR / f"dockerpy-suite-{side}.log")
    tests = parse_junit(junit) if junit.exists() else {}
    return {"seconds": round(elapsed, 1), "exit": proc.returncode, "tests": tests}


def parse_junit(path: Path) -> dict[str, dict[str, str]]:
    """Test id -> {"outcome": passed|failed|errored|skipped, "message": first line}. A test whose
    teardown errored after it passed or failed counts as errored, as its worst part."""
    rank = {"passed": 0, "skipped": 1, "failed": 2, "errored": 3}
    tests: dict[str, dict[str, str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        module, _, cls = case.get("classname", "").rpartition(".")
        test_id = f"{module.rpartition('.')[2]}.py::{cls}::{case.get('name')}"
        outcome, message = "passed", ""
        for child in case:
            kind = {"failure": "failed", "error": "errored", "skipped": "skipped"}.get(child.tag)
            if kind and rank[kind] > rank[outcome]:
                outcome = kind
                text = child.get("message") or child.text or ""
                message = text.strip().splitlines()[0][:300] if text.strip() else ""
        previous = tests.get(test_id)
        if previous is None or rank[outcome] > rank[previous["outcome"]]:
            tests[test_id] = {"outcome": outcome, "message": message}
    return tests


def counts(tests: dict[str, dict[str, str]]) -> dict[str, int]:
    out = {k: 0 for k in ("passed", "failed", "errored", "skipped")}
    for t in tests.values():
        out[t["outcome"]] += 1
    return out


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    import docker

    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument(
        "--repo", type=Path, default=os.environ.get("DOCKER_PY_REPO"), help="a docker-py git clone"
    )
    p.add_argument(
        "--tag", default=docker.__version__, help="its tag to test (default: the installed docker-py's)"
    )
    p.add_argument("--side", choices=("both", OURS, PEER), default="both")
    p.add_argument("--timeout", type=int, default=60, help="seconds per test (default 60)")
    p.add_argument(
        "--budget", type=int, default=1800, help="seconds per side for the whole suite (default 1800)"
    )
    p.add_argument("-k", help="pytest -k expression, to rerun a part")
    p.add_argument(
        "--user", default=os.environ.get("DOCKYARD_USER", "dockyard"), help="who runs it all, as root"
    )
    args = p.parse_args(argv)
    if args.repo is None:
        p.error("--repo (or DOCKER_PY_REPO): a git clone of docker/docker-py is needed")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("git", "skopeo", "docker-registry", "podman", "setpriv"):
        if shutil.which(tool) is None:
            print(f"dockerpy_suite: {tool} not found", file=sys.stderr)
            return 2
    pw = pwd.getpwnam(args.user) if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    user = User(pw.pw_name, pw.pw_uid, pw.pw_gid)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="dydps-"))  # short: socket paths must fit in sockaddr_un
    scratch.chmod(0o755)
    user.own(scratch)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    sides = (OURS, PEER) if args.side == "both" else (args.side,)
    results: dict[str, Any] = {}
    registry = Registry(user, scratch)
    try:
        suite, deselect = extract_suite(args.repo, args.tag, scratch / "suite")
        for d in [scratch / "suite", *(scratch / "suite").rglob("*")]:
            user.own(d)
        tests_run = len(list(suite.glob("*_test.py")))
        print(
            f"docker-py {args.tag}: {tests_run} test files, {len(deselect)} swarm tests left out", flush=True
        )
        registry.start()
        registry.push_images(scratch)
        conf = scratch / "registries.conf"
        conf.write_text(MIRRORED.format(mirror=registry.addr))
        conf.chmod(0o644)
        for side in sides:
            results[side] = run_one(side, user, scratch, conf, args, deselect)
    finally:
        registry.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    report(results, args, stamp, len(deselect))
    return 0


def run_one(
    side: str, user: User, scratch: Path, conf: Path, args: argparse.Namespace, deselect: list[str]
) -> dict[str, Any]:
    suite_root = scratch / "suite"
    if side == OURS:
        dyp = Dockyard(user, scratch)
        dyp.env["CONTAINERS_REGISTRIES_CONF"] = str(conf)
        try:
            dyp.start()
            return run_side(side, user, dyp.state / "docker.sock", suite_root, scratch, args, deselect)
        finally:
            dyp.stop()
    pm = Podman(user, scratch)
    # podman 4.3 (containers/image 5.23) reads ~/.config/containers/registries.conf by $HOME, not XDG
    user_conf = pm.home / ".config" / "containers" / "registries.conf"
    user_conf.parent.mkdir(parents=True)
    shutil.copy(conf, user_conf)
    for path in (user_conf.parent.parent, user_conf.parent, user_conf):
        user.own(path)
    service = PodmanService(pm, scratch)
    try:
        service.start()
        return run_side(side, user, service.sock, suite_root, scratch, args, deselect)
    finally:
        service.stop()
        end_leftovers(pm.home, service.sock)
        pm.stop()


def end_leftovers(*paths: Path) -> None:
    """SIGKILL what outlived ``podman system service``'s SIGTERM: rootless podman's re-executed
    service process (in its user namespace) and the conmons of containers the suite left, each
    found by a path of this run's scratch dir in its command line, never by a name."""
    marks = [str(p) for p in paths]
    for pid in all_pids():
        if pid != os.getpid() and any(mark in cmdline(pid) for mark in marks):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def report(results: dict[str, Any], args: argparse.Namespace, stamp: str, deselected: int) -> None:
    header = ["side", "passed", "failed", "errored", "skipped", "total", "seconds"]
    rows = []
    for side, res in results.items():
        c = counts(res["tests"])
        rows.append([side, *(str(c[k]) for k in header[1:5]), str(len(res["tests"])), str(res["seconds"])])
    print()
    print(fmt_table(header, rows))
    print(
        f"(docker-py {args.tag}'s tests/integration; the swarm/plugin files and {deselected} more swarm tests"
        " left out)"
    )
    if OURS in results and PEER in results:
        ours, peer = results[OURS]["tests"], results[PEER]["tests"]
        worse = sorted(
            t
            for t, r in ours.items()
            if r["outcome"] in ("failed", "errored") and peer.get(t, {}).get("outcome") == "passed"
        )
        better = sorted(
            t
            for t, r in peer.items()
            if r["outcome"] in ("failed", "errored") and ours.get(t, {}).get("outcome") == "passed"
        )
        print(f"\nfail on Dockyard, pass on podman ({len(worse)}):")
        for t in worse:
            print(f"  {t}: {ours[t]['message'][:160]}")
        print(f"\npass on Dockyard, fail on podman: {len(better)}")
        total, passed = len(ours), counts(ours)["passed"]
        met = passed > counts(peer)["passed"] and passed >= 0.9 * total
        share = f"{passed / max(total, 1):.0%}"
        print(
            f"goal (#16): more pass than on podman, >= 90% of {total}: {share}, {'met' if met else 'NOT met'}"
        )
    out = {"started": stamp, "args": {k: str(v) for k, v in vars(args).items()}, "sides": results}
    path = save_results("dockerpy-suite", stamp, out)
    print(f"\nresults: {path}")


if __name__ == "__main__":
    sys.exit(main())
