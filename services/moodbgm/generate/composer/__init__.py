"""The symbolic music generator: timeline -> score (MIDI) -> FluidSynth audio.

``compose`` plans bar-aligned sections and writes the parts (pure, seeded); ``score_to_midi`` gives
the editable MIDI file; ``render`` plays a score through FluidSynth with the General MIDI SoundFont.
``ComposerGenerator`` ties them together behind the ``MusicGenerator`` protocol. The Riffusion
backend can seed img2img with one section's music by calling ``generate`` on a one-section
``Timeline`` (or ``compose`` + ``render``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from moodbgm.config import DEFAULT_SOUNDFONT
from moodbgm.generate.base import GenerateOptions, Progress
from moodbgm.generate.composer.events import Note, Part, Score, SectionPlan, SectionScore
from moodbgm.generate.composer.midi import score_to_midi
from moodbgm.generate.composer.render import FluidRenderer, RenderOptions, render
from moodbgm.generate.composer.score import compose, plan_sections
from moodbgm.types import SAMPLE_RATE, MusicBed, Timeline

__all__ = [
    "ComposerGenerator",
    "FluidRenderer",
    "Note",
    "Part",
    "RenderOptions",
    "Score",
    "SectionPlan",
    "SectionScore",
    "compose",
    "plan_sections",
    "render",
    "score_to_midi",
]

logger = logging.getLogger(__name__)

_COMPOSE_SHARE = 0.05  # of the progress bar


class ComposerGenerator:
    """``MusicGenerator`` that composes with rules and renders with FluidSynth (CPU only, fast)."""

    name = "composer"

    def __init__(
        self, soundfont: Path = DEFAULT_SOUNDFONT, render_options: RenderOptions | None = None
    ) -> None:
        self.renderer = FluidRenderer(soundfont, render_options or RenderOptions(sample_rate=SAMPLE_RATE))

    def compose(self, timeline: Timeline, duration: float, options: GenerateOptions) -> Score:
        return compose(timeline, duration, options)

    def generate(
        self,
        timeline: Timeline,
        duration: float,
        options: GenerateOptions,
        progress: Progress | None = None,
    ) -> MusicBed:
        if not (math.isfinite(duration) and duration > 0):
            raise ValueError(f"duration must be > 0, got {duration}")
        score = compose(timeline, duration, options)
        midi = score_to_midi(score)  # 0.02 s for the 66 s demo
        logger.info(
            "composed %d sections, %d notes (%s, seed %d)",
            len(score.sections),
            score.note_count(),
            options.style,
            options.seed,
        )
        if progress is not None:
            progress(_COMPOSE_SHARE)

        def on_render(fraction: float) -> None:
            if progress is not None:
                progress(_COMPOSE_SHARE + (1 - _COMPOSE_SHARE) * fraction)

        audio = self.renderer.render(score, duration, on_render)
        return MusicBed(audio, self.renderer.options.sample_rate, midi, score.bar_plan())
