"""``dockyard build --secret``: the flag's forms and errors, and reading the secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.cli.buildsecrets import MAX_SECRET, SecretSource, parse_secret_flag, read_secret
from dockyard.core.errors import InvalidArgument


def test_parse_secret_flag_forms() -> None:
    assert parse_secret_flag("id=npm,src=/home/me/.npmrc") == SecretSource("npm", file="/home/me/.npmrc")
    assert parse_secret_flag("id=npm,source=f") == SecretSource("npm", file="f")
    assert parse_secret_flag("src=/run/token.txt") == SecretSource("token.txt", file="/run/token.txt")
    assert parse_secret_flag("id=kube,env=KUBECONFIG") == SecretSource("kube", env="KUBECONFIG")
    assert parse_secret_flag("env=API_TOKEN") == SecretSource("API_TOKEN", env="API_TOKEN")
    assert parse_secret_flag("type=env,id=API_TOKEN") == SecretSource("API_TOKEN", env="API_TOKEN")
    assert parse_secret_flag("type=env,id=t,src=VAR") == SecretSource("t", env="VAR")
    assert parse_secret_flag("type=file,id=f") == SecretSource("f", file="f")
    assert parse_secret_flag("id=API_TOKEN") == SecretSource("API_TOKEN")  # the variable, else the file


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("npm", "'npm' is not KEY=VALUE"),
        ("id=", "'id=' is not KEY=VALUE"),
        ("type=ssh,id=x", "unsupported secret type 'ssh'"),
        ("id=x,path=/f", "unexpected key 'path'"),
        ("id=x,src=/f,env=V", "src and env cannot both be set"),
        ("type=file,id=x,env=V", "type=file does not take env"),
        ("type=env", "a secret needs id=NAME"),
        ("type=file", "a secret needs id=NAME"),
    ],
)
def test_parse_secret_flag_errors(value: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_secret_flag(value)
    assert message in err.value.message and err.value.message.startswith(f"--secret {value!r}")


def test_read_secret_from_file_or_environment(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_bytes(b"s3cr3t\n")
    env = {"API_TOKEN": "from-env", "OTHER": "o"}
    assert read_secret(SecretSource("t", file=str(token)), env) == b"s3cr3t\n"
    assert read_secret(SecretSource("t", env="OTHER"), env) == b"o"
    assert read_secret(SecretSource("API_TOKEN"), env) == b"from-env"  # the variable first
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert read_secret(SecretSource("token"), env) == b"s3cr3t\n"  # then the file of that name
    finally:
        os.chdir(cwd)
    with pytest.raises(InvalidArgument, match="environment variable NOPE is not set"):
        read_secret(SecretSource("t", env="NOPE"), env)
    with pytest.raises(InvalidArgument, match=r"--secret id=t: cannot read /nonexistent/f: No such file"):
        read_secret(SecretSource("t", file="/nonexistent/f"), env)
    big = tmp_path / "big"
    big.write_bytes(b"x" * (MAX_SECRET + 1))
    with pytest.raises(InvalidArgument, match="larger than 500 KiB"):
        read_secret(SecretSource("b", file=str(big)), env)
