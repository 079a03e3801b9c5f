"""Cross-repository blob mount must not read around access control, nor tell who holds a digest.

alice may push and pull ``alice/*``; bob owns ``bob/private``. Before the fix, alice's
``POST /v2/alice/steal/blobs/uploads/?mount=<bob's digest>`` (no ``from``) answered 201 and bob's
bytes were then hers to GET; 201 vs 202 also told anyone whether a digest existed anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_helpers import Proc, sha, start, stop

USERS = {"alice": "alice-pw", "bob": "bob-pw"}
ACCESS = ("alice:pull,push:alice/*", "bob:pull,push:bob/*")
SECRET = b"bob's private layer " * 100


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[Proc]:
    proc = start(tmp_path / "registry", mode="token", users=USERS, access=ACCESS)
    try:
        yield proc
    finally:
        stop(proc)


def _mount(proc: Proc, token: str, digest: str, source: str | None) -> tuple[int, set[str]]:
    query = f"mount={digest}" + (f"&from={source}" if source else "")
    r = proc.request("POST", f"/v2/alice/steal/blobs/uploads/?{query}", token=token)
    shape = {h for h in r.headers if h.lower() in {"location", "range", "docker-upload-uuid"}}
    return r.status_code, shape


def test_mount_only_from_repositories_the_caller_may_pull(token_registry: Proc) -> None:
    proc = token_registry
    bob = proc.token("bob", "repository:bob/private:pull,push")
    secret = proc.push_blob("bob/private", SECRET, token=bob)
    absent = sha(b"exists nowhere")
    # alice asks for pull on bob's repository too: the token endpoint grants her nothing there.
    alice = proc.token("alice", "repository:alice/steal:pull,push", "repository:bob/private:pull")

    for source in (None, "bob/private"):
        status, shape = _mount(proc, alice, secret, source)
        assert status == 202, source  # an ordinary upload session, not a mount
        # ...shaped exactly like the answer for a digest that exists nowhere: no oracle.
        assert (status, shape) == _mount(proc, alice, absent, source)
        got = proc.get(f"/v2/alice/steal/blobs/{secret}", token=alice)
        assert got.status_code == 404, got.content[:100]

    # bob's blob is intact and still his.
    assert proc.get(f"/v2/bob/private/blobs/{secret}", token=bob).content == SECRET
    assert proc.alive()


def test_mount_still_works_within_what_the_caller_may_pull(token_registry: Proc) -> None:
    proc = token_registry
    alice_base = proc.token("alice", "repository:alice/base:pull,push")
    layer = proc.push_blob("alice/base", b"alice's own layer" * 50, token=alice_base)
    both = proc.token("alice", "repository:alice/app:pull,push", "repository:alice/base:pull")
    # With from, and without (the registry finds alice/base itself, as she may pull it).
    for repo, query in (("alice/app", f"mount={layer}&from=alice/base"), ("alice/app2", f"mount={layer}")):
        token = (
            both
            if repo == "alice/app"
            else proc.token("alice", f"repository:{repo}:pull,push", "repository:alice/base:pull")
        )
        r = proc.request("POST", f"/v2/{repo}/blobs/uploads/?{query}", token=token)
        assert r.status_code == 201, (repo, r.status_code, r.text)
        assert proc.get(f"/v2/{repo}/blobs/{layer}", token=token).content == b"alice's own layer" * 50
