"""Fit Riffusion clips to a timeline (pure).

Each section of length ``L`` gets ``ceil(L / clip_s)`` equal slots that tile it. Clips are numbered
across the whole bed and walk through the seeds: clip ``j`` sits ``(j % seed_steps) / seed_steps`` of
the way from seed ``base + j // seed_steps`` to the next one, so consecutive clips share noise and
the texture evolves without seams. Where the emotion changes, the clips nearest the boundary
interpolate the prompt from the old emotion to the new one: a clip centred at ``c`` near a change at
``b`` gets ``alpha = 0.5 + (c - b) / transition_s`` (clipped to [0, 1]), which puts the clips on
either side of the change at about 1/4 and 3/4 with the default ``transition_s = 2 * clip_s``.
Each clip is rendered ``crossfade_s / 2`` beyond both ends of its slot, and neighbours crossfade.

``clip_prompts`` words each clip's endpoints with the shared caption template: emotion, style and
the tempo of the seed music (``SectionTempo``, from the composer's plan) around the clip.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from moodbgm.generate.prompts import caption
from moodbgm.types import Timeline, check_emotion

SEED_STRIDE = 100_003
"""Distance between the seed walks of consecutive user seeds, so they do not share clips."""


@dataclass(frozen=True)
class ClipPlan:
    index: int
    section: int
    start: float  # slot, seconds in the bed
    end: float
    emotion_a: str
    emotion_b: str
    alpha: float  # prompt A -> B
    seed_a: int
    seed_b: int
    seed_alpha: float  # noise of seed A -> seed B
    crossfade_s: float = 0.0

    def __post_init__(self) -> None:
        check_emotion(self.emotion_a)
        check_emotion(self.emotion_b)
        if not (0 <= self.start < self.end):
            raise ValueError(f"ClipPlan: need 0 <= start < end, got {self.start}..{self.end}")
        if not (0.0 <= self.alpha <= 1.0 and 0.0 <= self.seed_alpha < 1.0):
            raise ValueError("ClipPlan: alpha must be in [0, 1] and seed_alpha in [0, 1)")

    @property
    def render_start(self) -> float:
        return self.start - self.crossfade_s / 2

    @property
    def render_end(self) -> float:
        return self.end + self.crossfade_s / 2

    def weight(self, emotion: str) -> float:
        """How much of ``emotion`` the clip's prompt holds (0..1)."""
        return (1.0 - self.alpha) * (self.emotion_a == emotion) + self.alpha * (self.emotion_b == emotion)


def plan_clips(
    timeline: Timeline,
    duration: float,
    clip_s: float = 5.12,
    crossfade_s: float = 0.5,
    seed: int = 0,
    seed_steps: int = 4,
    transition_s: float | None = None,
) -> list[ClipPlan]:
    """Clips that tile ``[0, duration]`` section by section (see the module doc)."""
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be > 0, got {duration}")
    if clip_s <= 0 or crossfade_s < 0 or seed_steps < 1 or seed < 0:
        raise ValueError("need clip_s > 0, crossfade_s >= 0, seed_steps >= 1, seed >= 0")
    transition = 2 * clip_s if transition_s is None else transition_s
    if transition <= 0:
        raise ValueError(f"transition_s must be > 0, got {transition}")

    # sections clipped to the bed (the last one stretched if the timeline is shorter)
    spans: list[tuple[float, float, str]] = []
    for s in timeline.sections:
        start, end = min(s.start, duration), min(s.end, duration)
        if end > start:
            spans.append((start, end, s.emotion))
    if not spans:
        raise ValueError("timeline has no section within the duration")
    last = spans[-1]
    spans[-1] = (last[0], duration, last[2])

    changes = [
        (a_end, a_emo, b_emo)
        for (_, a_end, a_emo), (_, _, b_emo) in itertools.pairwise(spans)
        if a_emo != b_emo
    ]
    base = seed * SEED_STRIDE
    clips: list[ClipPlan] = []
    for si, (start, end, emotion) in enumerate(spans):
        n = max(1, math.ceil((end - start) / clip_s - 1e-9))
        for k in range(n):
            a = start + (end - start) * k / n
            b = end if k == n - 1 else start + (end - start) * (k + 1) / n
            emo_a, emo_b, alpha = _prompt_mix((a + b) / 2, emotion, changes, transition)
            j = len(clips)
            clips.append(
                ClipPlan(
                    index=j, section=si, start=a, end=b, emotion_a=emo_a, emotion_b=emo_b, alpha=alpha,
                    seed_a=base + j // seed_steps, seed_b=base + j // seed_steps + 1,
                    seed_alpha=(j % seed_steps) / seed_steps, crossfade_s=crossfade_s,
                )
            )  # fmt: skip
    return clips


def _prompt_mix(
    center: float, emotion: str, changes: list[tuple[float, str, str]], transition: float
) -> tuple[str, str, float]:
    """(emotion A, emotion B, alpha) for a clip centred at ``center`` inside a section of ``emotion``."""
    if not changes:
        return emotion, emotion, 0.0
    b, before, after = min(changes, key=lambda c: abs(center - c[0]))
    if abs(center - b) >= transition / 2 or emotion not in (before, after):
        return emotion, emotion, 0.0
    return before, after, min(1.0, max(0.0, 0.5 + (center - b) / transition))


@dataclass(frozen=True)
class SectionTempo:
    """Where the seed music plays at ``bpm`` (from the composer's plan), and for which emotion."""

    emotion: str
    start: float
    end: float
    bpm: float


def tempo_for(tempos: Sequence[SectionTempo], emotion: str, t: float) -> float | None:
    """The tempo of ``emotion`` around time ``t``: the nearest section of that emotion (None if none)."""
    found = [s for s in tempos if s.emotion == emotion]
    if not found:
        return None

    def distance(s: SectionTempo) -> float:
        return 0.0 if s.start <= t < s.end else min(abs(t - s.start), abs(t - s.end))

    return min(found, key=distance).bpm


def clip_prompts(
    plan: Sequence[ClipPlan], style: str, tempos: Sequence[SectionTempo] = ()
) -> list[tuple[str, str]]:
    """Prompts A and B of each clip: the shared caption of its emotions, ``style`` and the seed music's
    tempo at the clip (``moodbgm.generate.prompts``: the wording the data-set builder trains with)."""
    out = []
    for c in plan:
        mid = (c.start + c.end) / 2
        out.append(
            (
                caption(c.emotion_a, style, tempo_for(tempos, c.emotion_a, mid)),
                caption(c.emotion_b, style, tempo_for(tempos, c.emotion_b, mid)),
            )
        )
    return out
