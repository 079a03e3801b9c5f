"""``.dockerignore`` with Docker's semantics, as a matcher usable while walking a context.

``read_patterns(text)`` turns the file into patterns (moby's ignorefile rules): a UTF-8 BOM is
dropped, a line whose first character is ``#`` is a comment, lines are trimmed, blank ones
skipped, ``!`` marks an exception, paths are cleaned (``./a//b/`` → ``a/b``, ``..`` folded) and a
leading ``/`` is dropped (the context root is both ``/`` and ``.``).

``DockerIgnore(patterns)`` matches slash-separated paths relative to the context root:

- a pattern is Go's ``filepath.Match`` (``*`` and ``?`` stop at ``/``, ``[a-z]``/``[^a]`` classes,
  ``\\`` escapes) plus ``**``, any number of directories (``**/*.go``, ``a/**/b``, ``dist/**``);
- a path is excluded when a pattern matches it *or one of its parent directories*; patterns are
  read in order and the last one that matches decides (``!`` patterns re-include);
- the pattern ``.`` never matches anything (docker's historical rule).

While walking, ``match(path, parent)`` reuses the parent directory's per-pattern results so each
entry costs one test per pattern, and ``can_prune(dir)`` says when an excluded directory can be
skipped whole: no ``!`` pattern could re-include anything below it. Nothing is read from disk.

The Dockerfile and the ignore file itself are always sent to the builder (``sends``), but are
not visible to COPY/ADD or bind mounts when a pattern excludes them (``excluded``). A
Dockerfile-specific ignore file (``<Dockerfile>.dockerignore``) is preferred when present
(``ignore_file_candidates``).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass

from dockyard.core.errors import InvalidArgument

_BOM = "\ufeff"


def clean(path: str) -> str:
    """Go's ``path.Clean``: no ``.``, folded ``..``, single slashes, no trailing slash; "" → "."."""
    if not path:
        return "."
    out = posixpath.normpath(path)
    if out.startswith("//"):
        out = "/" + out.lstrip("/")
    return out


def read_patterns(text: str | bytes) -> list[str]:
    """The patterns of an ignore file, in order, ``!`` kept as a prefix of exceptions."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if text.startswith(_BOM):
        text = text[1:]
    patterns = []
    for line in text.split("\n"):
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


def ignore_file_candidates(dockerfile: str = "Dockerfile") -> list[str]:
    """Ignore files to look for, best first: ``<dockerfile>.dockerignore``, then ``.dockerignore``."""
    return [f"{dockerfile}.dockerignore", ".dockerignore"]


def _check_syntax(pattern: str) -> None:
    """Raise ValueError where Go's filepath.Match would say ErrBadPattern."""
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise ValueError("syntax error in pattern")
            i += 2
            continue
        if ch == "[":
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            ranges = 0
            while True:
                if i >= n:
                    raise ValueError("syntax error in pattern")
                if pattern[i] == "]" and ranges > 0:
                    i += 1
                    break
                for _ in (0, 1):  # a range's low end, then (after '-') its high end
                    if i >= n or pattern[i] in "-]":
                        raise ValueError("syntax error in pattern")
                    i += 2 if pattern[i] == "\\" else 1
                    if i > n:
                        raise ValueError("syntax error in pattern")
                    if i < n and pattern[i] == "-":
                        i += 1
                        continue
                    break
                ranges += 1
            continue
        i += 1


def _class(pattern: str, i: int) -> tuple[str, int]:
    """The regex of the ``[...]`` class starting at ``pattern[i]``, and the index after it."""
    i += 1
    out = ["["]
    if pattern[i] == "^":
        out.append("^")
        i += 1
    first = True
    while first or pattern[i] != "]":
        first = False
        if pattern[i] == "\\":
            i += 1
        ch = pattern[i]
        i += 1
        out.append(re.escape(ch) if ch not in "-" else "\\-")
        if pattern[i] == "-" and pattern[i + 1] != "]":
            i += 1
            if pattern[i] == "\\":
                i += 1
            out[-1] += "-" + re.escape(pattern[i])
            i += 1
    return "".join(out) + "]", i + 1


def _glob_regex(pattern: str, star: str) -> tuple[str, str]:
    """(regex body, match kind) for a cleaned pattern, following moby's patternmatcher."""
    kind = "exact"
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                at_start = i == 0
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                if i >= n:
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        out.append(".*")
                        kind = "regex"
                else:
                    out.append("(?:.*/)?")
                    kind = "regex"
                if at_start:
                    kind = "suffix"
                continue
            out.append(star)
            kind = "regex"
        elif ch == "?":
            out.append("[^/]")
            kind = "regex"
        elif ch == "\\":
            if i + 1 < n:
                out.append(re.escape(pattern[i + 1]))
                kind = "regex"
                i += 1
            else:
                out.append(re.escape("\\"))
        elif ch == "[":
            cls, i = _class(pattern, i)
            out.append(cls)
            kind = "regex"
            continue
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out), kind


@dataclass(frozen=True, slots=True)
class Pattern:
    text: str  # cleaned, without the "!"
    exclusion: bool
    kind: str
    regex: re.Pattern[str] | None
    components: tuple[re.Pattern[str] | None, ...]  # per path component; None for "**" ones

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix" and self.regex is None:
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regex is not None
        return self.regex.match(path) is not None

    def may_match_below(self, parts: Sequence[str]) -> bool:
        """Whether this pattern could match ``parts`` (a directory) or something under it."""
        if self.kind in ("suffix", "prefix"):
            return True
        for i, part in enumerate(parts):
            if i >= len(self.components):
                return True  # matches an ancestor of what lies below: re-includes it
            comp = self.components[i]
            if comp is None:
                return True
            if not comp.match(part):
                return False
        return True


def compile_pattern(raw: str) -> Pattern:
    """One pattern (``!`` prefix for an exception); ValueError if it is malformed."""
    text = clean(raw.strip())
    exclusion = text.startswith("!")
    if exclusion:
        if len(text) == 1:
            raise ValueError('illegal exclusion pattern: "!"')
        text = text[1:]
    _check_syntax(text)
    body, kind = _glob_regex(text, "[^/]*")
    regex = None
    if kind == "regex":
        regex = re.compile(body + r"\Z", re.DOTALL)
    comps: list[re.Pattern[str] | None] = []
    for part in text.split("/"):
        if "**" in part:
            comps.append(None)
            continue
        part_body, _ = _glob_regex(part, "[^/]*")
        comps.append(re.compile(part_body + r"\Z", re.DOTALL))
    return Pattern(text, exclusion, kind, regex, tuple(comps))


@dataclass(frozen=True, slots=True)
class MatchInfo:
    """Per-pattern results for a directory, handed to ``match`` for its entries."""

    matched: tuple[bool, ...] = ()


class DockerIgnore:
    """A compiled ``.dockerignore``. Immutable and safe to share between threads."""

    def __init__(self, patterns: Sequence[str]) -> None:
        compiled = []
        for raw in patterns:
            if not raw.strip():
                continue
            try:
                compiled.append(compile_pattern(raw))
            except ValueError as exc:
                raise InvalidArgument(f".dockerignore: bad pattern {raw.strip()!r}: {exc}") from None
        self.patterns: tuple[Pattern, ...] = tuple(compiled)
        self.has_exceptions = any(p.exclusion for p in compiled)

    @classmethod
    def from_text(cls, text: str | bytes) -> DockerIgnore:
        return cls(read_patterns(text))

    def excluded(self, path: str) -> bool:
        """Whether ``path`` (relative, slash-separated) is left out of the context."""
        path = clean(path)
        if path == ".":
            return False
        matched = False
        parents = path.split("/")[:-1]
        for pat in self.patterns:
            if pat.exclusion != matched:
                continue
            hit = pat.match(path) or any(pat.match("/".join(parents[: i + 1])) for i in range(len(parents)))
            if hit:
                matched = not pat.exclusion
        return matched

    def match(self, path: str, parent: MatchInfo | None = None) -> tuple[bool, MatchInfo]:
        """``excluded(path)`` using the results of its parent directory (walk top-down).

        Pass ``MatchInfo()`` (or None) for entries at the root, and the info returned for a
        directory to its children. Costs one test per pattern.
        """
        if parent is None or not parent.matched:
            results = []
            matched = False
            path = clean(path)
            parents = path.split("/")[:-1]
            for pat in self.patterns:
                hit = False
                if pat.exclusion == matched:
                    hit = pat.match(path) or any(
                        pat.match("/".join(parents[: i + 1])) for i in range(len(parents))
                    )
                results.append(hit)
                if hit:
                    matched = not pat.exclusion
            return matched, MatchInfo(tuple(results))
        results = []
        matched = False
        for pat, parent_hit in zip(self.patterns, parent.matched, strict=True):
            hit = parent_hit
            if not hit and pat.exclusion == matched:
                hit = pat.match(path)
            results.append(hit)
            if hit:
                matched = not pat.exclusion
        return matched, MatchInfo(tuple(results))

    def can_prune(self, directory: str) -> bool:
        """Whether an excluded ``directory`` can be skipped whole while walking.

        True when it is excluded and no ``!`` pattern could match it or anything below it.
        """
        directory = clean(directory)
        if not self.excluded(directory):
            return False
        parts = directory.split("/")
        return not any(p.exclusion and p.may_match_below(parts) for p in self.patterns)

    def sends(self, path: str, dockerfile: str = "Dockerfile") -> bool:
        """Whether the client sends ``path``: the Dockerfile and ignore files always go."""
        path = clean(path)
        if path in (clean(dockerfile), *ignore_file_candidates(clean(dockerfile))):
            return True
        return not self.excluded(path)
