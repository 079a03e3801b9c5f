"""An OCI platform (``linux/amd64``, ``linux/arm/v7``): what an image is built for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @classmethod
    def of_config(cls, config: Mapping[str, Any]) -> Platform:
        """An image config document's own platform (its ``os``, ``architecture``, ``variant``)."""
        return cls(
            str(config.get("os", "")), str(config.get("architecture", "")), str(config.get("variant", ""))
        )

    def admits(self, image: Platform) -> bool:
        """Whether an image of ``image``'s platform is one of this: a variant left out takes any."""
        same = (self.os, self.architecture) == (image.os, image.architecture)
        return same and (not self.variant or self.variant == image.variant)


def parse_platform(text: str) -> Platform:
    """``os/arch[/variant]`` (lower-cased); ValueError for anything else."""
    parts = text.strip().lower().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f'"{text}": unknown platform, expected os/arch[/variant]')
    return Platform(*parts)
