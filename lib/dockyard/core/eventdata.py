"""What each event's ``data`` carries: one frozen dataclass per subject (``events.PAYLOADS`` maps them).

The field names are the JSON keys on the wire, so a few are camelCase as docker spells them
(``exitCode``, ``oomKilled``). A field with a default may be left out; every other one is required.
``events.new_event`` checks data against these, so an emitter cannot drift from what consumers read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Payload:
    """The base of every payload type (no fields)."""


# --- registry: the entity is ``repo@digest`` or ``repo:tag`` ------------------------------------------


@dataclass(frozen=True, slots=True)
class ManifestPushed(Payload):
    repository: str
    digest: str
    media_type: str
    size: int
    tag: str  # the tag pushed to, "" for a push by digest
    tags: list[str]  # every tag now pointing at the manifest


@dataclass(frozen=True, slots=True)
class ManifestDeleted(Payload):
    repository: str
    digest: str


@dataclass(frozen=True, slots=True)
class TagChanged(Payload):
    repository: str
    tag: str
    digest: str
    previous: str  # the digest it pointed at before, "" for a new tag


@dataclass(frozen=True, slots=True)
class TagDeleted(Payload):
    repository: str
    tag: str
    digest: str


@dataclass(frozen=True, slots=True)
class BlobMounted(Payload):
    repository: str
    digest: str
    source_repository: str


@dataclass(frozen=True, slots=True)
class GcFinished(Payload):
    dry_run: bool
    deleted_blobs: int
    freed_bytes: int
    marked: int


# --- images in a runtime's local store: the entity is the image id or the reference --------------------


@dataclass(frozen=True, slots=True)
class ImagePulled(Payload):
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ImagePushed(Payload):
    digest: str
    name: str


@dataclass(frozen=True, slots=True)
class ImageImported(Payload):
    name: str


@dataclass(frozen=True, slots=True)
class ImageLoaded(Payload):
    name: str
    tags: list[str]


@dataclass(frozen=True, slots=True)
class ImageTagged(Payload):
    name: str


@dataclass(frozen=True, slots=True)
class ImageUntagged(Payload):
    name: str


@dataclass(frozen=True, slots=True)
class ImageRemoved(Payload):
    name: str
    pruned: bool = False  # removed by prune rather than by rmi


@dataclass(frozen=True, slots=True)
class ImageCommitted(Payload):
    name: str
    comment: str


# --- containers: every one names the container and its image -----------------------------------------


@dataclass(frozen=True, slots=True)
class ContainerFact(Payload):
    id: str
    name: str
    image: str


@dataclass(frozen=True, slots=True)
class ContainerCreated(ContainerFact):
    pass


@dataclass(frozen=True, slots=True)
class ContainerStarted(ContainerFact):
    pid: int


@dataclass(frozen=True, slots=True)
class ContainerDied(ContainerFact):
    exitCode: int | None  # camelCase: the wire key docker uses
    oomKilled: bool


@dataclass(frozen=True, slots=True)
class ContainerStopped(ContainerFact):
    pass


@dataclass(frozen=True, slots=True)
class ContainerKilled(ContainerFact):
    signal: int


@dataclass(frozen=True, slots=True)
class ContainerPaused(ContainerFact):
    pass


@dataclass(frozen=True, slots=True)
class ContainerUnpaused(ContainerFact):
    pass


@dataclass(frozen=True, slots=True)
class ContainerRenamed(ContainerFact):
    oldName: str


@dataclass(frozen=True, slots=True)
class ContainerExec(ContainerFact):
    command: list[str]


@dataclass(frozen=True, slots=True)
class ContainerHealthStatus(ContainerFact):
    status: str  # docker's words: starting, healthy, unhealthy


@dataclass(frozen=True, slots=True)
class ContainerRemoved(ContainerFact):
    pass


@dataclass(frozen=True, slots=True)
class ContainerUpdated(ContainerFact):
    limits: dict[str, Any]  # the new resource limits, as the container record stores them


# --- volumes and networks -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VolumeFact(Payload):
    name: str
    driver: str
    anonymous: bool


@dataclass(frozen=True, slots=True)
class VolumeCreated(VolumeFact):
    pass


@dataclass(frozen=True, slots=True)
class VolumeRemoved(VolumeFact):
    pass


@dataclass(frozen=True, slots=True)
class NetworkFact(Payload):
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class NetworkCreated(NetworkFact):
    subnet: str
    gateway: str


@dataclass(frozen=True, slots=True)
class NetworkRemoved(NetworkFact):
    pass


@dataclass(frozen=True, slots=True)
class NetworkConnected(NetworkFact):
    container: str
    containerName: str
    ip: str


@dataclass(frozen=True, slots=True)
class NetworkDisconnected(NetworkFact):
    container: str
    containerName: str


# --- builds: the entity is the build id --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuildStarted(Payload):
    tags: list[str]
    target: str
    dockerfile: str


@dataclass(frozen=True, slots=True)
class BuildStep(Payload):
    step: str
    index: int
    total: int
    cached: bool
    seconds: float


@dataclass(frozen=True, slots=True)
class BuildFinished(Payload):
    image: str
    tags: list[str]
    steps: int
    cached: int
    seconds: float


@dataclass(frozen=True, slots=True)
class BuildFailed(Payload):
    tags: list[str]
    error: str
    step: str | None = None  # the step that failed, when one did
    output_tail: str | None = None  # the end of that step's output
    exit_code: int | None = None  # of a RUN step that exited non-zero


# --- the platform: the entity is the service name ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceStarted(Payload):
    pid: int


@dataclass(frozen=True, slots=True)
class ServiceStopping(Payload):
    pass
