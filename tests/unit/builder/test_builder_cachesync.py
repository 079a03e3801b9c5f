"""The registry cache's pure parts: buildx's --cache-to/--cache-from syntax, the CLI flags, the
cache index (its bytes and its reading), and which steps belong to which stage."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.builder.cachesync import (
    CACHE_ARTIFACT_TYPE,
    KEYS_ANNOTATION,
    UsedSteps,
    decode_index,
    encode_index,
    in_stage,
)
from dockyard.cli.__main__ import build_parser
from dockyard.cli.build import cache_options
from dockyard.core.cacheoptions import CacheSpec, parse_cache_option
from dockyard.core.errors import InvalidArgument
from dockyard.core.oci.manifest import ManifestDescriptor
from dockyard.core.oci.mediatypes import OCI_INDEX
from dockyard.core.oci.reference import registry_ref

REG = "127.0.0.1:5000"
KEY_A, KEY_B, KEY_C = "a" * 64, "b" * 64, "c" * 64
DIGEST_1, DIGEST_2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


# --- the flags -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"type=registry,ref={REG}/team/app:cache", CacheSpec(f"{REG}/team/app:cache")),
        (f"type=registry,ref={REG}/app:c,mode=max", CacheSpec(f"{REG}/app:c", "max")),
        (f"ref={REG}/app:c,mode=min,ignore-error=true", CacheSpec(f"{REG}/app:c", "min", True)),
        (f"TYPE=registry,Ref={REG}/app", CacheSpec(f"{REG}/app")),  # keys are case-insensitive
        (f'"type=registry","ref={REG}/app:1"', CacheSpec(f"{REG}/app:1")),  # CSV quoting
        (f"{REG}/team/app:cache", CacheSpec(f"{REG}/team/app:cache")),  # buildx's shorthand
        ("localhost/app:c", CacheSpec("localhost/app:c")),
        ("registry.example.com/a/b/c:v1.2", CacheSpec("registry.example.com/a/b/c:v1.2")),
    ],
)
def test_cache_options_in_buildx_syntax(value: str, expected: CacheSpec) -> None:
    assert parse_cache_option(value, "--cache-to") == expected


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--cache-to", "", "--cache-to: empty value"),
        ("--cache-to", "type=local,dest=/tmp/c", "--cache-to type=local: only type=registry is supported"),
        ("--cache-from", "type=gha", "--cache-from type=gha: only type=registry is supported"),
        ("--cache-to", "type=registry", "--cache-to: ref=HOST[:PORT]/NAME[:TAG] is required"),
        (
            "--cache-to",
            f"type=registry,ref={REG}/a,mode=all",
            "--cache-to mode=all: want mode=min or mode=max",
        ),
        (
            "--cache-to",
            f"ref={REG}/a,ignore-error=maybe",
            "--cache-to ignore-error=maybe: want true or false",
        ),
        ("--cache-to", f"ref={REG}/a,compression=zstd", "--cache-to: unknown option 'compression'"),
        ("--cache-to", f"type=registry,{REG}/a", "is not KEY=VALUE"),
        ("--cache-from", "type=registry,ref=team/app:cache", "--cache-from ref 'team/app:cache': want HOST"),
        ("--cache-from", "app:cache", "--cache-from ref 'app:cache': want HOST[:PORT]/NAME[:TAG]"),
        ("--cache-from", f"{REG}/Team/App", "want HOST[:PORT]/NAME[:TAG]"),  # upper case is no repository
        ("--cache-to", f"{REG}/a@{DIGEST_1}", "the cache is pushed under a tag, not a digest"),
    ],
)
def test_a_bad_cache_option_is_one_clear_line(flag: str, value: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_cache_option(value, flag)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_cache_from_may_name_a_digest_and_refs_get_latest() -> None:
    assert parse_cache_option(f"{REG}/a@{DIGEST_1}", "--cache-from").ref == f"{REG}/a@{DIGEST_1}"
    assert CacheSpec(f"{REG}/a").tagged == f"{REG}/a:latest"
    assert CacheSpec(f"{REG}/a:v1").tagged == f"{REG}/a:v1"
    assert registry_ref(f"{REG}/team/app:1", "x").name == f"{REG}/team/app"
    assert registry_ref("[::1]:5000/app", "x").name == "[::1]:5000/app"
    with pytest.raises(InvalidArgument, match="--push: tag 'app:1'"):
        registry_ref("app:1", "--push: tag")


def test_the_cli_flags_become_build_options() -> None:
    args = build_parser("build").parse_args(
        ["build", "--push", "-t", f"{REG}/app:1",
         "--cache-to", f"type=registry,ref={REG}/app:cache,mode=max",
         "--cache-from", f"type=registry,ref={REG}/app:cache", "--cache-from", f"{REG}/other:cache", "."]
    )  # fmt: skip
    assert args.push is True
    to = cache_options(args.cache_to, "--cache-to")
    assert [(c.ref, c.mode, c.ignore_error) for c in to] == [(f"{REG}/app:cache", "max", False)]
    assert [c.ref for c in cache_options(args.cache_from, "--cache-from")] == [
        f"{REG}/app:cache",
        f"{REG}/other:cache",
    ]
    plain = build_parser("build").parse_args(["build", "."])
    assert plain.push is False and plain.cache_to == [] and plain.cache_from == []


def test_the_cli_refuses_a_bad_cache_value_in_one_line_before_connecting(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    done = subprocess.run(
        [sys.executable, "-m", "dockyard.cli", "-H", f"unix://{tmp_path}/none.sock",
         "build", "--cache-to", "type=local,dest=/tmp/x", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == "dockyard: --cache-to type=local: only type=registry is supported\n"


# --- the index -----------------------------------------------------------------------------------------


def test_the_index_is_reproducible_and_reads_back() -> None:
    m1 = ManifestDescriptor("application/vnd.oci.image.manifest.v1+json", DIGEST_1, 400)
    m2 = ManifestDescriptor("application/vnd.oci.image.manifest.v1+json", DIGEST_2, 500)
    one = encode_index([(m2, [KEY_C]), (m1, [KEY_B, KEY_A])])
    two = encode_index([(m1, {KEY_A, KEY_B}), (m2, (KEY_C,))])
    assert one == two  # order of entries and of keys does not matter
    doc = json.loads(one)
    assert doc["mediaType"] == OCI_INDEX and doc["artifactType"] == CACHE_ARTIFACT_TYPE
    assert [m["digest"] for m in doc["manifests"]] == [DIGEST_1, DIGEST_2]
    assert doc["manifests"][0]["annotations"][KEYS_ANNOTATION] == f"{KEY_A},{KEY_B}"
    assert doc["manifests"][0]["size"] == 400
    assert decode_index(one, "r") == {KEY_A: DIGEST_1, KEY_B: DIGEST_1, KEY_C: DIGEST_2}
    assert decode_index(encode_index([]), "r") == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (
            json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode(),
            "not a Dockyard",
        ),
        (json.dumps({"schemaVersion": 2, "config": {}, "layers": []}).encode(), "not a Dockyard build cache"),
        (
            json.dumps({"artifactType": CACHE_ARTIFACT_TYPE, "manifests": [{"digest": "sha256:x"}]}).encode(),
            "malformed entry",
        ),
        (
            json.dumps(
                {
                    "artifactType": CACHE_ARTIFACT_TYPE,
                    "manifests": [{"digest": DIGEST_1, "annotations": {KEYS_ANNOTATION: "nope"}}],
                }
            ).encode(),
            "malformed step key",
        ),
    ],
)
def test_what_is_not_our_cache_index_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        decode_index(body, f"{REG}/a:cache")


# --- steps and stages ----------------------------------------------------------------------------------


def test_concurrent_stages_record_their_own_steps() -> None:
    used = UsedSteps()

    async def stage(keys: list[str]) -> None:
        for key in keys:
            used.add(key)
            await asyncio.sleep(0)  # let the other stage run in between

    async def build() -> None:
        await asyncio.gather(in_stage(0, stage([KEY_A, KEY_C])), in_stage(1, stage([KEY_B, KEY_C])))
        used.add("d" * 64)  # the build's own step (a --label on the final image): no stage

    asyncio.run(build())
    assert used.keys() == [KEY_A, KEY_B, KEY_C, "d" * 64]
    assert used.keys({1, None}) == [KEY_B, KEY_C, "d" * 64]
    assert used.keys({0}) == [KEY_A, KEY_C]
