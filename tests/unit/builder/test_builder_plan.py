"""The planner: ARG/ENV scopes, build-args, platform and proxy args, target pruning, levels."""

from __future__ import annotations

import pytest

from dockyard.builder import instructions as ins
from dockyard.builder.dockerfile import parse
from dockyard.builder.instructions import DockerfileError
from dockyard.builder.plan import BaseImage, BuildOptions, Plan, Platform, plan


def make(text: str, resolve: object = None, **opts: object) -> Plan:
    return plan(parse(text), BuildOptions(**opts), resolve)  # type: ignore[arg-type]


def insts(p: Plan, stage: int = -1) -> list[ins.Instruction]:
    return [s.instruction for s in p.stages[stage].steps]


def env_at(p: Plan, stage: int, step: int) -> dict[str, str]:
    return dict(e.split("=", 1) for e in p.stages[stage].steps[step].env)


def test_reference_environment_replacement_example() -> None:
    p = make("FROM busybox\nENV FOO=/bar\nWORKDIR ${FOO}\nADD . $FOO\nCOPY \\$FOO /quux\n")
    _, wd, add, copy = insts(p)
    assert isinstance(wd, ins.Workdir) and wd.path == "/bar"
    assert isinstance(add, ins.Add) and add.sources == (".",) and add.dest == "/bar"
    assert isinstance(copy, ins.Copy) and copy.sources == ("$FOO",) and copy.dest == "/quux"


def test_same_value_throughout_an_instruction() -> None:
    p = make("FROM x\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n")
    e2, e3 = insts(p)[1:]
    assert isinstance(e2, ins.Env) and [str(kv) for kv in e2.pairs] == ["abc=bye", "def=hello"]
    assert isinstance(e3, ins.Env) and [str(kv) for kv in e3.pairs] == ["ghi=bye"]


def test_env_values_lose_their_quotes() -> None:
    p = make("FROM x\nENV MY_NAME=\"John Doe\" MY_DOG=Rex\\ The\\ Dog \\\n    MY_CAT=fluffy\nENV A '$B' c\n")
    e1, e2 = insts(p)
    assert isinstance(e1, ins.Env)
    assert [str(kv) for kv in e1.pairs] == ["MY_NAME=John Doe", "MY_DOG=Rex The Dog", "MY_CAT=fluffy"]
    assert isinstance(e2, ins.Env) and [str(kv) for kv in e2.pairs] == ["A=$B c"]


def test_arg_scope_starts_on_its_line() -> None:
    text = "FROM busybox\nUSER ${username:-some_user}\nARG username\nUSER $username\n"
    u1, _, u2 = insts(make(text, build_args={"username": "what_user"}))
    assert isinstance(u1, ins.User) and u1.user == "some_user"
    assert isinstance(u2, ins.User) and u2.user == "what_user"


def test_env_overrides_an_earlier_arg() -> None:
    text = "FROM ubuntu\nARG CONT_IMG_VER\nENV CONT_IMG_VER=v1.0.0\nRUN echo $CONT_IMG_VER\n"
    p = make(text, build_args={"CONT_IMG_VER": "v2.0.1"})
    assert env_at(p, 0, 2)["CONT_IMG_VER"] == "v1.0.0"
    assert p.stages[0].steps[2].build_args == ("CONT_IMG_VER=v1.0.0",)


@pytest.mark.parametrize(("args", "value"), [({}, "v1.0.0"), ({"CONT_IMG_VER": "v2.0.1"}, "v2.0.1")])
def test_env_from_arg_with_default(args: dict[str, str], value: str) -> None:
    text = "FROM ubuntu\nARG CONT_IMG_VER\nENV CONT_IMG_VER=${CONT_IMG_VER:-v1.0.0}\nRUN echo $CONT_IMG_VER\n"
    env = insts(make(text, build_args=args))[1]
    assert isinstance(env, ins.Env) and env.pairs[0].value == value


def test_global_args_only_in_from_unless_redeclared() -> None:
    text = (
        "ARG  CODE_VERSION=latest\nARG VERSION=1.36\nFROM base:${CODE_VERSION}\nRUN echo $VERSION\n"
        "FROM busybox:$VERSION\nARG VERSION\nRUN echo $VERSION > image_version\n"
    )
    p = make(text, target="")
    assert p.stages[-1].from_.image == "busybox:1.36"
    assert [s.index for s in p.stages] == [1]
    p0 = make(text + "COPY --from=0 / /\n")
    first = p0.stages[0]
    assert first.from_.image == "base:latest" and "VERSION" not in env_at(p0, 0, 0)
    assert env_at(p0, 1, 1)["VERSION"] == "1.36"


def test_buildkit_global_arg_cases() -> None:
    text = (
        'ARG a1="foo bar" a2=box\nARG a3="$a2-foo"\nFROM busy$a2 AS build\nARG a3 a4="123 456" a1\n'
        'RUN echo -n "$a1:$a3:$a4" > /out\nFROM scratch\nCOPY --from=build /out /\n'
    )
    p = make(text)
    build = p.stage(0)
    assert build.from_.image == "busybox"
    run = build.steps[1]
    assert run.build_args == ("a3=box-foo", "a4=123 456", "a1=foo bar")
    assert env_at(p, 0, 1)["a1"] == "foo bar"
    text2 = 'ARG a1="box"\nARG a2="$a1-foo"\nFROM busy$a1 AS build\nARG a2\nARG a3="bar-$a2"\nRUN x\n'
    assert make(text2).stages[0].steps[2].build_args == ("a2=box-foo", "a3=bar-box-foo")


def test_default_env_with_args_and_trimming() -> None:
    text = (
        "ARG image=idlebox\nFROM busy${image#idle} AS build\nARG my_arg\n"
        'ENV my_arg "my_arg=${my_arg:-def_val}"\nENV my_trimmed_arg "${my_arg%%e*}"\nRUN x\n'
    )
    for args, expected in [
        ({}, ("my_arg=def_val", "my_arg=d")),
        ({"my_arg": ""}, ("my_arg=def_val", "my_arg=d")),
        ({"my_arg": "override"}, ("my_arg=override", "my_arg=ov")),
    ]:
        p = make(text, build_args=args)
        assert p.stages[0].from_.image == "busybox"
        env = env_at(p, 0, 3)
        assert (env["my_arg"], env["my_trimmed_arg"]) == expected


def test_arg_without_value_is_unset_but_empty_default_is_set() -> None:
    p = make("FROM busybox\nARG FOO\nARG BAR=\nRUN env\n")
    env = env_at(p, 0, 2)
    assert "FOO" not in env and env["BAR"] == ""
    assert p.stages[0].steps[2].build_args == ("FOO=", "BAR=")


def test_proxy_args_reach_run_without_history() -> None:
    text = "FROM busybox\nARG FOO\nARG BAR\nARG BAZ=bazcontent\nRUN echo -n $HTTP_PROXY::$NO_PROXY::$FOO\n"
    p = make(text, build_args={"FOO": "foocontents", "http_proxy": "hp", "NO_PROXY": "np"})
    assert p.proxy_env == ("NO_PROXY=np", "http_proxy=hp")
    run = p.stages[0].steps[3]
    assert run.build_args == ("FOO=foocontents", "BAR=", "BAZ=bazcontent")
    assert "http_proxy" not in env_at(p, 0, 3)
    assert p.warnings == ()
    declared = make("FROM x\nARG HTTP_PROXY\nRUN y\n", build_args={"HTTP_PROXY": "p"})
    assert declared.stages[0].steps[1].build_args == ("HTTP_PROXY=p",)


def test_unconsumed_build_args_warn() -> None:
    p = make("ARG USED\nFROM x\nARG ALSO\n", build_args={"USED": "1", "ALSO": "2", "foo": "3", "bar": "4"})
    assert p.warnings == ("[Warning] One or more build-args [bar foo] were not consumed",)
    q = make("FROM x\n", build_args={"TARGETARCH": "arm64", "SOURCE_DATE_EPOCH": "0", "https_proxy": "x"})
    assert q.warnings == ()


def test_platform_args() -> None:
    text = (
        "FROM --platform=$BUILDPLATFORM golang AS build\nARG TARGETPLATFORM\nARG TARGETOS TARGETARCH\n"
        "RUN echo $TARGETPLATFORM $BUILDPLATFORM\nFROM alpine\nCOPY --from=build /out /\n"
    )
    p = make(text, build_platform=Platform("linux", "amd64"), target_platform=Platform("linux", "arm", "v7"))
    build, final = p.stages
    assert build.platform == Platform("linux", "amd64") and build.from_.platform == "linux/amd64"
    assert final.platform == Platform("linux", "arm", "v7")
    env = env_at(p, 0, 2)
    assert (env["TARGETPLATFORM"], env["TARGETOS"], env["TARGETARCH"]) == ("linux/arm/v7", "linux", "arm")
    assert "BUILDPLATFORM" not in env
    assert dict(a.split("=", 1) for a in p.global_args)["TARGETSTAGE"] == "default"


def test_targetstage_and_undeclared_global() -> None:
    text = "FROM alpine AS base\nRUN echo $TARGETSTAGE\nARG TARGETSTAGE\nRUN echo $TARGETSTAGE\n"
    p = make(text + "FROM scratch AS foo\nFROM scratch\n", target="base")
    assert "TARGETSTAGE" not in env_at(p, 0, 0) and env_at(p, 0, 2)["TARGETSTAGE"] == "base"


def test_stage_inherits_env_and_args_from_its_base_stage() -> None:
    text = "FROM x AS base\nENV E=1\nARG A=2\nFROM base AS child\nRUN echo\nFROM x AS other\nRUN echo\n"
    p = make(text, target="child")
    assert [s.index for s in p.stages] == [0, 1]
    assert p.stage(1).base.kind == "stage" and p.stage(1).base.stage == 0
    env = env_at(p, 1, 0)
    assert (env["E"], env["A"]) == ("1", "2")
    assert p.stage(1).steps[0].build_args == ("A=2",)
    other = make(text)
    assert [s.index for s in other.stages] == [2] and "A" not in env_at(other, 0, 0)


def test_base_image_env_from_the_resolver_and_path_default() -> None:
    calls: list[tuple[str, Platform]] = []

    def resolve(ref: str, platform: Platform) -> BaseImage:
        calls.append((ref, platform))
        return BaseImage(env=("PATH=/go/bin:/usr/bin", "GOPATH=/go"))

    p = make("FROM golang:1.22\nWORKDIR $GOPATH/src\n", resolve)
    wd = insts(p)[0]
    assert isinstance(wd, ins.Workdir) and wd.path == "/go/src"
    assert calls == [("golang:1.22", Platform("linux", "amd64"))]
    scratch = make("FROM scratch\nRUN x\n")
    assert env_at(scratch, 0, 0) == {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    assert scratch.stages[0].base.kind == "scratch" and scratch.images == ()


def test_target_prunes_and_levels_allow_concurrency() -> None:
    text = (
        "FROM alpine AS deps\nRUN fetch\n"  # 0
        "FROM golang AS gobuild\nRUN --mount=type=bind,from=deps,target=/d go build\n"  # 1
        "FROM node AS web\nRUN npm build\n"  # 2
        "FROM alpine AS unused\nRUN never\n"  # 3
        "FROM scratch AS final\nCOPY --from=gobuild /app /\nCOPY --from=2 /dist /www\n"  # 4
        "COPY --from=nginx:latest /etc/nginx/nginx.conf /nginx.conf\n"
        "FROM final AS debug\nRUN x\n"  # 5
    )
    p = make(text, target="final")
    assert [s.index for s in p.stages] == [0, 1, 2, 4]
    assert p.target == 4
    assert p.levels == ((0, 2), (1,), (4,))
    assert p.stage(1).deps == (0,) and p.stage(4).deps == (1, 2)
    mount = p.stage(1).steps[0].mounts[0]
    assert (mount.from_, mount.from_stage, mount.readonly) == ("deps", 0, True)
    steps = p.stage(4).steps
    assert [s.source_stage for s in steps] == [1, 2, None]
    assert p.images == ("alpine", "golang", "node", "nginx:latest")
    assert [s.index for s in make(text).stages] == [0, 1, 2, 4, 5]


def test_target_errors() -> None:
    with pytest.raises(DockerfileError, match='target stage "biuld" could not be found'):
        make("FROM x AS build\n", target="biuld")
    with pytest.raises(DockerfileError, match=r"did you mean build\?"):
        make("FROM x AS build\n", target="biuld")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("RUN x\nFROM y\n", "Dockerfile:1: no build stage in current context"),
        ("ARG A\n", "Dockerfile: dockerfile contains no stages to build"),
        ("ARG IMG\nFROM $IMG\n", "Dockerfile:2: base name ($IMG) should not be blank"),
        ("FROM x AS a\nFROM y AS A\n", 'Dockerfile:2: duplicate stage name "a"'),
        (
            "FROM x AS a\nCOPY --from=a / /\n",
            'Dockerfile:2: cannot copy from stage "a", it needs to be defined',
        ),
        ("FROM x AS a\nCOPY --from=b / /\nFROM y AS b\nFROM a\n", 'Dockerfile:2: cannot copy from stage "b"'),
        ("FROM x\nCOPY --from=5 / /\n", "Dockerfile:2: invalid stage index 5"),
        (
            "ARG S=a\nFROM x AS a\nFROM y\nCOPY --from=$S / /\n",
            "Dockerfile:4: variable expansion is not supported",
        ),
        ("FROM x AS a\nRUN --mount=from=b,target=/m y\nFROM z AS b\nFROM a\n", 'from stage "b" to "/m"'),
        ("FROM x\nWORKDIR ${A\n", "Dockerfile:2: failed to process \"${A\": syntax error: missing '}'"),
        (
            'FROM x\nENV A="${B:?is required}"\n',
            'Dockerfile:2: failed to process ""${B:?is required}"": B: is required',
        ),
        (
            "FROM x\nARG T=cache\nRUN --mount=type=$T,size=1m x\n",
            "unexpected key 'size' for mount type 'cache'",
        ),
        ("FROM --platform=$NOPE x\n", "Dockerfile:1: empty platform value from expression $NOPE"),
        ("FROM --platform=linux x\n", "Dockerfile:1: failed to parse platform linux"),
    ],
)
def test_plan_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(DockerfileError) as exc:
        make(text)
    assert message in str(exc.value)


def test_run_mounts_are_expanded() -> None:
    p = make(
        "FROM x\nARG T=cache\nARG DIR=/root/.cache\nRUN --mount=type=$T,target=$DIR,id=go,sharing=locked go\n"
    )
    mount = p.stages[0].steps[2].mounts[0]
    assert (mount.type, mount.target, mount.id, mount.sharing, mount.readonly) == (
        "cache",
        "/root/.cache",
        "go",
        "locked",
        False,
    )


def test_copy_heredoc_expansion() -> None:
    text = 'FROM alpine\nARG FOO=bar\nCOPY <<-EOT /script.sh\n\techo "hello ${FOO}"\nEOT\n'
    copy = insts(make(text))[1]
    assert isinstance(copy, ins.Copy) and copy.contents[0].content == 'echo "hello bar"\n'
    quoted = insts(make(text.replace("<<-EOT", '<<-"EOT"')))[1]
    assert isinstance(quoted, ins.Copy) and quoted.contents[0].content == 'echo "hello ${FOO}"\n'


def test_other_expansions() -> None:
    text = (
        "FROM x\nENV P=8080 U=app D=/data N=SIGTERM\nEXPOSE $P ${Q:-9090/udp}\nVOLUME $D /logs\n"
        "USER $U:$U\nSTOPSIGNAL $N\nLABEL version=$P\nCOPY --chown=$U --chmod=0644 a $D/\n"
        "RUN echo $P\nCMD echo $P\n"
    )
    _, expose, vol, user, sig, label, copy, run, cmd = insts(make(text))
    assert isinstance(expose, ins.Expose) and expose.ports == ("8080", "9090/udp")
    assert isinstance(vol, ins.Volume) and vol.paths == ("/data", "/logs")
    assert isinstance(user, ins.User) and user.user == "app:app"
    assert isinstance(sig, ins.StopSignal) and sig.signal == "SIGTERM"
    assert isinstance(label, ins.Label) and label.pairs[0].value == "8080"
    assert isinstance(copy, ins.Copy) and (copy.chown, copy.dest) == ("app", "/data/")
    assert isinstance(run, ins.Run) and run.args == ("echo $P",)
    assert isinstance(cmd, ins.Cmd) and cmd.args == ("echo $P",)


def test_onbuild_of_a_base_stage_runs_in_the_child() -> None:
    text = (
        "FROM alpine AS tools\nRUN make tools\n"
        "FROM alpine AS baseimage\nENV APP=/app\nONBUILD COPY --from=tools /usr/bin/app $APP\n"
        "FROM baseimage\nRUN run\n"
    )
    p = make(text)
    assert [s.index for s in p.stages] == [0, 1, 2]
    child = p.stage(2)
    assert child.deps == (0, 1)
    first = child.steps[0]
    assert first.triggered and first.source_stage == 0
    assert isinstance(first.instruction, ins.Copy) and first.instruction.dest == "/app"
    assert p.levels == ((0, 1), (2,))


def test_onbuild_of_an_image_from_the_resolver() -> None:
    def resolve(ref: str, platform: Platform) -> BaseImage:
        return BaseImage(env=("SRC=/src",), onbuild=("ADD . $SRC", "RUN /usr/local/bin/build --dir $SRC"))

    p = make("FROM python-builder\nRUN after\n", resolve)
    steps = p.stages[0].steps
    assert [s.triggered for s in steps] == [True, True, False]
    add = steps[0].instruction
    assert isinstance(add, ins.Add) and add.dest == "/src" and add.line == 1


def test_plan_is_deterministic() -> None:
    text = "FROM a AS x\nFROM b AS y\nFROM scratch\nCOPY --from=x / /\nCOPY --from=y / /\n"
    assert make(text) == make(text)
