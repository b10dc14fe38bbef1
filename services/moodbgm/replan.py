"""Re-planning an edited timeline around its locked sections (pure; the editor's "Re-plan" button).

A locked section stays exactly as it is (start, end, emotion, intensity). Every stretch between locked
sections (and before the first, after the last) is planned again by ``timeline.plan_timeline`` from the
phrases inside it, clipped to it, with its scene cuts and the job's planning options: the same optimal
plan the job would get if that stretch were the whole video. The result tiles the video; re-planned
sections have the default intensity, no lock and the job's own take.
"""

from __future__ import annotations

from collections.abc import Sequence

from moodbgm.jobs import JobOptions
from moodbgm.timeline import TimelineOptions, plan_timeline
from moodbgm.types import EmotionScores, Phrase
from moodbgm.versions import SectionEdit

_MIN_PHRASE_S = 0.01  # a phrase clipped to less than this by a locked section is left out


def timeline_options(options: JobOptions) -> TimelineOptions:
    """The planning options of a job (the timeline stage's and the re-plan's)."""
    return TimelineOptions(
        min_section=options.min_section,
        min_confidence=options.min_confidence,
        force_emotion=options.emotion,
    )


def free_spans(sections: Sequence[SectionEdit], duration: float) -> list[tuple[float, float]]:
    """The stretches of ``[0, duration]`` not covered by a locked section, in order."""
    spans, t = [], 0.0
    for s in sections:
        if s.lock:
            if s.start > t + 1e-9:
                spans.append((t, s.start))
            t = s.end
    if duration > t + 1e-9:
        spans.append((t, duration))
    return spans


def replan(
    sections: Sequence[SectionEdit],
    phrases: Sequence[Phrase],
    scores: Sequence[EmotionScores],
    duration: float,
    cuts: Sequence[float],
    options: TimelineOptions,
) -> tuple[SectionEdit, ...]:
    """``sections`` (a valid edit tiling ``[0, duration]``) with every unlocked stretch planned again."""
    if len(phrases) != len(scores):
        raise ValueError(f"replan: {len(phrases)} phrases but {len(scores)} emotion scores")
    planned: list[SectionEdit] = []
    for a, b in free_spans(sections, duration):
        inside = [
            (Phrase(max(p.start, a) - a, min(p.end, b) - a, p.text), sc)
            for p, sc in zip(phrases, scores, strict=True)
            if min(p.end, b) - max(p.start, a) >= _MIN_PHRASE_S
        ]
        span_cuts = [c - a for c in cuts if a < c < b]
        sub = plan_timeline([p for p, _ in inside], [s for _, s in inside], b - a, span_cuts, options)
        for s in sub.sections:
            start = a if s.start == 0.0 else a + s.start
            end = b if s.end == sub.duration else a + s.end
            planned.append(SectionEdit(start, end, s.emotion))
    out = sorted([*planned, *(s for s in sections if s.lock)], key=lambda s: s.start)
    return tuple(out)
