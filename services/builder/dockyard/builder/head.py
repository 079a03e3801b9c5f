"""Where a stage stands between steps: its last stored image and, in memory, what the metadata
steps since then did.

ENV, LABEL, CMD … (and a WORKDIR whose directory exists) change only the config and add a history
entry without a layer, so, as BuildKit does, they store nothing: they make a new ``Head``. An image
is stored where one is needed — a step that makes a layer or runs a container (RUN, COPY, ADD, a
WORKDIR that makes its directory) stores the pending config and history with its own entry, in
one call; a stage's end stores what is left (``steps/metadata.store_head``). A Dockerfile of
10,000 ENV lines is thus one image, not 10,000 images whose configs grow with each.

``ident`` stands for the head in cache keys: the stored image's id while nothing is pending (the
keys a chain without metadata had before), else a digest of that id, the config and the pending
lines — a changed ENV changes the key of every step after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dockyard.builder.cache import step_key
from dockyard.builder.node import Image
from dockyard.builder.steps.context import config_key


@dataclass(frozen=True, slots=True)
class Head:
    image: Image | None  # the last stored image (None: nothing yet, FROM scratch)
    config: dict[str, Any]  # the stage's config section now
    pending: tuple[str, ...] = ()  # history lines of the metadata steps since ``image``, oldest first

    @classmethod
    def of(cls, image: Image | None) -> Head:
        return cls(image, image.config if image is not None else {})

    @property
    def parent(self) -> str:
        """The id of the stored image a step builds on ("" = scratch)."""
        return self.image.id if self.image is not None else ""

    @property
    def config_changed(self) -> bool:
        """Whether the config is not the stored image's (a step must send it)."""
        return self.config != (self.image.config if self.image is not None else {})

    @property
    def stored(self) -> bool:
        """Whether ``image`` is this head: no metadata step since."""
        return not self.pending and not self.config_changed

    def ident(self) -> str:
        """The head in a cache key (see the module docstring)."""
        if self.stored:
            return self.parent
        return step_key("head", self.parent, config_key(self.config), *self.pending)

    def then(self, config: dict[str, Any], line: str) -> Head:
        """After a metadata step: its config, its history line pending."""
        return Head(self.image, config, (*self.pending, line))
