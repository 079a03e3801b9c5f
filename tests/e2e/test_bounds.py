"""End to end (real `dockyard up` as the unprivileged user): sizes are bounded at create, and a
listing past gRPC's 4 MiB message limit still answers, in pages.

Before, a 10 MB name or a 15 MB environment was recorded, and once the containers' records
passed 4 MiB together `ps -a` failed for everyone with "Sent message larger than max".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_platform import Platform, busybox_platform, make_workdir

# Within the 256 KiB of labels a container may have; in pieces, as execve(2) takes no single
# argument over 128 KiB (the CLI's own exec would fail first).
LABELS = [a for i in range(20) for a in ("-l", f"k{i}={'x' * (10 << 10)}")]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    workdir = make_workdir(Path(tmp_path_factory.mktemp("bounds-e2e", numbered=True)))
    with busybox_platform(workdir) as p:
        yield p


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--name", "n" * 300], "longer than 255 bytes"),
        (["--env-file", "{big_env}"], "longer than 128 KiB"),
        ([a for i in range(30) for a in ("-l", f"k{i}={'x' * (10 << 10)}")], "labels are over 256 KiB"),
    ],
)
def test_oversized_creates_are_one_line_and_leave_nothing(
    platform: Platform, tmp_path: Path, flags: list[str], says: str
) -> None:
    big_env = tmp_path / "big.env"
    big_env.write_text("A=" + "x" * (200 << 10) + "\n")
    big_env.chmod(0o644)
    tmp_path.chmod(0o755)
    flags = [f.format(big_env=big_env) for f in flags]
    before = platform.ok("ps", "-aq")
    done = platform.cli("create", *flags, "busybox", "true")
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and says in done.stderr, done.stderr
    assert platform.ok("ps", "-aq") == before


def test_ps_and_df_answer_past_the_message_limit(platform: Platform) -> None:
    count = 24  # 24 x 200 KiB of labels: a single answer of ~4.8 MB, past gRPC's 4 MiB
    for i in range(count):
        platform.ok("create", "--name", f"big{i}", *LABELS, "busybox", "true")
    names = platform.ok("ps", "-a", timeout=120)
    assert all(f"big{i}" in names for i in range(count)), names[-500:]
    assert len(platform.ok("ps", "-aq", timeout=120).split()) >= count
    assert "Containers" in platform.ok("system", "df", timeout=120)
    for i in range(count):
        platform.ok("rm", f"big{i}")


def test_an_event_nats_cannot_take_is_set_aside_and_the_runtime_events_flow(platform: Platform) -> None:
    # The state after a 10 MB name: an event over NATS's max_payload (1 MiB) at the head
    # of the runtime's outbox, left from before the bounds. The drainer must set it aside.
    import json
    import os
    import time
    from datetime import UTC, datetime

    from dockyard.core.eventdata import ContainerCreated
    from dockyard.core.events import Subject, new_event

    since = datetime.now(UTC).isoformat()
    outbox = platform.state_dir / "runtime" / "outbox"
    stuck = new_event(
        Subject.CONTAINER_CREATED,
        "/dockyard/runtime/e2e",
        "stuck",
        ContainerCreated("stuck", "n" * (2 << 20), "img"),
    )
    name = f"{0:020d}-{0:08d}-{stuck.id}.json"  # sorts first: the head of the queue
    (outbox / "tmp" / name).write_bytes(stuck.to_json())
    os.chmod(outbox / "tmp" / name, 0o644)
    os.rename(outbox / "tmp" / name, outbox / "pending" / name)
    cid = platform.ok("run", "-d", "--name", "after-dead", "busybox", "true").strip()

    def started() -> bool:
        until = datetime.now(UTC).isoformat()
        out = platform.ok("events", "--since", since, "--until", until, "--format", "json")
        docs = [json.loads(line) for line in out.splitlines() if line.strip()]
        return any(d["subject"] == cid and d["type"].endswith(".started") for d in docs)

    end = time.monotonic() + 90  # a liveness bound: a loaded machine's publish retries back off
    while not started():
        assert time.monotonic() < end, "the container's events never reached the stream"
        time.sleep(0.5)
    assert (outbox / "dead" / name).read_bytes() == stuck.to_json()
    assert "max_payload" in (outbox / "dead" / f"{name}.reason").read_text()
    assert not (outbox / "pending" / name).exists()
    assert "set aside as never publishable (dead letter): runtime 1" in platform.ok("info")
    platform.ok("rm", "-f", "after-dead")
