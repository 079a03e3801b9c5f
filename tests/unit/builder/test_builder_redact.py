"""A secret never leaves a RUN step's output: raw, trimmed, base64 and URL-encoded, whole or split
across chunks, on either stream."""

from __future__ import annotations

import base64
import urllib.parse

from dockyard.builder.redact import MASK, Redactor

SECRET = b"s3cr3t/p@ss+word=\n"  # a secret file's value, newline and all


def run(redactor: Redactor, chunks: list[tuple[str, bytes]]) -> dict[str, bytes]:
    out: dict[str, bytes] = {"stdout": b"", "stderr": b""}
    for stream, data in chunks:
        out[stream] += redactor.feed(stream, data)
    for stream, data in redactor.flush():
        out[stream] += data
    return out


def test_every_form_of_the_secret_is_masked() -> None:
    value = SECRET.strip()
    printed = [
        b"token=" + value + b" done\n",
        b"b64 " + base64.b64encode(value) + b"\n",
        b"b64url " + base64.urlsafe_b64encode(value).rstrip(b"=") + b"\n",
        b"url " + urllib.parse.quote_from_bytes(value, safe="").encode() + b"\n",
        b"file " + SECRET,
    ]
    out = run(Redactor([SECRET]), [("stdout", p) for p in printed])["stdout"]
    assert value not in out and b"s3cr3t" not in out
    assert out.count(MASK) == 5 and out.startswith(b"token=*** done\n")


def test_a_secret_split_across_chunks_and_bytes_in_order() -> None:
    text = b"before " + SECRET.strip() + b" after\n"
    chunks = [("stderr", text[i : i + 3]) for i in range(0, len(text), 3)]
    out = run(Redactor([SECRET]), chunks)
    assert out["stderr"] == b"before *** after\n" and out["stdout"] == b""


def test_no_secrets_passes_output_through_untouched() -> None:
    redactor = Redactor([])
    assert redactor.feed("stdout", b"plain") == b"plain" and redactor.flush() == []
