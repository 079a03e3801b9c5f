"""``client.images``: pull, list, inspect, remove; push, tag, history, prune; save, load, import.

Archives stream both ways in chunks (``save`` yields them, ``load`` and ``import_tar`` take an
iterable of them): an image is never held in memory whole."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from dockyard.api.images.v1 import images_pb2 as pb
from dockyard.api.images.v1 import images_pb2_grpc
from dockyard.client.calls import Stream, unary
from dockyard.client.types import (
    DiskUsage,
    HistoryEntry,
    ImageInfo,
    ImageRemoval,
    Pruned,
    PullProgress,
    PushedImage,
)
from dockyard.core.errors import Internal, InvalidArgument
from dockyard.core.oci.platform import parse_platform


class Images:
    def __init__(self, channel: Any) -> None:
        self._stub = images_pb2_grpc.ImagesStub(channel)

    def pull(
        self,
        reference: str,
        *,
        insecure: bool = False,
        platform: str = "",
        on_progress: Callable[[PullProgress], None] | None = None,
    ) -> ImageInfo:
        """Pull ``reference`` onto the node (``platform``: ``os/arch[/variant]`` of an index, else
        the node's); ``on_progress`` sees each step. The image pulled."""
        request = pb.PullRequest(reference=reference, insecure=insecure)
        if platform:
            try:
                wanted = parse_platform(platform)
            except ValueError as exc:
                raise InvalidArgument(f"invalid platform {exc}") from None
            request.platform.os, request.platform.architecture = wanted.os, wanted.architecture
            request.platform.variant = wanted.variant
        pulled = None
        for message in Stream(self._stub.Pull(request), lambda m: m):
            if message.HasField("progress") and on_progress is not None:
                on_progress(PullProgress.from_pb(message.progress))
            if message.HasField("image"):
                pulled = ImageInfo.from_pb(message.image)
        if pulled is None:
            raise Internal(f"the pull of {reference} ended without an image")
        return pulled

    def get(self, reference: str) -> ImageInfo:
        """One image by name, id or id prefix (NotFound, reason NO_SUCH_IMAGE, if none)."""
        return ImageInfo.from_pb(unary(self._stub.Inspect, pb.InspectImageRequest(reference=reference)))

    def remove(self, reference: str, *, force: bool = False) -> list[str]:
        """Untag (and delete, when nothing else names it) an image; what was deleted."""
        reply = unary(self._stub.Remove, pb.RemoveImageRequest(reference=reference, force=force))
        return list(reply.deleted)

    def list(self, *, all: bool = False, filters: tuple[str, ...] = ()) -> list[ImageInfo]:
        """docker's ``images``: intermediates only with ``all``; ``filters`` are its ``-f`` keys
        (``dangling=true``, ``reference=team/*``, ``label=k=v``, ``before=``, ``since=``)."""
        found: list[ImageInfo] = []
        token = ""
        while True:
            request = pb.ListImagesRequest(all=all, filters=filters, page_token=token)
            page = unary(self._stub.List, request)
            found += [ImageInfo.from_pb(i) for i in page.images]
            if not (token := page.next_page_token):
                return found

    def disk_usage(self) -> DiskUsage:
        """What the node's images, containers and volumes take on disk (``system df``)."""
        return DiskUsage.from_pb(unary(self._stub.DiskUsage, pb.DiskUsageRequest()))

    def push(
        self,
        reference: str,
        *,
        insecure: bool = False,
        on_progress: Callable[[PullProgress], None] | None = None,
    ) -> PushedImage:
        """Push ``reference`` (it names its registry) from the node; ``on_progress`` sees each step."""
        pushed = None
        for message in Stream(
            self._stub.Push(pb.PushRequest(reference=reference, insecure=insecure)), lambda m: m
        ):
            if message.HasField("progress") and on_progress is not None:
                on_progress(PullProgress.from_pb(message.progress))
            if message.HasField("manifest"):
                m = message.manifest
                pushed = PushedImage(m.digest, m.size, m.media_type)
        if pushed is None:
            raise Internal(f"the push of {reference} ended without a manifest")
        return pushed

    def tag(self, source: str, target: str) -> None:
        """Give the image ``source`` (a name or an id prefix) the name ``target`` too."""
        unary(self._stub.Tag, pb.TagRequest(source=source, target=target))

    def remove_detailed(self, reference: str, *, force: bool = False) -> ImageRemoval:
        """As ``remove``, and also the names the image lost (docker rmi's "Untagged:" lines)."""
        reply = unary(self._stub.Remove, pb.RemoveImageRequest(reference=reference, force=force))
        return ImageRemoval(tuple(reply.untagged), tuple(reply.deleted))

    def prune(self, *, all: bool = False) -> Pruned:
        """Delete dangling images (``all``: every image no container uses)."""
        reply = unary(self._stub.Prune, pb.PruneImagesRequest(all=all))
        return Pruned(tuple(reply.deleted), reply.space_reclaimed)

    def history(self, reference: str) -> builtins.list[HistoryEntry]:
        reply = unary(self._stub.History, pb.HistoryRequest(reference=reference))
        return [HistoryEntry.from_pb(e) for e in reply.entries]

    def save(self, references: Sequence[str], *, format: str = "oci") -> Stream[bytes]:
        """The images as one tar, in chunks: ``oci`` (an image layout) or ``docker-archive``."""
        request = pb.SaveRequest(references=list(references), format=format)
        return Stream(self._stub.Save(request), lambda chunk: bytes(chunk.data))

    def load(self, chunks: Iterable[bytes]) -> builtins.list[ImageInfo]:
        """Images from a tar (an OCI layout or a docker-archive) read from ``chunks``."""
        reply = unary(self._stub.Load, (pb.LoadChunk(data=block) for block in chunks))
        return [ImageInfo.from_pb(i) for i in reply.images]

    def import_tar(
        self, chunks: Iterable[bytes], reference: str = "", *, changes: Sequence[str] = (), message: str = ""
    ) -> ImageInfo:
        """A one-layer image from a rootfs tar read from ``chunks`` (docker import), named ``reference``."""

        def requests() -> Iterable[Any]:
            yield pb.ImportChunk(reference=reference, changes=list(changes), message=message)
            for block in chunks:
                yield pb.ImportChunk(data=block)

        return ImageInfo.from_pb(unary(self._stub.Import, requests()))
