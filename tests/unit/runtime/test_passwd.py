"""dockyard.runtime.passwd: user lookup in an untrusted rootfs, and the mapped id range."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.core.errors import InvalidArgument
from dockyard.runtime import passwd
from dockyard.runtime.passwd import ResolvedUser, resolve_user

# --- users -------------------------------------------------------------------------------------------

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment
broken line
app:x:1000:1000::/home/app:/bin/sh
huge:x:70000:70000::/:/bin/sh
"""
GROUP = """\
root:x:0:
wheel:x:10:root
app:x:1000:
extra:x:2000:app,daemon
staff:x:50:
big:x:80000:
"""


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    return root


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", ResolvedUser(0, 0, (10,))),
        ("root", ResolvedUser(0, 0, (10,))),
        ("app", ResolvedUser(1000, 1000, (2000,))),
        ("1000", ResolvedUser(1000, 1000, (2000,))),
        ("daemon", ResolvedUser(1, 1, (2000,))),
        ("app:staff", ResolvedUser(1000, 50, ())),  # an explicit group: no supplementary groups
        ("app:7", ResolvedUser(1000, 7, ())),
        ("4242", ResolvedUser(4242, 0, ())),  # not in passwd: gid 0, as docker
        ("4242:staff", ResolvedUser(4242, 50, ())),
        ("33:44", ResolvedUser(33, 44, ())),
    ],
)
def test_resolve_user(rootfs: Path, user: str, expected: ResolvedUser) -> None:
    assert resolve_user(rootfs, user) == expected


def test_an_unknown_user_is_dockers_message(rootfs: Path) -> None:
    with pytest.raises(InvalidArgument) as e:
        resolve_user(rootfs, "nobody")
    assert str(e.value) == "unable to find user nobody: no matching entries in passwd file"
    with pytest.raises(
        InvalidArgument, match=r"^unable to find group nope: no matching entries in group file$"
    ):
        resolve_user(rootfs, "app:nope")


@pytest.mark.parametrize("user", ["70000", "0:65536", "huge", "root:big"])
def test_ids_outside_the_mapped_range_are_refused(rootfs: Path, user: str) -> None:
    with pytest.raises(InvalidArgument, match=r"outside the ids this node maps \(0-65535\)"):
        resolve_user(rootfs, user)


def test_no_etc_files_still_allows_numeric_ids(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert resolve_user(tmp_path / "empty", "") == ResolvedUser(0, 0, ())
    assert resolve_user(tmp_path / "empty", "5") == ResolvedUser(5, 0, ())
    with pytest.raises(InvalidArgument, match="unable to find user app"):
        resolve_user(tmp_path / "empty", "app")


def test_a_symlinked_passwd_is_not_followed_out_of_the_rootfs(rootfs: Path, tmp_path: Path) -> None:
    secret = tmp_path / "host-passwd"
    secret.write_text("hostonly:x:4321:4321::/:/bin/sh\n")
    (rootfs / "etc" / "passwd").unlink()
    (rootfs / "etc" / "passwd").symlink_to(secret)
    with pytest.raises(InvalidArgument, match="/etc/passwd is not a regular file"):
        resolve_user(rootfs, "hostonly")
    # numeric uid:gid never reads the files, so the hostile tree does not matter
    assert resolve_user(rootfs, "7:8") == ResolvedUser(7, 8, ())
    # a relative symlink climbing out is refused the same way
    (rootfs / "etc" / "passwd").unlink()
    (rootfs / "etc" / "passwd").symlink_to("../../host-passwd")
    with pytest.raises(InvalidArgument, match="not a regular file"):
        resolve_user(rootfs, "hostonly")


def test_a_symlinked_etc_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("hostonly:x:4321:4321::/:/bin/sh\n")
    root = tmp_path / "rootfs"
    root.mkdir()
    (root / "etc").symlink_to(outside)
    with pytest.raises(InvalidArgument, match="/etc is not a directory"):
        resolve_user(root, "hostonly")


@pytest.mark.timeout(10)
def test_a_fifo_or_directory_passwd_is_refused_without_blocking(rootfs: Path) -> None:
    (rootfs / "etc" / "passwd").unlink()
    os.mkfifo(rootfs / "etc" / "passwd")
    with pytest.raises(InvalidArgument, match="not a regular file"):
        resolve_user(rootfs, "app")
    (rootfs / "etc" / "passwd").unlink()
    (rootfs / "etc" / "passwd").mkdir()
    with pytest.raises(InvalidArgument, match="not a regular file"):
        resolve_user(rootfs, "app")


def test_a_huge_passwd_is_refused(rootfs: Path) -> None:
    with (rootfs / "etc" / "passwd").open("w") as f:
        f.truncate(passwd.MAX_ETC_FILE + 1)
    with pytest.raises(InvalidArgument, match="larger than"):
        resolve_user(rootfs, "app")
