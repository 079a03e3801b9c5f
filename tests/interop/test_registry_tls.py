"""TLS: given a certificate, the registry serves HTTPS that skopeo verifies against its CA."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests
from interop_helpers import RegistryAuth, start_registry, stop_registry
from test_registry_skopeo import make_layout, skopeo

pytestmark = pytest.mark.interop


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "registry.crt", directory / "registry.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_with_a_verified_certificate(tmp_path: Path) -> None:
    server_dir, certs = tmp_path / "server", tmp_path / "certs"
    server_dir.mkdir()
    certs.mkdir()
    cert, key = _self_signed(server_dir)
    (certs / "ca.crt").write_bytes(cert.read_bytes())  # skopeo's --cert-dir: CAs as *.crt, nothing else
    server = start_registry(tmp_path / "registry", RegistryAuth(tls=(cert, key)))
    try:
        assert requests.get(f"{server.url}/v2/", verify=str(cert), timeout=5).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{server.url}/v2/", timeout=5)  # not trusted without the CA
        plain = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{server.address}/v2/"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert plain.stdout != "200"  # no plain HTTP beside HTTPS

        src = tmp_path / "src"
        make_layout(src, "v1", layers=1)
        ref = f"docker://{server.address}/secure/app:v1"
        skopeo("copy", "--dest-cert-dir", str(certs), f"oci:{src}:v1", ref)
        inspect = json.loads(skopeo("inspect", "--cert-dir", str(certs), ref))
        assert inspect["Name"] == f"{server.address}/secure/app"
    finally:
        stop_registry(server)
