"""End to end: the docker CLI's network, volume, events and system df verbs against `dockyard up`'s
Docker Engine API, as the unprivileged user — exit codes and output are docker's.

One platform for the module; each test names its own networks, volumes and containers.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from docker_cli import DOCKER, Docker
from e2e_platform import Platform, as_user, busybox_fixtures

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is installed by `make setup`")

HTTPD = ["httpd", "-f", "-p", "80", "-h", "/var/www"]
IPV4 = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


workdir, platform = busybox_fixtures("engine-netvol-e2e")


@pytest.fixture(scope="module")
def docker(platform: Platform, workdir: Path) -> Docker:
    return Docker(platform, workdir)


def _wget(docker: Docker, network: str, url: str) -> str:
    """busybox wget from a new container on ``network`` (its -T crashes in Debian's static build)."""
    return docker.ok(
        "run", "--rm", "--network", network, "busybox", "timeout", "10", "wget", "-qO-", url, timeout=90
    )


def test_network_create_ls_inspect_and_the_default_networks(docker: Docker) -> None:
    network_id = docker.ok("network", "create", "--label", "tier=front", "--subnet", "10.92.3.0/24", "lsnet")
    assert re.fullmatch(r"[0-9a-f]+\n", network_id), network_id
    rows = dict(
        line.split(" ", 1)
        for line in docker.ok("network", "ls", "--format", "{{.Name}} {{.Driver}}").splitlines()
    )
    assert rows["lsnet"] == "bridge"
    assert rows["bridge"] == "bridge"  # the platform's default network, as docker users know it
    assert {"host", "none"} <= set(rows)
    default = docker.ok("network", "ls").splitlines()
    assert default[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert docker.ok("network", "ls", "-q", "--filter", "label=tier=front").strip() == network_id.strip()[:12]
    assert docker.ok("network", "ls", "--filter", "name=lsn", "--format", "{{.Name}}") == "lsnet\n"

    subnet = "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}"
    assert docker.ok("network", "inspect", "-f", subnet, "lsnet") == "10.92.3.0/24 10.92.3.1\n"
    info = json.loads(docker.ok("network", "inspect", "lsnet"))[0]
    assert (info["Name"], info["Scope"], info["Driver"], info["Labels"]) == (
        "lsnet",
        "local",
        "bridge",
        {"tier": "front"},
    )
    assert docker.ok("network", "inspect", "-f", "{{.Driver}}", "bridge") == "bridge\n"

    again = docker("network", "create", "lsnet")
    assert again.returncode == 1 and "already exists" in again.stderr, again.stderr
    assert docker("network", "create", "--driver", "overlay", "ovl").returncode == 1
    assert docker("network", "rm", "bridge").returncode == 1  # pre-defined
    missing = docker("network", "inspect", "nosuchnet")
    assert missing.returncode == 1 and "nosuchnet" in missing.stderr
    docker.ok("network", "rm", "lsnet")
    assert "lsnet" not in docker.ok("network", "ls", "--format", "{{.Name}}").split()


def test_containers_on_a_user_network_talk_by_name(docker: Docker) -> None:
    docker.ok("network", "create", "talknet")
    docker.ok(
        "run", "-d", "--name", "web", "--network", "talknet", "--network-alias", "www", "busybox", *HTTPD
    )
    assert _wget(docker, "talknet", "http://web/index.html") == "hello from dockyard\n"
    assert _wget(docker, "talknet", "http://www/index.html") == "hello from dockyard\n"

    address = docker.ok(
        "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "web"
    ).strip()
    assert IPV4.match(address), address
    assert docker.ok("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web").strip() == address
    aliases = docker.ok("inspect", "-f", "{{json .NetworkSettings.Networks.talknet.Aliases}}", "web")
    assert "www" in json.loads(aliases)
    members = json.loads(docker.ok("network", "inspect", "-f", "{{json .Containers}}", "talknet"))
    assert [(m["Name"], m["IPv4Address"].split("/")[0]) for m in members.values()] == [("web", address)]

    # rm is refused while a container is on it, and works once it is gone
    refused = docker("network", "rm", "talknet")
    assert refused.returncode == 1 and "web" in refused.stderr, refused.stderr
    docker.ok("rm", "-f", "web")
    docker.ok("network", "rm", "talknet")


def test_network_connect_and_disconnect(docker: Docker) -> None:
    docker.ok("network", "create", "joinnet")
    docker.ok("run", "-d", "--name", "joinweb", "--network", "joinnet", "busybox", *HTTPD)
    docker.ok("run", "-d", "--name", "visitor", "busybox", "sleep", "600")
    networks = "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}"
    assert docker.ok("inspect", "-f", networks, "visitor").split() == ["bridge"]

    docker.ok("network", "connect", "--alias", "guest", "joinnet", "visitor")
    assert docker.ok("inspect", "-f", networks, "visitor").split() == ["bridge", "joinnet"]
    guest = docker.ok("inspect", "-f", "{{json .NetworkSettings.Networks.joinnet.Aliases}}", "visitor")
    assert "guest" in json.loads(guest)
    hosts = docker.ok("run", "--rm", "--network", "joinnet", "busybox", "cat", "/etc/hosts")
    assert re.search(r"\tvisitor guest\b", hosts), hosts  # the names resolve on the network
    names = json.loads(docker.ok("network", "inspect", "-f", "{{json .Containers}}", "joinnet"))
    assert sorted(m["Name"] for m in names.values()) == ["joinweb", "visitor"]

    docker.ok("network", "disconnect", "joinnet", "visitor")
    names = json.loads(docker.ok("network", "inspect", "-f", "{{json .Containers}}", "joinnet"))
    assert [m["Name"] for m in names.values()] == ["joinweb"]
    assert "guest" not in docker.ok("run", "--rm", "--network", "joinnet", "busybox", "cat", "/etc/hosts")
    assert docker("network", "disconnect", "joinnet", "nosuchcontainer").returncode == 1
    docker.ok("rm", "-f", "joinweb", "visitor")
    docker.ok("network", "rm", "joinnet")


def test_the_default_network_gives_an_address(docker: Docker) -> None:
    docker.ok("run", "-d", "--name", "plain", "busybox", "sleep", "600")
    address = docker.ok("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "plain")
    assert IPV4.match(address.strip()), address
    assert docker.ok("inspect", "-f", "{{.HostConfig.NetworkMode}}", "plain") == "bridge\n"
    docker.ok("rm", "-f", "plain")


def test_volumes_create_ls_inspect_share_and_rm(docker: Docker) -> None:
    assert docker.ok("volume", "create", "--label", "k=v", "shared") == "shared\n"
    assert "shared local" in docker.ok("volume", "ls", "--format", "{{.Name}} {{.Driver}}").splitlines()
    assert docker.ok("volume", "ls").splitlines()[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert docker.ok("volume", "ls", "-q", "--filter", "label=k=v") == "shared\n"
    assert docker.ok("volume", "ls", "-q", "--filter", "label=k=nope") == ""
    info = json.loads(docker.ok("volume", "inspect", "shared"))[0]
    assert (info["Name"], info["Driver"], info["Scope"], info["Labels"]) == (
        "shared",
        "local",
        "local",
        {"k": "v"},
    )
    assert info["Mountpoint"].endswith("/shared/_data") and info["CreatedAt"]
    assert docker.ok("volume", "inspect", "-f", "{{.Driver}}", "shared") == "local\n"

    # two containers share it
    docker.ok("run", "--rm", "-v", "shared:/data", "busybox", "sh", "-c", "echo written > /data/f")
    assert docker.ok("run", "--rm", "-v", "shared:/data", "busybox", "cat", "/data/f") == "written\n"

    # refused while a container (even a stopped one) uses it
    docker.ok("create", "--name", "holder", "-v", "shared:/data", "busybox", "true")
    refused = docker("volume", "rm", "shared")
    assert refused.returncode == 1 and "in use" in refused.stderr, refused.stderr
    docker.ok("rm", "holder")
    docker.ok("volume", "rm", "shared")
    assert "shared" not in docker.ok("volume", "ls", "-q").split()
    missing = docker("volume", "inspect", "shared")
    assert missing.returncode == 1 and "shared" in missing.stderr


def test_volume_prune_keeps_named_volumes(docker: Docker) -> None:
    docker.ok("volume", "create", "keepme")
    docker.ok("run", "--name", "anon", "-v", "/scratch", "busybox", "true")
    anonymous = docker.ok("inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", "anon").strip()
    assert anonymous
    docker.ok("rm", "anon")
    pruned = docker.ok("volume", "prune", "-f")
    assert anonymous in pruned and "keepme" not in pruned, pruned
    assert "keepme" in docker.ok("volume", "ls", "-q").split()
    assert "keepme" in docker.ok("volume", "prune", "-f", "--all")
    assert "keepme" not in docker.ok("volume", "ls", "-q").split()


def _events(docker: Docker, *args: str) -> list[str]:
    return docker.ok(
        "events", *args, "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"
    ).splitlines()


def test_events_since_until_and_filters(docker: Docker) -> None:
    since = f"{time.time() - 1:.3f}"
    docker.ok("run", "--name", "evt", "busybox", "true")
    docker.ok("rm", "evt")
    time.sleep(2)  # the events reach the stream through the gateway's outbox
    until = f"{time.time():.3f}"
    lines = _events(docker, "--since", since, "--until", until)
    mine = [line for line in lines if line.endswith(" evt")]
    actions = [line.split()[1] for line in mine]
    for action in ("create", "start", "die", "destroy"):
        assert action in actions, lines
    assert actions.index("create") < actions.index("start") < actions.index("die")
    assert all(line.startswith("container ") for line in mine)

    started = _events(docker, "--since", since, "--until", until, "--filter", "event=start")
    assert started and all(line.split()[1] == "start" for line in started), started
    assert "container start evt" in started
    by_name = _events(docker, "--since", since, "--until", until, "--filter", "container=evt")
    assert {line.split()[2] for line in by_name} == {"evt"}
    networks = _events(docker, "--since", since, "--until", until, "--filter", "type=network")
    assert all(line.startswith("network ") for line in networks), networks  # an earlier test's may be there

    raw = docker.ok("events", "--since", since, "--until", until, "--format", "{{json .}}").splitlines()
    message = json.loads(raw[0])
    assert {"Type", "Action", "Actor", "scope", "time", "timeNano"} <= set(message)
    bad = docker("events", "--since", since, "--until", until, "--filter", "colour=red")
    assert bad.returncode != 0


def test_events_follow_new_ones_until_a_time_ahead(docker: Docker) -> None:
    """Without --since it follows from now; --until in the future ends the stream at that time."""
    began = time.monotonic()
    until = f"{time.time() + 10:.3f}"
    template = "{{.Action}} {{.Actor.Attributes.name}}"
    with subprocess.Popen(
        [
            *as_user(docker.user),
            str(DOCKER),
            "events",
            "--until",
            until,
            "--filter",
            "event=start",
            "--format",
            template,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=docker.env,
    ) as follower:
        time.sleep(2)  # the follower is subscribed
        docker.ok("run", "--rm", "--name", "followed", "busybox", "true")
        out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    assert out.splitlines() == ["start followed"], out
    assert 8 <= time.monotonic() - began < 40


def test_system_df(docker: Docker) -> None:
    docker.ok("volume", "create", "dfvol")
    docker.ok("create", "--name", "dfc", "-v", "dfvol:/data", "busybox", "true")
    out = docker.ok("system", "df")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["TYPE", "TOTAL", "ACTIVE"], out
    rows = {cells[0]: cells for cells in (re.split(r"\s{2,}", line.strip()) for line in lines[1:])}
    assert {"Images", "Containers", "Local Volumes", "Build Cache"} <= set(rows), out
    assert rows["Images"][1] == "1", out  # busybox
    assert int(rows["Containers"][1]) >= 1 and rows["Containers"][2] == "0", out  # dfc, not running
    assert int(rows["Local Volumes"][1]) >= 1 and int(rows["Local Volumes"][2]) >= 1, out
    verbose = docker.ok("system", "df", "-v")
    assert "dfvol" in verbose and "busybox" in verbose
    docker.ok("rm", "dfc")
    docker.ok("volume", "rm", "dfvol")
