"""The Go text/template engine behind ``--format``, against docker's documented examples
(docs.docker.com/config/formatting, docker inspect's and ps/images' ``--format`` sections) and Go's
own rules for what those examples rely on."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.core.gotemplate import Struct, TemplateError, go_string, render, sprintf, tabwrite

# a container as docker inspect's JSON decodes into a map (numbers are float64 there)
CONTAINER: dict[str, Any] = {
    "Id": "d2cc496561d6d520cbc0236b4ba88c362c446a7619992123f11c809cded25b47",
    "Name": "/Web_App",
    "Args": ["-c", "sleep 1000"],
    "Image": "ubuntu:22.04",
    "LogPath": "/var/lib/docker/containers/d2cc/d2cc-json.log",
    "State": {"Status": "running", "Running": True, "Pid": 4242.0, "ExitCode": 0.0},
    "Config": {
        "Image": "ubuntu:22.04",
        "Env": ["PATH=/usr/bin", "LANG=C"],
        "ExposedPorts": {"6379/tcp": {}},
        "Labels": {"com.example.vendor": "ACME"},
    },
    "HostConfig": {"Memory": 1073741824.0},
    "Mounts": [{"Type": "volume", "Name": "data", "Destination": "/data", "RW": True}],
    "NetworkSettings": {
        "IPAddress": "172.17.0.3",
        "Ports": {
            "8787/tcp": [{"HostIp": "0.0.0.0", "HostPort": "49153"}],
            "6379/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}],
        },
        "Networks": {
            "bridge": {"IPAddress": "172.17.0.3", "MacAddress": "02:42:ac:11:00:03"},
            "backend": {"IPAddress": "10.89.0.2", "MacAddress": "02:42:0a:59:00:02"},
        },
    },
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # docs.docker.com/config/formatting: one example per function
        ('{{join .Args " , "}}', "-c , sleep 1000"),
        (
            "{{json .Mounts}}",
            '[{"Destination":"/data","Name":"data","RW":true,"Type":"volume"}]',
        ),  # a map: sorted
        ("{{lower .Name}}", "/web_app"),
        ('{{split .Image ":"}}', "[ubuntu 22.04]"),
        ("{{title .Name}}", "/Web_App"),
        ("{{upper .Name}}", "/WEB_APP"),
        ("{{range .NetworkSettings.Networks}}{{println .IPAddress}}{{end}}", "10.89.0.2\n172.17.0.3\n"),
        # docker inspect's --format examples
        ("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "10.89.0.2172.17.0.3"),
        ("{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}", "02:42:0a:59:00:0202:42:ac:11:00:03"),
        ("{{.LogPath}}", "/var/lib/docker/containers/d2cc/d2cc-json.log"),
        ("{{.Config.Image}}", "ubuntu:22.04"),
        (
            "{{range $p, $conf := .NetworkSettings.Ports}} {{$p}} -> {{(index $conf 0).HostPort}} {{end}}",
            " 6379/tcp -> 32768  8787/tcp -> 49153 ",
        ),
        ('{{(index (index .NetworkSettings.Ports "8787/tcp") 0).HostPort}}', "49153"),
        ("{{json .Config}}", None),  # checked below: compact JSON with docker's map key order
        ("{{ .NetworkSettings.IPAddress }}", "172.17.0.3"),
        ("{{ .State.Pid }}", "4242"),
        (
            "Container {{ .Name }} listens on {{ .NetworkSettings.IPAddress }}:"
            "{{ range $index, $elem := .Config.ExposedPorts }}{{ $index }}{{ end }}",
            "Container /Web_App listens on 172.17.0.3:6379/tcp",
        ),
        ("{{ index (index .Config.Env) 0 }}", "PATH=/usr/bin"),
        ("{{.State.Status}}", "running"),
        ("{{.HostConfig.Memory}}", "1.073741824e+09"),  # Go prints a JSON float64 so
        ('{{index .Config.Labels "com.example.vendor"}}', "ACME"),
        # what the docs' habits lean on: if/else, with, comparisons, printf, trimming
        ('{{if eq .State.Status "running"}}up{{else}}down{{end}}', "up"),
        ('{{if ne .State.Status "running"}}down{{else if .State.Running}}up{{end}}', "up"),
        ("{{with .Config.Labels}}{{len .}} label{{end}}", "1 label"),
        ("{{with .Nothing}}x{{else}}none{{end}}", "none"),
        ('{{printf "%s has pid %v" .Name .State.Pid}}', "/Web_App has pid 4242"),
        ('{{printf "%q %d %5s|%-4s|%03d %t %%" "a" 7 "r" "l" 5 true}}', '"a" 7     r|l   |005 true %'),
        ("{{- .Name -}}  \n  {{- .Image }}", "/Web_Appubuntu:22.04"),
        ("{{/* a comment */}}{{.Image}}", "ubuntu:22.04"),
        ("{{$n := .Name}}{{range .Args}}{{$n}}:{{.}};{{end}}", "/Web_App:-c;/Web_App:sleep 1000;"),
        ("{{range .Args}}{{$.Image}} {{end}}", "ubuntu:22.04 ubuntu:22.04 "),
        ("{{range $i, $a := .Args}}{{if $i}},{{end}}{{$a}}{{end}}", "-c,sleep 1000"),
        ("{{range .Missing}}x{{else}}empty{{end}}", "empty"),
        ('{{.Name | lower | printf "[%s]"}}', "[/web_app]"),
        ('{{and .State.Running (eq .Image "ubuntu:22.04")}} {{or "" .Image}} {{not .State.Running}}', None),
        ('{{truncate .Id 12}} {{pad "x" 1 2}}| {{pad "" 3 3}}|', "d2cc496561d6  x  | |"),
        ('{{join (split "a:b:c" ":") "-"}}', "a-b-c"),
        ("{{len .Args}} {{len .Name}}", "2 8"),
        ('{{print "a" 1 2 "b"}}{{println}}', "a1 2b\n"),
        ("{{.Nope}}", "<no value>"),  # a map's missing key, Go's default
    ],
)
def test_docker_documented_examples(template: str, expected: str | None) -> None:
    out = render(template, CONTAINER)
    if template == "{{json .Config}}":
        assert out == (
            '{"Env":["PATH=/usr/bin","LANG=C"],"ExposedPorts":{"6379/tcp":{}},'
            '"Image":"ubuntu:22.04","Labels":{"com.example.vendor":"ACME"}}'
        )
    elif template.startswith("{{and"):
        assert out == "true ubuntu:22.04 false"
    else:
        assert out == expected


def test_a_struct_context_refuses_a_missing_field_as_docker_prints_it() -> None:
    row = Struct("*formatter.ContainerContext", {"Names": "web", "Label": lambda k: {"a": "1"}.get(k, "")})
    assert render('{{.Names}} {{.Label "a"}}|{{.Label "b"}}|', row) == "web 1||"
    with pytest.raises(TemplateError) as caught:
        render("{{.Nope}}", row)
    assert str(caught.value) == (
        'template: :1:2: executing "" at <.Nope>: '
        "can't evaluate field Nope in type *formatter.ContainerContext"
    )
    with pytest.raises(TemplateError, match=r'^template: :2:5: executing "" at <\.A\.B>: nil pointer'):
        render("x\nab {{.A.B}}", {"A": None})


def test_missingkey_error_as_docker_inspect_reads_raw_json() -> None:
    with pytest.raises(TemplateError) as caught:
        render("{{.State.Nope}}", CONTAINER, missing_key_error=True)
    assert (
        str(caught.value) == 'template: :1:2: executing "" at <.State.Nope>: map has no entry for key "Nope"'
    )


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("{{.Name", "unclosed action"),
        ("{{if .Name}}x", "unexpected EOF"),
        ("{{end}}", "unexpected {{end}}"),
        ("{{else}}", "unexpected {{else}}"),
        ("{{}}", "missing value for command"),
        ("{{if}}{{end}}", "missing value for if"),
        ("{{.Name | }}", "missing value for command"),
        ("{{ ( .Name }}", "unclosed left paren"),
        ('{{ "open }}', "unclosed action"),
        ("{{ # }}", "unexpected '#'"),
        ('{{define "x"}}{{end}}', "not supported"),
        ("{{nofunc .Name}}", 'function "nofunc" not defined'),
        ("{{if .A}}{{(upper (nofunc))}}{{end}}", 'function "nofunc" not defined'),
    ],
)
def test_a_template_that_does_not_parse_is_one_line(template: str, says: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(template, {})
    text = str(caught.value)
    assert text.startswith("template: :1") and says in text and "\n" not in text


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("{{index .Args 9}}", "error calling index: index out of range: 9"),
        ("{{upper .Args}}", "error calling upper"),
        ('{{truncate "abc"}}', "wrong number of args for truncate"),
        ("{{.Name.Inner}}", "can't evaluate field Inner in type string"),
        ("{{$nope}}", "undefined variable: $nope"),
        ("{{range 3.5}}{{end}}", "range can't iterate over 3.5"),
        ("{{lt .Name 3}}", "incompatible types for comparison"),
        ("{{.Image 1}}", "Image has arguments but cannot be invoked as function"),
    ],
)
def test_a_template_that_does_not_execute_is_one_line(template: str, says: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(template, CONTAINER)
    text = str(caught.value)
    assert text.startswith("template: :1:") and 'executing ""' in text and says in text and "\n" not in text


def test_go_prints_values_as_fmt_does() -> None:
    assert go_string({"b": 2, "a": [1, "x"]}) == "map[a:[1 x] b:2]"
    assert go_string(None) == "<nil>" and go_string(True) == "true"
    assert [go_string(f) for f in (4242.0, 0.5, 123456.0, 1e6, 1.5e-5, -2.25)] == [
        "4242",
        "0.5",
        "123456",
        "1e+06",
        "1.5e-05",
        "-2.25",
    ]
    assert sprintf("%s %d", "only") == "only %!d(MISSING)"
    assert sprintf("%d", "x") == "%!d(string=x)"
    assert sprintf("%.2f|%x|%v", 3.14159, 255, [1, 2]) == "3.14|ff|[1 2]"


def test_range_over_an_int_and_break_continue() -> None:
    assert render("{{range 3}}{{.}}{{end}}", {}) == "012"
    assert (
        render(
            "{{range .L}}{{if eq . 2}}{{continue}}{{end}}{{if eq . 4}}{{break}}{{end}}{{.}}{{end}}",
            {"L": [1, 2, 3, 4, 5]},
        )
        == "13"
    )


def test_tabwriter_aligns_as_docker_sets_it_up() -> None:
    # minwidth 10, padding 3: a column is its widest cell + 3, at least 10; the last cell is not padded
    text = "CONTAINER ID\tSTATUS\tNAMES\nabc\tUp 2 seconds\tweb\n"
    assert tabwrite(text) == "CONTAINER ID   STATUS         NAMES\nabc            Up 2 seconds   web\n"
    assert tabwrite("a\tb\nc\n") == "a         b\nc\n"
    # a column is aligned over each run of lines that have it (Go's column blocks)
    assert tabwrite("x\ty\n\nlonger-cell\tz\n") == "x         y\n\nlonger-cell   z\n"
