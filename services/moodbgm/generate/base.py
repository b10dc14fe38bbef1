"""The ``MusicGenerator`` protocol every backend implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from moodbgm.types import MusicBed, Timeline

STYLES: tuple[str, ...] = ("cinematic", "lofi", "electronic", "acoustic")

Progress = Callable[[float], None]
"""Called with the fraction done, 0..1."""


@dataclass(frozen=True)
class GenerateOptions:
    style: str = "cinematic"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"unknown style {self.style!r}; expected one of {', '.join(STYLES)}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


class MusicGenerator(Protocol):
    name: str

    def generate(
        self,
        timeline: Timeline,
        duration: float,
        options: GenerateOptions,
        progress: Progress | None = None,
    ) -> MusicBed:
        """Music for the whole timeline: 48 kHz stereo, exactly ``duration`` seconds."""
        ...
