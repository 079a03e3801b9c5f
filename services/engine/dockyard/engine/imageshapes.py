"""Docker's shapes for the image verbs and the legacy build; pure (no I/O), as convert.py is.

Progress streams are docker's JSON messages, one a line: ``{"status": …, "id": …}`` for a pull or
push, ``{"stream": …}`` for a build, ``{"aux": …}`` for a result, and a failure after the status
was sent as ``{"errorDetail": {"message": …}, "error": …}`` (docker's CLI prints it, exits 1).
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
import re
from collections.abc import Sequence
from typing import Any

from dockyard.client.types import (
    BuildProgress,
    HistoryEntry,
    ImageRemoval,
    Pruned,
    PullProgress,
    PushedImage,
)
from dockyard.core.errors import InvalidArgument

Message = dict[str, Any]

_STEP_PREFIX = re.compile(r"^\[[^\]]*\]\s*")


def short_id(image_id: str) -> str:
    """docker's 12 hex of an image id (``sha256:`` dropped)."""
    return image_id.partition(":")[2][:12] if ":" in image_id else image_id[:12]


def with_tag(name: str, tag: str) -> str:
    """``name`` with ``tag`` (a digest goes after ``@``); ``name`` as it is without one."""
    if not tag:
        return name
    return f"{name}@{tag}" if ":" in tag else f"{name}:{tag}"


def familiar_tag(reference: str) -> str:
    """``x`` as docker names it once tagged: ``x:latest`` when it has neither tag nor digest."""
    last = reference.rsplit("/", 1)[-1]
    return reference if ":" in last or "@" in last else f"{reference}:latest"


def error_message(text: str) -> Message:
    return {"errorDetail": {"message": text}, "error": text}


def progress_message(p: PullProgress, image_tag: str = "") -> Message:
    """One pull or push step as docker's JSON message. The platform's whole-image events carry
    no id; docker gives "Pulling from …" the tag's, so ``image_tag`` is it."""
    message: Message = {"status": p.status}
    ident = p.id or (image_tag if p.status.startswith("Pulling from ") else "")
    if ident:
        message["id"] = ident
    if p.total > 0:
        message["progressDetail"] = {"current": p.current, "total": p.total}
    return message


def push_result(tag: str, pushed: PushedImage) -> Message:
    """The push's last message: docker's CLI reads the digest from ``aux``."""
    return {"progressDetail": {}, "aux": {"Tag": tag, "Digest": pushed.digest, "Size": pushed.size}}


def registry_auth(header: str) -> dict[str, Any]:
    """X-Registry-Auth: base64url of a JSON object (``{}`` is ``e30=``); empty is no credentials."""
    if not header.strip():
        return {}
    padded = header.strip() + "=" * (-len(header.strip()) % 4)
    try:
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError):
        raise InvalidArgument("X-Registry-Auth is not base64 of a JSON object") from None
    if not isinstance(decoded, dict):
        raise InvalidArgument("X-Registry-Auth must hold a JSON object")
    return decoded


def removal_items(removal: ImageRemoval) -> list[Message]:
    """``DELETE /images/{name}``: what ``docker rmi`` prints, "Untagged: …" then "Deleted: …"."""
    return [{"Untagged": name} for name in removal.untagged] + [{"Deleted": d} for d in removal.deleted]


def prune_reply(prune: Pruned) -> Message:
    return {
        "ImagesDeleted": [{"Deleted": d} for d in prune.deleted] or None,
        "SpaceReclaimed": prune.space_reclaimed,
    }


def prune_all(filters: Sequence[str]) -> bool:
    """``POST /images/prune``'s filters (``key=value``): ``dangling=false`` (prune -a) prunes every
    unused image, ``dangling=true`` (the default) only untagged ones; other filters are refused."""
    everything = False
    for item in filters:
        key, _, value = item.partition("=")
        if key != "dangling":
            raise InvalidArgument(f"image prune filter {key!r} is not supported (only dangling)")
        if value.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={value}'")
        everything = value.lower() in ("false", "0")
    return everything


def history_items(entries: Sequence[HistoryEntry], image_id: str, tags: Sequence[str]) -> list[Message]:
    """``GET /images/{name}/history``, newest first; a step with no image of its own is "<missing>"."""
    return [
        {
            "Id": e.id or "<missing>",
            "Created": int(e.created.timestamp()) if e.created else 0,
            "CreatedBy": e.created_by,
            "Tags": list(tags) if e.id and e.id == image_id and tags else None,
            "Size": e.size,
            "Comment": e.comment,
        }
        for e in entries
    ]


def json_map(raw: str, name: str) -> dict[str, str]:
    """A query value that is a JSON object of strings (``buildargs``, ``labels``); a null value
    (a build arg given without one) is left out."""
    if not raw:
        return {}
    try:
        decoded = json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidArgument(f"{name} is not JSON: {raw!r}") from None
    if not isinstance(decoded, dict):
        raise InvalidArgument(f"{name} must be a JSON object")
    found: dict[str, str] = {}
    for key, value in decoded.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidArgument(f"{name}: the value of {key!r} must be a string")
        found[str(key)] = value
    return found


def commit_changes(config: Any) -> list[str]:
    """``POST /commit``'s body (a container Config, or null) as Dockerfile instructions."""
    if config is None:
        return []
    if not isinstance(config, dict):
        raise InvalidArgument("the commit body must be a JSON object (a container config) or null")
    changes: list[str] = []
    for key, instruction in (("Entrypoint", "ENTRYPOINT"), ("Cmd", "CMD")):
        value = config.get(key)
        if isinstance(value, str):
            value = [value]
        if value:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidArgument(f"{key} must be a list of strings")
            changes.append(f"{instruction} {json.dumps(value)}")
    for entry in config.get("Env") or []:
        if not isinstance(entry, str) or "=" not in entry:
            raise InvalidArgument(f"bad Env entry {entry!r}: want KEY=VALUE")
        changes.append(f"ENV {entry}")
    labels = config.get("Labels") or {}
    if not isinstance(labels, dict):
        raise InvalidArgument("Labels must be an object")
    changes += [f"LABEL {json.dumps(str(k))}={json.dumps(str(v))}" for k, v in labels.items()]
    for key, instruction in (("WorkingDir", "WORKDIR"), ("User", "USER")):
        if value := config.get(key):
            changes.append(f"{instruction} {value}")
    for port in config.get("ExposedPorts") or {}:
        changes.append(f"EXPOSE {port}")
    return changes


def dockerfile_member(name: str) -> str:
    """The Dockerfile's path inside the context tar, as the tar names it (``./`` and ``a/../``
    folded); InvalidArgument for one that leaves the context."""
    cleaned = posixpath.normpath(name or "Dockerfile")
    if cleaned.startswith("/") or cleaned == ".." or cleaned.startswith("../"):
        raise InvalidArgument(f"the Dockerfile {name!r} is outside the build context")
    return cleaned


def build_messages(event: BuildProgress) -> list[Message]:
    """One build event as the legacy builder's stream lines: "Step 2/3 : RUN make" when a step
    starts, " ---> Using cache" for a hit, a RUN step's output as it comes."""
    if event.status == "started":
        text = _STEP_PREFIX.sub("", event.step)
        where = f"{event.index}/{event.total}" if event.total else str(event.index)
        return [{"stream": f"Step {where} : {text}\n"}]
    if event.status == "cached":
        return [{"stream": " ---> Using cache\n"}]
    if event.status == "log" and event.log:
        return [{"stream": event.log.decode(errors="replace")}]
    if event.status == "warning":
        return [{"stream": f"[WARNING]: {event.error}\n"}]
    return []


def build_result(image_id: str, tags: Sequence[str], quiet: bool = False) -> list[Message]:
    """The end of a successful legacy build: the id for the CLI (``aux``), then docker's lines."""
    if quiet:
        return [{"aux": {"ID": image_id}}, {"stream": f"{image_id}\n"}]
    return [
        {"aux": {"ID": image_id}},
        {"stream": f"Successfully built {short_id(image_id)}\n"},
        *({"stream": f"Successfully tagged {familiar_tag(tag)}\n"} for tag in tags),
    ]


def loaded_lines(tags_by_image: Sequence[tuple[str, Sequence[str]]]) -> list[Message]:
    """``POST /images/load``'s stream: "Loaded image: name:tag" each, or the id of an untagged one."""
    lines: list[Message] = []
    for image_id, tags in tags_by_image:
        if tags:
            lines += [{"stream": f"Loaded image: {tag}\n"} for tag in tags]
        else:
            lines.append({"stream": f"Loaded image ID: {image_id}\n"})
    return lines
