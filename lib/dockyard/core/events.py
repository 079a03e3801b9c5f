"""Lifecycle events: CloudEvents 1.0 JSON documents on ``dockyard.<area>.<action>`` subjects.

Every subject Dockyard publishes is listed here and nowhere else. An event is a fact: it is
emitted after the change it describes is durable, and consumers de-duplicate by ``id``.

The CloudEvents ``type`` is ``io.dockyard.<area>.<action>`` and the NATS subject is
``dockyard.<area>.<action>``; ``subject`` names the entity (a container id, ``repo:tag``...).
What each subject's ``data`` carries is a payload type in ``eventdata`` (``PAYLOADS``); ``new_event``
is the one place that checks it, so every emitter speaks the schema consumers read.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from dockyard.core import eventdata as ed
from dockyard.core.errors import InvalidArgument

SUBJECT_PREFIX = "dockyard"
TYPE_PREFIX = "io.dockyard"
STREAM_SUBJECTS = f"{SUBJECT_PREFIX}.>"

P = TypeVar("P", bound=ed.Payload)


class Subject(StrEnum):
    """Every event subject Dockyard publishes."""

    # registry
    REGISTRY_MANIFEST_PUSHED = "dockyard.registry.manifest_pushed"
    REGISTRY_MANIFEST_DELETED = "dockyard.registry.manifest_deleted"
    REGISTRY_TAG_CHANGED = "dockyard.registry.tag_changed"
    REGISTRY_TAG_DELETED = "dockyard.registry.tag_deleted"
    REGISTRY_BLOB_MOUNTED = "dockyard.registry.blob_mounted"
    REGISTRY_GC_FINISHED = "dockyard.registry.gc_finished"
    # images (runtime's local store)
    IMAGE_PULLED = "dockyard.image.pulled"
    IMAGE_PUSHED = "dockyard.image.pushed"
    IMAGE_IMPORTED = "dockyard.image.imported"
    IMAGE_LOADED = "dockyard.image.loaded"
    IMAGE_TAGGED = "dockyard.image.tagged"
    IMAGE_UNTAGGED = "dockyard.image.untagged"
    IMAGE_REMOVED = "dockyard.image.removed"
    IMAGE_COMMITTED = "dockyard.image.committed"
    # containers
    CONTAINER_CREATED = "dockyard.container.created"
    CONTAINER_STARTED = "dockyard.container.started"
    CONTAINER_DIED = "dockyard.container.died"
    CONTAINER_STOPPED = "dockyard.container.stopped"
    CONTAINER_KILLED = "dockyard.container.killed"
    CONTAINER_PAUSED = "dockyard.container.paused"
    CONTAINER_UNPAUSED = "dockyard.container.unpaused"
    CONTAINER_RENAMED = "dockyard.container.renamed"
    CONTAINER_EXEC = "dockyard.container.exec"
    CONTAINER_HEALTH_STATUS = "dockyard.container.health_status"  # a health check's status changed
    CONTAINER_REMOVED = "dockyard.container.removed"
    CONTAINER_UPDATED = "dockyard.container.updated"  # resource limits changed (docker update)
    # volumes (runtime)
    VOLUME_CREATED = "dockyard.volume.created"
    VOLUME_REMOVED = "dockyard.volume.removed"
    # networks (runtime; user-defined bridge networks)
    NETWORK_CREATED = "dockyard.network.created"
    NETWORK_REMOVED = "dockyard.network.removed"
    NETWORK_CONNECTED = "dockyard.network.connected"
    NETWORK_DISCONNECTED = "dockyard.network.disconnected"
    # builds
    BUILD_STARTED = "dockyard.build.started"
    BUILD_STEP = "dockyard.build.step"  # a step done or taken from the cache
    BUILD_FINISHED = "dockyard.build.finished"
    BUILD_FAILED = "dockyard.build.failed"
    # the platform itself
    SERVICE_STARTED = "dockyard.service.started"
    SERVICE_STOPPING = "dockyard.service.stopping"

    @property
    def area(self) -> str:
        return self.value.split(".")[1]

    @property
    def action(self) -> str:
        return self.value.split(".")[2]

    @property
    def cloudevent_type(self) -> str:
        return f"{TYPE_PREFIX}.{self.area}.{self.action}"


@dataclass(frozen=True, slots=True)
class Event:
    """One CloudEvents 1.0 event.

    ``source`` is the emitting service instance (``/dockyard/registry/<host>``), ``subject``
    the entity the event is about, ``data`` a JSON object. ``labels`` are free-form and
    filterable (``--filter label=k=v``).
    """

    type: str
    source: str
    subject: str
    data: Mapping[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="microseconds"))
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def area(self) -> str:
        return self.type.split(".")[2]

    @property
    def action(self) -> str:
        return self.type.split(".")[3]

    @property
    def nats_subject(self) -> str:
        return f"{SUBJECT_PREFIX}.{self.area}.{self.action}"

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "time": self.time,
            "datacontenttype": "application/json",
            "data": dict(self.data),
        }
        if self.labels:
            doc["dockyardlabels"] = dict(self.labels)
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Event:
        """Parse a CloudEvents JSON document; raises InvalidArgument when it is not one."""
        try:
            doc = json.loads(raw)
            if doc.get("specversion") != "1.0":
                raise InvalidArgument("not a CloudEvents 1.0 document")
            event_type = doc["type"]
            if not event_type.startswith(TYPE_PREFIX + ".") or event_type.count(".") != 3:
                raise InvalidArgument(f"not a dockyard event type: {event_type!r}")
            return cls(
                type=event_type,
                source=doc["source"],
                subject=doc.get("subject", ""),
                data=doc.get("data") or {},
                id=doc["id"],
                time=doc["time"],
                labels=doc.get("dockyardlabels") or {},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidArgument(f"malformed event: {exc}") from exc

    @property
    def timestamp(self) -> datetime:
        return datetime.fromisoformat(self.time)

    def payload(self, kind: builtins.type[P]) -> P:  # builtins: the field ``type`` shadows it
        """``data`` as ``kind``, the payload type of this event's subject (``event.payload(ContainerDied)``).

        Raises InvalidArgument when ``kind`` is not this subject's type or a required field is absent.
        Fields ``kind`` does not know are ignored: an event from a newer emitter still reads.
        """
        try:
            subject = Subject(self.nats_subject)
        except ValueError:
            raise InvalidArgument(f"no payload type for {self.type!r}: not a subject we know") from None
        if PAYLOADS[subject] is not kind:
            raise InvalidArgument(
                f"{subject.value} carries {PAYLOADS[subject].__name__}, not {kind.__name__}"
            )
        missing = sorted(_required(kind) - self.data.keys())
        if missing:
            raise InvalidArgument(f"{subject.value} event {self.id} lacks {', '.join(missing)}")
        known = {f.name for f in dataclasses.fields(kind)}
        return kind(**{k: v for k, v in self.data.items() if k in known})


# What ``data`` carries for each subject; a test checks that every subject has one.
PAYLOADS: Mapping[Subject, type[ed.Payload]] = {
    Subject.REGISTRY_MANIFEST_PUSHED: ed.ManifestPushed,
    Subject.REGISTRY_MANIFEST_DELETED: ed.ManifestDeleted,
    Subject.REGISTRY_TAG_CHANGED: ed.TagChanged,
    Subject.REGISTRY_TAG_DELETED: ed.TagDeleted,
    Subject.REGISTRY_BLOB_MOUNTED: ed.BlobMounted,
    Subject.REGISTRY_GC_FINISHED: ed.GcFinished,
    Subject.IMAGE_PULLED: ed.ImagePulled,
    Subject.IMAGE_PUSHED: ed.ImagePushed,
    Subject.IMAGE_IMPORTED: ed.ImageImported,
    Subject.IMAGE_LOADED: ed.ImageLoaded,
    Subject.IMAGE_TAGGED: ed.ImageTagged,
    Subject.IMAGE_UNTAGGED: ed.ImageUntagged,
    Subject.IMAGE_REMOVED: ed.ImageRemoved,
    Subject.IMAGE_COMMITTED: ed.ImageCommitted,
    Subject.CONTAINER_CREATED: ed.ContainerCreated,
    Subject.CONTAINER_STARTED: ed.ContainerStarted,
    Subject.CONTAINER_DIED: ed.ContainerDied,
    Subject.CONTAINER_STOPPED: ed.ContainerStopped,
    Subject.CONTAINER_KILLED: ed.ContainerKilled,
    Subject.CONTAINER_PAUSED: ed.ContainerPaused,
    Subject.CONTAINER_UNPAUSED: ed.ContainerUnpaused,
    Subject.CONTAINER_RENAMED: ed.ContainerRenamed,
    Subject.CONTAINER_EXEC: ed.ContainerExec,
    Subject.CONTAINER_HEALTH_STATUS: ed.ContainerHealthStatus,
    Subject.CONTAINER_REMOVED: ed.ContainerRemoved,
    Subject.CONTAINER_UPDATED: ed.ContainerUpdated,
    Subject.VOLUME_CREATED: ed.VolumeCreated,
    Subject.VOLUME_REMOVED: ed.VolumeRemoved,
    Subject.NETWORK_CREATED: ed.NetworkCreated,
    Subject.NETWORK_REMOVED: ed.NetworkRemoved,
    Subject.NETWORK_CONNECTED: ed.NetworkConnected,
    Subject.NETWORK_DISCONNECTED: ed.NetworkDisconnected,
    Subject.BUILD_STARTED: ed.BuildStarted,
    Subject.BUILD_STEP: ed.BuildStep,
    Subject.BUILD_FINISHED: ed.BuildFinished,
    Subject.BUILD_FAILED: ed.BuildFailed,
    Subject.SERVICE_STARTED: ed.ServiceStarted,
    Subject.SERVICE_STOPPING: ed.ServiceStopping,
}


class PayloadMismatch(TypeError):
    """An emitter built data that is not its subject's payload type: a bug in the emitter, not bad input."""


def new_event(
    subject: Subject,
    source: str,
    entity: str,
    data: Mapping[str, Any] | ed.Payload | None = None,
    labels: Mapping[str, str] | None = None,
) -> Event:
    """Build an event of a known subject about ``entity``.

    ``data`` is the subject's payload type (``PAYLOADS``), or a mapping with exactly its fields:
    raises PayloadMismatch for an unknown field or a missing required one.
    """
    return Event(
        type=subject.cloudevent_type,
        source=source,
        subject=entity,
        data=checked_data(subject, data),
        labels=dict(labels or {}),
    )


def checked_data(subject: Subject, data: Mapping[str, Any] | ed.Payload | None) -> dict[str, Any]:
    """``data`` as the JSON object an event of ``subject`` carries, checked against its payload type."""
    kind = PAYLOADS[subject]
    if isinstance(data, ed.Payload):
        if type(data) is not kind:
            raise PayloadMismatch(f"{subject.value} carries {kind.__name__}, not {type(data).__name__}")
        return dataclasses.asdict(data)
    doc = dict(data or {})
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(doc.keys() - known)
    missing = sorted(_required(kind) - doc.keys())
    if unknown or missing:
        wrong = [f"unknown field(s) {', '.join(unknown)}" if unknown else "",
                 f"missing required field(s) {', '.join(missing)}" if missing else ""]  # fmt: skip
        raise PayloadMismatch(
            f"{subject.value} data does not match {kind.__name__}: {'; '.join(filter(None, wrong))}"
        )
    return doc


def _required(kind: type[ed.Payload]) -> set[str]:
    return {
        f.name
        for f in dataclasses.fields(kind)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }


class Publisher(Protocol):
    """Where a service hands its events. Must not block on, or fail because of, the bus."""

    def publish(self, event: Event) -> None: ...


class Subscriber(Protocol):
    """Where automation reads events: those ``want`` matches, in the order they were published.

    From ``since`` on when given, else only events published after the call; with ``follow`` it
    waits for more until the caller stops iterating, else it ends after the last stored one.
    Delivery is at least once: de-duplicate by ``Event.id``. Read data with ``Event.payload``.
    """

    def subscribe(
        self, want: EventFilter, *, since: datetime | None = None, follow: bool = True
    ) -> AsyncIterator[Event]: ...


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What a subscriber wants, docker-events style: each non-empty set must match (OR inside a set).

    ``types`` match the area (``container``) or the full action (``container.started``);
    ``actions`` the action alone; ``entities`` the CloudEvents subject; ``labels`` ``k`` or ``k=v``.
    """

    types: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()
    entities: frozenset[str] = frozenset()
    labels: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, pairs: list[str]) -> EventFilter:
        """Parse ``k=v`` strings as given to ``dockyard events --filter``."""
        buckets: dict[str, set[str]] = {"type": set(), "action": set(), "entity": set(), "label": set()}
        aliases = {"event": "action", "container": "entity", "image": "entity", "id": "entity"}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            key = aliases.get(key.strip(), key.strip())
            if not sep or not value or key not in buckets:
                raise InvalidArgument(
                    f"bad filter {pair!r}: want type=, action=, entity= or label= followed by a value"
                )
            buckets[key].add(value.strip())
        return cls(
            types=frozenset(buckets["type"]),
            actions=frozenset(buckets["action"]),
            entities=frozenset(buckets["entity"]),
            labels=frozenset(buckets["label"]),
        )

    def matches(self, event: Event) -> bool:
        if self.types and not (event.area in self.types or f"{event.area}.{event.action}" in self.types):
            return False
        if self.actions and event.action not in self.actions:
            return False
        if self.entities and event.subject not in self.entities:
            return False
        return not self.labels or any(_label_matches(event.labels, want) for want in self.labels)


def _label_matches(labels: Mapping[str, str], want: str) -> bool:
    key, sep, value = want.partition("=")
    return key in labels and (not sep or labels[key] == value)
