"""The platform's registry as other local users see it, under a real `dockyard up` started as root.

The registry's HTTP port is loopback TCP, so every local user reaches it. The outsider
(`dockyard-outsider`, no `dockyard` group) tries to push a blob and a manifest over the tag the
platform runs, and to delete it: with no credentials, with a wrong password, with the anonymous
bearer token /token hands out. Each is 401 and changes nothing. The platform's own run, pull,
push and build --push need no password; a member of the group gets a login through the gateway
(the state directory, where it is kept, is closed to them) and real skopeo pushes with it.
`--registry-auth none` opens the registry on purpose, and info and doctor say so.
"""

from __future__ import annotations

import base64
import grp
import hashlib
import json
import os
import pwd
import signal
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_platform import PYTHON, USER, Platform, busybox_rootfs_tar, make_workdir

from dockyard.adapters.nats.server import free_port
from dockyard.runtime.userns import end_node

OUTSIDER = "dockyard-outsider"
GROUP = os.environ.get("DOCKYARD_GROUP", "dockyard")
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="starts the platform as root and switches users")

# Run as the outsider: every write it can think of, without a valid login; prints {attempt: status}.
PROBE = r"""
import base64, json, sys, urllib.error, urllib.request
spec = json.load(sys.stdin)
base = f"http://{spec['registry']}"

def call(method, path, data=None, headers=None):
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code

out = {}
blob, digest = spec["blob"].encode(), spec["blob_digest"]
manifest = spec["manifest"].encode()
ctype = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
repo = spec["repository"]
out["catalog"] = call("GET", "/v2/_catalog")
out["pull"] = call("GET", f"/v2/{repo}/manifests/1")
out["push_blob"] = call("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", blob)
out["push_manifest"] = call("PUT", f"/v2/{repo}/manifests/1", manifest, ctype)
out["delete"] = call("DELETE", f"/v2/{repo}/manifests/{spec['victim_digest']}")
wrong = {"Authorization": "Basic " + base64.b64encode(b"dockyard:guessed").decode()}
out["push_manifest_wrong_password"] = call("PUT", f"/v2/{repo}/manifests/1", manifest, {**ctype, **wrong})
out["delete_wrong_password"] = call("DELETE", f"/v2/{repo}/manifests/{spec['victim_digest']}", None, wrong)
# the anonymous token the token endpoint gives anyone grants nothing
scope = f"repository:{repo}:pull,push,delete"
with urllib.request.urlopen(f"{base}/token?service=dockyard-registry&scope={scope}", timeout=10) as reply:
    token = json.loads(reply.read())["token"]
bearer = {"Authorization": f"Bearer {token}"}
out["push_blob_anonymous_token"] = call("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", blob, bearer)
out["push_manifest_anonymous_token"] = call("PUT", f"/v2/{repo}/manifests/1", manifest, {**ctype, **bearer})
out["delete_anonymous_token"] = call("DELETE", f"/v2/{repo}/manifests/{spec['victim_digest']}", None, bearer)
files = {}
for path in spec["files"]:
    try:
        open(path).read()
        files[path] = "read"
    except OSError as exc:
        files[path] = type(exc).__name__
out["files"] = files
print(json.dumps(out))
"""


def _as(who: str) -> list[str]:
    """``outsider``: no platform group; ``member``: the same user given the `dockyard` group."""
    groups = ["--groups", str(grp.getgrnam(GROUP).gr_gid)] if who == "member" else ["--clear-groups"]
    return ["setpriv", "--reuid", OUTSIDER, "--regid", OUTSIDER, *groups, "--"]


def _run_as(
    who: str, *cmd: str, input: str | None = None, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKYARD_", "REGISTRY_AUTH"))}
    env.pop("XDG_RUNTIME_DIR", None)
    if home is not None:
        env["HOME"] = str(home)
    return subprocess.run(
        [*_as(who), *cmd], capture_output=True, text=True, timeout=120, input=input, env=env, cwd="/"
    )


def _start_as_root(workdir: Path, name: str, *extra: str) -> Platform:
    """``dockyard up`` started by root, as production does: it drops to the `dockyard` user and puts
    the gateway's socket (0660, group dockyard) in a run directory the group can enter."""
    try:
        pwd.getpwnam(OUTSIDER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", OUTSIDER], check=True)
    state, run = workdir / name / "state", workdir / name / "run"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.parent.chmod(0o755)
    http = f"127.0.0.1:{free_port()}"
    output = workdir / f"{name}.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_") and k != "XDG_RUNTIME_DIR"}
    env |= {"DOCKYARD_RUN_DIR": str(run), "DOCKYARD_LOG_LEVEL": "info"}
    cmd = [PYTHON, "-m", "dockyard.cli", "up", "--state-dir", str(state), "--nats-port", str(free_port()),
           "--registry-listen", http, *extra]  # fmt: skip
    with open(output, "w") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
    platform = Platform(process, state, f"unix://{run}/dockyard.sock", http, output)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            end_node(state / "runtime")
            pytest.fail(f"dockyard up exited {process.returncode}:\n{output.read_text()}")
        if "platform ready" in output.read_text():
            return platform
        time.sleep(0.2)
    process.kill()
    process.wait()
    end_node(state / "runtime")
    pytest.fail(f"dockyard up not ready in 90 s:\n{output.read_text()}")


def _stop(platform: Platform) -> None:
    for cid in platform.cli("ps", "-aq").stdout.split():
        platform.cli("rm", "-f", cid)
    platform.process.send_signal(signal.SIGTERM)
    code = platform.process.wait(timeout=60)
    end_node(platform.state_dir / "runtime")
    assert code == 0, platform.output.read_text()[-3000:]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workdir(Path(tmp_path_factory.mktemp("regauth", numbered=True)))


@pytest.fixture(scope="module")
def platform(workdir: Path) -> Iterator[Platform]:
    platform = _start_as_root(workdir, "token")
    try:
        platform.ok(
            "import", str(busybox_rootfs_tar(workdir / "busybox.tar")), "busybox:latest", "-c", 'CMD ["sh"]'
        )
        yield platform
    finally:
        _stop(platform)


def _login(platform: Platform) -> dict[str, str]:
    login: dict[str, str] = json.loads(platform.ok("registry", "credentials", "--format", "json"))
    return login


def _get_manifest(platform: Platform, repository: str, tag: str) -> tuple[str, bytes]:
    """The digest and bytes of ``repository:tag``, read with the platform's login."""
    login = _login(platform)
    basic = base64.b64encode(f"{login['username']}:{login['password']}".encode()).decode()
    request = urllib.request.Request(
        f"http://{platform.registry_http}/v2/{repository}/manifests/{tag}",
        headers={"Authorization": f"Basic {basic}", "Accept": MANIFEST_TYPE},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.headers["Docker-Content-Digest"], reply.read()


def _blob_exists(platform: Platform, repository: str, digest: str) -> bool:
    login = _login(platform)
    basic = base64.b64encode(f"{login['username']}:{login['password']}".encode()).decode()
    request = urllib.request.Request(
        f"http://{platform.registry_http}/v2/{repository}/blobs/{digest}",
        method="HEAD",
        headers={"Authorization": f"Basic {basic}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10):
            return True
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        return False


def test_an_outsider_can_neither_push_nor_delete(platform: Platform) -> None:
    registry = platform.registry_http
    victim = f"{registry}/lab/victim:1"
    platform.ok("tag", "busybox", victim)
    platform.ok("push", victim)  # the platform's own push: no password typed
    digest, before = _get_manifest(platform, "lab/victim", "1")

    blob = '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"evil":1}'
    blob_digest = "sha256:" + hashlib.sha256(blob.encode()).hexdigest()
    forged = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": blob_digest,
            "size": len(blob),
        },
        "layers": [],
    }
    secrets_dir = platform.state_dir / "registry-auth"
    spec = {
        "registry": registry,
        "repository": "lab/victim",
        "blob": blob,
        "blob_digest": blob_digest,
        "manifest": json.dumps(forged),
        "victim_digest": digest,
        "files": [
            str(secrets_dir / n) for n in ("client.json", "platform-auth.json", "token-secret", "htpasswd")
        ],
    }
    done = _run_as("outsider", PYTHON, "-c", PROBE, input=json.dumps(spec))
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    files = seen.pop("files")
    assert seen == dict.fromkeys(seen, 401) and len(seen) == 10, seen
    assert set(files.values()) == {"PermissionError"}, files

    # nothing changed: the tag still names the platform's image, the forged blob is not stored
    assert _get_manifest(platform, "lab/victim", "1") == (digest, before)
    assert not _blob_exists(platform, "lab/victim", blob_digest)
    assert platform.ok("run", "--rm", victim, "echo", "still ours") == "still ours\n"

    # the secrets are the platform user's alone
    for path in [secrets_dir, *secrets_dir.iterdir()]:
        info = path.stat()
        assert info.st_uid == pwd.getpwnam(USER).pw_uid
        assert stat.S_IMODE(info.st_mode) == (0o700 if path.is_dir() else 0o600), path
    assert platform.ok("info").count("auth token, anonymous none") == 1


def test_the_platform_pulls_pushes_and_builds_without_a_password(platform: Platform, workdir: Path) -> None:
    registry = platform.registry_http
    image = f"{registry}/team/roundtrip:1"
    platform.ok("run", "--name", "maker", "busybox", "sh", "-c", "echo made > /proof")
    platform.ok("commit", "maker", image)
    platform.ok("rm", "maker")
    platform.ok("push", image)
    platform.ok("rmi", "-f", image)
    assert platform.ok("run", "--rm", image, "cat", "/proof") == "made\n"  # pulled: it was missing

    (workdir / "ctx").mkdir(exist_ok=True)
    ctx = make_workdir(workdir / "ctx")
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo built > /built\n")
    (ctx / "Dockerfile").chmod(0o644)
    built = f"{registry}/team/built:1"
    platform.ok("build", "-t", built, "--push", str(ctx), timeout=180)
    platform.ok("rmi", "-f", built)
    platform.ok("pull", built)
    assert platform.ok("run", "--rm", built, "cat", "/built") == "built\n"

    # the platform's login lives apart from the node's `dockyard login`s, which it never writes
    assert not (platform.state_dir / "runtime" / "auth.json").exists()
    login = _login(platform)
    logged = platform.cli(
        "login", "-u", login["username"], "--password-stdin", registry, input=login["password"] + "\n"
    )
    assert logged.returncode == 0, logged.stderr
    platform.ok("push", image)  # now with the user's own login, which wins
    kept = json.loads((platform.state_dir / "runtime" / "auth.json").read_text())["auths"]
    assert list(kept) == [registry]
    assert base64.b64decode(kept[registry]["auth"]).decode() == f"{login['username']}:{login['password']}"
    platform.ok("logout", registry)
    platform.ok("pull", image)  # the platform's own login again


def test_a_member_gets_a_login_through_the_gateway_and_skopeo_pushes_with_it(
    platform: Platform, workdir: Path
) -> None:
    registry = platform.registry_http
    home = workdir / "outsider-home"
    home.mkdir(exist_ok=True)
    os.chown(home, pwd.getpwnam(OUTSIDER).pw_uid, pwd.getpwnam(OUTSIDER).pw_gid)
    cli = (PYTHON, "-m", "dockyard.cli", "-H", platform.gateway)

    # the member cannot read the login on disk, but may ask the gateway for it
    client_file = platform.state_dir / "registry-auth" / "client.json"
    denied = _run_as("member", PYTHON, "-c", f"open({str(client_file)!r}).read()")
    assert denied.returncode == 1 and "PermissionError" in denied.stderr
    asked = _run_as("member", *cli, "registry", "credentials", "--format", "json")
    assert asked.returncode == 0, asked.stderr
    login = json.loads(asked.stdout)
    assert login["registry"] == registry and login["username"] == "dockyard" and len(login["password"]) >= 32
    assert login["auth"] == "token" and login["anonymous"] == ""
    text = _run_as("member", *cli, "registry", "credentials").stdout
    assert login["password"] in text and "--dest-creds" in text
    # an outsider reaches no gateway, so no login either
    refused = _run_as("outsider", *cli, "registry", "credentials")
    assert refused.returncode != 0 and login["password"] not in refused.stdout + refused.stderr

    archive = workdir / "busybox-oci.tar"
    archive.write_bytes(subprocess.run([*cli, "save", "busybox"], capture_output=True, check=True).stdout)
    # unpacked for skopeo: as an ordinary user it cannot chown the files of an oci-archive
    layout = workdir / "busybox-oci"
    layout.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(layout), "--no-same-owner"], check=True)
    for path in [layout, *layout.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    copy = ("skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}")

    anonymous = _run_as("outsider", *copy, f"docker://{registry}/lab/skopeo:anon", home=home)
    refusal = anonymous.stderr.lower()  # skopeo names a 401 on HEAD "denied", elsewhere "unauthorized"
    assert anonymous.returncode != 0 and ("unauthorized" in refusal or "denied" in refusal), refusal
    creds = f"{login['username']}:{login['password']}"
    pushed = _run_as("outsider", *copy, "--dest-creds", creds, f"docker://{registry}/lab/skopeo:1", home=home)
    assert pushed.returncode == 0, pushed.stderr

    # --authfile: the member writes a containers auth file (0600) that skopeo reads
    authfile = home / "auth.json"
    wrote = _run_as("member", *cli, "registry", "credentials", "--authfile", str(authfile))
    assert wrote.returncode == 0, wrote.stderr
    assert stat.S_IMODE(authfile.stat().st_mode) == 0o600
    via_file = _run_as(
        "outsider", *copy, "--dest-authfile", str(authfile), f"docker://{registry}/lab/skopeo:2", home=home
    )
    assert via_file.returncode == 0, via_file.stderr

    for tag in ("1", "2"):
        assert platform.ok("run", "--rm", f"{registry}/lab/skopeo:{tag}", "echo", "ran") == "ran\n"
    assert platform.ok("registry", "tags", "lab/skopeo").split() == ["1", "2"]


def test_registry_auth_none_is_open_on_purpose_and_info_and_doctor_warn(workdir: Path) -> None:
    platform = _start_as_root(workdir, "open", "--registry-auth", "none")
    try:
        assert "WARNING: no authentication" in platform.output.read_text()
        info = platform.ok("info")
        assert "WARNING:   registry" in info and "NO authentication" in info, info
        doctor = platform.cli("doctor")
        assert "✘ registry authentication — none" in doctor.stdout, doctor.stdout + doctor.stderr
        refused = platform.cli("registry", "credentials")
        assert refused.returncode == 1 and "without authentication" in refused.stderr
        assert not (platform.state_dir / "registry-auth").exists()
        # and it is open: the outsider pushes a blob
        blob = b"open"
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        push = (
            "import urllib.request, sys\n"
            "r = urllib.request.Request(sys.argv[1], data=b'open', method='POST')\n"
            "print(urllib.request.urlopen(r, timeout=10).status)"
        )
        url = f"http://{platform.registry_http}/v2/lab/open/blobs/uploads/?digest={digest}"
        done = _run_as("outsider", PYTHON, "-c", push, url)
        assert done.stdout.strip() == "201", done.stderr
    finally:
        _stop(platform)


def test_doctor_and_info_say_the_registry_authenticates(platform: Platform) -> None:
    doctor = platform.cli("doctor")
    assert f"✔ registry authentication — token at http://{platform.registry_http}" in doctor.stdout, (
        doctor.stdout
    )
    assert "WARNING" not in platform.ok("info")
