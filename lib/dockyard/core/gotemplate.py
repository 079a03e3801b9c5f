"""Go's text/template, the part docker users write in ``--format``, with docker's extra functions.

No maintained pure-Python implementation exists on PyPI (the two found are bindings to Go's own
code, unmaintained or without an installable build), hence this small one: :func:`parse` gives a
:class:`Template`, ``Template.execute(data)`` the text. Data are Python values: dicts (maps, or
:class:`Struct` for docker's typed contexts, whose missing fields are errors as in Go), lists,
str/int/float/bool/None, and callables (methods such as ``ps``'s ``.Label "key"``).

Supported: text and ``{{- -}}`` trimming, comments, field chains ``.A.B``, ``$``, ``$x := …`` and
``$x = …``, pipelines ``|``, parentheses, ``if/else if/else``, ``range`` (lists, maps in key order,
ints) with ``$i, $v :=`` and ``else``, ``with/else with/else``, ``break``/``continue``; functions
``and or not len index slice eq ne lt le gt ge print printf println`` and docker's ``json join
lower upper title split truncate pad``. Not supported: ``define``/``template``/``block``, ``call``,
the html/js/urlquery escapers. Errors are :class:`TemplateError`, one line in Go's words.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from dockyard.core.errors import InvalidArgument

NO_VALUE = "<no value>"


class TemplateError(InvalidArgument):
    """A template that does not parse or does not execute: ``template: :1:2: …``."""


class Struct(dict[str, Any]):
    """A dict that stands for a Go struct: a missing field is an error naming ``type_name``."""

    def __init__(self, type_name: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.type_name = type_name


class _Missing:
    """A map's missing key: prints ``<no value>``, is false, and is nil to later fields."""

    def __repr__(self) -> str:
        return NO_VALUE


MISSING = _Missing()


# ---------------------------------------------------------------- lexer

_KEYWORDS = {"if", "else", "end", "range", "with", "break", "continue", "define", "template", "block"}
_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<pipe>\|)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\\n]|\\.)+')
  | (?P<number>[+-]?(?:0[xX][0-9a-fA-F_]+|(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))
  | (?P<variable>\$\w*)
  | (?P<field>(?:\.\w+)+|\.)
  | (?P<ident>[A-Za-z_]\w*)
    """,
    re.VERBOSE,
)
_CHAIN = re.compile(r"(?:\.\w+)+")


@dataclass
class _Tok:
    kind: str
    text: str
    pos: int  # offset in the whole template, for Go's ``:line:col`` in errors


def _lex_action(src: str, start: int, end: int, where: Callable[[int], str]) -> list[_Tok]:
    toks: list[_Tok] = []
    i = start
    while i < end:
        m = _TOKEN.match(src, i, end)
        if not m:
            raise TemplateError(f"template: {where(i)}: unexpected {src[i]!r} in command")
        kind = m.lastgroup or ""
        text = m.group()
        if kind == "ident" and text in ("true", "false"):
            kind = "bool"
        elif kind == "ident" and text == "nil":
            kind = "nil"
        elif kind == "ident" and text in _KEYWORDS:
            kind = "keyword"
        if kind != "space":
            # a chain right after a variable or ")" belongs to it: $x.Name, (index . 0).Name
            if (
                kind == "field"
                and toks
                and toks[-1].kind in ("variable", "rparen")
                and toks[-1].pos + len(toks[-1].text) == m.start()
                and text != "."
            ):
                toks.append(_Tok("chain", text, m.start()))
            else:
                toks.append(_Tok(kind, text, m.start()))
        i = m.end()
    return toks


# ---------------------------------------------------------------- parse tree


@dataclass
class _Node:
    pos: int
    source: str  # as written, for ``executing "" at <…>``


@dataclass
class _Operand(_Node):
    kind: str  # dot field variable ident string number bool nil pipeline
    value: Any = None
    chain: list[str] = field(default_factory=list)


@dataclass
class _Command(_Node):
    args: list[_Operand] = field(default_factory=list)


@dataclass
class _Pipeline(_Node):
    decl: list[str] = field(default_factory=list)
    assign: bool = False  # ``$x = …`` rather than ``:=``
    cmds: list[_Command] = field(default_factory=list)


@dataclass
class _Text:
    text: str


@dataclass
class _Action:
    pipe: _Pipeline


@dataclass
class _Branch:
    kind: str  # if range with
    pipe: _Pipeline
    body: list[Any]
    orelse: list[Any]


@dataclass
class _Jump:
    kind: str  # break continue
    pos: int


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src

    def where(self, pos: int) -> str:
        return f":{1 + self.src.count(chr(10), 0, pos)}"

    def items(self) -> Iterator[tuple[str, Any, int]]:
        """("text", str, pos) and ("action", [tokens], pos), trim markers applied."""
        src = self.src
        i = 0
        pending_trim = False
        while True:
            j = src.find("{{", i)
            text = src[i:] if j < 0 else src[i:j]
            trim_left = j >= 0 and src[j + 2 : j + 3] == "-" and src[j + 3 : j + 4].isspace()
            if pending_trim:
                text = text.lstrip(" \t\r\n")
            if trim_left:
                text = text.rstrip(" \t\r\n")
            if text:
                yield "text", text, i
            if j < 0:
                return
            start = j + (3 if trim_left else 2)
            close = self._close(start)
            trim_right = close >= 1 and src[close - 1] == "-" and src[close - 2 : close - 1].isspace()
            inner_end = close - 1 if trim_right else close
            body = src[start:inner_end].strip()
            if not (body.startswith("/*") and body.endswith("*/")):
                yield "action", _lex_action(src, start, inner_end, self.where), start
            pending_trim = trim_right
            i = close + 2

    def _close(self, start: int) -> int:
        """The offset of the ``}}`` that ends the action at ``start`` (skipping quoted ones)."""
        i = start
        src = self.src
        while i < len(src):
            if src.startswith("}}", i):
                return i
            if src[i] in "\"`'":
                quote = src[i]
                i += 1
                while i < len(src) and src[i] != quote:
                    i += 2 if src[i] == "\\" and quote != "`" else 1
            i += 1
        raise TemplateError(f"template: {self.where(start)}: unclosed action")

    def parse(self) -> list[Any]:
        self._items = list(self.items())
        self._at = 0
        body, stop = self._list(())
        if stop is not None:
            raise TemplateError(f"template: {self.where(stop[2])}: unexpected {{{{{stop[1]}}}}}")
        return body

    def _list(self, stops: tuple[str, ...]) -> tuple[list[Any], Any]:
        """Nodes up to one of ``stops`` ("end", "else"); returns (nodes, the stop item or None)."""
        out: list[Any] = []
        while self._at < len(self._items):
            kind, value, pos = self._items[self._at]
            self._at += 1
            if kind == "text":
                out.append(_Text(value))
                continue
            toks: list[_Tok] = value
            if not toks:
                raise TemplateError(f"template: {self.where(pos)}: missing value for command")
            head = toks[0]
            if head.kind == "keyword":
                if head.text in ("end", "else"):
                    if head.text not in stops:
                        raise TemplateError(f"template: {self.where(pos)}: unexpected {{{{{head.text}}}}}")
                    return out, (head.text, toks[1:], pos)
                if head.text in ("if", "range", "with"):
                    out.append(self._branch(head.text, toks[1:], pos))
                    continue
                if head.text in ("break", "continue"):
                    out.append(_Jump(head.text, pos))
                    continue
                raise TemplateError(f"template: {self.where(pos)}: {{{{{head.text}}}}} is not supported")
            out.append(_Action(self._pipeline(toks, pos, allow_decl=True)))
        if stops:
            raise TemplateError(f"template: {self.where(len(self.src))}: unexpected EOF")
        return out, None

    def _branch(self, kind: str, toks: list[_Tok], pos: int) -> _Branch:
        if not toks:
            raise TemplateError(f"template: {self.where(pos)}: missing value for {kind}")
        pipe = self._pipeline(toks, toks[0].pos, allow_decl=True)
        body, stop = self._list(("end", "else"))
        orelse: list[Any] = []
        if stop[0] == "else":
            rest = stop[1]
            if rest and rest[0].kind == "keyword" and rest[0].text in ("if", "with") and rest[0].text == kind:
                orelse = [self._branch(kind, rest[1:], stop[2])]  # else if / else with: shares the end
            elif rest:
                raise TemplateError(f"template: {self.where(stop[2])}: unexpected {rest[0].text!r} in else")
            else:
                orelse, stop = self._list(("end",))
        return _Branch(kind, pipe, body, orelse)

    def _pipeline(self, toks: list[_Tok], pos: int, allow_decl: bool) -> _Pipeline:
        end = toks[-1].pos + len(toks[-1].text)
        pipe = _Pipeline(pos, self.src[toks[0].pos : end])
        i = 0
        if allow_decl:
            names = []
            j = 0
            while j < len(toks) and toks[j].kind == "variable":
                names.append(toks[j].text)
                if j + 1 < len(toks) and toks[j + 1].kind == "comma" and len(names) < 2:
                    j += 2
                    continue
                break
            if names and j + 1 < len(toks) and toks[j + 1].kind in ("declare", "assign"):
                pipe.decl, pipe.assign = names, toks[j + 1].kind == "assign"
                i = j + 2
        cmd: list[_Operand] = []
        while i < len(toks):
            t = toks[i]
            if t.kind == "pipe":
                if not cmd:
                    raise TemplateError(f"template: {self.where(t.pos)}: missing command before |")
                pipe.cmds.append(self._command(cmd))
                cmd = []
                i += 1
                continue
            operand, i = self._operand(toks, i)
            cmd.append(operand)
        if not cmd:
            raise TemplateError(f"template: {self.where(pos)}: missing value for command")
        pipe.cmds.append(self._command(cmd))
        return pipe

    def _command(self, args: list[_Operand]) -> _Command:
        first, last = args[0], args[-1]
        return _Command(first.pos, self.src[first.pos : last.pos + len(last.source)], args)

    def _operand(self, toks: list[_Tok], i: int) -> tuple[_Operand, int]:
        t = toks[i]
        if t.kind == "lparen":
            depth, j = 1, i + 1
            while j < len(toks) and depth:
                depth += {"lparen": 1, "rparen": -1}.get(toks[j].kind, 0)
                j += 1
            if depth:
                raise TemplateError(f"template: {self.where(t.pos)}: unclosed left paren")
            inner = self._pipeline(toks[i + 1 : j - 1], toks[i + 1].pos if j - 1 > i + 1 else t.pos, False)
            op = _Operand(t.pos, self.src[t.pos : toks[j - 1].pos + 1], "pipeline", inner)
            i = j
        elif t.kind == "field":
            op = _Operand(t.pos, t.text, "dot" if t.text == "." else "field", chain=t.text.split(".")[1:])
            if t.text == ".":
                op.chain = []
            i += 1
        elif t.kind == "variable":
            op = _Operand(t.pos, t.text, "variable", t.text)
            i += 1
        elif t.kind in ("string", "raw", "char", "number", "bool", "nil", "ident"):
            op = _Operand(t.pos, t.text, t.kind, _literal(t, self.where))
            i += 1
        else:
            raise TemplateError(f"template: {self.where(t.pos)}: unexpected {t.text!r} in operand")
        if i < len(toks) and toks[i].kind == "chain":
            op.chain = op.chain + toks[i].text.split(".")[1:]
            op.source += toks[i].text
            i += 1
        return op, i


def _literal(t: _Tok, where: Callable[[int], str]) -> Any:
    if t.kind == "string":
        return json.loads(t.text) if "\\" in t.text else t.text[1:-1]
    if t.kind == "raw":
        return t.text[1:-1]
    if t.kind == "char":
        return ord(json.loads('"' + t.text[1:-1].replace('"', '\\"') + '"'))
    if t.kind == "number":
        text = t.text.replace("_", "")
        try:
            return int(text, 0)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                raise TemplateError(f"template: {where(t.pos)}: bad number syntax: {t.text!r}") from None
    if t.kind == "bool":
        return t.text == "true"
    return None if t.kind == "nil" else t.text


# ---------------------------------------------------------------- printing as Go's fmt does


def go_string(value: Any) -> str:
    """``fmt.Sprint``'s %v of one value."""
    if value is MISSING:
        return NO_VALUE
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{go_string(k)}:{go_string(value[k])}" for k in _keys(value)) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_string(v) for v in value) + "]"
    return str(value)


def _go_float(value: float) -> str:
    """%v of a float64: the shortest digits, %e form from 1e+06 up and below 1e-04 (as Go prints
    JSON numbers that docker inspect decoded into a map: 1.073741824e+09)."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    d = Decimal(repr(value))
    exponent = d.adjusted()
    digits = "".join(map(str, d.as_tuple().digits)).rstrip("0") or "0"
    sign = "-" if value < 0 else ""
    if exponent < -4 or exponent >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    text = format(abs(d), "f")
    return sign + (text.rstrip("0").rstrip(".") if "." in text else text)


def _keys(mapping: dict[Any, Any]) -> list[Any]:
    if isinstance(mapping, Struct):
        return list(mapping)
    return sorted(mapping, key=lambda k: (str(type(k)), k))


def _truth(value: Any) -> bool:
    if value is MISSING or value is None:
        return False
    if isinstance(value, bool | int | float | str | list | tuple | dict):
        return bool(value)
    return True


# ---------------------------------------------------------------- functions


def _json(value: Any) -> str:
    def plain(v: Any) -> Any:
        if v is MISSING:
            return None
        if isinstance(v, Struct):
            return {k: plain(x) for k, x in v.items() if not callable(x)}
        if isinstance(v, dict):
            return {str(k): plain(v[k]) for k in _keys(v)}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v

    return json.dumps(plain(value), separators=(",", ":"), ensure_ascii=False)


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, dict):
            item = item.get(key, MISSING)
        elif isinstance(item, list | tuple | str):
            if not isinstance(key, int) or isinstance(key, bool):
                raise ValueError(f"cannot index slice/array with type {type(key).__name__}")
            if not 0 <= key < len(item):
                raise ValueError(f"index out of range: {key}")
            item = item[key] if not isinstance(item, str) else ord(item[key])
        elif item is None or item is MISSING:
            raise ValueError("index of untyped nil")
        else:
            raise ValueError(f"can't index item of type {type(item).__name__}")
    return item


def _slice(item: Any, *bounds: int) -> Any:
    if not isinstance(item, list | tuple | str):
        raise ValueError(f"can't slice item of type {type(item).__name__}")
    lo = bounds[0] if bounds else 0
    hi = bounds[1] if len(bounds) > 1 else len(item)
    if not 0 <= lo <= hi <= len(item):
        raise ValueError(f"slice bounds out of range [{lo}:{hi}]")
    return item[lo:hi]


def _length(item: Any) -> int:
    if isinstance(item, list | tuple | str | dict):
        return len(item.encode() if isinstance(item, str) else item)
    raise ValueError(f"len of type {type(item).__name__}")


def _cmp(op: str) -> Callable[..., bool]:
    def compare(a: Any, *others: Any) -> bool:
        if op == "eq" and not others:
            raise ValueError("missing argument for comparison")
        for b in others if op == "eq" else others[:1]:
            if not _comparable(a, b):
                raise ValueError("incompatible types for comparison")
            if op == "eq" and a == b:
                return True
        if op == "eq":
            return False
        if not others:
            raise ValueError("missing argument for comparison")
        if op != "ne" and (a is None or isinstance(a, bool)):
            raise ValueError("invalid type for comparison")
        return bool(_ORDER[op](a, others[0]))

    return compare


_ORDER: dict[str, Callable[[Any, Any], Any]] = {
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}


def _comparable(a: Any, b: Any) -> bool:
    number = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, number) and isinstance(b, number):
        return True
    if a is None or b is None:
        return a is None and b is None
    return type(a) is type(b) and isinstance(a, str | int | float)


def _sprint(*args: Any) -> str:
    out = ""
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out += " "
        out += go_string(a)
    return out


def _sprintln(*args: Any) -> str:
    return " ".join(go_string(a) for a in args) + "\n"


_VERB = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+|\*))?([a-zA-Z%])")


def sprintf(fmt: str, *args: Any) -> str:
    """Go's ``fmt.Sprintf`` for the verbs templates use: %s %d %v %q %t %f %g %e %x %X %o %c %%."""
    values = list(args)

    def verb(m: re.Match[str]) -> str:
        flags, width, precision, v = m.groups()
        if v == "%":
            return "%"
        if width == "*":
            width = str(values.pop(0)) if values else None
        if precision == "*":
            precision = str(values.pop(0)) if values else None
        if not values:
            return f"%!{v}(MISSING)"
        a = values.pop(0)
        text = _format_one(v, a, precision)
        if text is None:
            return f"%!{v}({_go_type(a)}={go_string(a)})"
        w = int(width) if width else 0
        if "-" in flags:
            return text.ljust(w)
        if "0" in flags and v in "dfegxXo" and text[:1] in "+-":
            return text[0] + text[1:].rjust(w - 1, "0")
        if "0" in flags and v in "dfegxXo":
            return text.rjust(w, "0")
        if "+" in flags and v in "dfeg" and not text.startswith("-"):
            text = "+" + text
        return text.rjust(w)

    out = _VERB.sub(verb, fmt)
    if values:
        out += "%!(EXTRA " + ", ".join(f"{_go_type(a)}={go_string(a)}" for a in values) + ")"
    return out


def _format_one(v: str, a: Any, precision: str | None) -> str | None:
    p = int(precision) if precision is not None else None
    if v in ("v", "s"):
        if v == "s" and isinstance(a, int | float) and not isinstance(a, bool):
            return None
        text = go_string(a)
        return text[:p] if p is not None and isinstance(a, str) else text
    if v == "q":
        return json.dumps(a, ensure_ascii=False) if isinstance(a, str) else None
    if v == "t":
        return go_string(a) if isinstance(a, bool) else None
    if isinstance(a, bool) or not isinstance(a, int | float):
        if v in "xX" and isinstance(a, str):
            return a.encode().hex() if v == "x" else a.encode().hex().upper()
        return None
    if v == "d":
        return str(a) if isinstance(a, int) else None
    if v in "xXoc":
        if not isinstance(a, int):
            return None
        return {"x": f"{a:x}", "X": f"{a:X}", "o": f"{a:o}", "c": chr(a)}[v]
    if v in "feEgG":
        if v in "gG" and p is None:
            return _go_float(float(a))
        return f"{float(a):.{6 if p is None else p}{v}}"
    return None


def _truncate(source: str, length: int) -> str:
    return source if len(source) < length else source[:length]


def _pad(source: str, prefix: int, suffix: int) -> str:
    return source if source == "" else " " * prefix + source + " " * suffix


def _title(source: str) -> str:
    return re.sub(r"(^|\s)(\S)", lambda m: m.group(1) + m.group(2).upper(), source)


def _str_args(name: str, fn: Callable[..., Any], arity: int) -> Callable[..., Any]:
    """docker's string functions take strings: a wrong type is Go's call error, not a crash."""

    def call(*args: Any) -> Any:
        if len(args) != arity:
            raise ValueError(f"wrong number of args for {name}: want {arity} got {len(args)}")
        return fn(*args)

    return call


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "not": lambda a: not _truth(a),
    "len": _length,
    "index": _index,
    "slice": _slice,
    "eq": _cmp("eq"),
    "ne": _cmp("ne"),
    "lt": _cmp("lt"),
    "le": _cmp("le"),
    "gt": _cmp("gt"),
    "ge": _cmp("ge"),
    "print": _sprint,
    "printf": sprintf,
    "println": _sprintln,
    # docker's (cli/templates): json with HTML left unescaped, and strings' functions
    "json": _json,
    "join": _str_args("join", lambda items, sep: sep.join(go_string(i) for i in items), 2),
    "split": _str_args("split", lambda s, sep: s.split(sep) if sep else list(s), 2),
    "lower": _str_args("lower", lambda s: s.lower(), 1),
    "upper": _str_args("upper", lambda s: s.upper(), 1),
    "title": _str_args("title", _title, 1),
    "truncate": _str_args("truncate", _truncate, 2),
    "pad": _str_args("pad", _pad, 3),
}


# ---------------------------------------------------------------- execution


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _ExecError(Exception):
    def __init__(self, node: _Node, message: str) -> None:
        super().__init__(message)
        self.node = node


@dataclass
class Template:
    """A parsed template; :meth:`execute` renders it against one value."""

    source: str
    nodes: list[Any]
    functions: dict[str, Callable[..., Any]]
    missing_key_error: bool = False  # Go's Option("missingkey=error"), as docker inspect's raw fallback

    def execute(self, data: Any) -> str:
        out: list[str] = []
        scope: list[dict[str, Any]] = [{"$": data}]
        try:
            self._walk(self.nodes, data, scope, out)
        except _ExecError as exc:
            pos = exc.node.pos
            line = 1 + self.source.count("\n", 0, pos)
            col = pos - (self.source.rfind("\n", 0, pos) + 1)
            raise TemplateError(
                f'template: :{line}:{col}: executing "" at <{exc.node.source}>: {exc}'
            ) from None
        except (_Break, _Continue):
            raise TemplateError("template: {{break}} or {{continue}} outside {{range}}") from None
        return "".join(out)

    def _walk(self, nodes: list[Any], dot: Any, scope: list[dict[str, Any]], out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _Action):
                value = self._pipe(node.pipe, dot, scope)
                if not node.pipe.decl:  # a declaration prints nothing
                    out.append(self._print(node.pipe, value))
            elif isinstance(node, _Jump):
                raise _Break() if node.kind == "break" else _Continue()
            else:
                self._branch(node, dot, scope, out)

    def _print(self, node: _Node, value: Any) -> str:
        if callable(value):
            raise _ExecError(node, "can't print a function value")
        return go_string(value)

    def _branch(self, node: _Branch, dot: Any, scope: list[dict[str, Any]], out: list[str]) -> None:
        scope.append({})
        try:
            if node.kind == "range":
                self._range(node, dot, scope, out)
                return
            value = self._pipe(node.pipe, dot, scope)
            if _truth(value):
                self._walk(node.body, value if node.kind == "with" else dot, scope, out)
            else:
                self._walk(node.orelse, dot, scope, out)
        finally:
            scope.pop()

    def _range(self, node: _Branch, dot: Any, scope: list[dict[str, Any]], out: list[str]) -> None:
        decl = node.pipe.decl
        node.pipe.decl = []
        try:
            value = self._pipe(node.pipe, dot, scope)
        finally:
            node.pipe.decl = decl
        if isinstance(value, dict):
            pairs = [(k, value[k]) for k in _keys(value)]
        elif isinstance(value, list | tuple):
            pairs = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            pairs = [(i, i) for i in range(value)]
        elif value is None or value is MISSING:
            pairs = []
        else:
            raise _ExecError(node.pipe, f"range can't iterate over {go_string(value)}")
        if not pairs:
            self._walk(node.orelse, dot, scope, out)
            return
        for key, item in pairs:
            if len(decl) == 1:
                scope[-1][decl[0]] = item
            elif len(decl) == 2:
                scope[-1][decl[0]], scope[-1][decl[1]] = key, item
            try:
                self._walk(node.body, item, scope, out)
            except _Break:
                break
            except _Continue:
                continue

    def _pipe(self, pipe: _Pipeline, dot: Any, scope: list[dict[str, Any]]) -> Any:
        value: Any = _NOTHING
        for cmd in pipe.cmds:
            value = self._command(cmd, dot, scope, value)
        for name in pipe.decl:
            if pipe.assign:
                for frame in reversed(scope):
                    if name in frame:
                        frame[name] = value
                        break
                else:
                    raise _ExecError(pipe, f"undefined variable: {name}")
            else:
                scope[-1][name] = value
        return value

    def _command(self, cmd: _Command, dot: Any, scope: list[dict[str, Any]], piped: Any) -> Any:
        first, rest = cmd.args[0], cmd.args[1:]
        final = [] if piped is _NOTHING else [piped]
        if first.kind == "ident":
            fn = self.functions.get(first.value)
            if first.value in ("and", "or"):
                return self._logic(first, rest, final, dot, scope)
            if fn is None:
                raise _ExecError(first, f'function "{first.value}" not defined')
            args = [self._arg(a, dot, scope) for a in rest] + final
            try:
                result = fn(*args)
            except _ExecError:
                raise
            except (TypeError, ValueError, AttributeError, IndexError, KeyError) as exc:
                raise _ExecError(first, f"error calling {first.value}: {_reason(exc)}") from None
            return result
        if first.kind in ("field", "variable") or (first.kind in ("dot", "pipeline") and first.chain):
            return self._operand(first, dot, scope, [self._arg(a, dot, scope) for a in rest] + final)
        if rest or final:
            raise _ExecError(first, f"can't give argument to non-function {first.source}")
        return self._arg(first, dot, scope)

    def _logic(
        self, node: _Operand, rest: list[_Operand], final: list[Any], dot: Any, scope: list[dict[str, Any]]
    ) -> Any:
        if not rest and not final:
            raise _ExecError(node, f"wrong number of args for {node.value}: want at least 1 got 0")
        value: Any = None
        for a in [*rest, *final]:  # evaluated one by one: and/or stop early, as in Go 1.18+
            value = self._arg(a, dot, scope) if isinstance(a, _Operand) else a
            if _truth(value) != (node.value == "and"):
                return value
        return value

    def _arg(self, a: _Operand, dot: Any, scope: list[dict[str, Any]]) -> Any:
        if a.kind == "ident":
            fn = self.functions.get(a.value)
            if a.value in ("and", "or"):
                raise _ExecError(a, f"wrong number of args for {a.value}: want at least 1 got 0")
            if fn is None:
                raise _ExecError(a, f'function "{a.value}" not defined')
            try:
                return fn()
            except (TypeError, ValueError) as exc:
                raise _ExecError(a, f"error calling {a.value}: {_reason(exc)}") from None
        if a.kind in ("string", "raw", "char", "number", "bool", "nil"):
            return a.value
        return self._operand(a, dot, scope, [])

    def _operand(self, a: _Operand, dot: Any, scope: list[dict[str, Any]], args: list[Any]) -> Any:
        if a.kind == "variable":
            for frame in reversed(scope):
                if a.value in frame:
                    base = frame[a.value]
                    break
            else:
                raise _ExecError(a, f"undefined variable: {a.value}")
        elif a.kind == "pipeline":
            base = self._pipe(a.value, dot, scope)
        else:
            base = dot
        value = base
        for i, name in enumerate(a.chain):
            value = self._field(a, value, name, args if i == len(a.chain) - 1 else [])
        if args and not a.chain:
            raise _ExecError(a, f"can't give argument to non-function {a.source}")
        return value

    def _field(self, node: _Operand, value: Any, name: str, args: list[Any]) -> Any:
        if isinstance(value, Struct):
            if name not in value:
                raise _ExecError(node, f"can't evaluate field {name} in type {value.type_name}")
            found = value[name]
        elif isinstance(value, dict):
            if name in value:
                found = value[name]
            elif (lower := name[:1].lower() + name[1:]) in value:  # a proto-JSON key: .Id finds "id"
                found = value[lower]
            elif self.missing_key_error:
                raise _ExecError(node, f'map has no entry for key "{name}"')
            else:
                found = MISSING
        elif value is None or value is MISSING:
            raise _ExecError(node, f"nil pointer evaluating interface {{}}.{name}")
        else:
            raise _ExecError(node, f"can't evaluate field {name} in type {_go_type(value)}")
        if callable(found):
            try:
                return found(*args)
            except (TypeError, ValueError) as exc:
                raise _ExecError(node, f"error calling {name}: {_reason(exc)}") from None
        if args:
            raise _ExecError(node, f"{name} has arguments but cannot be invoked as function")
        return found


_NOTHING = object()


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, TypeError):  # a Python signature message; say it as Go would
        return "wrong number or type of args" + (f" ({text})" if "argument" not in text else "")
    return text


def _go_type(value: Any) -> str:
    return {
        bool: "bool",
        int: "int",
        float: "float64",
        str: "string",
        list: "[]interface {}",
        tuple: "[]interface {}",
    }.get(type(value), type(value).__name__)


def parse(
    source: str,
    functions: dict[str, Callable[..., Any]] | None = None,
    missing_key_error: bool = False,
) -> Template:
    """Parse ``source``; ``functions`` adds to or replaces the built-in ones."""
    parser = _Parser(source)
    nodes = parser.parse()
    known = {**FUNCTIONS, **(functions or {})}
    for ident in _idents(nodes):  # Go refuses an unknown function when it parses, not when it runs
        if ident.value not in known and ident.value not in ("and", "or"):
            raise TemplateError(f'template: {parser.where(ident.pos)}: function "{ident.value}" not defined')
    return Template(source, nodes, known, missing_key_error)


def _idents(nodes: list[Any]) -> Iterator[_Operand]:
    def pipeline(p: _Pipeline) -> Iterator[_Operand]:
        for cmd in p.cmds:
            for a in cmd.args:
                if a.kind == "ident":
                    yield a
                elif a.kind == "pipeline":
                    yield from pipeline(a.value)

    for node in nodes:
        if isinstance(node, _Action):
            yield from pipeline(node.pipe)
        elif isinstance(node, _Branch):
            yield from pipeline(node.pipe)
            yield from _idents(node.body)
            yield from _idents(node.orelse)


def render(source: str, data: Any, missing_key_error: bool = False) -> str:
    return parse(source, missing_key_error=missing_key_error).execute(data)


# ---------------------------------------------------------------- tabwriter


def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Go's ``text/tabwriter`` as docker sets it up (minwidth 10, padding 3, spaces): cells end at
    tabs; a column is aligned over each run of consecutive lines that have it."""
    trailing = text.endswith("\n")
    lines = [line.split("\t") for line in (text[:-1] if trailing else text).split("\n")]
    out: list[str] = []
    widths: list[int] = []

    def write(line0: int, line1: int) -> None:
        for cells in lines[line0:line1]:
            parts = []
            for j, cell in enumerate(cells):
                parts.append(cell.ljust(widths[j]) if j < len(widths) and j < len(cells) - 1 else cell)
            out.append("".join(parts))

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write(line0, line1)

    fmt(0, len(lines))
    return "\n".join(out) + ("\n" if trailing else "")
