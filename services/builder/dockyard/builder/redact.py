"""Secrets out of a RUN step's output, before it becomes progress, a log or an event.

A ``RUN --mount=type=secret`` step may print its secret (a failing ``curl -u``, a ``set -x``).
That output goes to the client's progress stream and, for a failed step, into the
``build.failed`` event that JetStream keeps for 30 days. :class:`Redactor` replaces each secret
value — as given, without surrounding whitespace, in base64 (standard and URL-safe, with and
without padding) and URL-encoded — with ``***``, one stream at a time.

Streaming: a value may be split across two chunks, so each stream holds back its last
``longest form - 1`` bytes until more output comes or :meth:`Redactor.flush` ends the step.
Cost: one ``bytes.replace`` per form per chunk.
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Iterable

MASK = b"***"


def forms(secret: bytes) -> set[bytes]:
    """What a secret may look like in output."""
    out: set[bytes] = set()
    for value in {secret, secret.strip()}:
        if not value:
            continue
        out.add(value)
        for encoded in (base64.b64encode(value), base64.urlsafe_b64encode(value)):
            out |= {encoded, encoded.rstrip(b"=")}
        out.add(urllib.parse.quote_from_bytes(value, safe="").encode())
        out.add(urllib.parse.quote_plus(value.decode("latin-1"), encoding="latin-1").encode())
    return {f for f in out if f}


class Redactor:
    """Redact secrets from the chunks of named streams (``stdout``, ``stderr``)."""

    def __init__(self, secrets: Iterable[bytes]) -> None:
        every = set().union(*(forms(s) for s in secrets)) if secrets else set()
        self._forms = sorted(every, key=len, reverse=True)  # the longest first: no partial masks
        self._hold = max((len(f) for f in self._forms), default=1) - 1
        self._held: dict[str, bytes] = {}

    def _clean(self, data: bytes) -> bytes:
        for form in self._forms:
            data = data.replace(form, MASK)
        return data

    def feed(self, stream: str, data: bytes) -> bytes:
        """What of ``stream``'s output so far can go out now, redacted."""
        if not self._forms:
            return data
        text = self._clean(self._held.get(stream, b"") + data)
        cut = max(len(text) - self._hold, 0)
        self._held[stream] = text[cut:]
        return text[:cut]

    def flush(self) -> list[tuple[str, bytes]]:
        """The held-back ends of every stream, redacted (call when the step's output is over)."""
        out = [(stream, self._clean(rest)) for stream, rest in self._held.items() if rest]
        self._held.clear()
        return out
