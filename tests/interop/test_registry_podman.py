"""podman (4.x), run rootless as the unprivileged user, against our registry over plain HTTP.

Proves that a real podman can push an image to us, pull it back identical, and that what we store
is byte for byte what podman says it pushed; and, with auth on (HTTP basic and the bearer-token
flow), that ``podman login`` works, a wrong password is refused, and a pull-only user can pull but
cannot push (and nothing of the refused push is stored).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator

import pytest
from interop_helpers import PODMAN_USER, Podman, RegistryAuth, RegistryServer

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        os.geteuid() != 0,
        reason=f"needs root to run podman as the unprivileged {PODMAN_USER!r} user (runuser)",
    ),
]

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
USERS = {"alice": "alice-secret", "bob": "bob-secret"}
ACCESS = ("alice:pull,push", "bob:pull")  # bob may pull everything, push nothing


@pytest.fixture
def podman() -> Iterator[Podman]:
    """Podman as the unprivileged user, with private storage/config, holding localhost/busybox:test."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed (apt-get install podman)")
    p = Podman()
    try:
        p.import_base("localhost/busybox:test")
        yield p
    finally:
        p.close()


def _stored_manifest(
    server: RegistryServer, name: str, ref: str, user: str | None = None
) -> tuple[str, bytes]:
    """(Docker-Content-Digest, body) of a manifest as our registry serves it."""
    r = server.request("GET", f"/v2/{name}/manifests/{ref}", user=user, headers={"Accept": MANIFEST_ACCEPT})
    assert r.status_code == 200, r.text
    return r.headers["Docker-Content-Digest"], r.content


def _push_and_check(podman: Podman, server: RegistryServer, src: str, name: str, tag: str) -> str:
    """podman push ``src`` to ``name:tag``; asserts we store what podman reports; returns the digest."""
    digest_file = podman.dir / "home" / f"digest-{tag}"
    podman.run(
        "push", "--tls-verify=false", "--digestfile", str(digest_file), src, f"{server.address}/{name}:{tag}"
    )
    pushed = digest_file.read_text().strip()
    assert pushed.startswith("sha256:")
    user = "alice" if server.auth.mode != "none" else None
    stored_digest, body = _stored_manifest(server, name, tag, user)
    assert stored_digest == pushed
    assert "sha256:" + hashlib.sha256(body).hexdigest() == pushed  # the bytes we serve hash to it
    by_digest, body_again = _stored_manifest(server, name, pushed, user)
    assert (by_digest, body_again) == (pushed, body)
    return pushed


def test_podman_push_rmi_pull_roundtrip(podman: Podman, registry_server: RegistryServer) -> None:
    """Push, remove locally, pull back: same image ID, and the digest podman pushed is the one we store."""
    src = "localhost/busybox:test"
    image_id = podman.inspect(src)["Id"]
    ref = f"{registry_server.address}/interop/busybox:v1"

    pushed = _push_and_check(podman, registry_server, src, "interop/busybox", "v1")
    tags = registry_server.request("GET", "/v2/interop/busybox/tags/list").json()
    assert tags == {"name": "interop/busybox", "tags": ["v1"]}

    podman.run("rmi", "--force", src)
    assert not podman.exists(src)
    assert not podman.exists(image_id)

    podman.run("pull", "--quiet", "--tls-verify=false", ref)
    pulled = podman.inspect(ref)
    assert pulled["Id"] == image_id  # the config blob came back byte for byte
    assert pulled["Digest"] == pushed
    assert f"{registry_server.address}/interop/busybox@{pushed}" in pulled["RepoDigests"]

    # Pulling by digest resolves to the same image.
    podman.run("pull", "--quiet", "--tls-verify=false", f"{registry_server.address}/interop/busybox@{pushed}")
    assert podman.inspect(f"{registry_server.address}/interop/busybox@{pushed}")["Id"] == image_id


AUTH_MODES = [RegistryAuth("basic", USERS, ACCESS), RegistryAuth("token", USERS, ACCESS)]


@pytest.mark.parametrize("registry_server", AUTH_MODES, indirect=True, ids=str)
def test_podman_login_and_access_rules(podman: Podman, registry_server: RegistryServer) -> None:
    """Wrong password: login fails. Pusher: login, push, pull. Pull-only user: pull works, push is refused."""
    server, host = registry_server, registry_server.address
    src = "localhost/busybox:test"
    image_id = podman.inspect(src)["Id"]

    # Auth is really on: an anonymous read is challenged.
    r = server.request("GET", "/v2/team/app/tags/list")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic " if server.auth.mode == "basic" else "Bearer ")

    # A wrong password is refused and nothing is stored in the auth file.
    bad = podman.run("login", "--tls-verify=false", "-u", "alice", "-p", "wrong", host, check=False)
    assert bad.returncode != 0
    assert "invalid username/password" in bad.stderr
    assert host not in podman.auths()

    # The pusher logs in, pushes, and can pull back.
    ok = podman.run("login", "--tls-verify=false", "-u", "alice", "-p", USERS["alice"], host)
    assert "Login Succeeded" in ok.stdout
    assert host in podman.auths()
    pushed = _push_and_check(podman, server, src, "team/app", "v1")
    podman.run("logout", host)
    assert host not in podman.auths()

    # The pull-only user can pull what alice pushed ...
    podman.run("login", "--tls-verify=false", "-u", "bob", "-p", USERS["bob"], host)
    podman.run("rmi", "--force", src)
    podman.run("pull", "--quiet", "--tls-verify=false", f"{host}/team/app:v1")
    assert podman.inspect(f"{host}/team/app:v1")["Id"] == image_id
    assert podman.inspect(f"{host}/team/app:v1")["Digest"] == pushed

    # ... but cannot push: not a new tag in the same repository (blobs already there, only the
    # manifest PUT is refused), nor into a new repository (the blob upload is refused).
    for target in (f"{host}/team/app:bob", f"{host}/bob/own:v1"):
        denied = podman.run("push", "--tls-verify=false", f"{host}/team/app:v1", target, check=False)
        assert denied.returncode != 0, f"bob could push {target}"
        assert "denied" in denied.stderr.lower() or "unauthorized" in denied.stderr.lower(), denied.stderr

    # Nothing of the refused pushes was stored (checked as alice, who may read everything).
    tags = server.request("GET", "/v2/team/app/tags/list", user="alice")
    assert tags.json()["tags"] == ["v1"]
    own = server.request("GET", "/v2/bob/own/tags/list", user="alice")
    assert own.status_code == 404

    # The registry refused bob's writes with the code the auth mode calls for: HTTP basic knows
    # who bob is and answers 403 DENIED; the token flow gave bob a pull-only token, so writes get
    # 401 (insufficient scope) and the token endpoint logged a pull-only grant.
    refused = [
        (r["method"], r["path"], r["status"], r["code"], r["error"])
        for r in server.log_events("request refused")
        if r["method"] in ("POST", "PUT", "PATCH")
    ]
    if server.auth.mode == "basic":
        assert (
            "POST",
            "/v2/bob/own/blobs/uploads/",
            403,
            "DENIED",
            "bob may not pull,push bob/own",
        ) in refused
        assert (
            "PUT",
            "/v2/team/app/manifests/bob",
            403,
            "DENIED",
            "bob may not pull,push team/app",
        ) in refused
    else:
        grants = [(r["user"], r["access"]) for r in server.log_events("token issued")]
        assert ("bob", ["repository:team/app:pull"]) in grants
        assert not any(user == "bob" and any("push" in a for a in access) for user, access in grants)
        need = "access to repository:{}:pull,push required"
        assert ("POST", "/v2/bob/own/blobs/uploads/", 401, "UNAUTHORIZED", need.format("bob/own")) in refused
        assert ("PUT", "/v2/team/app/manifests/bob", 401, "UNAUTHORIZED", need.format("team/app")) in refused


@pytest.mark.parametrize("registry_server", AUTH_MODES, indirect=True, ids=str)
def test_pull_only_user_is_refused_at_the_http_level(registry_server: RegistryServer) -> None:
    """The wire facts podman relies on: a pull-only user's upload start is 403 DENIED (basic) or
    401 with an insufficient_scope challenge (token, whose token only carries pull)."""
    server = registry_server
    if server.auth.mode == "basic":
        r = server.request("POST", "/v2/team/app/blobs/uploads/", user="bob")
        assert r.status_code == 403
        assert r.json()["errors"][0]["code"] == "DENIED"
        return
    token = server.request("GET", "/v2/", user="bob", scope="repository:team/app:pull,push")
    assert token.status_code == 200  # any valid caller may ping /v2/
    r = server.request(
        "POST", "/v2/team/app/blobs/uploads/", user="bob", scope="repository:team/app:pull,push"
    )
    assert r.status_code == 401
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="repository:team/app:pull,push"' in challenge
    # alice, same request, is let in.
    ok = server.request(
        "POST", "/v2/team/app/blobs/uploads/", user="alice", scope="repository:team/app:pull,push"
    )
    assert ok.status_code == 202
