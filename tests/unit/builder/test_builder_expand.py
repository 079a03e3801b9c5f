"""BuildKit's variable expansion: every operator, quoting, escapes, word splitting, errors."""

from __future__ import annotations

import pytest

from dockyard.builder.expand import Lexer
from dockyard.core.errors import InvalidArgument

ENV = {
    "PWD": "/home",
    "SHELL": "/bin/bash",
    "KOREAN": "한국어",
    "NULL": "",
    "str": "foobarbaz",
    "path": "/usr/local/bin/tool",
    "spaced": "a b  c",
    "ab": "x",
}

# (input, expected single word)
WORD_TABLE = [
    # plain references
    ("hello", "hello"),
    ("$PWD", "/home"),
    ("${PWD}", "/home"),
    ("${PWD}/x", "/home/x"),
    ("$PWD/x", "/home/x"),
    ("$PWDx", ""),
    ("${PWD}x", "/homex"),
    ("$KOREAN", "한국어"),
    ("$UNSET", ""),
    ("${UNSET}", ""),
    ("a$UNSET.b", "a.b"),
    ("$", "$"),
    ("a$", "a$"),
    ("$ x", "$ x"),
    ("$1", ""),
    ("$12ab", "ab"),
    ("$@x", "x"),
    ("$$", ""),
    ("${ab}c", "xc"),
    # operators, set / empty / unset
    ("${PWD:-def}", "/home"),
    ("${NULL:-def}", "def"),
    ("${UNSET:-def}", "def"),
    ("${PWD-def}", "/home"),
    ("${NULL-def}", ""),
    ("${UNSET-def}", "def"),
    ("${PWD:+alt}", "alt"),
    ("${NULL:+alt}", ""),
    ("${UNSET:+alt}", ""),
    ("${PWD+alt}", "alt"),
    ("${NULL+alt}", "alt"),
    ("${UNSET+alt}", ""),
    ("${PWD:?oops}", "/home"),
    ("${NULL?oops}", ""),
    # nested and quoted defaults
    ("${UNSET:-$PWD}", "/home"),
    ("${UNSET:-${SHELL}}", "/bin/bash"),
    ("${UNSET:-${ALSO:-deep}}", "deep"),
    ("${UNSET:-a b}", "a b"),
    ("${UNSET:-'$PWD'}", "$PWD"),
    ('${UNSET:-"$PWD x"}', "/home x"),
    ("${PWD:+${SHELL}-x}", "/bin/bash-x"),
    # pattern operators (the reference's examples)
    ("${str#f*b}", "arbaz"),
    ("${str##f*b}", "az"),
    ("${str%b*}", "foobar"),
    ("${str%%b*}", "foo"),
    ("${str/ba/fo}", "fooforbaz"),
    ("${str//ba/fo}", "fooforfoz"),
    ("${str#nomatch}", "foobarbaz"),
    ("${str#?}", "oobarbaz"),
    ("${str%?}", "foobarba"),
    ("${path##*/}", "tool"),
    ("${path%/*}", "/usr/local/bin"),
    ("${path#/usr}", "/local/bin/tool"),
    ("${UNSET#x}", ""),
    ("${str/o/}", "fobarbaz"),
    ("${str//o/}", "fbarbaz"),
    ("${str/b*/X}", "fooX"),
    ("${str/\\//X}", "foobarbaz"),
    ("${UNSET/a/b}", ""),
    # quotes
    ("'$PWD'", "$PWD"),
    ('"$PWD"', "/home"),
    ("'a b'", "a b"),
    ('"a  b"', "a  b"),
    ("'\"'", '"'),
    ('"\'"', "'"),
    ("a'b'c", "abc"),
    ('a"b"c', "abc"),
    ("''", ""),
    ('"${UNSET:-x y}"', "x y"),
    ("'\\$PWD'", "\\$PWD"),
    # escapes (default escape character)
    ("\\$PWD", "$PWD"),
    ("\\${PWD}", "${PWD}"),
    ("a\\ b", "a b"),
    ("\\'x\\'", "'x'"),
    ('\\"x\\"', '"x"'),
    ("\\\\", "\\"),
    ("a\\", "a"),
    ('"\\$PWD"', "$PWD"),
    ('"\\"q\\""', '"q"'),
    ('"\\\\"', "\\"),
    ('"\\n"', "\\n"),
    ('"a\\b"', "a\\b"),
    # heredoc-looking text is kept
    ("<<EOF", "<<EOF"),
    ("a<b", "a<b"),
]


@pytest.mark.parametrize(("text", "expected"), WORD_TABLE)
def test_word(text: str, expected: str) -> None:
    assert Lexer().word(text, ENV) == expected


# (input, expected words after splitting)
WORDS_TABLE = [
    ("a b c", ["a", "b", "c"]),
    ("  a   b  ", ["a", "b"]),
    ("$spaced", ["a", "b", "c"]),
    ('"$spaced"', ["a b  c"]),
    ("'a b' c", ["a b", "c"]),
    ("a\\ b c", ["a b", "c"]),
    ("80 ${UNSET:-443}/tcp", ["80", "443/tcp"]),
    ("${UNSET:-8080 9090}", ["8080", "9090"]),
    ('""', []),
    ("x$UNSET y", ["x", "y"]),
    ("a${UNSET:-b}c", ["abc"]),
]


@pytest.mark.parametrize(("text", "expected"), WORDS_TABLE)
def test_words(text: str, expected: list[str]) -> None:
    assert Lexer().words(text, ENV) == expected


BACKTICK_TABLE = [
    ("`$PWD", "$PWD"),
    ("a` b", "a b"),
    ("c:\\dir", "c:\\dir"),
    ('"`"x"', '"x'),
    ("\\$PWD", "\\/home"),
]


@pytest.mark.parametrize(("text", "expected"), BACKTICK_TABLE)
def test_backtick_escape(text: str, expected: str) -> None:
    assert Lexer("`").word(text, ENV) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${", "missing '}'"),
        ("${PWD", "missing '}'"),
        ("${PWD:-x", "missing '}'"),
        ("${}", "bad substitution"),
        ("${:x}", "bad substitution"),
        ("${{x}", "bad substitution"),
        ("${#PWD}", "unsupported modifier (P) in substitution"),
        ("${PWD:x}", "unsupported modifier (:x) in substitution"),
        ("${PWD:#x}", "unsupported modifier (:#) in substitution"),
        ("${PWD:%x}", "unsupported modifier (:%) in substitution"),
        ("${PWD.x}", "unsupported modifier (.) in substitution"),
        ("${UNSET:?}", "UNSET: is not allowed to be unset"),
        ("${UNSET?must be set}", "UNSET: must be set"),
        ("${NULL:?}", "NULL: is not allowed to be empty"),
        ("${NULL:?custom}", "NULL: custom"),
        ("${str/x", "missing '/' in ${}"),
        ("${str/x/y", "missing '}'"),
        ("'open", "matching single-quote"),
        ('"open', "matching double-quote"),
        ("${str#\\x}", "invalid escape"),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        Lexer().word(text, ENV)
    assert message in str(exc.value)
    assert str(exc.value).startswith(f'failed to process "{text}"')


def test_skip_unset_keeps_references_verbatim() -> None:
    lx = Lexer(skip_unset=True)
    assert lx.word("$UNSET ${UNSET} ${UNSET:-d} ${UNSET/a/b} $PWD", ENV) == (
        "$UNSET ${UNSET} ${UNSET:-d} ${UNSET/a/b} /home"
    )


def test_raw_quotes_and_escapes() -> None:
    assert Lexer(raw_quotes=True).word("'a' \"b\"", ENV) == "'a' \"b\""
    assert Lexer(raw_escapes=True).word("a\\ b", ENV) == "a\\ b"


def test_skip_quotes_is_for_heredoc_bodies() -> None:
    lx = Lexer(skip_quotes=True)
    assert lx.word("echo \"hello ${X}\" '$X'\n", {"X": "bar"}) == "echo \"hello bar\" 'bar'\n"
    assert lx.word("cost: \\$5\n", {}) == "cost: $5\n"


def test_same_value_throughout_and_matches_recorded() -> None:
    result = Lexer().expand("$PWD ${UNSET:-x} $str", ENV)
    assert result.value == "/home x foobarbaz"
    assert result.matched == {"PWD", "str"}
    assert result.unmatched == {"UNSET"}


def test_escaped_pattern_characters() -> None:
    env = {"v": "a*b?c"}
    assert Lexer().word("${v#a\\*}", env) == "b?c"
    assert Lexer().word("${v%\\?c}", env) == "a*b"
    assert Lexer().word("${v//\\*/-}", env) == "a-b?c"
