"""A Dockerfile's variables cannot expand without bound (40 doubling ARGs took the builder to
6.9 GB of RSS): one line, InvalidArgument, before the memory goes."""

from __future__ import annotations

import pytest

from dockyard.builder.expand import MAX_EXPANSION, Lexer
from dockyard.core.errors import InvalidArgument


def test_doubling_variables_stop_at_the_bound() -> None:
    lexer = Lexer()
    env = {"A0": "x" * 1024}
    with pytest.raises(InvalidArgument, match="larger than 1 MiB"):
        for i in range(1, 41):
            env[f"A{i}"] = lexer.word(f"${{A{i - 1}}}${{A{i - 1}}}", env)
    assert max(len(v) for v in env.values()) <= MAX_EXPANSION


def test_many_references_to_one_value_are_bounded_too() -> None:
    env = {"V": "y" * 4096}
    with pytest.raises(InvalidArgument):
        Lexer().word("$V" * 1000, env)
    assert len(Lexer().word("$V" * 100, env)) == 409600
