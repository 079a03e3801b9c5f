"""The Dockerfile parser: directives, lines, forms, flags, heredocs, every instruction, errors."""

from __future__ import annotations

import pytest

from dockyard.builder import instructions as ins
from dockyard.builder.dockerfile import Dockerfile, parse
from dockyard.builder.instructions import DockerfileError, Heredoc


def one(text: str) -> ins.Instruction:
    df = parse(text)
    assert len(df.instructions) == 1, df.instructions
    return df.instructions[0]


def runs(df: Dockerfile) -> list[str]:
    return [i.args[0] for i in df.instructions if isinstance(i, ins.Run)]


def error(text: str, name: str = "Dockerfile") -> str:
    with pytest.raises(DockerfileError) as exc:
        parse(text, name)
    return str(exc.value)


# --- directives ----------------------------------------------------------------------------------


def test_directives_at_the_top() -> None:
    df = parse("# syntax=docker/dockerfile:1\n#ESCAPE = `\n# check=skip=all\n\nFROM x\nRUN a `\n b\n")
    assert [(d.name, d.value, d.line) for d in df.directives] == [
        ("syntax", "docker/dockerfile:1", 1),
        ("escape", "`", 2),
        ("check", "skip=all", 3),
    ]
    assert df.escape == "`"
    assert df.directive("syntax") == "docker/dockerfile:1"
    assert runs(df) == ["a  b"]


@pytest.mark.parametrize(
    "line", ["#directive=value", "# directive =value", "#\tdirective= value", "# directive = value"]
)
def test_directive_whitespace_forms(line: str) -> None:
    df = parse(line.replace("directive", "escape").replace("value", "`") + "\nFROM x\n")
    assert df.escape == "`"


@pytest.mark.parametrize(
    "text",
    [
        "FROM x\n# escape=`\nRUN a `\n",  # after an instruction
        "# About my dockerfile\n# escape=`\nFROM x\nRUN a `\n",  # after a comment
        "# unknowndirective=value\n# escape=`\nFROM x\nRUN a `\n",  # after an unknown one
        "\n# escape=`\nFROM x\nRUN a `\n",  # after a blank line
    ],
)
def test_directives_ignored_past_the_top(text: str) -> None:
    df = parse(text)
    assert df.escape == "\\"
    assert df.directives == ()
    assert runs(df) == ["a `"]


def test_escape_after_comment_is_a_comment() -> None:
    # BuildKit's escape-after-comment case: the backslash stays the continuation character
    text = "# Comment here.\n# escape = `\n\nFROM image\nLABEL maintainer foo@bar.com\nENV GOPATH \\\n\\go"
    env = parse(text).instructions[2]
    assert isinstance(env, ins.Env)
    assert env.pairs == (ins.KeyValue("GOPATH", "\\go", legacy=True),)


def test_directive_errors() -> None:
    assert error("# escape=`\n# escape=\\\nFROM x\n") == (
        "Dockerfile:2: only one escape parser directive can be used"
    )
    assert "invalid escape token '$' does not match" in error("# escape=$\nFROM x\n")


def test_bom_is_dropped() -> None:
    df = parse("\ufeff# escape=`\nFROM x\n".encode())
    assert df.escape == "`"


# --- lines, comments, continuations --------------------------------------------------------------


def test_continuations_as_buildkit_joins_them() -> None:
    # BuildKit's continueIndent case, line for line
    text = (
        "FROM ubuntu:14.04\n\n"
        "RUN echo hello\\\n  world\\\n  goodnight  \\\n  moon\\\n  light\\\nning\n"
        "RUN echo hello  \\\n  world\n"
        "RUN echo hello  \\\nworld\n"
        "RUN echo hello \\\ngoodbye\\\nfrog\n"
        "RUN echo hello  \\  \nworld\n"
        "RUN echo hi \\\n \\\n world \\\n\\\n good\\\n\\\nnight\n"
        "RUN echo goodbye\\\nfrog\n"
        "RUN echo good\\\nbye\\\nfrog\n\n"
        "RUN echo hello \\\n# this is a comment\n\n# this is a comment with a blank line surrounding it\n\n"
        "this is some more useful stuff\n"
    )
    df = parse(text)
    assert runs(df) == [
        "echo hello  world  goodnight    moon  lightning",
        "echo hello    world",
        "echo hello  world",
        "echo hello goodbyefrog",
        "echo hello  world",
        "echo hi   world  goodnight",
        "echo goodbyefrog",
        "echo goodbyefrog",
        "echo hello this is some more useful stuff",
    ]
    assert len(df.warnings) == 1 and "empty continuation line" in df.warnings[0]
    last = df.instructions[-1]
    assert (last.line, last.end_line) == (31, 36)


def test_comment_inside_continuation_is_dropped() -> None:
    assert runs(parse("FROM x\nRUN echo hello \\\n# comment\nworld\n")) == ["echo hello world"]


def test_hash_inside_a_line_is_an_argument() -> None:
    assert runs(parse("FROM x\nRUN echo 'we are running some # of cool things'\n")) == [
        "echo 'we are running some # of cool things'"
    ]


def test_leading_whitespace_and_case() -> None:
    df = parse("        # this is a comment-line\n    from x\n  rUn echo hello\nRUN echo world\n")
    assert [type(i).__name__ for i in df.instructions] == ["From", "Run", "Run"]
    assert df.instructions[1].line == 3


def test_continuation_at_eof() -> None:
    assert runs(parse("FROM alpine:3.5\n\nRUN something \\")) == ["something"]


def test_escaped_escape_is_not_a_continuation() -> None:
    df = parse("FROM x\nRUN echo a\\\\\nRUN b\n")
    assert runs(df) == ["echo a\\\\", "b"]


def test_crlf_line_endings() -> None:
    df = parse("FROM x\r\nRUN a \\\r\n b\r\n")
    assert runs(df) == ["a  b"]


def test_whitespace_kept_inside_arguments() -> None:
    assert runs(parse('FROM x\nRUN echo "\\\n     hello\\\n     world"\n')) == ['echo "     hello     world"']


# --- forms ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "args"),
    [
        ("CMD []", ()),
        ('CMD [""]', ("",)),
        ('CMD ["a"]', ("a",)),
        ('CMD ["a","b"]', ("a", "b")),
        ('CMD [ "a", "b" ]', ("a", "b")),
        ('CMD [\t"a",\t"b"\t]', ("a", "b")),
        ('CMD\t[\t"a",\t"b"\t]\t', ("a", "b")),
        ('CMD ["abc 123", "♥", "☃", "\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0000"]', None),
    ],
)
def test_json_form(line: str, args: tuple[str, ...] | None) -> None:
    inst = one(line)
    assert isinstance(inst, ins.Cmd) and inst.exec_form
    if args is None:
        assert inst.args == ("abc 123", "♥", "☃", '" \\ / \b \f \n \r \t \x00')
    else:
        assert inst.args == args


@pytest.mark.parametrize(
    "rest", ["[\"a\", 'b']", '["c:\\windows\\system32\\tasklist.exe"]', '["a"] && b', "[a, b]", '["a",]']
)
def test_malformed_json_falls_back_to_shell_form(rest: str) -> None:
    run = parse("FROM x\nRUN " + rest).instructions[1]
    assert isinstance(run, ins.Run)
    assert run.args == (rest,) and not run.exec_form


def test_json_with_non_strings_is_an_error() -> None:
    assert error('FROM x\nCMD ["a", 1]') == (
        "Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only"
    )


def test_shell_requires_json() -> None:
    assert (
        error("FROM x\nSHELL /bin/bash -c") == "Dockerfile:2: SHELL requires the arguments to be in JSON form"
    )
    shell = parse('FROM x\nSHELL ["powershell", "-command"]').instructions[1]
    assert isinstance(shell, ins.Shell) and shell.args == ("powershell", "-command")


# --- flags ---------------------------------------------------------------------------------------


def test_flags_per_instruction() -> None:
    df = parse(
        "FROM --platform=linux/arm64 golang AS build\n"
        "RUN --mount=type=cache,target=/root/.cache/go-build --network=none --security=insecure go build\n"
        "COPY --from=build --chown=1:2 --chmod=0755 --link --parents --exclude=*.md --exclude=*.txt a b /d/\n"
        "ADD --keep-git-dir=true --checksum=sha256:abc --unpack=false --link=false u /x\n"
    )
    f, run, copy, add = df.instructions
    assert isinstance(f, ins.From) and f.platform == "linux/arm64" and f.stage_name == "build"
    assert isinstance(run, ins.Run)
    assert run.mounts == ("type=cache,target=/root/.cache/go-build",)
    assert (run.network, run.security, run.args) == ("none", "insecure", ("go build",))
    assert isinstance(copy, ins.Copy)
    assert (copy.from_, copy.chown, copy.chmod, copy.link, copy.parents) == (
        "build",
        "1:2",
        "0755",
        True,
        True,
    )
    assert copy.excludes == ("*.md", "*.txt") and copy.sources == ("a", "b") and copy.dest == "/d/"
    assert isinstance(add, ins.Add)
    assert (add.keep_git_dir, add.checksum, add.unpack, add.link) == (True, "sha256:abc", False, False)


def test_quoted_flag_values_and_double_dash() -> None:
    copy = parse('FROM x\nCOPY --chown="a b" -- --weird /d\n').instructions[1]
    assert isinstance(copy, ins.Copy) and copy.chown == "a b" and copy.sources == ("--weird",)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("COPY --form=x a b", "unknown flag: --form (did you mean from?)"),
        ("RUN --mnt=type=cache x", "unknown flag: --mnt (did you mean mount?)"),
        ("ENV --foo=bar a=b", "unknown flag: --foo"),
        ("WORKDIR --x /a", "unknown flag: --x"),
        ("COPY --from=a --from=b a b", "duplicate flag specified: --from"),
        ("COPY --from a b", "missing a value on flag: --from"),
        ("COPY --link= a b", "missing a value on flag: --link"),
        ("COPY --link=maybe a b", "expecting boolean value for flag --link, not: maybe"),
        ("RUN --network=bridge x", 'invalid network mode "bridge"'),
        ("RUN --security=privileged x", 'security "privileged" is not valid'),
        ("RUN --mount=type=nfs,target=/x x", 'unsupported mount type "nfs"'),
        ("RUN --mount=type=bind,size=1m,target=/x x", "unexpected key 'size' for mount type 'bind'"),
        ("RUN --mount=type=cache,target=/x,sharing=maybe x", 'unsupported sharing value "maybe"'),
        ("RUN --mount=type=secret x", "invalid secret mount. one of source, target required"),
        (
            "RUN --mount=from=$STAGE,target=/x x",
            "'from' doesn't support variable expansion, define alias stage instead",
        ),
        ("RUN --mount=type=bind,uid=1,target=/x x", 'uid not allowed for "bind" type mounts'),
        ("RUN --mount=target=/x,bogus x", "invalid field 'bogus' must be a key=value pair"),
    ],
)
def test_flag_errors_name_the_line(line: str, message: str) -> None:
    assert error(f"FROM x\n\n{line}\n") == f"Dockerfile:3: {message}"


def test_mounts_with_variables_are_checked_later() -> None:
    run = parse("FROM x\nRUN --mount=type=$T,target=/x x\n").instructions[1]
    assert isinstance(run, ins.Run) and run.mounts == ("type=$T,target=/x",)


# --- instructions --------------------------------------------------------------------------------


def test_env_forms() -> None:
    # BuildKit's env test file: values are kept as written (quotes, escapes) until expansion
    text = (
        "FROM ubuntu\n"
        "ENV name value\n"
        "ENV name=value\n"
        "ENV name=value name2=value2\n"
        'ENV name="value value1"\n'
        "ENV name=value\\ value2\n"
        "ENV name=\"value'quote space'value2\"\n"
        "ENV name='value\"double quote\"value2'\n"
        "ENV name=value\\ value2 name2=value2\\ value3\n"
        'ENV name="a\\"b"\n'
        "ENV name='a\\'b''\n"
        'ENV name=value \\\n    name1=value1 \\\n    name2="value2a \\\n           value2b" \\\n'
        '\tname4="value4a\\\\nvalue4b" \\\n'
    )
    envs = [i.pairs for i in parse(text).instructions if isinstance(i, ins.Env)]
    kv = ins.KeyValue
    assert envs == [
        (kv("name", "value", legacy=True),),
        (kv("name", "value"),),
        (kv("name", "value"), kv("name2", "value2")),
        (kv("name", '"value value1"'),),
        (kv("name", "value\\ value2"),),
        (kv("name", "\"value'quote space'value2\""),),
        (kv("name", "'value\"double quote\"value2'"),),
        (kv("name", "value\\ value2"), kv("name2", "value2\\ value3")),
        (kv("name", '"a\\"b"'),),
        (kv("name", "'a\\'b''"),),
        (
            kv("name", "value"),
            kv("name1", "value1"),
            kv("name2", '"value2a            value2b"'),
            kv("name4", '"value4a\\\\nvalue4b"'),
        ),
    ]


def test_env_legacy_form_takes_the_rest_of_the_line() -> None:
    env = parse("FROM x\nENV ONE TWO= THREE=world\n").instructions[1]
    assert isinstance(env, ins.Env) and env.pairs == (ins.KeyValue("ONE", "TWO= THREE=world", legacy=True),)


def test_label_examples() -> None:
    df = parse(
        'FROM x\nLABEL "com.example.vendor"="ACME Incorporated"\n'
        'LABEL com.example.label-with-value="foo"\nLABEL version="1.0"\n'
        'LABEL description="This text illustrates \\\nthat label-values can span multiple lines."\n'
        'LABEL multi.label1="value1" \\\n      multi.label2="value2" \\\n      other="value3"\n'
    )
    labels = [p for i in df.instructions if isinstance(i, ins.Label) for p in i.pairs]
    assert [(p.key, p.value) for p in labels] == [
        ('"com.example.vendor"', '"ACME Incorporated"'),
        ("com.example.label-with-value", '"foo"'),
        ("version", '"1.0"'),
        ("description", '"This text illustrates that label-values can span multiple lines."'),
        ("multi.label1", '"value1"'),
        ("multi.label2", '"value2"'),
        ("other", '"value3"'),
    ]


def test_arg_forms() -> None:
    arg = parse('ARG a1="foo bar" a2=box a3 a4=\nFROM x\n').instructions[0]
    assert isinstance(arg, ins.Arg)
    assert arg.args == (
        ins.ArgDef("a1", '"foo bar"'),
        ins.ArgDef("a2", "box"),
        ins.ArgDef("a3"),
        ins.ArgDef("a4", ""),
    )


def test_from_forms() -> None:
    f1, f2, f3 = parse(
        "FROM busybox\nFROM busybox:1.36 As Build\nFROM img@sha256:abc AS b-2.x_y\n"
    ).instructions
    assert isinstance(f1, ins.From) and (f1.image, f1.stage_name) == ("busybox", None)
    assert isinstance(f2, ins.From) and (f2.image, f2.stage_name) == ("busybox:1.36", "build")
    assert isinstance(f3, ins.From) and f3.stage_name == "b-2.x_y"


def test_other_instructions() -> None:
    df = parse(
        'FROM x\nEXPOSE 80/udp 443 8000-8002\nVOLUME /var/log /var/db\nVOLUME ["/data"]\n'
        "WORKDIR /path/to workdir\nUSER patrick:staff\nSTOPSIGNAL SIGKILL\nMAINTAINER Sven <s@h.org>\n"
        "ENTRYPOINT exec top -b\nENTRYPOINT []\n"
    )
    expose, v1, v2, wd, user, sig, maint, ep1, ep2 = df.instructions[1:]
    assert isinstance(expose, ins.Expose) and expose.ports == ("443", "80/udp", "8000-8002")
    assert isinstance(v1, ins.Volume) and v1.paths == ("/var/log", "/var/db")
    assert isinstance(v2, ins.Volume) and v2.paths == ("/data",)
    assert isinstance(wd, ins.Workdir) and wd.path == "/path/to workdir"
    assert isinstance(user, ins.User) and user.user == "patrick:staff"
    assert isinstance(sig, ins.StopSignal) and sig.signal == "SIGKILL"
    assert isinstance(maint, ins.Maintainer) and maint.name == "Sven <s@h.org>"
    assert isinstance(ep1, ins.Entrypoint) and ep1.args == ("exec top -b",) and not ep1.exec_form
    assert isinstance(ep2, ins.Entrypoint) and ep2.args == () and ep2.exec_form


def test_healthcheck() -> None:
    df = parse(
        "FROM x\nHEALTHCHECK --interval=5m --timeout=3s \\\n  CMD curl -f http://localhost/ || exit 1\n"
        'HEALTHCHECK --start-period=1m30s --start-interval=500ms --retries=5 cmd ["check", "-q"]\n'
        "HEALTHCHECK NONE\n"
    )
    h1, h2, h3 = df.instructions[1:]
    assert isinstance(h1, ins.Healthcheck)
    assert h1.test == ("CMD-SHELL", "curl -f http://localhost/ || exit 1")
    assert (h1.interval, h1.timeout, h1.retries) == (300 * 10**9, 3 * 10**9, 0)
    assert isinstance(h2, ins.Healthcheck) and h2.test == ("CMD", "check", "-q")
    assert (h2.start_period, h2.start_interval, h2.retries) == (90 * 10**9, 5 * 10**8, 5)
    assert isinstance(h3, ins.Healthcheck) and h3.test == ("NONE",)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
        ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK RUN x", 'Unknown type "RUN" in HEALTHCHECK (try CMD)'),
        ("HEALTHCHECK --interval=5 CMD x", 'time: missing unit in duration "5"'),
        ("HEALTHCHECK --interval=fast CMD x", 'time: invalid duration "fast"'),
        ("HEALTHCHECK --timeout=10us CMD x", 'Interval "timeout" cannot be less than 1ms'),
        ("HEALTHCHECK --retries=-1 CMD x", "--retries cannot be negative (-1)"),
        ("HEALTHCHECK --retries=x CMD x", 'strconv.ParseInt: parsing "x": invalid syntax'),
    ],
)
def test_healthcheck_errors(line: str, message: str) -> None:
    assert error(f"FROM x\n{line}\n") == f"Dockerfile:2: {message}"


def test_onbuild() -> None:
    df = parse("FROM x\nONBUILD ADD . /app/src\nonbuild RUN --mount=from=config,target=/c /usr/bin/build\n")
    o1, o2 = df.instructions[1:]
    assert isinstance(o1, ins.Onbuild) and o1.expression == "ADD . /app/src"
    assert isinstance(o1.trigger, ins.Add) and o1.trigger.sources == (".",)
    assert isinstance(o2, ins.Onbuild) and o2.expression == "RUN --mount=from=config,target=/c /usr/bin/build"
    assert isinstance(o2.trigger, ins.Run) and o2.trigger.mounts == ("from=config,target=/c",)


def test_onbuild_heredoc_goes_into_the_expression() -> None:
    onbuild = parse("FROM x\nONBUILD RUN <<EOF\necho hi\nEOF\nRUN y\n").instructions[1]
    assert isinstance(onbuild, ins.Onbuild)
    assert onbuild.expression == "RUN <<EOF\necho hi\nEOF"
    assert isinstance(onbuild.trigger, ins.Run) and onbuild.trigger.heredocs == (Heredoc("EOF", "echo hi\n"),)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ONBUILD", "ONBUILD requires at least one argument"),
        ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger"),
        ("ONBUILD maintainer me", "MAINTAINER isn't allowed as an ONBUILD trigger"),
        ("ONBUILD RUNN x", "unknown instruction: RUNN (did you mean RUN?)"),
    ],
)
def test_onbuild_errors(line: str, message: str) -> None:
    assert error(f"FROM x\n{line}\n") == f"Dockerfile:2: {message}"


# --- heredocs ------------------------------------------------------------------------------------

HEREDOCS = """\
FROM alpine:3.6
RUN <<EMPTY
EMPTY
RUN 3<<EMPTY2
EMPTY2
RUN "<<NOHEREDOC"
RUN <<INDENT
\tfoo
\tbar
INDENT
RUN <<-UNINDENT
\tbaz
\tquux
UNINDENT
RUN <<-UNINDENT2
\tbaz
\tquux
\tUNINDENT2
RUN <<-'NOEXPAND'
\tdon't expand $NAME
NOEXPAND
RUN <<COMMENT
# internal comment
echo foo bar # trailing comment
COMMENT
RUN --mount=type=cache,target=/foo <<MOUNT
echo hello
MOUNT
COPY <<FILE1 <<FILE2 /dest
content 1
FILE1
content 2
FILE2
COPY <<X <<Y /dest
Y
X
X
Y
RUN <<eo'f'
echo foo
eof
RUN <<eo\\'f
echo foo
eo'f
RUN <<'e'o\\'f
echo foo
eo'f
RUN <<'one two'
echo bar
one two
RUN <<$EOF
$EOF
RUN <<  EOF
EOF
RUN ["<<EOF"]
"""


def test_heredocs_as_buildkit_reads_them() -> None:
    df = parse(HEREDOCS)
    got = [
        i.heredocs if isinstance(i, ins.Run) else i.contents
        for i in df.instructions[1:]
        if isinstance(i, ins.Run | ins.Copy)
    ]
    H = Heredoc
    assert got == [
        (H("EMPTY", ""),),
        (H("EMPTY2", "", fd=3),),
        (),
        (H("INDENT", "\tfoo\n\tbar\n"),),
        (H("UNINDENT", "\tbaz\n\tquux\n", chomp=True),),
        (H("UNINDENT2", "\tbaz\n\tquux\n", chomp=True),),
        (H("NOEXPAND", "\tdon't expand $NAME\n", expand=False, chomp=True),),
        (H("COMMENT", "# internal comment\necho foo bar # trailing comment\n"),),
        (H("MOUNT", "echo hello\n"),),
        (H("FILE1", "content 1\n"), H("FILE2", "content 2\n")),
        (H("X", "Y\n"), H("Y", "X\n")),
        (H("eof", "echo foo\n", expand=False),),
        (H("eo'f", "echo foo\n"),),
        (H("eo'f", "echo foo\n", expand=False),),
        (H("one two", "echo bar\n", expand=False),),
        (H("$EOF", ""),),
        (H("EOF", ""),),
        (),
    ]
    assert H("UNINDENT", "\tbaz\n\tquux\n", chomp=True).data == "baz\nquux\n"


def test_heredoc_reference_examples() -> None:
    df = parse(
        "FROM debian\nRUN <<EOT bash\n  set -ex\n  apt-get update\nEOT\n"
        "RUN <<FILE1 cat > file1 && <<FILE2 cat > file2\nI am\nfirst\nFILE1\nI am\nsecond\nFILE2\n"
        'COPY <<-EOT /script.sh\n  echo "hello ${FOO}"\nEOT\nENTRYPOINT ash /script.sh\n'
    )
    run1, run2, copy, ep = df.instructions[1:]
    assert isinstance(run1, ins.Run) and run1.args == ("<<EOT bash",)
    assert run1.heredocs == (Heredoc("EOT", "  set -ex\n  apt-get update\n"),)
    assert (run1.line, run1.end_line) == (2, 5)
    assert isinstance(run2, ins.Run)
    assert [h.content for h in run2.heredocs] == ["I am\nfirst\n", "I am\nsecond\n"]
    assert isinstance(copy, ins.Copy) and copy.dest == "/script.sh" and copy.sources == ()
    assert copy.contents == (Heredoc("EOT", '  echo "hello ${FOO}"\n', chomp=True),)
    assert isinstance(ep, ins.Entrypoint) and ep.line == 16


def test_heredoc_only_on_run_copy_add() -> None:
    df = parse("FROM x\nUSER <<INVALID\nCMD <<EOF\n")
    assert isinstance(df.instructions[1], ins.User) and df.instructions[1].user == "<<INVALID"
    assert isinstance(df.instructions[2], ins.Cmd)


def test_heredoc_errors() -> None:
    assert error("FROM x\nRUN <<EOF\necho\n") == "Dockerfile:2: unterminated heredoc"
    assert (
        error("FROM x\nCOPY a <<EOF\nEOF\n") == "Dockerfile:2: COPY cannot accept a heredoc as a destination"
    )


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM x\n\n\n\n\n\nRUNN make\n", "Dockerfile:7: unknown instruction: RUNN (did you mean RUN?)"),
        ("FROM x\nFOO bar\n", "Dockerfile:2: unknown instruction: FOO"),
        ("FROM x\nENV\n", "Dockerfile:2: ENV requires at least one argument"),
        ("FROM x\nENV a\n", "Dockerfile:2: ENV must have two arguments"),
        (
            "FROM x\nENV a=1 b\n",
            'Dockerfile:2: Syntax error - can\'t find = in "b". Must be of the form: name=value',
        ),
        ("FROM x\nENV =1\n", "Dockerfile:2: ENV names can not be blank"),
        ("FROM x\nLABEL\n", "Dockerfile:2: LABEL requires at least one argument"),
        ("ARG\n", "Dockerfile:1: ARG requires at least one argument"),
        ("ARG =x\n", "Dockerfile:1: ARG names can not be blank"),
        ("FROM\n", "Dockerfile:1: FROM requires either one or three arguments"),
        ("FROM a b\n", "Dockerfile:1: FROM requires either one or three arguments"),
        (
            "FROM a AS 1x\n",
            'Dockerfile:1: invalid name for build stage: "1x", '
            "name can't start with a number or contain symbols",
        ),
        (
            "FROM x\nCOPY a\n",
            "Dockerfile:2: COPY requires at least two arguments, but only one was provided. "
            "Destination could not be determined",
        ),
        (
            "FROM x\nADD\n",
            "Dockerfile:2: ADD requires at least two arguments, but only one was provided. "
            "Destination could not be determined",
        ),
        ("FROM x\nWORKDIR\n", "Dockerfile:2: WORKDIR requires exactly one argument"),
        ("FROM x\nUSER\n", "Dockerfile:2: USER requires exactly one argument"),
        ("FROM x\nSTOPSIGNAL\n", "Dockerfile:2: STOPSIGNAL requires exactly one argument"),
        ("FROM x\nMAINTAINER\n", "Dockerfile:2: MAINTAINER requires exactly one argument"),
        ("FROM x\nEXPOSE\n", "Dockerfile:2: EXPOSE requires at least one argument"),
        ("FROM x\nVOLUME\n", "Dockerfile:2: VOLUME requires at least one argument"),
        ('FROM x\nVOLUME ["/a", " "]\n', "Dockerfile:2: VOLUME specified can not be an empty string"),
        ("FROM x\nSHELL\n", "Dockerfile:2: SHELL requires at least one argument"),
        ("FROM x\nRUN []\n", "Dockerfile:2: RUN requires at least one argument"),
        ("# only a comment\n\n", "Dockerfile:2: file with no instructions"),
        ("", "Dockerfile:0: file with no instructions"),
        ("FROM x\n\\", "Dockerfile:2: line continuation at the end of the file with no instruction"),
    ],
)
def test_errors_name_the_line(text: str, message: str) -> None:
    assert error(text) == message


def test_error_uses_the_file_name_and_carries_the_line() -> None:
    with pytest.raises(DockerfileError) as exc:
        parse("FROM x\nRUN a \\\n  b\nBAD\n", "build/app.Dockerfile")
    assert str(exc.value) == "build/app.Dockerfile:4: unknown instruction: BAD"
    assert exc.value.detail["line"] == 4
    assert exc.value.code == "INVALID_ARGUMENT"


def test_original_text_and_lines_are_kept() -> None:
    df = parse("FROM x\n\nRUN apk add \\\n    curl \\\n    git\n")
    run = df.instructions[1]
    assert (run.line, run.end_line) == (3, 5)
    assert run.original == "RUN apk add     curl     git"


def test_not_utf8() -> None:
    with pytest.raises(DockerfileError, match="not UTF-8"):
        parse(b"FROM x\nRUN \xff\n")
