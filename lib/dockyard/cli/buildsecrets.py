"""``dockyard build --secret``: docker's flag parsed, and the secret read on the client's machine.

The values travel to the builder in the build's options, so they are read here, before anything
is sent, and a bad flag or an unreadable file is one InvalidArgument line.
"""

from __future__ import annotations

import csv
import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

from dockyard.core.errors import InvalidArgument

MAX_SECRET = 500 * 1024


@dataclass(frozen=True, slots=True)
class SecretSource:
    """Where ``dockyard build --secret`` takes a secret: ``file`` or ``env`` — or, neither given,
    the environment variable named ``id`` if it is set, else the file named ``id`` (buildx's rule)."""

    id: str
    file: str = ""
    env: str = ""


def parse_secret_flag(value: str) -> SecretSource:
    """docker's ``--secret`` value: ``id=ID[,src=FILE|env=VAR][,type=file|env]`` (``source`` for
    ``src``). The id defaults to the variable's name, or the file's base name."""
    what = f"--secret {value!r}"
    try:
        fields = next(csv.reader([value]), [])
    except csv.Error as exc:
        raise InvalidArgument(f"{what}: {exc}") from None
    kind = sid = file = env = ""
    for item in fields:
        key, eq, val = item.partition("=")
        key = key.strip().lower()
        if not eq or not val:
            raise InvalidArgument(
                f"{what}: {item!r} is not KEY=VALUE (want id=NAME,src=FILE or id=NAME,env=VAR)"
            )
        if key == "type":
            if val not in ("file", "env"):
                raise InvalidArgument(f"{what}: unsupported secret type {val!r} (file or env)")
            kind = val
        elif key == "id":
            sid = val
        elif key in ("src", "source"):
            file = val
        elif key == "env":
            env = val
        else:
            raise InvalidArgument(f"{what}: unexpected key {key!r} (id, src, env, type)")
    if kind == "env" and file and not env:  # buildx: type=env,src=VAR names the variable
        file, env = "", file
    if file and env:
        raise InvalidArgument(f"{what}: src and env cannot both be set")
    if (kind == "file" and env) or (kind == "env" and file):
        raise InvalidArgument(f"{what}: type={kind} does not take {'env' if env else 'src'}")
    sid = sid or env or posixpath.basename(file)
    if not sid:
        raise InvalidArgument(f"{what}: a secret needs id=NAME")
    if kind == "file" and not file:
        file = sid
    if kind == "env" and not env:
        env = sid
    return SecretSource(sid, file, env)


def read_secret(source: SecretSource, environ: Mapping[str, str]) -> bytes:
    """The bytes of a ``--secret`` (at most :data:`MAX_SECRET`); InvalidArgument, one line, if
    the variable is unset or the file cannot be read."""
    env = source.env or (source.id if not source.file and source.id in environ else "")
    if env:
        if env not in environ:
            raise InvalidArgument(f"--secret id={source.id}: environment variable {env} is not set")
        data = environ[env].encode()
    else:
        path = source.file or source.id
        try:
            with open(os.path.expanduser(path), "rb") as fh:
                data = fh.read(MAX_SECRET + 1)
        except OSError as exc:
            raise InvalidArgument(f"--secret id={source.id}: cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_SECRET:
        raise InvalidArgument(f"--secret id={source.id}: larger than {MAX_SECRET // 1024} KiB")
    return data
