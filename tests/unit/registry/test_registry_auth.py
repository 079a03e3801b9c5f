"""Auth: htpasswd, access policy, token issuance and scope checks (no HTTP)."""

from __future__ import annotations

import base64
from pathlib import Path

import bcrypt
import jwt
import pytest

from dockyard.core.errors import InvalidArgument
from dockyard.registry.auth import Access, AccessPolicy, Authorizer, Htpasswd
from dockyard.registry.config import AuthMode, RegistryConfig
from dockyard.registry.errors import AuthenticationRequired, Denied

SECRET = "s3cret-s3cret-s3cret-s3cret-s3cret"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    htpasswd = tmp_path / "htpasswd"
    lines = []
    for user in ("alice", "bob", "carol"):
        hashed = bcrypt.hashpw(f"{user}-pw".encode(), bcrypt.gensalt(rounds=4)).decode()
        lines.append(f"{user}:{hashed.replace('$2b$', '$2y$')}")  # htpasswd -B writes $2y$
    htpasswd.write_text("\n".join(lines) + "\n")
    access = tmp_path / "access"
    access.write_text("# rules\nalice:pull,push\nbob:pull\ncarol:pull,push:team/*\nanonymous:pull:public/*\n")
    return htpasswd, access


def make(files: tuple[Path, Path], mode: AuthMode) -> Authorizer:
    htpasswd, access = files
    config = RegistryConfig(auth_mode=mode, htpasswd_path=htpasswd, access_path=access, token_secret=SECRET)
    return Authorizer(config)


def repo(name: str, *actions: str) -> list[Access]:
    return [Access("repository", name, frozenset(actions))]


def test_scope_parsing() -> None:
    a = Access.parse("repository:host:5000/team/app:pull,push")
    assert (a.type, a.name, a.actions) == ("repository", "host:5000/team/app", frozenset({"pull", "push"}))
    with pytest.raises(InvalidArgument):
        Access.parse("garbage")


def test_htpasswd_verify_and_cache(files: tuple[Path, Path]) -> None:
    h = Htpasswd.load(files[0])
    assert h.verify("alice", "alice-pw")
    assert h.verify("alice", "alice-pw")  # cached path
    assert not h.verify("alice", "wrong")
    assert not h.verify("mallory", "x")


def test_policy_rules(files: tuple[Path, Path]) -> None:
    policy = AccessPolicy.load(files[1])
    assert policy.allowed("alice", "repository", "x") == {"pull", "push", "delete"}
    assert policy.allowed("bob", "repository", "x") == {"pull"}
    assert policy.allowed("carol", "repository", "team/app") >= {"push"}
    assert policy.allowed("carol", "repository", "other") == set()
    assert policy.allowed("anonymous", "repository", "public/x") == {"pull"}
    assert AccessPolicy.load(None).allowed("anyone", "repository", "x") >= {"pull", "push"}
    assert AccessPolicy.load(None).allowed("anonymous", "repository", "x") == set()


def test_bad_policy_file_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "access"
    bad.write_text("alice:fly\n")
    with pytest.raises(InvalidArgument):
        AccessPolicy.load(bad)


def test_basic_mode(files: tuple[Path, Path]) -> None:
    auth = make(files, AuthMode.BASIC)
    assert auth.authorize(basic("alice", "alice-pw"), repo("x", "pull", "push")).user == "alice"
    with pytest.raises(Denied):
        auth.authorize(basic("bob", "bob-pw"), repo("x", "pull", "push"))
    with pytest.raises(AuthenticationRequired) as exc:
        auth.authorize(basic("bob", "nope"), repo("x", "pull"))
    assert exc.value.challenge.startswith("Basic ")
    with pytest.raises(AuthenticationRequired):
        auth.authorize("", [])  # /v2/ needs a user when auth is on
    auth.authorize("", repo("public/x", "pull"))  # anonymous rule


def test_token_scoped_per_repository_and_action(files: tuple[Path, Path]) -> None:
    auth = make(files, AuthMode.TOKEN)
    body = auth.issue_token(basic("bob", "bob-pw"), "dockyard-registry", ["repository:x:pull,push"])
    claims = jwt.decode(body["token"], SECRET, algorithms=["HS256"], audience="dockyard-registry")
    assert claims["sub"] == "bob"
    assert claims["access"] == [{"type": "repository", "name": "x", "actions": ["pull"]}]  # push dropped
    bearer = "Bearer " + body["token"]
    assert auth.authorize(bearer, repo("x", "pull")).user == "bob"
    with pytest.raises(AuthenticationRequired) as exc:
        auth.authorize(bearer, repo("x", "pull", "push"))  # pull-only user denied push
    assert 'error="insufficient_scope"' in exc.value.challenge
    assert 'scope="repository:x:pull,push"' in exc.value.challenge
    with pytest.raises(AuthenticationRequired):
        auth.authorize(bearer, repo("y", "pull"))  # token is per repository


def test_token_push_user_and_multiple_scopes(files: tuple[Path, Path]) -> None:
    auth = make(files, AuthMode.TOKEN)
    body = auth.issue_token(basic("alice", "alice-pw"), "", ["repository:a:pull,push repository:b:pull"])
    bearer = "Bearer " + body["token"]
    auth.authorize(bearer, repo("a", "pull", "push"))
    auth.authorize(bearer, repo("b", "pull"))
    assert body["expires_in"] == 300


def test_token_rejects_wrong_credentials_forged_and_expired(files: tuple[Path, Path]) -> None:
    auth = make(files, AuthMode.TOKEN)
    with pytest.raises(AuthenticationRequired):
        auth.issue_token(basic("alice", "wrong"), "", [])
    with pytest.raises(InvalidArgument):
        auth.issue_token(basic("alice", "alice-pw"), "another-service", [])
    forged = jwt.encode(
        {"sub": "alice", "access": []}, "other-secret-xxxxxxxxxxxxxxxxxxxxxxxxx", algorithm="HS256"
    )
    with pytest.raises(AuthenticationRequired):
        auth.authorize("Bearer " + forged, repo("x", "pull"))
    expired = jwt.encode(
        {"iss": "dockyard-registry", "aud": "dockyard-registry", "exp": 1, "sub": "alice",
         "access": [{"type": "repository", "name": "x", "actions": ["pull"]}]},
        SECRET, algorithm="HS256",
    )  # fmt: skip
    with pytest.raises(AuthenticationRequired):
        auth.authorize("Bearer " + expired, repo("x", "pull"))


def test_token_mode_needs_a_real_secret(files: tuple[Path, Path]) -> None:
    with pytest.raises(InvalidArgument):
        Authorizer(RegistryConfig(auth_mode=AuthMode.TOKEN, htpasswd_path=files[0], token_secret="short"))
