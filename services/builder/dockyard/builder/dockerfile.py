"""The Dockerfile parser: BuildKit's dialect, text in, typed instructions out (pure, no I/O).

``parse(text, name="Dockerfile")`` returns a ``Dockerfile``: the parser directives, the escape
character, every instruction in order (``instructions.py``) with its line numbers and original
text, and the parser's warnings. Anything wrong raises ``DockerfileError`` (an InvalidArgument)
whose message names the file and line and says what is wrong, e.g.
``Dockerfile:7: unknown instruction: RUNN (did you mean RUN?)``.

The rules, as BuildKit applies them:

- **Directives** (``# syntax=…``, ``# escape=\\`` or ``# escape=```, ``# check=…``) are read only
  from the very top: the first line that is not one — an instruction, a blank line, any other
  comment, an unknown directive — ends them. Keys are case-insensitive, each may appear once.
- **Lines**: leading whitespace is ignored, ``#`` starts a comment only at the start of a line,
  the escape character as the last non-blank character continues the instruction on the next
  line; comment lines and blank lines inside a continuation are skipped (blank ones warn).
- **Flags** (``--name[=value]``) right after the instruction name; quotes and the escape
  character work inside them; ``--`` ends them. Each instruction accepts its own set.
- **Exec form**: a JSON array of strings (RUN CMD ENTRYPOINT SHELL COPY ADD VOLUME,
  HEALTHCHECK CMD); anything that is not valid JSON falls back to the shell form, a JSON array
  with a non-string element is an error.
- **Heredocs** on RUN, COPY and ADD (also under ONBUILD), shell form only: every ``[n]<<[-]WORD``
  word of the line takes the lines that follow, up to a line equal to WORD (after stripping
  leading tabs for ``<<-``). A quote anywhere in WORD turns expansion of the body off.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from dockyard.builder import instructions as ins
from dockyard.builder.expand import Lexer
from dockyard.builder.instructions import DockerfileError, Heredoc, Instruction, suggest
from dockyard.core.errors import InvalidArgument

KEYWORDS = (
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
)
DIRECTIVES = ("syntax", "escape", "check")
_HEREDOC_KEYWORDS = ("RUN", "COPY", "ADD")

_WS = re.compile(r"[\t\v\f\r ]+")
_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z", re.DOTALL)
_HEREDOC = re.compile(r"(\d*)<<(-?)[\t\n\f\r ]*([^<]*)\Z", re.DOTALL)
_ONBUILD_PREFIX = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)
_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*\Z")
_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class Directive:
    name: str  # lower-case
    value: str
    line: int


@dataclass(frozen=True, slots=True)
class Dockerfile:
    """A parsed Dockerfile: what ``plan.py`` turns into stages."""

    name: str
    instructions: tuple[Instruction, ...]
    escape: str = "\\"
    directives: tuple[Directive, ...] = ()
    warnings: tuple[str, ...] = ()

    def directive(self, name: str) -> str | None:
        for d in self.directives:
            if d.name == name:
                return d.value
        return None


def _error(name: str, line: int, message: str, end_line: int | None = None) -> DockerfileError:
    return DockerfileError(f"{name}:{line}: {message}", line=line, end_line=end_line or line)


def parse(source: str | bytes, name: str = "Dockerfile") -> Dockerfile:
    """Parse a whole Dockerfile; ``name`` is only used in messages (``-f`` path).

    Cost: one pass over the text; memory is the text plus the instructions.
    """
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DockerfileError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return _Parser(source, name).run()


def parse_instruction(text: str, line: int = 1, name: str = "Dockerfile") -> Instruction:
    """One instruction on its own (an ONBUILD trigger from an image config), at ``line``."""
    parsed = _Parser(text, name, first_line=line).run(allow_empty=True)
    if len(parsed.instructions) != 1:
        raise _error(name, line, "onbuild trigger should be a single expression")
    return parsed.instructions[0]


def _split_lines(text: str) -> list[str]:
    """Lines with their ``\\n`` kept (a final line without one too); ``\\r`` is not a break."""
    lines = text.split("\n")
    out = [ln + "\n" for ln in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def _trim_newline(line: str) -> str:
    return line.rstrip("\r\n")


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


class _Parser:
    def __init__(self, text: str, name: str, first_line: int = 1) -> None:
        self.lines = _split_lines(text)
        self.name = name
        self.offset = first_line - 1
        self.escape = "\\"
        self.continuation = self._continuation_regex("\\")
        self.directives: list[Directive] = []
        self.directives_done = False
        self.warnings: list[str] = []

    @staticmethod
    def _continuation_regex(escape: str) -> re.Pattern[str]:
        e = re.escape(escape)
        return re.compile(rf"(?:([^{e}]){e}[ \t]*|^{e}[ \t]*)\Z", re.DOTALL)

    def _directive(self, line: str, lineno: int) -> bool:
        """Record ``line`` if it is a parser directive; the first line that is not ends them."""
        if self.directives_done:
            return False
        if not line.startswith("#"):
            self.directives_done = True
            return False
        m = _DIRECTIVE.match(line[1:].lstrip())
        key = m.group(1).lower() if m else ""
        if not m or key not in DIRECTIVES:
            self.directives_done = True
            return False
        if any(d.name == key for d in self.directives):
            raise _error(self.name, lineno, f"only one {key} parser directive can be used")
        value = m.group(2)
        if key == "escape":
            if value not in ("`", "\\"):
                raise _error(self.name, lineno, f"invalid escape token '{value}' does not match ` or \\")
            self.escape = value
            self.continuation = self._continuation_regex(value)
        self.directives.append(Directive(key, value, lineno))
        return True

    def _trim_continuation(self, line: str) -> tuple[str, bool]:
        m = self.continuation.search(line)
        if not m:
            return line, True
        return line[: m.start()] + (m.group(1) or ""), False

    def run(self, allow_empty: bool = False) -> Dockerfile:
        out: list[Instruction] = []
        lines = self.lines
        i = 0
        while i < len(lines):
            raw = lines[i]
            i += 1
            lineno = i + self.offset
            if i == 1 and raw.startswith(_BOM):
                raw = raw[1:]
            text = _trim_newline(raw).lstrip()
            self._directive(text, lineno)
            content = "" if text.startswith("#") else text
            content, ended = self._trim_continuation(content)
            if ended and not content:
                continue
            parts = [content]
            empty_continuation = False
            while not ended and i < len(lines):
                raw = lines[i]
                i += 1
                if _is_comment(raw):
                    continue
                text = _trim_newline(raw)
                if not text.lstrip():
                    empty_continuation = True
                    continue
                text, ended = self._trim_continuation(text)
                parts.append(text)
            line = "".join(parts)
            end = i + self.offset
            if empty_continuation:
                self.warnings.append(f"{self.name}:{end}: empty continuation line found in: {line.strip()}")
            if not line.strip():
                raise _error(
                    self.name, lineno, "line continuation at the end of the file with no instruction"
                )
            keyword, flags, rest = split_command(line, self.escape)
            heredocs: list[Heredoc] = []
            if _may_have_heredocs(keyword, rest, self.escape) and "<<" in line:
                try:
                    found = heredocs_from_line(line)
                except InvalidArgument as exc:
                    raise _error(self.name, lineno, exc.message, end) from None
                for doc in found:
                    body: list[str] = []
                    while True:
                        if i >= len(lines):
                            raise _error(self.name, lineno, "unterminated heredoc", i + self.offset)
                        raw = lines[i]
                        i += 1
                        candidate = _trim_newline(raw)
                        if doc.chomp:
                            candidate = candidate.lstrip("\t")
                        if candidate == doc.name:
                            break
                        body.append(raw)
                    heredocs.append(Heredoc(doc.name, "".join(body), doc.expand, doc.chomp, doc.fd))
                end = i + self.offset
            try:
                out.append(
                    build(keyword, flags, rest, line.strip(), lineno, end, tuple(heredocs), self.escape)
                )
            except ValueError as exc:
                raise _error(self.name, lineno, str(exc), end) from None
        if not out and not allow_empty:
            raise _error(self.name, len(lines) + self.offset, "file with no instructions")
        return Dockerfile(self.name, tuple(out), self.escape, tuple(self.directives), tuple(self.warnings))


def split_command(line: str, escape: str) -> tuple[str, list[str], str]:
    """(instruction name as written, its ``--flags``, the rest of the line, stripped)."""
    parts = _WS.split(line.strip(), maxsplit=1)
    if len(parts) < 2:
        return parts[0], [], ""
    rest, flags = _extract_flags(parts[1], escape)
    return parts[0], flags, rest.strip()


def _extract_flags(line: str, escape: str) -> tuple[str, list[str]]:
    """Leading ``--flag`` words (quotes and escapes processed) and the text after them."""
    words: list[str] = []
    buf: list[str] = []
    quote = ""
    blank_ok = False
    phase = "space"
    pos, n = 0, len(line)
    while True:
        at_end = pos == n
        ch = "" if at_end else line[pos]
        if phase == "space":
            if at_end:
                break
            if ch.isspace():
                pos += 1
                continue
            if ch != "-" or pos + 1 == n or line[pos + 1] != "-":
                return line[pos:], words
            phase = "word"
        if at_end:
            word = "".join(buf)
            if word != "--" and (blank_ok or word):
                words.append(word)
            break
        if phase == "word":
            if ch.isspace():
                word = "".join(buf)
                phase = "space"
                if word == "--":
                    return line[pos:], words
                if blank_ok or word:
                    words.append(word)
                buf, blank_ok = [], False
                pos += 1
                continue
            if ch in "'\"":
                quote, blank_ok, phase = ch, True, "quote"
                pos += 1
                continue
            if ch == escape:
                if pos + 1 == n:
                    pos += 1
                    continue
                pos += 1
                ch = line[pos]
            buf.append(ch)
            pos += 1
            continue
        if ch == quote:
            phase = "word"
            pos += 1
            continue
        if ch == escape:
            if pos + 1 == n:
                phase = "word"
                pos += 1
                continue
            pos += 1
            ch = line[pos]
        buf.append(ch)
        pos += 1
    return "", words


def parse_words(rest: str, escape: str) -> list[str]:
    """Split on unquoted whitespace, keeping quotes and escapes in the words (ENV, LABEL, ARG)."""
    words: list[str] = []
    buf: list[str] = []
    quote = ""
    blank_ok = False
    phase = "space"
    pos, n = 0, len(rest)
    while True:
        at_end = pos == n
        ch = "" if at_end else rest[pos]
        if phase == "space":
            if at_end:
                break
            if ch.isspace():
                pos += 1
                continue
            phase = "word"
        if at_end:
            if blank_ok or buf:
                words.append("".join(buf))
            break
        if phase == "word":
            if ch.isspace():
                phase = "space"
                if blank_ok or buf:
                    words.append("".join(buf))
                buf, blank_ok = [], False
                pos += 1
                continue
            if ch in "'\"":
                quote, blank_ok, phase = ch, True, "quote"
            if ch == escape:
                if pos + 1 == n:
                    pos += 1
                    continue
                buf.append(ch)
                pos += 1
                ch = rest[pos]
            buf.append(ch)
            pos += 1
            continue
        if ch == quote:
            phase = "word"
        if ch == escape and quote != "'":
            if pos + 1 == n:
                phase = "word"
                pos += 1
                continue
            buf.append(ch)
            pos += 1
            ch = rest[pos]
        buf.append(ch)
        pos += 1
    return words


def _reject_constant(name: str) -> object:
    raise ValueError(name)


def parse_json_array(rest: str) -> list[str] | None:
    """The exec-form array, None if ``rest`` is not valid JSON (→ shell form)."""
    text = rest.lstrip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise ValueError("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def _may_have_heredocs(keyword: str, rest: str, escape: str) -> bool:
    kw = keyword.upper()
    if kw == "ONBUILD":
        kw, _, rest = split_command(rest, escape) if rest else ("", [], "")
        kw = kw.upper()
    if kw not in _HEREDOC_KEYWORDS:
        return False
    try:
        return parse_json_array(rest) is None
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class _HeredocWord:
    name: str
    expand: bool
    chomp: bool
    fd: int


def parse_heredoc_word(word: str) -> _HeredocWord | None:
    """The heredoc a word like ``<<EOF``, ``<<-'EOF'``, ``3<<EOF`` opens, None if it is not one."""
    m = _HEREDOC.match(word)
    if not m or not m.group(3):
        return None
    rest = m.group(3)
    plain = Lexer("\\", skip_unset=True).words(rest, {})
    if len(plain) != 1:
        return None
    raw = Lexer("\\", skip_unset=True, raw_quotes=True).words(rest, {})
    quotes = plain[0].count("'") + plain[0].count('"')
    raw_quotes = raw[0].count("'") + raw[0].count('"') if raw else -1
    return _HeredocWord(plain[0], quotes == raw_quotes, m.group(2) == "-", int(m.group(1) or "0"))


def heredocs_from_line(line: str) -> list[_HeredocWord]:
    """Every heredoc opened on ``line`` (the whole instruction text), in order."""
    try:
        words = Lexer("\\", raw_quotes=True, raw_escapes=True, skip_unset=True).words(line, {})
    except InvalidArgument:
        return []  # BuildKit ignores a line its lexer cannot split here
    docs = []
    for word in words:
        doc = parse_heredoc_word(word)
        if doc is not None:
            docs.append(doc)
    return docs


# --- per-instruction argument rules --------------------------------------------------------------


def _whitespace_list(rest: str) -> list[str]:
    return _WS.split(rest) if rest else []


def _maybe_json(rest: str) -> tuple[list[str], bool]:
    if not rest:
        return [], False
    arr = parse_json_array(rest)
    return (arr, True) if arr is not None else ([rest], False)


def _maybe_json_list(rest: str) -> tuple[list[str], bool]:
    arr = parse_json_array(rest)
    return (arr, True) if arr is not None else (_whitespace_list(rest), False)


def _exactly_one(keyword: str, rest: str) -> str:
    if not rest:
        raise ValueError(f"{keyword} requires exactly one argument")
    return rest


def _key_values(keyword: str, rest: str, escape: str) -> tuple[ins.KeyValue, ...]:
    words = parse_words(rest, escape)
    if not words:
        raise ValueError(f"{keyword} requires at least one argument")
    if "=" not in words[0]:
        parts = _WS.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise ValueError(f"{keyword} must have two arguments")
        return (ins.KeyValue(parts[0], parts[1], legacy=True),)
    pairs = []
    for word in words:
        if "=" not in word:
            raise ValueError(f'Syntax error - can\'t find = in "{word}". Must be of the form: name=value')
        key, _, value = word.partition("=")
        if not key:
            raise ValueError(f"{keyword} names can not be blank")
        pairs.append(ins.KeyValue(key, value))
    return tuple(pairs)


def _duration(used: dict[str, ins.FlagValue], key: str) -> int:
    text = ins.flag_str(used, key)
    if not text:
        return 0
    ns = ins.parse_go_duration(text)
    if ns == 0:
        return 0
    if ns < 1_000_000:
        raise ValueError(f'Interval "{key}" cannot be less than 1ms')
    return ns


def _healthcheck(rest: str, used: dict[str, ins.FlagValue], **loc: object) -> ins.Healthcheck:
    if not rest:
        raise ValueError("HEALTHCHECK requires at least one argument")
    parts = re.split(r"\s+", rest, maxsplit=1)
    kind = parts[0].upper()
    args, is_json = _maybe_json(parts[1].lstrip() if len(parts) > 1 else "")
    if kind == "NONE":
        if args:
            raise ValueError("HEALTHCHECK NONE takes no arguments")
        return ins.Healthcheck(test=("NONE",), **loc)  # type: ignore[arg-type]
    if kind != "CMD":
        raise ValueError(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    if not args:
        raise ValueError("Missing command after HEALTHCHECK CMD")
    test = ("CMD", *args) if is_json else ("CMD-SHELL", " ".join(args))
    retries = 0
    if (text := ins.flag_str(used, "retries")) != "":
        try:
            retries = int(text, 10)
        except ValueError:
            raise ValueError(f'strconv.ParseInt: parsing "{text}": invalid syntax') from None
        if retries < 0:
            raise ValueError(f"--retries cannot be negative ({retries})")
    return ins.Healthcheck(
        test=test,
        interval=_duration(used, "interval"),
        timeout=_duration(used, "timeout"),
        start_period=_duration(used, "start-period"),
        start_interval=_duration(used, "start-interval"),
        retries=retries,
        **loc,  # type: ignore[arg-type]
    )


def _sources_and_dest(
    keyword: str, args: list[str], heredocs: tuple[Heredoc, ...]
) -> tuple[tuple[str, ...], str, tuple[Heredoc, ...]]:
    if len(args) < 2:
        raise ValueError(
            f"{keyword} requires at least two arguments, but only one was provided. "
            "Destination could not be determined"
        )
    *srcs, dest = args
    if parse_heredoc_word(dest) is not None:
        raise ValueError(f"{keyword} cannot accept a heredoc as a destination")
    by_name = {doc.name: doc for doc in heredocs}
    paths: list[str] = []
    contents: list[Heredoc] = []
    for src in srcs:
        word = parse_heredoc_word(src)
        if word is None:
            paths.append(src)
            continue
        doc = by_name.get(word.name, Heredoc(word.name, ""))
        contents.append(Heredoc(word.name, doc.content, word.expand, word.chomp, word.fd))
    return tuple(paths), dest, tuple(contents)


def build(
    keyword: str,
    flags: list[str],
    rest: str,
    original: str,
    line: int,
    end_line: int,
    heredocs: tuple[Heredoc, ...],
    escape: str,
) -> Instruction:
    """One typed instruction from its parts; ValueError (the caller adds the line) if invalid."""
    kw = keyword.upper()
    if kw not in KEYWORDS:
        raise ValueError(f"unknown instruction: {keyword}{suggest(keyword, list(KEYWORDS))}")
    used = ins.parse_flags(kw, flags)
    loc = {"line": line, "end_line": end_line, "original": original}
    if kw == "FROM":
        args = _whitespace_list(rest)
        stage = None
        if len(args) == 3 and args[1].lower() == "as":
            stage = args[2].lower()
            if not _STAGE_NAME.match(stage):
                raise ValueError(
                    f'invalid name for build stage: "{args[2]}", '
                    "name can't start with a number or contain symbols"
                )
        elif len(args) != 1:
            raise ValueError("FROM requires either one or three arguments")
        platform = ins.flag_str(used, "platform") or None
        return ins.From(image=args[0], stage_name=stage, platform=platform, **loc)  # type: ignore[arg-type]
    if kw == "RUN":
        args, is_json = _maybe_json(rest)
        if is_json and not args:
            raise ValueError("RUN requires at least one argument")
        network = ins.flag_str(used, "network", "default")
        if network not in ("default", "none", "host"):
            raise ValueError(f'invalid network mode "{network}"')
        security = ins.flag_str(used, "security", "sandbox")
        if security not in ("sandbox", "insecure"):
            raise ValueError(f'security "{security}" is not valid')
        mounts = ins.flag_list(used, "mount")
        for spec in mounts:
            _check_mount(spec)
        return ins.Run(
            args=tuple(args),
            exec_form=is_json,
            heredocs=heredocs,
            mounts=mounts,
            network=network,
            security=security,
            **loc,  # type: ignore[arg-type]
        )
    if kw in ("CMD", "ENTRYPOINT"):
        args, is_json = _maybe_json(rest)
        cls = ins.Cmd if kw == "CMD" else ins.Entrypoint
        return cls(args=tuple(args), exec_form=is_json, **loc)  # type: ignore[arg-type]
    if kw == "SHELL":
        args, is_json = _maybe_json(rest)
        if not args:
            raise ValueError("SHELL requires at least one argument")
        if not is_json:
            raise ValueError("SHELL requires the arguments to be in JSON form")
        return ins.Shell(args=tuple(args), **loc)  # type: ignore[arg-type]
    if kw in ("ENV", "LABEL"):
        pairs = _key_values(kw, rest, escape)
        cls2 = ins.Env if kw == "ENV" else ins.Label
        return cls2(pairs=pairs, **loc)  # type: ignore[arg-type]
    if kw == "ARG":
        words = parse_words(rest, escape)
        if not words:
            raise ValueError("ARG requires at least one argument")
        defs = []
        for word in words:
            key, has_value, value = word.partition("=")
            if has_value and not key:
                raise ValueError("ARG names can not be blank")
            defs.append(ins.ArgDef(key, value if has_value else None))
        return ins.Arg(args=tuple(defs), **loc)  # type: ignore[arg-type]
    if kw == "EXPOSE":
        ports = _whitespace_list(rest)
        if not ports:
            raise ValueError("EXPOSE requires at least one argument")
        return ins.Expose(ports=tuple(sorted(ports)), **loc)  # type: ignore[arg-type]
    if kw == "VOLUME":
        paths, _ = _maybe_json_list(rest)
        if not paths:
            raise ValueError("VOLUME requires at least one argument")
        paths = [p.strip() for p in paths]
        if any(not p for p in paths):
            raise ValueError("VOLUME specified can not be an empty string")
        return ins.Volume(paths=tuple(paths), **loc)  # type: ignore[arg-type]
    if kw == "WORKDIR":
        return ins.Workdir(path=_exactly_one(kw, rest), **loc)  # type: ignore[arg-type]
    if kw == "USER":
        return ins.User(user=_exactly_one(kw, rest), **loc)  # type: ignore[arg-type]
    if kw == "STOPSIGNAL":
        return ins.StopSignal(signal=_exactly_one(kw, rest), **loc)  # type: ignore[arg-type]
    if kw == "MAINTAINER":
        return ins.Maintainer(name=_exactly_one(kw, rest), **loc)  # type: ignore[arg-type]
    if kw == "HEALTHCHECK":
        return _healthcheck(rest, used, **loc)
    if kw == "ONBUILD":
        return _onbuild(rest, original, line, end_line, heredocs, escape)
    # COPY / ADD
    args, is_json = _maybe_json_list(rest)
    sources, dest, contents = _sources_and_dest(kw, args, heredocs)
    if kw == "COPY":
        return ins.Copy(
            sources=sources,
            dest=dest,
            contents=contents,
            exec_form=is_json,
            from_=ins.flag_str(used, "from") or None,
            chown=ins.flag_str(used, "chown"),
            chmod=ins.flag_str(used, "chmod"),
            link=bool(ins.flag_bool(used, "link")),
            parents=bool(ins.flag_bool(used, "parents")),
            excludes=ins.flag_list(used, "exclude"),
            **loc,  # type: ignore[arg-type]
        )
    return ins.Add(
        sources=sources,
        dest=dest,
        contents=contents,
        exec_form=is_json,
        chown=ins.flag_str(used, "chown"),
        chmod=ins.flag_str(used, "chmod"),
        link=bool(ins.flag_bool(used, "link")),
        keep_git_dir=ins.flag_bool(used, "keep-git-dir"),
        checksum=ins.flag_str(used, "checksum"),
        unpack=ins.flag_bool(used, "unpack"),
        excludes=ins.flag_list(used, "exclude"),
        **loc,  # type: ignore[arg-type]
    )


def _check_mount(spec: str) -> None:
    """Validate a --mount spec now when it has no variables (else the planner does, expanded)."""
    fields = spec.split(",")
    for item in fields:
        key, _, value = item.partition("=")
        if key.strip().lower() == "from" and "$" in value[:-1]:
            raise ValueError("'from' doesn't support variable expansion, define alias stage instead")
    if "$" not in spec:
        ins.parse_mount(spec)


def _onbuild(
    rest: str, original: str, line: int, end_line: int, heredocs: tuple[Heredoc, ...], escape: str
) -> ins.Onbuild:
    if not rest:
        raise ValueError("ONBUILD requires at least one argument")
    keyword, flags, sub_rest = split_command(rest, escape)
    kw = keyword.upper()
    if kw == "ONBUILD":
        raise ValueError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if kw in ("MAINTAINER", "FROM"):
        raise ValueError(f"{kw} isn't allowed as an ONBUILD trigger")
    expression = _ONBUILD_PREFIX.sub("", original, count=1)
    if heredocs:
        expression += "".join(f"\n{doc.content}{doc.name}" for doc in heredocs)
    trigger = build(keyword, flags, sub_rest, rest.strip(), line, end_line, heredocs, escape)
    return ins.Onbuild(
        trigger=trigger, expression=expression, line=line, end_line=end_line, original=original
    )
