"""Rootless buildah (Debian's) with a throw-away store, for the cross-check test and the build bench.

Not a test module. The store and config live under ``home`` (overlay, runc, cgroupfs, file
events), so nothing touches the user's own containers storage. The base image is made from the
same busybox rootfs tar the Dockyard platform imports, so both builders start from the same files.
Also here: ``flatten``, the final filesystem of an OCI layout archive (what both sides export).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from e2e_platform import USER, as_user

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Buildah:
    def __init__(self, home: Path) -> None:
        self.home = home
        conf = home / "config" / "containers"
        conf.mkdir(parents=True)
        (home / "run").mkdir(mode=0o700)
        (conf / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{home / "root"}"\nrunroot = "{home / "runroot"}"\n'
        )
        (conf / "containers.conf").write_text(
            '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
        )
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", f"{USER}:{USER}", str(home)], check=True)
        self.env = {
            "PATH": PATH,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_RUNTIME_DIR": str(home / "run"),
            "LANG": "C.UTF-8",
        }
        self.argv = [*as_user(), "buildah", "--storage-driver", "overlay"]

    def __call__(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run(
            [*self.argv, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"buildah {' '.join(args[:3])} → {done.returncode}: {done.stderr[-2000:]}")
        return done.stdout

    def import_rootfs(self, tar: Path, name: str) -> None:
        """``name``: an image of one layer, the files of ``tar`` (owners kept, inside buildah's userns)."""
        cid = self("from", "scratch").strip()
        self("unshare", "sh", "-c", f"m=$(buildah mount {cid}); tar -C $m -xf {tar}; buildah umount {cid}")
        self("commit", "--identity-label=false", cid, name)
        self("rm", cid)

    def config(self, image: str) -> dict[str, Any]:
        """The image's OCI config document."""
        doc = json.loads(self("inspect", "--type", "image", image))
        return dict(json.loads(doc["Config"]))

    def cleanup(self) -> None:
        subprocess.run([*self.argv, "rm", "-a"], env=self.env, capture_output=True)
        subprocess.run(
            [*self.argv, "unshare", "rm", "-rf", str(self.home / "root")], env=self.env, capture_output=True
        )


Entry = tuple[str, int, int, int, str]  # (kind, mode, uid, gid, sha256 of the data or link target)


def flatten(archive: Path, only: set[str] | None = None) -> dict[str, Entry]:
    """The filesystem an OCI layout tar's (single) image unpacks to: path → entry.

    Layers applied in order with their whiteouts (``.wh.name`` removes ``name``,
    ``.wh..wh..opq`` empties the directory). ``only``: keep just these top-level directories.
    """
    with tarfile.open(archive) as outer:

        def blob(digest: str) -> bytes:
            fh = outer.extractfile("blobs/" + digest.replace(":", "/"))
            assert fh is not None
            return fh.read()

        index = json.loads(outer.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        files: dict[str, Entry] = {}
        for layer in manifest["layers"]:
            with tarfile.open(fileobj=io.BytesIO(blob(layer["digest"]))) as tar:
                for m in tar:
                    path = "/" + m.name.lstrip("./").rstrip("/")
                    parent, _, base = path.rpartition("/")
                    if base == ".wh..wh..opq":
                        files = {p: e for p, e in files.items() if not p.startswith(parent + "/")}
                        continue
                    if base.startswith(".wh."):
                        gone = f"{parent}/{base[4:]}"
                        files = {p: e for p, e in files.items() if p != gone and not p.startswith(gone + "/")}
                        continue
                    if path == "/":
                        continue
                    if m.isfile():
                        data = tar.extractfile(m).read()  # type: ignore[union-attr]
                        what = ("file", hashlib.sha256(data).hexdigest())
                    elif m.isdir():
                        what = ("dir", "")
                    elif m.issym():
                        what = ("symlink", m.linkname)
                    elif m.islnk():
                        what = ("file", files["/" + m.linkname.lstrip("./")][4])
                    else:
                        what = ("other", "")
                    files[path] = (what[0], m.mode & 0o7777, m.uid, m.gid, what[1])
    if only is not None:
        files = {p: e for p, e in files.items() if p.split("/")[1] in only}
    return files
