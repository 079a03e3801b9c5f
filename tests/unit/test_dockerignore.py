"""``.dockerignore`` as Docker reads and matches it, and pruning while walking a context."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.core.dockerignore import DockerIgnore, MatchInfo, read_patterns
from dockyard.core.errors import InvalidArgument


def test_read_patterns() -> None:
    text = "\ufeff# comment\n/foo/bar\n ./a//b/ \n\n!/x\n! y \n  # not a comment\nc/../d\n/\n"
    assert read_patterns(text) == ["foo/bar", "a/b", "!x", "!y", "# not a comment", "d", "/"]
    assert DockerIgnore.from_text("/build\n").excluded("build/x")


# The docs' example: `# comment`, `*/temp*`, `*/*/temp*`, `temp?`
DOCS = DockerIgnore.from_text("# comment\n*/temp*\n*/*/temp*\ntemp?\n")


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("somedir/temporary.txt", True),
        ("somedir/temp", True),
        ("somedir/temp/inside", True),
        ("somedir/subdir/temporary.txt", True),
        ("tempa", True),
        ("tempb", True),
        ("temp", False),
        ("tempab", False),
        ("temporary.txt", False),
        ("a/b/c/temp.txt", False),
        ("# comment", False),
    ],
)
def test_docs_example(path: str, excluded: bool) -> None:
    assert DOCS.excluded(path) is excluded


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        # exceptions: the last matching line wins (the docs' two orders)
        (["*.md", "!README.md"], "a.md", True),
        (["*.md", "!README.md"], "README.md", False),
        (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
        (["*.md", "!README*.md", "README-secret.md"], "README-other.md", False),
        (["*.md", "README-secret.md", "!README*.md"], "README-secret.md", False),
        # ** any number of directories, including none
        (["**/*.go"], "main.go", True),
        (["**/*.go"], "a/b/c.go", True),
        (["**/*.go"], "a/b/c.gox", False),
        (["a/**/b"], "a/b", True),
        (["a/**/b"], "a/x/y/b", True),
        (["a/**/b"], "a/x/c", False),
        (["dist/**"], "dist/x/y", True),
        (["dist/**"], "dist", False),
        (["**"], "anything/at/all", True),
        (["**/node_modules"], "node_modules", True),
        (["**/node_modules"], "web/node_modules/x", True),
        (["**foo"], "barfoo", True),
        # a pattern excludes a directory and everything under it
        (["node_modules"], "node_modules/a/b", True),
        (["build/"], "build/out.o", True),
        (["./build"], "src/build", False),
        # filepath.Match: * and ? stop at /, classes, escapes
        (["*"], "a", True),
        (["*"], "a/b", True),
        (["*/b"], "a/c/b", False),
        (["?.txt"], "ab.txt", False),
        (["[a-c].txt"], "b.txt", True),
        (["[a-c].txt"], "d.txt", False),
        (["[^a-c].txt"], "d.txt", True),
        (["\\*.txt"], "*.txt", True),
        (["\\*.txt"], "a.txt", False),
        (["a+b(c)"], "a+b(c)", True),
        (["file{1,2}"], "file1", False),
        # exceptions re-include under an excluded directory
        (["logs", "!logs/keep.log"], "logs/keep.log", False),
        (["logs", "!logs/keep.log"], "logs/other.log", True),
        # "." never matches
        (["."], "a", False),
        # Dockerfile and .dockerignore can be excluded from COPY
        (["Dockerfile", ".dockerignore"], "Dockerfile", True),
    ],
)
def test_matching(patterns: list[str], path: str, excluded: bool) -> None:
    assert DockerIgnore(patterns).excluded(path) is excluded


@pytest.mark.parametrize("pattern", ["!", "[", "a[b", "[]", "x\\", "[a-]"])
def test_bad_patterns(pattern: str) -> None:
    with pytest.raises(InvalidArgument, match="bad pattern"):
        DockerIgnore([pattern])


def test_dockerfile_and_ignore_file_are_still_sent() -> None:
    ignore = DockerIgnore(["*", "!src"])
    assert ignore.sends("Dockerfile") and ignore.sends(".dockerignore")
    assert ignore.excluded("Dockerfile") and ignore.excluded(".dockerignore")
    assert ignore.sends("build/app.Dockerfile", dockerfile="build/app.Dockerfile")
    assert not ignore.sends("README.md") and ignore.sends("src/main.go")


def test_can_prune() -> None:
    ignore = DockerIgnore(["node_modules", "vendor", "!vendor/keep/*.go", "**/.git", "!**/important"])
    assert not ignore.can_prune("node_modules")  # "!**/important" could be anywhere below
    simple = DockerIgnore(["node_modules", "vendor", "!vendor/keep/*.go", "dist"])
    assert simple.can_prune("node_modules") and simple.can_prune("dist")
    assert not simple.can_prune("vendor")  # vendor/keep/*.go come back
    assert simple.can_prune("src") is False  # not excluded at all
    assert DockerIgnore(["a", "!a"]).can_prune("a") is False


def walk(root: Path, ignore: DockerIgnore) -> tuple[list[str], list[str]]:
    """Top-down walk using parent results and pruning: (kept files, pruned dirs)."""
    kept: list[str] = []
    pruned: list[str] = []
    infos: dict[str, MatchInfo] = {"": MatchInfo()}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else rel
        parent = infos[rel]
        for name in sorted(filenames):
            path = f"{rel}/{name}" if rel else name
            excluded, _ = ignore.match(path, parent)
            if not excluded:
                kept.append(path)
        keep_dirs = []
        for name in sorted(dirnames):
            path = f"{rel}/{name}" if rel else name
            excluded, info = ignore.match(path, parent)
            if excluded and ignore.can_prune(path):
                pruned.append(path)
                continue
            infos[path] = info
            keep_dirs.append(name)
        dirnames[:] = keep_dirs
    return sorted(kept), pruned


def test_walk_matches_the_plain_matcher(tmp_path: Path) -> None:
    files = [
        "Dockerfile",
        "README.md",
        "README-secret.md",
        "docs/guide.md",
        "src/main.go",
        "src/pkg/util.go",
        "src/pkg/util_test.go",
        "node_modules/left-pad/index.js",
        "vendor/keep/a.go",
        "vendor/keep/a.txt",
        "vendor/drop/b.go",
        "build/out/app",
        "tempa/x",
    ]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("x")
    ignore = DockerIgnore.from_text(
        "*.md\n!README*.md\nREADME-secret.md\n**/*_test.go\nnode_modules\nvendor\n!vendor/keep/*.go\n"
        "build/**\ntemp?\n"
    )
    kept, pruned = walk(tmp_path, ignore)
    assert kept == sorted(f for f in files if not ignore.excluded(f))
    # "*.md" is root-level only: * does not cross "/"
    assert kept == [
        "Dockerfile",
        "README.md",
        "docs/guide.md",
        "src/main.go",
        "src/pkg/util.go",
        "vendor/keep/a.go",
    ]
    # skipped whole: nothing under them can come back ("vendor" itself cannot: vendor/keep/*.go)
    assert sorted(pruned) == ["build/out", "node_modules", "tempa", "vendor/drop"]
