"""Re-planning an edit around its locked sections: locked ones stay exactly, the rest is planned again
from the phrases' emotions and the result tiles the video (a valid edit)."""

from __future__ import annotations

import pytest

from moodbgm.replan import free_spans, replan
from moodbgm.timeline import TimelineOptions, plan_timeline
from moodbgm.types import EMOTIONS, EmotionScores, Phrase
from moodbgm.versions import SectionEdit, validate_edit

OPTS = TimelineOptions(min_section=5.0)


def _scores(emotion: str, p: float = 0.85) -> EmotionScores:
    rest = (1.0 - p) / (len(EMOTIONS) - 1)
    return EmotionScores(tuple(p if e == emotion else rest for e in EMOTIONS))


def _story() -> tuple[list[Phrase], list[EmotionScores]]:
    """Joy 0-11 s, sadness 13-26 s, anger 28-40 s (two-second phrases with half-second gaps)."""
    phrases, scores = [], []
    for a, b, emotion in ((0.0, 11.0, "joy"), (13.0, 26.0, "sadness"), (28.0, 40.0, "anger")):
        t = a
        while t + 2.0 <= b + 1e-9:
            phrases.append(Phrase(t, t + 2.0, emotion))
            scores.append(_scores(emotion))
            t += 2.5
    return phrases, scores


def _edit(*spans: tuple[float, float, str, bool]) -> tuple[SectionEdit, ...]:
    return tuple(SectionEdit(a, b, e, 0.8 if lock else 0.5, lock) for a, b, e, lock in spans)


def _check_tiles(out: tuple[SectionEdit, ...], duration: float) -> None:
    data = {"sections": [s.to_dict() for s in out]}
    assert validate_edit(data, duration, OPTS.min_section) == out  # tiles, min length, known emotions


def test_locked_sections_stay_and_the_rest_is_planned_again() -> None:
    phrases, scores = _story()
    edit = _edit((0, 20, "neutral", False), (20, 30, "fear", True), (30, 40, "neutral", False))
    out = replan(edit, phrases, scores, 40.0, [], OPTS)
    assert edit[1] in out  # exactly: start, end, emotion, intensity, lock
    _check_tiles(out, 40.0)
    before = [s for s in out if s.end <= 20.0]
    after = [s for s in out if s.start >= 30.0]
    assert [s.emotion for s in before] == ["joy", "sadness"]
    assert [s.emotion for s in after] == ["anger"] and after[0].end == 40.0
    assert all(not s.lock and s.intensity == 0.5 and s.take == 0 for s in before + after)
    # the stretch before the lock is what planning gives for that stretch alone
    inside = [(p, sc) for p, sc in zip(phrases, scores, strict=True) if p.start < 20.0]
    clipped = [Phrase(p.start, min(p.end, 20.0), p.text) for p, _ in inside]
    alone = plan_timeline(clipped, [sc for _, sc in inside], 20.0, [], OPTS)
    assert [(s.start, s.end, s.emotion) for s in before] == [
        (s.start, s.end, s.emotion) for s in alone.sections
    ]


def test_nothing_locked_is_the_jobs_plan_and_everything_locked_is_kept() -> None:
    phrases, scores = _story()
    edit = _edit((0, 25, "neutral", False), (25, 40, "fear", False))
    out = replan(edit, phrases, scores, 40.0, [27.1], OPTS)
    whole = plan_timeline(phrases, scores, 40.0, [27.1], OPTS)
    assert [(s.start, s.end, s.emotion) for s in out] == [(s.start, s.end, s.emotion) for s in whole.sections]
    locked = _edit((0, 25, "neutral", True), (25, 40, "fear", True))
    assert replan(locked, phrases, scores, 40.0, [], OPTS) == locked
    assert free_spans(locked, 40.0) == []


def test_lengths_must_agree() -> None:
    phrases, scores = _story()
    with pytest.raises(ValueError, match="emotion scores"):
        replan(_edit((0, 40, "joy", False)), phrases, scores[:-1], 40.0, [], OPTS)
