"""Variable expansion and word splitting as BuildKit's Dockerfile shell lexer does them.

``Lexer(escape).word(text, env)`` expands one word (quotes removed, spaces kept: what ENV values,
WORKDIR, USER, COPY paths… go through); ``Lexer(escape).words(text, env)`` expands and then splits
on unquoted whitespace (EXPOSE). Both are pure and cost O(len(text)) plus the patterns' regexes.

Supported, as BuildKit's lexer and the Dockerfile reference describe them:

================================  ===========================================================
``$VAR`` ``${VAR}``                the value; unset is empty (or kept verbatim with skip_unset)
``${VAR:-word}`` ``${VAR-word}``   word if VAR is unset (``:``: or empty), else the value
``${VAR:+word}`` ``${VAR+word}``   word if VAR is set (``:``: and non-empty), else empty
``${VAR:?msg}`` ``${VAR?msg}``     the value, or an error naming VAR (``:``: empty too)
``${VAR#pat}`` ``${VAR##pat}``     the value without its shortest / longest matching prefix
``${VAR%pat}`` ``${VAR%%pat}``     the value without its shortest / longest matching suffix
``${VAR/pat/rep}`` ``${VAR//…}``   the first / every match of pat replaced by rep
================================  ===========================================================

``word`` is itself expanded (nested variables, quotes). Patterns are globs: ``*`` any run of
characters, ``?`` one character, ``\\*`` ``\\?`` ``\\\\`` literal. ``$1`` (a digit run) and the
special parameters ``$@ $* $# $? $- $$ $! $0`` are names that are never set, so they expand to
empty. ``'…'`` keeps everything literal, ``"…"`` keeps spaces and expands ``$``; both quote
characters are removed. The escape character (``\\`` or the ``# escape=`` one) makes the next
character literal; inside double quotes only before ``"``, ``$`` and itself.

Anything else after ``${NAME`` (``${#VAR}``, ``${VAR:x}``, ``${VAR:#p}``) is an error
("unsupported modifier"), as is an unterminated quote or ``${``. Errors are InvalidArgument with
BuildKit's wording (``failed to process "…": …``); the caller adds the Dockerfile line.

One deliberate difference: BuildKit's word splitting drops the characters of a word that come
before a ``${…}`` with an operator (``a${X:-b}`` splits as ``["b"]`` there, a buffer reuse bug);
here it is ``["ab"]``. ``${VAR/pat/rep}`` inserts rep literally (Go would interpret ``$1``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from dockyard.core.errors import InvalidArgument

MAX_EXPANSION = 1 << 20  # bytes one word may gain from variables (BuildKit has no bound)
_SPECIAL_PARAMS = frozenset("@*#?-$!0")
_HEREDOC_SPACE = frozenset("\t\r ")


class _LexError(Exception):
    """A lexing failure; turned into InvalidArgument naming the word by ``Lexer``."""


@dataclass(slots=True)
class Expansion:
    """The result of one expansion: the expanded word, its split words, and the names it read."""

    value: str
    words: list[str]
    matched: set[str] = field(default_factory=set)
    unmatched: set[str] = field(default_factory=set)


class _Words:
    """Accumulates words the way the lexer splits them: unquoted whitespace separates."""

    __slots__ = ("buf", "in_word", "words")

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.buf:
                self.words.append("".join(self.buf))
                self.buf.clear()
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        if text:
            self.buf.append(text)
        self.in_word = True

    def add_text(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def finish(self) -> list[str]:
        if self.buf:
            self.words.append("".join(self.buf))
            self.buf.clear()
            self.in_word = False
        return self.words


def _is_name_char(ch: str) -> bool:
    return ch == "_" or ch.isalpha() or unicodedata.category(ch) == "Nd"


def glob_to_regex(pattern: str, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """The regex of a ``${VAR#pat}``-style glob: ``*`` (lazy unless greedy), ``?``, ``\\`` escapes.

    A backslash before ``}`` or ``/`` only protected it from the ``${…}`` syntax and is dropped;
    before ``*``, ``?`` or ``\\`` it makes them literal; before anything else it is an error.
    """
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(star)
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            if i < len(pattern) and pattern[i] in "}/":
                continue
            if i >= len(pattern) or pattern[i] not in "*?\\":
                nxt = pattern[i] if i < len(pattern) else ""
                raise _LexError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{nxt}'")
            out.append(re.escape(pattern[i]))
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _reverse_pattern(pattern: str) -> str:
    """``pattern`` reversed, keeping each ``\\x`` escape pair in order (``a\\*c`` → ``c\\*a``)."""
    units: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            units.append(pattern[i : i + 2])
            i += 2
        else:
            units.append(pattern[i])
            i += 1
    return "".join(reversed(units))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = glob_to_regex(pattern, greedy, anchored=True).match(value)
    return value[m.end() :] if m else value


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # a regex cannot find the shortest rightmost match: search the reversed string instead
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


class _Scan:
    """One pass over one word. Not reusable; ``Lexer`` makes one per call."""

    def __init__(self, lexer: Lexer, text: str, env: Mapping[str, str]) -> None:
        self.lx = lexer
        self.text = text
        self.pos = 0
        self.env = env
        self.raw_escapes = lexer.raw_escapes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()
        self.produced = 0  # bytes of variables' values put in so far

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    def lookup(self, name: str) -> str | None:
        value = self.env.get(name)
        (self.matched if value is not None else self.unmatched).add(name)
        if value is not None:
            # Every byte an expansion adds to the text comes through here: bounding their sum
            # bounds the result (40 doubling ARGs asked for 2**40 bytes and took 6.9 GB).
            self.produced += len(value)
            if self.produced > MAX_EXPANSION:
                raise _LexError(f"the expansion is larger than {MAX_EXPANSION >> 20} MiB")
        return value

    def until(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Process up to (and consuming) ``stop``, or to the end when ``stop`` is ""."""
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            return self._until(stop)
        finally:
            self.raw_escapes = saved

    def _until(self, stop: str) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        escape = self.lx.escape
        while self.pos < len(self.text):
            ch = self.peek()
            if stop and ch == stop:
                self.pos += 1
                return "".join(result), words.finish()
            if ch == "$":
                tmp = self.dollar()
                result.append(tmp)
                words.add_text(tmp)
            elif ch == "<":
                tmp = self.maybe_heredoc()
                result.append(tmp)
                words.add_raw(tmp)
            elif ch == "'" and not self.lx.skip_quotes:
                tmp = self.single_quoted()
                result.append(tmp)
                words.add_raw(tmp)
            elif ch == '"' and not self.lx.skip_quotes:
                tmp = self.double_quoted()
                result.append(tmp)
                words.add_raw(tmp)
            else:
                self.pos += 1
                if ch == escape:
                    if self.raw_escapes:
                        words.add_raw(ch)
                        result.append(ch)
                    if self.pos >= len(self.text):
                        break  # an escape at the very end is dropped
                    ch = self.next()
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop:
            raise _LexError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.finish()

    def single_quoted(self) -> str:
        quote = self.next()
        out = [quote] if self.lx.raw_quotes else []
        while True:
            ch = self.next()
            if not ch:
                raise _LexError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quoted(self) -> str:
        quote = self.next()
        out = [quote] if self.lx.raw_quotes else []
        escape = self.lx.escape
        while True:
            ch = self.peek()
            if not ch:
                raise _LexError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == escape:
                if self.raw_escapes:
                    out.append(ch)
                nxt = self.peek()
                if not nxt:
                    continue  # the error for the missing quote comes next
                if nxt in ('"', "$", escape):
                    ch = self.next()
            out.append(ch)

    def maybe_heredoc(self) -> str:
        self.next()
        if self.peek() != "<":
            return "<"
        self.next()
        start = self.pos
        while self.peek() and self.peek() in _HEREDOC_SPACE:
            self.pos += 1
        # "<<  EOF" stays one word, as BuildKit's heredoc detection expects
        return "<<" + self.text[start : self.pos]

    def name(self) -> str:
        ch = self.peek()
        if not ch:
            return ""
        if ch.isdigit() and unicodedata.category(ch) == "Nd":
            start = self.pos
            while self.peek() and unicodedata.category(self.peek()) == "Nd":
                self.pos += 1
            return self.text[start : self.pos]
        if ch in _SPECIAL_PARAMS:
            self.pos += 1
            return ch
        start = self.pos
        while self.peek() and _is_name_char(self.peek()):
            self.pos += 1
        return self.text[start : self.pos]

    def dollar(self) -> str:
        self.next()  # the $
        skip_unset = self.lx.skip_unset
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value = self.lookup(name)
            if value is None:
                return "$" + name if skip_unset else ""
            return value
        self.next()  # the {
        first = self.peek()
        if not first:
            raise _LexError("syntax error: missing '}'")
        if first in "{}:":
            raise _LexError("syntax error: bad substitution")
        name = self.name()
        op = self.next()
        if op == "}":
            value = self.lookup(name)
            if value is None:
                return "${" + name + "}" if skip_unset else ""
            return value
        if not op:
            raise _LexError("syntax error: missing '}'")
        if op == "/":
            return self.replace(name)
        ops = op
        colon = op == ":"
        if colon:
            op = self.next()
            ops += op
        elif op not in "+-?#%":
            raise _LexError(f"unsupported modifier ({ops}) in substitution")
        pattern_op = op in ("#", "%")
        if colon and pattern_op:
            raise _LexError(f"unsupported modifier ({ops}) in substitution")
        try:
            word, _ = self.until("}", pattern_op)
        except _LexError:
            if not self.peek():
                raise _LexError("syntax error: missing '}'") from None
            raise
        value = self.lookup(name)
        if skip_unset and value is None:
            return "${" + name + ops + word + "}"
        unset = value is None or (colon and value == "")
        if op == "-":
            return word if unset else (value or "")
        if op == "+":
            return "" if unset else word
        if op == "?":
            if value is None:
                raise _LexError(f"{name}: {word or 'is not allowed to be unset'}")
            if colon and value == "":
                raise _LexError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if pattern_op:
            greedy = word.startswith(op)
            if greedy:
                word = word[1:]
            base = value or ""
            return _trim_suffix(word, base, greedy) if op == "%" else _trim_prefix(word, base, greedy)
        raise _LexError(f"unsupported modifier ({ops}) in substitution")

    def replace(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        try:
            pattern, _ = self.until("/", True)
        except _LexError:
            if not self.peek():
                raise _LexError("syntax error: missing '/' in ${}") from None
            raise
        try:
            replacement, _ = self.until("}", True)
        except _LexError:
            if not self.peek():
                raise _LexError("syntax error: missing '}'") from None
            raise
        value = self.lookup(name)
        if self.lx.skip_unset and value is None:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        rx = glob_to_regex(pattern, greedy=True, anchored=False)
        text = value or ""
        if replace_all:
            return rx.sub(lambda _m: replacement, text)
        return rx.sub(lambda _m: replacement, text, count=1)


@dataclass(frozen=True, slots=True)
class Lexer:
    """BuildKit's Dockerfile word lexer. ``escape`` is ``\\`` or the ``# escape=`` character.

    raw_quotes / raw_escapes keep quote and escape characters in the output (used to detect
    heredoc words); skip_unset leaves ``$VAR`` of unset variables as written; skip_quotes treats
    quotes as ordinary characters (heredoc bodies).
    """

    escape: str = "\\"
    raw_quotes: bool = False
    raw_escapes: bool = False
    skip_unset: bool = False
    skip_quotes: bool = False

    def expand(self, text: str, env: Mapping[str, str]) -> Expansion:
        """Expand ``text`` once: the single word, the split words and the names looked up."""
        scan = _Scan(self, text, env)
        try:
            value, words = scan.until("", self.raw_escapes)
        except _LexError as exc:
            raise InvalidArgument(f'failed to process "{text}": {exc}', word=text) from None
        return Expansion(value, words, scan.matched, scan.unmatched)

    def word(self, text: str, env: Mapping[str, str]) -> str:
        """``text`` expanded as one word: quotes removed, inner spaces kept."""
        return self.expand(text, env).value

    def words(self, text: str, env: Mapping[str, str]) -> list[str]:
        """``text`` expanded, then split on whitespace that was not quoted or escaped."""
        return self.expand(text, env).words
