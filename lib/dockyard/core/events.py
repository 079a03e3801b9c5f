"""Lifecycle events: CloudEvents 1.0 JSON documents on ``dockyard.<area>.<action>`` subjects.

Every subject Dockyard publishes is listed here and nowhere else. An event is a fact: it is
emitted after the change it describes is durable, and consumers de-duplicate by ``id``.

The CloudEvents ``type`` is ``io.dockyard.<area>.<action>`` and the NATS subject is
``dockyard.<area>.<action>``; ``subject`` names the entity (a container id, ``repo:tag``...).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from dockyard.core.errors import InvalidArgument

SUBJECT_PREFIX = "dockyard"
TYPE_PREFIX = "io.dockyard"
STREAM_SUBJECTS = f"{SUBJECT_PREFIX}.>"


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


def new_event(
    subject: Subject,
    source: str,
    entity: str,
    data: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Event:
    """Build an event of a known subject about ``entity``."""
    return Event(
        type=subject.cloudevent_type,
        source=source,
        subject=entity,
        data=dict(data or {}),
        labels=dict(labels or {}),
    )


class Publisher(Protocol):
    """Where a service hands its events. Must not block on, or fail because of, the bus."""

    def publish(self, event: Event) -> None: ...


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
