"""``client.images``: pull, list, inspect, remove."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dockyard.api.images.v1 import images_pb2 as pb
from dockyard.api.images.v1 import images_pb2_grpc
from dockyard.client.calls import Stream, unary
from dockyard.client.types import DiskUsage, ImageInfo, PullProgress
from dockyard.core.errors import Internal


class Images:
    def __init__(self, channel: Any) -> None:
        self._stub = images_pb2_grpc.ImagesStub(channel)

    def pull(
        self,
        reference: str,
        *,
        insecure: bool = False,
        on_progress: Callable[[PullProgress], None] | None = None,
    ) -> ImageInfo:
        """Pull ``reference`` onto the node; ``on_progress`` sees each step. The image pulled."""
        pulled = None
        for message in Stream(
            self._stub.Pull(pb.PullRequest(reference=reference, insecure=insecure)), lambda m: m
        ):
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
