"""Mutual TLS for gRPC over TCP: the files, the credentials, and a private CA to make them.

TCP is never served in the clear by the gateway: the server presents a certificate signed by
the platform's CA and accepts only clients that present one signed by the same CA. ``dockyard
up --listen tcp://…`` makes everything once (``ensure_material``) with the ``openssl`` CLI
(``make setup`` installs it; the venv has no X.509 library), and reuses it on the next start::

    <state-dir>/tls/           0700
      ca.pem                   the CA certificate (clients verify the server with it)
      ca-key.pem               the CA key: whoever holds it can mint client certificates
      server-cert.pem  server-key.pem     the gateway's (SANs: localhost, the host, the listen host)
      cert.pem  key.pem        a client certificate (CN dockyard-client)

The client trio has docker's names, so ``DOCKYARD_CERT_PATH=<state-dir>/tls`` works as is, and
copying ``ca.pem cert.pem key.pem`` to another machine's ``~/.dockyard`` gives it access.
Keys are EC P-256, mode 0600. Generating costs ~50 ms of openssl runs, once.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.core.errors import FailedPrecondition, InvalidArgument

if TYPE_CHECKING:
    import grpc

CA_DAYS = 3650
LEAF_DAYS = 825


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read the {what} {path}: {exc.strerror}") from None


@dataclass(frozen=True, slots=True)
class ServerTls:
    """A server certificate and key, and the CA every client certificate must be signed by."""

    ca: Path
    cert: Path
    key: Path

    def server_credentials(self) -> grpc.ServerCredentials:
        import grpc

        return grpc.ssl_server_credentials(
            [(_read(self.key, "TLS key"), _read(self.cert, "TLS certificate"))],
            root_certificates=_read(self.ca, "TLS CA certificate"),
            require_client_auth=True,
        )


@dataclass(frozen=True, slots=True)
class ClientTls:
    """The CA to verify the server with, and the client's own certificate (None: present none)."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def channel_credentials(self) -> grpc.ChannelCredentials:
        import grpc

        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, "TLS CA certificate"),
            private_key=_read(self.key, "TLS key") if self.key else None,
            certificate_chain=_read(self.cert, "TLS certificate") if self.cert else None,
        )


@dataclass(frozen=True, slots=True)
class Material:
    """What ``ensure_material`` leaves in the directory."""

    directory: Path

    @property
    def server(self) -> ServerTls:
        d = self.directory
        return ServerTls(d / "ca.pem", d / "server-cert.pem", d / "server-key.pem")

    @property
    def client(self) -> ClientTls:
        d = self.directory
        return ClientTls(d / "ca.pem", d / "cert.pem", d / "key.pem")


def server_names(listen_host: str) -> list[str]:
    """Names the server certificate is valid for: loopback, this host's names, the listen host."""
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()]
    if listen_host and listen_host not in ("0.0.0.0", "::", "[::]"):
        names.append(listen_host.strip("[]"))
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            names.append(str(info[4][0]))
    except OSError:
        pass
    return list(dict.fromkeys(n for n in names if n))


def _san(names: Iterable[str]) -> str:
    entries = []
    for name in names:
        try:
            ipaddress.ip_address(name)
            entries.append(f"IP:{name}")
        except ValueError:
            entries.append(f"DNS:{name}")
    return ",".join(entries)


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise FailedPrecondition("openssl not found (it makes the TLS certificates): run `make setup`")
    done = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise FailedPrecondition(f"openssl {args[0]} failed: {done.stderr.strip().splitlines()[-1:]}")


def _key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path.name,
             cwd=path.parent)  # fmt: skip
    path.chmod(0o600)


def _sign(directory: Path, name: str, subject: str, extensions: str) -> None:
    key, csr = directory / f"{name}-key.pem", directory / f"{name}.csr"
    _key(key)
    _openssl("req", "-new", "-key", key.name, "-subj", subject, "-out", csr.name, cwd=directory)
    with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".ext", delete=False) as ext:
        ext.write(extensions)
    try:
        _openssl("x509", "-req", "-in", csr.name, "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                 "-CAcreateserial", "-days", str(LEAF_DAYS), "-sha256", "-extfile", ext.name,
                 "-out", f"{name}-cert.pem", cwd=directory)  # fmt: skip
    finally:
        os.unlink(ext.name)
        csr.unlink(missing_ok=True)


def ensure_material(directory: Path, listen_host: str = "") -> Material:
    """Create the CA, the server and the client certificate in ``directory`` unless present."""
    material = Material(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    if not (directory / "ca.pem").exists() or not (directory / "ca-key.pem").exists():
        _key(directory / "ca-key.pem")
        _openssl("req", "-x509", "-new", "-key", "ca-key.pem", "-subj", "/CN=dockyard CA",
                 "-days", str(CA_DAYS), "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.pem",
                 cwd=directory)  # fmt: skip
        for stale in ("server-cert.pem", "cert.pem"):
            (directory / stale).unlink(missing_ok=True)
    if not (directory / "server-cert.pem").exists():
        _sign(
            directory,
            "server",
            "/CN=dockyard gateway",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage=serverAuth\nsubjectAltName={_san(server_names(listen_host))}\n",
        )
    if not (directory / "cert.pem").exists():
        _sign(
            directory,
            "client",
            "/CN=dockyard-client",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        os.replace(directory / "client-cert.pem", directory / "cert.pem")
        os.replace(directory / "client-key.pem", directory / "key.pem")
    (directory / "ca.srl").unlink(missing_ok=True)
    return material
