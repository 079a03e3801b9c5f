"""``dockyard registry``: the registry's admin API through the gateway."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("ls", help="list repositories")
    ls.add_argument("-n", "--limit", type=int, default=0)
    tags = sub.add_parser("tags", help="list a repository's tags")
    tags.add_argument("repository")
    inspect = sub.add_parser("inspect", help="print a manifest as stored (REPO:TAG or REPO@DIGEST)")
    inspect.add_argument("reference")
    rm = sub.add_parser("rm", help="delete a manifest by digest, or untag a tag")
    rm.add_argument("reference")
    gc = sub.add_parser("gc", help="collect garbage: sweep blobs no manifest references")
    gc.add_argument("--dry-run", action="store_true", help="report what would be freed, delete nothing")
    gc.add_argument(
        "--grace",
        type=int,
        default=None,
        help="keep blobs younger than this many seconds [server default: 1h]",
    )
    sub.add_parser("du", help="what the registry stores")


def split_reference(reference: str) -> tuple[str, str]:
    """``repo:tag`` / ``repo@sha256:..`` / ``repo`` (→ latest) into (repository, tag or digest)."""
    if "@" in reference:
        repo, _, digest = reference.partition("@")
        return repo, digest
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > slash:
        return reference[:colon], reference[colon + 1 :]
    return reference, "latest"


def _pages(fetch: Callable[[str], Any], *, follow: bool = True) -> Iterator[Any]:
    """Call ``fetch(after)`` page by page while the server says there is a ``next``."""
    after = ""
    while True:
        page = fetch(after)
        yield page
        if not page.next or not follow:
            return
        after = page.next


def run(args: argparse.Namespace) -> int:
    from dockyard.api.registry.v1 import registry_pb2 as pb
    from dockyard.api.registry.v1 import registry_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.cli.output import table

    with channel(args.host) as ch:
        admin = registry_pb2_grpc.RegistryAdminStub(ch)
        if args.action == "ls":

            def repositories(after: str) -> Any:
                return admin.ListRepositories(pb.ListRepositoriesRequest(limit=args.limit, after=after))

            for page in _pages(repositories, follow=not args.limit):
                for name in page.repositories:
                    print(name)
            return 0
        if args.action == "tags":

            def tags(after: str) -> Any:
                return admin.ListTags(pb.ListTagsRequest(repository=args.repository, after=after))

            for page in _pages(tags):
                for tag in page.tags:
                    print(tag)
            return 0
        if args.action == "inspect":
            repo, ref = split_reference(args.reference)
            manifest = admin.InspectManifest(pb.InspectManifestRequest(repository=repo, reference=ref))
            print(manifest.content.decode(errors="replace"))
            return 0
        if args.action == "rm":
            repo, ref = split_reference(args.reference)
            admin.DeleteManifest(pb.DeleteManifestRequest(repository=repo, reference=ref))
            print(f"deleted {repo}{'@' if ref.count(':') else ':'}{ref}")
            return 0
        if args.action == "gc":
            request = pb.GarbageCollectRequest(dry_run=args.dry_run)
            if args.grace is not None:
                request.grace_seconds = args.grace
            result = admin.GarbageCollect(request)
            verb = "would free" if result.dry_run else "freed"
            print(f"marked {result.blobs_marked} blobs; {verb} {result.blobs_swept} blobs, ", end="")
            print(f"{result.bytes_freed} bytes")
            return 0
        usage = admin.Usage(pb.UsageRequest())
        table(
            ("REPOSITORIES", "MANIFESTS", "BLOBS", "BYTES", "UPLOADS"),
            [(usage.repositories, usage.manifests, usage.blobs, usage.bytes, usage.uploads_in_progress)],
        )
        return 0
