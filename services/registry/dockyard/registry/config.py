"""The registry's configuration: one frozen value built once (from flags and environment) and passed down."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path


class AuthMode(StrEnum):
    NONE = "none"  # anonymous: anyone may pull and push
    BASIC = "basic"  # HTTP basic against an htpasswd file (bcrypt)
    TOKEN = "token"  # docker/OCI bearer token flow; /token is basic-auth'd against the htpasswd file


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    """Everything the registry needs to know at start-up.

    ``access_path`` names a file of ``user:actions[:repo-glob]`` lines (``alice:pull,push``,
    ``bob:pull:team/*``, ``*:pull``); without it every authenticated user may pull and push.
    Durations are seconds.
    """

    root: Path = Path("/var/lib/dockyard/registry")
    host: str = "127.0.0.1"
    port: int = 5000
    auth_mode: AuthMode = AuthMode.NONE
    htpasswd_path: Path | None = None
    access_path: Path | None = None
    token_secret: str = ""
    token_secret_file: Path | None = None  # read into token_secret at start (kept off the command line)
    # A login to hand out through the admin API (RegistryAdmin.GetCredentials): a 0600 JSON file
    # {"username": …, "password": …} written by `dockyard up`; None: there is none to give.
    credentials_path: Path | None = None
    token_ttl: int = 300
    token_issuer: str = "dockyard-registry"
    service_name: str = "dockyard-registry"
    realm: str = ""  # token endpoint URL; default http(s)://<host>:<port>/token
    tls_cert: Path | None = None
    tls_key: Path | None = None
    upload_expiry: float = 3600.0
    max_uploads_per_repository: int = 1000  # open upload sessions; beyond: 429 TOOMANYREQUESTS
    body_idle_timeout: float = 60.0  # a request body that sends nothing this long is dropped
    gc_grace: float = 3600.0
    manifest_max_bytes: int = 4 << 20
    max_tags_per_push: int = 100  # ?tag= parameters on one manifest PUT (the spec asks for >= 10)
    # Connections (see dockyard.registry.connections): an idle keep-alive connection, or one that has
    # not sent a whole request head, is closed after ``idle_timeout``; beyond ``max_connections`` the
    # longest-idle connection is closed to make room (0: derived from the open-files limit).
    idle_timeout: float = 60.0
    max_connections: int = 0
    nats_url: str = ""
    source: str = "/dockyard/registry"  # CloudEvents source of every event

    def with_secret_file(self) -> RegistryConfig:
        """This config with ``token_secret`` read from ``token_secret_file`` (when only the file is set)."""
        if self.token_secret or self.token_secret_file is None:
            return self
        return replace(self, token_secret=self.token_secret_file.read_text().strip())

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    @property
    def token_realm(self) -> str:
        if self.realm:
            return self.realm
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}/token"
