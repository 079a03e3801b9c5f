"""Docker's names (familiar form, docker.io) and registries.conf(5): parsing, merging, resolving.

Pure: no file and no network; the loader's file order is tested on a temporary directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.core.errors import FailedPrecondition
from dockyard.core.names import pullable
from dockyard.core.oci.reference import is_short_name, parse
from dockyard.core.registries import RegistriesConf, candidates, merge, parse_conf, sources
from dockyard.runtime.images.registries_conf import config_files, load

# -- docker's normalisation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "stored", "qualified"),
    [
        ("busybox", "busybox:latest", "docker.io/library/busybox"),
        ("busybox:1.36", "busybox:1.36", "docker.io/library/busybox"),
        ("library/busybox", "busybox:latest", "docker.io/library/busybox"),
        ("docker.io/library/busybox", "busybox:latest", "docker.io/library/busybox"),
        ("docker.io/busybox:1", "busybox:1", "docker.io/library/busybox"),
        ("index.docker.io/library/node:18-alpine", "node:18-alpine", "docker.io/library/node"),
        ("user/app", "user/app:latest", "docker.io/user/app"),
        ("docker.io/user/app:2", "user/app:2", "docker.io/user/app"),
        ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x"),
        ("localhost/x", "localhost/x:latest", "localhost/x"),
        ("host.tld/x/y:1", "host.tld/x/y:1", "host.tld/x/y"),
        (
            "127.0.0.1:5000/library/busybox",
            "127.0.0.1:5000/library/busybox:latest",
            "127.0.0.1:5000/library/busybox",
        ),
        ("busybox@sha256:" + "a" * 64, "busybox@sha256:" + "a" * 64, "docker.io/library/busybox"),
    ],
)
def test_familiar_names_are_docker_hub(raw: str, stored: str, qualified: str) -> None:
    ref = parse(raw)
    assert str(ref) == stored  # what the store keys the image by, as `docker images` lists it
    assert ref.qualified_name == qualified
    assert parse(qualified + (f":{ref.tag}" if ref.tag else f"@{ref.digest}")) == ref  # found by either


def test_short_names_and_pullable_names() -> None:
    assert is_short_name("busybox") and is_short_name("user/app:1") and is_short_name("x@sha256:" + "a" * 64)
    assert not is_short_name("docker.io/library/busybox") and not is_short_name("localhost:5000/x")
    assert pullable("busybox") and pullable("127.0.0.1:5000/x:1")
    assert not pullable("sha256:" + "a" * 64) and not pullable("a" * 64)


# -- registries.conf: parsing ------------------------------------------------------------------

MIRRORED = """
unqualified-search-registries = ["docker.io"]

[[registry]]
prefix = "docker.io"
location = "docker.io"

  [[registry.mirror]]
  location = "127.0.0.1:5000"
  insecure = true

  [[registry.mirror]]
  location = "mirror.lab/hub"

[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
"""


def _wires(conf: RegistriesConf, raw: str) -> list[tuple[str, str, bool]]:
    return [(s.label, str(s.ref), s.insecure) for name in candidates(conf, raw) for s in sources(conf, name)]


def test_a_mirror_is_tried_before_the_location_with_the_path_rewritten() -> None:
    conf = parse_conf(MIRRORED)
    assert _wires(conf, "busybox") == [
        ("mirror 127.0.0.1:5000", "127.0.0.1:5000/library/busybox:latest", True),
        ("mirror mirror.lab/hub", "mirror.lab/hub/library/busybox:latest", False),
        ("docker.io", "docker.io/library/busybox:latest", False),
    ]
    assert sources(conf, parse("alpine:3.10"))[-1].endpoint == "registry-1.docker.io"
    assert sources(conf, parse("alpine:3.10"))[0].endpoint == "127.0.0.1:5000"
    # a name of another registry is pulled from it, as written
    assert _wires(conf, "quay.io/x/y:1") == [("quay.io", "quay.io/x/y:1", False)]


def test_short_name_rule_alias_then_search_list_then_docker_hub() -> None:
    conf = parse_conf(MIRRORED)
    assert [str(r) for r in candidates(conf, "fedora:39")] == ["registry.fedoraproject.org/fedora:39"]
    search = parse_conf('unqualified-search-registries = ["quay.io", "docker.io"]')
    assert [str(r) for r in candidates(search, "busybox")] == ["quay.io/busybox:latest", "busybox:latest"]
    assert [str(r) for r in candidates(search, "user/app:1")] == ["quay.io/user/app:1", "user/app:1"]
    # no configuration, or an empty search list: docker's answer, Docker Hub
    for conf in (RegistriesConf(), parse_conf("unqualified-search-registries = []")):
        assert [str(r) for r in candidates(conf, "busybox")] == ["busybox:latest"]
    # a qualified name is never resolved elsewhere, nor is a docker.io one by an alias
    aliased = parse_conf('[aliases]\n"busybox" = "quay.io/b/busybox"')
    assert [str(r) for r in candidates(aliased, "docker.io/library/busybox")] == ["busybox:latest"]
    assert [str(r) for r in candidates(aliased, "busybox:1")] == ["quay.io/b/busybox:1"]


def test_longest_prefix_wins_and_wildcards_and_blocked_and_digest_only() -> None:
    conf = parse_conf(
        """
        [[registry]]
        prefix = "example.com"
        location = "a.lab"
        [[registry]]
        prefix = "example.com/team"
        location = "b.lab/mirror/team"
        insecure = true
        [[registry]]
        prefix = "*.corp.net"
        blocked = true
        [[registry]]
        location = "digests.io"
        [[registry.mirror]]
        location = "cache.lab"
        pull-from-mirror = "digest-only"
        """
    )
    assert _wires(conf, "example.com/x:1") == [("a.lab", "a.lab/x:1", False)]
    assert _wires(conf, "example.com/team/app:1") == [("b.lab", "b.lab/mirror/team/app:1", True)]
    assert _wires(conf, "example.com/teamx:1") == [("a.lab", "a.lab/teamx:1", False)]  # at a "/" only
    with pytest.raises(FailedPrecondition, match=r"pulling git\.corp\.net/x is blocked"):
        sources(conf, parse("git.corp.net/x"))
    assert _wires(conf, "digests.io/x:1") == [("digests.io", "digests.io/x:1", False)]
    by_digest = "digests.io/x@sha256:" + "b" * 64
    assert [label for label, _, _ in _wires(conf, by_digest)] == ["mirror cache.lab", "digests.io"]


def test_later_files_override_as_podman_merges_them() -> None:
    first = parse_conf(MIRRORED, "main")
    second = parse_conf(
        'unqualified-search-registries = ["quay.io"]\n'
        '[[registry]]\nprefix = "docker.io"\nlocation = "hub.lab"\n'
        '[aliases]\n"fedora" = "quay.io/fedora/fedora"\n"ubi" = "registry.access.redhat.com/ubi9"\n',
        "drop-in",
    )
    conf = merge([first, second])
    assert conf.search == ("quay.io",)
    assert conf.aliases == {"fedora": "quay.io/fedora/fedora", "ubi": "registry.access.redhat.com/ubi9"}
    assert _wires(conf, "docker.io/library/busybox") == [("hub.lab", "hub.lab/library/busybox:latest", False)]
    assert merge([second, parse_conf("")]).search == ("quay.io",)  # a file that says nothing changes nothing


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("unqualified-search-registries = [", "not valid TOML"),
        ('[registries.search]\nregistries = ["docker.io"]', "version 1 format"),
        ("[[registry]]\ninsecure = true", "needs a location or a prefix"),
        ('[[registry]]\nlocation = "https://x.io"', "without a scheme"),
        ('[[registry]]\nlocation = "x.io"\ninsecure = "yes"', "insecure must be true or false"),
        ('[[registry]]\nlocation = "x.io"\n[[registry.mirror]]\ninsecure = true', "needs a location"),
        ('[[registry]]\nlocation = "x.io"\nmirrors = []', "unknown key 'mirrors'"),
        ('[aliases]\n"busybox" = "busybox"', "fully qualified"),
        ('[aliases]\n"busybox:1" = "docker.io/library/busybox"', "short name without tag"),
        ('unqualified-search-registries = ["quay.io/x"]', "without a path"),
        ("unqualified-search-registries = 1", "must be a list"),
        ("colour = 1", "unknown key 'colour'"),
    ],
)
def test_a_bad_file_is_one_line_naming_it(text: str, why: str) -> None:
    with pytest.raises(FailedPrecondition, match=why) as err:
        parse_conf(text, "/etc/containers/registries.conf.d/50-lab.conf")
    assert str(err.value).startswith(
        "registries configuration /etc/containers/registries.conf.d/50-lab.conf: "
    )
    assert "\n" not in str(err.value)


# -- where the files are read from -------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_files_are_read_where_podman_reads_them(tmp_path: Path) -> None:
    system, home = tmp_path / "etc", tmp_path / "home"
    env = {"HOME": str(home)}
    main = _write(system / "registries.conf", 'unqualified-search-registries = ["a.io"]')
    b = _write(system / "registries.conf.d" / "20-b.conf", 'unqualified-search-registries = ["b.io"]')
    a = _write(system / "registries.conf.d" / "10-a.conf", '[aliases]\n"x" = "a.io/x"')
    _write(system / "registries.conf.d" / "README", "not a conf")
    user_d = _write(
        home / ".config/containers/registries.conf.d/30-u.conf", 'unqualified-search-registries = ["u.io"]'
    )
    assert config_files(env, system) == [main, a, b, user_d]
    assert load(env, system).search == ("u.io",) and load(env, system).aliases == {"x": "a.io/x"}
    # the user's own main file replaces the machine's, and its drop-ins too
    user_main = _write(home / ".config/containers/registries.conf", "")
    assert config_files(env, system) == [user_main, user_d]
    # XDG_CONFIG_HOME moves the user's directory
    assert config_files({**env, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}, system) == [main, a, b]
    # CONTAINERS_REGISTRIES_CONF pins one file, and nothing else is read
    pinned = _write(tmp_path / "test.conf", 'unqualified-search-registries = ["t.io"]')
    assert config_files({**env, "CONTAINERS_REGISTRIES_CONF": str(pinned)}, system) == [pinned]
    assert load({**env, "CONTAINERS_REGISTRIES_CONF": str(pinned)}, system).search == ("t.io",)
    with pytest.raises(
        FailedPrecondition, match=r"CONTAINERS_REGISTRIES_CONF names .*missing\.conf, which is not a file"
    ):
        load({"CONTAINERS_REGISTRIES_CONF": str(tmp_path / "missing.conf")}, system)
    # nothing anywhere: no configuration (docker's behaviour)
    assert load({"HOME": str(tmp_path / "nobody")}, tmp_path / "none") == RegistriesConf()
    _write(system / "registries.conf.d" / "40-bad.conf", "[[registry]]\n")
    with pytest.raises(FailedPrecondition, match=r"40-bad\.conf: \[\[registry\]\] #1 needs a location"):
        load({"HOME": str(tmp_path / "nobody")}, system)
