"""``dockyard registry``: the registry's admin API through the gateway.

``dockyard registry credentials`` prints the login of the platform's registry (which ``dockyard
up`` makes, and only the platform's user can read on disk) to a member of the platform's group,
for clients that talk to the registry's HTTP side themselves::

    skopeo copy --dest-creds dockyard:PASSWORD oci-archive:x.tar docker://127.0.0.1:5000/team/x:1
    dockyard registry credentials --authfile auth.json        # merged in, 0600
    skopeo copy --authfile auth.json …;  podman push --authfile auth.json …  (or REGISTRY_AUTH_FILE)
    dockyard registry credentials --format json | jq -r .password |
        podman login -u dockyard --password-stdin --tls-verify=false 127.0.0.1:5000
"""

from __future__ import annotations

import argparse
import base64
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
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
    creds = sub.add_parser(
        "credentials", help="the login for the registry's HTTP side (skopeo, podman, dockyard login)"
    )
    creds.add_argument("--format", choices=("text", "json"), default="text")
    creds.add_argument(
        "--authfile",
        metavar="FILE",
        help="merge the login into FILE (docker/containers auth.json, kept 0600) instead of printing it: "
        "then skopeo/podman --authfile FILE, or REGISTRY_AUTH_FILE=FILE",
    )


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


def merge_authfile(path: Path, registry: str, username: str, password: str) -> None:
    """Put ``registry``'s login into the auth.json at ``path`` (made 0600), keeping every other entry."""
    from dockyard.core.errors import FailedPrecondition

    try:
        doc = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        doc = {}
    except (OSError, ValueError) as exc:
        raise FailedPrecondition(f"cannot read {path} as an auth file: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("auths", {}), dict):
        raise FailedPrecondition(f"{path} is not an auth file: want {{'auths': {{...}}}}")
    auth = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    doc.setdefault("auths", {})[registry] = {"auth": auth}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)


def _credentials(admin: Any, args: argparse.Namespace) -> int:
    from dockyard.api.registry.v1 import registry_pb2 as pb
    from dockyard.cli.output import emit_json

    login = admin.GetCredentials(pb.GetCredentialsRequest())
    if args.authfile:
        merge_authfile(Path(args.authfile), login.registry, login.username, login.password)
        print(
            f"login for {login.registry} written to {args.authfile} "
            f"(skopeo/podman --authfile {args.authfile})"
        )
        return 0
    if args.format == "json":
        emit_json(
            {
                "registry": login.registry,
                "username": login.username,
                "password": login.password,
                "auth": login.auth,
                "anonymous": login.anonymous,
            }
        )
        return 0
    print(f"registry   {login.registry}   (auth {login.auth}, anonymous: {login.anonymous or 'nothing'})")
    print(f"username   {login.username}")
    print(f"password   {login.password}")
    print(f"skopeo     --dest-creds {login.username}:PASSWORD (or --creds, --src-creds), --tls-verify=false")
    print("podman     --authfile FILE: dockyard registry credentials --authfile FILE")
    return 0


def run(args: argparse.Namespace) -> int:
    from dockyard.api.registry.v1 import registry_pb2 as pb
    from dockyard.api.registry.v1 import registry_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.cli.output import table

    with channel(args.host) as ch:
        admin = registry_pb2_grpc.RegistryAdminStub(ch)
        if args.action == "credentials":
            return _credentials(admin, args)
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
