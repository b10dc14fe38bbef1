"""plan_clips: counts, coverage, seed walk continuity, prompt interpolation at emotion changes."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import timeline
from moodbgm.generate.riffusion.planning import ClipPlan, plan_clips
from moodbgm.types import EMOTIONS, Timeline


@st.composite
def timelines(draw: st.DrawFn) -> Timeline:
    n = draw(st.integers(1, 6))
    lengths = draw(st.lists(st.floats(0.5, 30.0), min_size=n, max_size=n))
    emotions = draw(st.lists(st.sampled_from(EMOTIONS), min_size=n, max_size=n))
    return timeline(*zip(lengths, emotions, strict=True))


@settings(max_examples=60, deadline=None)
@given(tl=timelines(), seed=st.integers(0, 50))
def test_counts_coverage_and_seed_walk(tl: Timeline, seed: int) -> None:
    clips = plan_clips(tl, tl.duration, clip_s=5.12, seed=seed)
    for si, s in enumerate(tl.sections):
        mine = [c for c in clips if c.section == si]
        assert len(mine) == math.ceil(s.duration / 5.12 - 1e-9)
        assert mine[0].start == pytest.approx(s.start) and mine[-1].end == pytest.approx(s.end)
        assert all(c.end - c.start <= 5.12 + 1e-9 for c in mine)
    # slots tile [0, duration] in order
    assert clips[0].start == 0 and clips[-1].end == pytest.approx(tl.duration)
    for a, b in itertools.pairwise(clips):
        assert a.end == pytest.approx(b.start)
        # the noise walk never jumps: the same pair a step further on, or the next pair from its start
        if b.seed_a == a.seed_a:
            assert b.seed_alpha == pytest.approx(a.seed_alpha + 0.25)
        else:
            assert (b.seed_a, b.seed_alpha) == (a.seed_b, 0.0) and a.seed_alpha == pytest.approx(0.75)
    assert [c.index for c in clips] == list(range(len(clips)))
    assert len({(c.seed_a, c.seed_alpha) for c in clips}) == len(clips)  # no clip repeats another


def test_emotion_change_interpolates_prompt_over_the_boundary() -> None:
    tl = timeline((15.0, "joy"), (15.0, "sadness"))
    clips = plan_clips(tl, tl.duration)
    weights = [c.weight("sadness") for c in clips]
    assert weights == sorted(weights)  # joy -> sadness, monotonic
    assert weights[0] == 0.0 and weights[-1] == 1.0
    before = [c for c in clips if c.end <= 15.0][-1]
    after = next(c for c in clips if c.start >= 15.0)
    for c in (before, after):
        assert (c.emotion_a, c.emotion_b) == ("joy", "sadness")
    assert 0 < before.alpha < 0.5 < after.alpha < 1
    far = [c for c in clips if c.end <= 5.0 or c.start >= 25.0]
    assert far and all(c.emotion_a == c.emotion_b for c in far)


def test_same_emotion_neighbours_do_not_interpolate() -> None:
    tl = timeline((6.0, "fear"), (6.0, "fear"))
    assert all(c.emotion_a == c.emotion_b == "fear" and c.alpha == 0 for c in plan_clips(tl, tl.duration))


def test_render_windows_overlap_by_the_crossfade() -> None:
    tl = timeline((12.0, "joy"))
    clips = plan_clips(tl, 12.0, crossfade_s=0.5)
    for a, b in itertools.pairwise(clips):
        assert a.render_end - b.render_start == pytest.approx(0.5)
    assert all(c.render_end - c.render_start <= 5.12 + 0.5 + 1e-9 for c in clips)


def test_duration_differs_from_timeline() -> None:
    tl = timeline((4.0, "joy"), (4.0, "anger"))
    longer = plan_clips(tl, 10.0)
    assert longer[-1].end == 10.0 and longer[-1].emotion_b == "anger"
    shorter = plan_clips(tl, 3.0)
    assert len(shorter) == 1 and shorter[0].end == 3.0


def test_seeds_differ_between_user_seeds() -> None:
    tl = timeline((20.0, "neutral"))
    a = {c.seed_a for c in plan_clips(tl, 20.0, seed=0)}
    b = {c.seed_a for c in plan_clips(tl, 20.0, seed=1)}
    assert not a & b


def test_validation() -> None:
    tl = timeline((5.0, "joy"))
    with pytest.raises(ValueError):
        plan_clips(tl, 0.0)
    with pytest.raises(ValueError):
        plan_clips(tl, 5.0, clip_s=0)
    with pytest.raises(ValueError):
        ClipPlan(0, 0, 1.0, 1.0, "joy", "joy", 0.0, 0, 1, 0.0)
