"""Who may do what: anonymous, HTTP basic (htpasswd, bcrypt) or the docker/OCI bearer-token flow.

Token flow (what ``podman login`` / ``skopeo --creds`` speak)::

    client ── GET /v2/<name>/… ────────────────▶ 401 WWW-Authenticate: Bearer realm="…/token",
                                                     service="dockyard-registry",scope="repository:<name>:pull,push"
    client ── GET /token?service=…&scope=… (Basic user:password) ─▶ {"token": <HS256 JWT>, "expires_in": …}
    client ── GET /v2/<name>/… (Authorization: Bearer <JWT>) ─▶ 200

The JWT grants, per repository, the intersection of what was asked and what the access policy
allows the user. Actions are ``pull``, ``push`` and ``delete``; ``push`` implies ``delete``.

Access policy file (``config.access_path``), one rule per line, ``#`` comments::

    alice:pull,push            alice may pull and push every repository
    bob:pull:team/*            bob may pull repositories matching the glob team/*
    *:pull                     every authenticated user may pull
    anonymous:pull             callers without credentials may pull

Without a policy file every authenticated user may pull and push, and anonymous callers nothing.
Costs: a bcrypt check is deliberately slow (~0.1-0.3 s), so successful (user, password) pairs are
remembered (keyed by a sha256 of both) for the process lifetime; call the methods here off the
event loop.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import jwt
import structlog

from dockyard.core.errors import FailedPrecondition, InvalidArgument
from dockyard.registry.config import AuthMode, RegistryConfig
from dockyard.registry.errors import AuthenticationRequired, Denied

log = structlog.get_logger("dockyard.registry.auth")

ANONYMOUS = "anonymous"
ALL_ACTIONS = frozenset({"pull", "push", "delete"})


@dataclass(frozen=True, slots=True)
class Access:
    """One grant or requirement: ``repository:<name>:<actions>`` or ``registry:catalog:*``."""

    type: str
    name: str
    actions: frozenset[str]

    @classmethod
    def parse(cls, scope: str) -> Access:
        """Parse a docker scope string; the name may itself hold ``:`` (``host:5000/foo``)."""
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if not kind or not name:
            raise InvalidArgument(f"malformed scope {scope[:200]!r}")
        return cls(kind, name, frozenset(a for a in actions.split(",") if a))

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"

    def to_claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


@dataclass(frozen=True, slots=True)
class Principal:
    user: str  # ANONYMOUS when no credentials were given
    granted: tuple[Access, ...] | None = None  # a token's grants; None means "ask the policy"


@dataclass(frozen=True, slots=True)
class _Rule:
    user: str
    actions: frozenset[str]
    pattern: str


class AccessPolicy:
    """Maps (user, resource) to allowed actions. Immutable once loaded."""

    def __init__(self, rules: list[_Rule] | None = None) -> None:
        self._rules = rules

    @classmethod
    def load(cls, path: Path | None) -> AccessPolicy:
        if path is None:
            return cls(None)
        rules = []
        for lineno, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            user, _, rest = line.partition(":")
            actions, _, pattern = rest.partition(":")
            acts = frozenset(a.strip() for a in actions.split(",") if a.strip())
            if not user or not acts or not acts <= ALL_ACTIONS | {"*"}:
                raise InvalidArgument(f"{path}:{lineno}: want user:pull[,push][:repo-glob], got {raw!r}")
            rules.append(_Rule(user.strip(), acts, pattern.strip() or "*"))
        return cls(rules)

    def allowed(self, user: str, kind: str, name: str) -> frozenset[str]:
        """The actions ``user`` may perform on ``kind:name``."""
        if self._rules is None:
            if user == ANONYMOUS:
                return frozenset()
            return ALL_ACTIONS if kind == "repository" else frozenset({"*"})
        acts: set[str] = set()
        for rule in self._rules:
            user_ok = rule.user == user or (rule.user == "*" and user != ANONYMOUS)
            if user_ok and fnmatch.fnmatchcase(name, rule.pattern):
                acts |= rule.actions
        if kind != "repository":  # the catalog: anyone with any right somewhere may list it
            return frozenset({"*"}) if acts else frozenset()
        if "*" in acts:
            return ALL_ACTIONS
        if "push" in acts:
            acts.add("delete")
        return frozenset(acts)


@dataclass(frozen=True, slots=True)
class Login:
    """A user name and password this registry was given to hand out (``--credentials-file``)."""

    username: str
    password: str

    @classmethod
    def load(cls, path: Path) -> Login:
        """Read ``{"username": …, "password": …}``; FailedPrecondition when unreadable or malformed."""
        try:
            data = json.loads(path.read_text())
            return cls(username=str(data["username"]), password=str(data["password"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FailedPrecondition(f"cannot read the registry's login from {path}: {exc}") from exc


class Htpasswd:
    """Users and bcrypt hashes from an Apache htpasswd file (``htpasswd -B``). Only bcrypt is accepted."""

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = dict(users)
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path) -> Htpasswd:
        users = {}
        for line in path.read_text().splitlines():
            user, sep, hashed = line.strip().partition(":")
            if sep and hashed.startswith(("$2y$", "$2b$", "$2a$")):
                users[user] = hashed.encode()
        return cls(users)

    def verify(self, user: str, password: str) -> bool:
        """Whether the password is right. First check of a pair costs one bcrypt; repeats are a set lookup."""
        hashed = self._users.get(user)
        if hashed is None:
            return False
        key = hashlib.sha256(user.encode() + b"\0" + password.encode() + b"\0" + hashed).digest()
        with self._lock:
            if key in self._verified:
                return True
        try:
            ok = bcrypt.checkpw(password.encode(), hashed.replace(b"$2y$", b"$2b$", 1))
        except ValueError:
            return False
        if ok:
            with self._lock:
                self._verified.add(key)
        return ok


def parse_basic(header: str) -> tuple[str, str] | None:
    """``Basic base64(user:password)`` → (user, password); None when absent or malformed."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class Authorizer:
    """Decides each request's fate and issues tokens. Built once from the config."""

    def __init__(
        self, config: RegistryConfig, htpasswd: Htpasswd | None = None, policy: AccessPolicy | None = None
    ) -> None:
        self.config = config
        self.mode = config.auth_mode
        if self.mode is not AuthMode.NONE and htpasswd is None:
            if config.htpasswd_path is None:
                raise InvalidArgument(f"auth mode {self.mode} needs an htpasswd file")
            htpasswd = Htpasswd.load(config.htpasswd_path)
        if self.mode is AuthMode.TOKEN and len(config.token_secret) < 32:
            raise InvalidArgument("token auth needs a token secret of at least 32 characters (RFC 7518)")
        self.htpasswd = htpasswd
        self.policy = policy or AccessPolicy.load(config.access_path)

    @property
    def enabled(self) -> bool:
        return self.mode is not AuthMode.NONE

    @property
    def anonymous(self) -> frozenset[str]:
        """What a caller without credentials may do on every repository (all of it with auth off)."""
        if not self.enabled:
            return ALL_ACTIONS
        return self.policy.allowed(ANONYMOUS, "repository", "")

    def _challenge(self, required: list[Access], error: str = "") -> str:
        if self.mode is AuthMode.BASIC:
            return f'Basic realm="{self.config.service_name}"'
        parts = [f'realm="{self.config.token_realm}"', f'service="{self.config.service_name}"']
        if required:
            parts.append(f'scope="{" ".join(str(a) for a in required)}"')
        if error:
            parts.append(f'error="{error}"')
        return "Bearer " + ",".join(parts)

    def authenticate(self, authorization: str, required: list[Access]) -> Principal:
        """Who is calling; raises AuthenticationRequired (with the challenge) for bad credentials."""
        if not authorization:
            return Principal(ANONYMOUS)
        if self.mode is AuthMode.TOKEN and authorization[:7].lower() == "bearer ":
            try:
                claims = jwt.decode(
                    authorization[7:].strip(),
                    self.config.token_secret,
                    algorithms=["HS256"],
                    audience=self.config.service_name,
                    issuer=self.config.token_issuer,
                )
                granted = tuple(
                    Access(a["type"], a["name"], frozenset(a["actions"])) for a in claims.get("access", [])
                )
            except (jwt.PyJWTError, KeyError, TypeError):
                raise AuthenticationRequired(
                    "invalid or expired token", challenge=self._challenge(required, "invalid_token")
                ) from None
            return Principal(str(claims.get("sub", "")), granted)
        creds = parse_basic(authorization)
        if creds is None or self.htpasswd is None or not self.htpasswd.verify(*creds):
            raise AuthenticationRequired("bad credentials", challenge=self._challenge(required))
        return Principal(creds[0])

    def authorize(self, authorization: str, required: list[Access]) -> Principal:
        """Allow the request or raise: 401 (AuthenticationRequired) when new credentials could help,
        403 (Denied) when the known caller is not allowed. ``required == []`` means "any valid caller"
        (``/v2/``), which anonymous callers are not when auth is on.
        """
        if not self.enabled:
            return Principal(ANONYMOUS)
        principal = self.authenticate(authorization, required)
        if principal.user == ANONYMOUS and not required:
            raise AuthenticationRequired("authentication required", challenge=self._challenge(required))
        for need in required:
            have = self._granted(principal, need)
            if need.actions <= have or "*" in have:
                continue
            if principal.user == ANONYMOUS or principal.granted is not None:
                # A token may lack the scope only because it was asked for less: let the client retry.
                raise AuthenticationRequired(
                    f"access to {need} required",
                    challenge=self._challenge(
                        required, "insufficient_scope" if principal.granted is not None else ""
                    ),
                )
            raise Denied(f"{principal.user} may not {','.join(sorted(need.actions))} {need.name}")
        return principal

    def _granted(self, principal: Principal, need: Access) -> frozenset[str]:
        if principal.granted is None:
            return self.policy.allowed(principal.user, need.type, need.name)
        acts: set[str] = set()
        for g in principal.granted:
            if g.type == need.type and g.name == need.name:
                acts |= g.actions
        return frozenset(acts)

    def issue_token(self, authorization: str, service: str, scopes: list[str]) -> dict[str, Any]:
        """The token endpoint: authenticate with basic credentials (or none), grant what the policy allows.

        Raises AuthenticationRequired for wrong credentials, InvalidArgument for a foreign service or a
        malformed scope. Requested actions the user lacks are silently left out, as the docker spec says.
        """
        if self.mode is not AuthMode.TOKEN:
            raise InvalidArgument("this registry does not issue tokens")
        if service and service != self.config.service_name:
            raise InvalidArgument(f"unknown service {service[:100]!r}")
        user = ANONYMOUS
        if authorization:
            creds = parse_basic(authorization)
            if creds is None or self.htpasswd is None or not self.htpasswd.verify(*creds):
                raise AuthenticationRequired(
                    "bad credentials", challenge=f'Basic realm="{self.config.service_name}"'
                )
            user = creds[0]
        access = []
        for scope in (s for raw in scopes for s in raw.split(" ") if s):
            want = Access.parse(scope)
            allowed = self.policy.allowed(user, want.type, want.name)
            granted = want.actions if "*" in allowed else want.actions & allowed
            if granted:
                access.append(Access(want.type, want.name, frozenset(granted)))
        now = int(time.time())
        claims = {
            "iss": self.config.token_issuer,
            "sub": "" if user == ANONYMOUS else user,
            "aud": self.config.service_name,
            "iat": now,
            "nbf": now - 5,
            "exp": now + self.config.token_ttl,
            "jti": uuid.uuid4().hex,
            "access": [a.to_claim() for a in access],
        }
        token = jwt.encode(claims, self.config.token_secret, algorithm="HS256")
        log.info("token issued", user=user, access=[str(a) for a in access])
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return {
            "token": token,
            "access_token": token,
            "expires_in": self.config.token_ttl,
            "issued_at": issued,
        }
