"""The smoothed emotion timeline: properties over random inputs, plus hand-made stories."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moodbgm.timeline import TimelineOptions, load_timeline_override, plan_timeline
from moodbgm.types import EMOTIONS, EmotionScores, Phrase, Timeline

OPTS = TimelineOptions()
TOL = 1e-6


def scores(emotion: str, confidence: float = 0.8) -> EmotionScores:
    rest = (1.0 - confidence) / (len(EMOTIONS) - 1)
    return EmotionScores(tuple(confidence if e == emotion else rest for e in EMOTIONS))


def story(*parts: tuple[float, float, str, float]) -> tuple[list[Phrase], list[EmotionScores]]:
    phrases = [Phrase(a, b, f"{e} words") for a, b, e, _ in parts]
    return phrases, [scores(e, c) for _, _, e, c in parts]


def is_decisive(s: EmotionScores, opts: TimelineOptions = OPTS) -> bool:
    return s.label != "neutral" and s.confidence >= opts.min_confidence


def section_of(timeline: Timeline, phrase: Phrase) -> int:
    mid = (phrase.start + min(phrase.end, timeline.duration)) / 2
    for k, s in enumerate(timeline.sections):
        if mid <= s.end:
            return k
    return len(timeline.sections) - 1


def silences(phrases: list[Phrase]) -> list[tuple[float, float]]:
    """The speech-free gaps between consecutive phrases (sorted by start), where a boundary may fall."""
    out, reach = [], -math.inf
    ordered = sorted(phrases, key=lambda p: (p.start, p.end))
    for a, b in itertools.pairwise(ordered):
        reach = max(reach, a.end)
        if reach <= b.start:
            out.append((reach, b.start))
    return out


# ---------------------------------------------------------------- random inputs

LABEL = st.sampled_from(EMOTIONS)


@st.composite
def phrase_scores(draw: st.DrawFn, mood: str) -> EmotionScores:
    kind = draw(st.sampled_from(["mood", "mood", "mood", "clear", "low", "random"]))
    if kind == "mood":  # the run's emotion, clearly
        return scores(mood, draw(st.floats(0.45, 1.0)))
    if kind == "clear":
        return scores(draw(LABEL), draw(st.floats(0.45, 1.0)))
    if kind == "low":  # below the default threshold
        return EmotionScores.from_probs([draw(st.floats(0.9, 1.1)) for _ in EMOTIONS])
    return EmotionScores.from_probs(np.array([draw(st.floats(0.0, 1.0)) for _ in EMOTIONS]) + 1e-3)


@st.composite
def inputs(draw: st.DrawFn) -> tuple[list[Phrase], list[EmotionScores], float, list[float]]:
    """Runs of phrases sharing a mood (with strays), touching, overlapping or apart; cuts anywhere."""
    t = draw(st.floats(0.0, 5.0))
    phrases, sc = [], []
    for mood in draw(st.lists(LABEL, max_size=5)):
        for _ in range(draw(st.integers(1, 6))):
            length = draw(st.floats(0.1, 8.0))
            phrases.append(Phrase(t, t + length, "x"))
            sc.append(draw(phrase_scores(mood)))
            gap = draw(st.one_of(st.floats(0.0, 6.0), st.floats(-1.0, 0.0), st.just(0.0)))
            t = max(t + 0.05, t + length + gap)  # starts strictly increase
    duration = max(0.5, t + draw(st.floats(-0.5, 10.0)))
    found = [duration * u for u in draw(st.lists(st.floats(-0.1, 1.1), max_size=8))]
    for p in phrases:  # cuts near the ends of phrases: in the silence after it, or just inside it
        found += draw(st.lists(st.floats(-2.0, 3.0).map(lambda d, end=p.end: end + d), max_size=1))
    return phrases, sc, duration, found


@st.composite
def options(draw: st.DrawFn) -> TimelineOptions:
    return TimelineOptions(
        min_section=draw(st.floats(0.5, 12.0)),
        min_confidence=draw(st.floats(0.2, 0.7)),
        switch_cost=draw(st.floats(0.1, 5.0)),
        snap_window=draw(st.floats(0.0, 3.0)),
    )


PROP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROP
@given(inputs(), options())
def test_sections_tile_and_respect_min_length(data, opts):
    phrases, sc, duration, found = data
    tl = plan_timeline(phrases, sc, duration, found, opts)
    assert tl.sections[0].start == 0.0 and tl.sections[-1].end == duration
    for a, b in zip(tl.sections, tl.sections[1:], strict=False):
        assert a.end == b.start
        assert a.emotion != b.emotion
    if duration < opts.min_section:
        assert len(tl.sections) == 1
    for s in tl.sections:
        assert s.duration >= opts.min_section - TOL or len(tl.sections) == 1
        assert 0.0 <= s.confidence <= 1.0
    assert tl.cuts == tuple(sorted({c for c in found if 0 < c < duration}))


@PROP
@given(inputs(), options())
def test_boundaries_fall_in_silence_and_snap_to_cuts(data, opts):
    phrases, sc, duration, found = data
    tl = plan_timeline(phrases, sc, duration, found, opts)
    gaps = silences(phrases)
    for s in tl.sections[1:]:
        b = s.start
        for p in phrases:
            assert not (p.start + TOL < b < p.end - TOL), f"boundary {b} inside phrase {p.start}..{p.end}"
        gap = next(g for g in gaps if g[0] - TOL <= b <= g[1] + TOL)
        inside = [c for c in tl.cuts if gap[0] <= c <= gap[1]]
        near = [c for c in tl.cuts if gap[0] - opts.snap_window <= c <= gap[1] + opts.snap_window]
        if inside:
            assert b in inside
        elif near:
            assert b in gap  # the silence edge nearest the cut


@PROP
@given(inputs(), options())
def test_fill_rule(data, opts):
    """Non-decisive phrases between two phrases of one emotion that are scored with that emotion share
    their section."""
    phrases, sc, duration, found = data
    tl = plan_timeline(phrases, sc, duration, found, opts)
    decisive = [k for k, s in enumerate(sc) if is_decisive(s, opts)]
    for a, c in itertools.pairwise(decisive):
        label = sc[a].label
        if c - a < 2 or sc[c].label != label:
            continue
        sa, sc_ = section_of(tl, phrases[a]), section_of(tl, phrases[c])
        if tl.sections[sa].emotion == label and tl.sections[sc_].emotion == label:
            assert sa == sc_, f"phrases {a}..{c} ({label}) split across sections"


@PROP
@given(inputs(), options())
def test_low_confidence_phrases_decide_nothing(data, opts):
    phrases, sc, duration, found = data
    tl = plan_timeline(phrases, sc, duration, found, opts)
    # a section of a non-neutral emotion always holds a decisive phrase that gives that emotion weight
    for k, s in enumerate(tl.sections):
        if s.emotion == "neutral":
            continue
        members = [i for i, p in enumerate(phrases) if section_of(tl, p) == k]
        support = [i for i in members if is_decisive(sc[i], opts) and sc[i].as_dict()[s.emotion] > 0]
        assert support, f"section {s} has no decisive phrase"
    # and the scores of non-decisive phrases do not matter at all
    flat = EmotionScores.from_probs([1.0] * len(EMOTIONS))
    masked = [s if is_decisive(s, opts) else flat for s in sc]
    spans = [
        (s.start, s.end, s.emotion) for s in plan_timeline(phrases, masked, duration, found, opts).sections
    ]
    assert spans == [(s.start, s.end, s.emotion) for s in tl.sections]


@PROP
@given(inputs(), options())
def test_deterministic_and_order_independent(data, opts):
    phrases, sc, duration, found = data
    tl = plan_timeline(phrases, sc, duration, found, opts)
    assert plan_timeline(phrases, sc, duration, found, opts) == tl
    assert plan_timeline(phrases, sc, duration, list(reversed(found)), opts) == tl
    assert Timeline.from_dict(json.loads(json.dumps(tl.to_dict()))) == tl


# ---------------------------------------------------------------- hand-made stories


def joy_then_sadness() -> tuple[list[Phrase], list[EmotionScores]]:
    return story(
        (0.0, 3.0, "joy", 0.8),
        (3.5, 7.0, "joy", 0.7),
        (7.5, 12.0, "joy", 0.9),
        (13.0, 18.0, "joy", 0.8),
        (20.5, 25.0, "sadness", 0.8),
        (25.5, 30.0, "sadness", 0.7),
        (30.5, 36.0, "sadness", 0.9),
    )


def test_story_splits_in_the_silence_at_the_change():
    phrases, sc = joy_then_sadness()
    tl = plan_timeline(phrases, sc, 40.0)
    assert [s.emotion for s in tl.sections] == ["joy", "sadness"]
    assert 18.0 <= tl.sections[1].start <= 20.5
    assert tl.sections[0].confidence == pytest.approx((3 * 0.8 + 3.5 * 0.7 + 4.5 * 0.9 + 5 * 0.8) / 16)


def test_story_boundary_snaps_to_scene_cut():
    phrases, sc = joy_then_sadness()
    assert plan_timeline(phrases, sc, 40.0, cuts=[5.0, 19.2, 33.0]).sections[1].start == 19.2
    # a cut just inside the last joyful phrase pulls the boundary to that phrase's end, not into it
    assert plan_timeline(phrases, sc, 40.0, cuts=[17.4]).sections[1].start == 18.0
    # a cut too far away is ignored
    far = plan_timeline(phrases, sc, 40.0, cuts=[14.0]).sections[1].start
    assert far == plan_timeline(phrases, sc, 40.0).sections[1].start


def test_short_angry_blip_inside_joy_is_absorbed():
    phrases, sc = story(
        (0.0, 4.0, "joy", 0.8),
        (4.3, 9.0, "joy", 0.8),
        (9.3, 10.3, "anger", 0.95),
        (10.6, 15.0, "joy", 0.8),
        (15.2, 20.0, "joy", 0.8),
    )
    tl = plan_timeline(phrases, sc, 21.0)
    assert [s.emotion for s in tl.sections] == ["joy"]


def test_long_anger_inside_joy_gets_its_own_section():
    phrases, sc = story(
        (0.0, 9.0, "joy", 0.8),
        (9.3, 17.0, "anger", 0.9),
        (17.3, 26.0, "joy", 0.8),
    )
    tl = plan_timeline(phrases, sc, 26.0)
    assert [s.emotion for s in tl.sections] == ["joy", "anger", "joy"]
    assert [s.start for s in tl.sections[1:]] == [9.15, 17.15]


def test_neutral_between_one_emotion_is_filled_but_between_two_stays_neutral():
    filled = story((0.0, 4.0, "joy", 0.8), (4.5, 30.0, "neutral", 0.9), (30.5, 34.0, "joy", 0.8))
    assert [s.emotion for s in plan_timeline(*filled, 35.0).sections] == ["joy"]
    between = story((0.0, 6.0, "joy", 0.8), (6.5, 30.0, "neutral", 0.9), (30.5, 37.0, "sadness", 0.8))
    assert [s.emotion for s in plan_timeline(*between, 38.0).sections] == ["joy", "neutral", "sadness"]


def test_low_confidence_phrase_alone_never_makes_a_section():
    phrases, sc = story(
        (0.0, 10.0, "neutral", 0.9), (10.5, 25.0, "anger", 0.38), (25.5, 40.0, "neutral", 0.9)
    )
    assert [s.emotion for s in plan_timeline(phrases, sc, 40.0).sections] == ["neutral"]
    lowered = TimelineOptions(min_confidence=0.3)
    assert [s.emotion for s in plan_timeline(phrases, sc, 40.0, options=lowered).sections] == [
        "neutral",
        "anger",
        "neutral",
    ]


def test_no_phrases_forced_emotion_and_short_videos():
    tl = plan_timeline([], [], 12.5, cuts=[3.0])
    assert [(s.start, s.end, s.emotion) for s in tl.sections] == [(0.0, 12.5, "neutral")]
    assert tl.cuts == (3.0,)
    phrases, sc = joy_then_sadness()
    forced = plan_timeline(phrases, sc, 40.0, options=TimelineOptions(force_emotion="fear"))
    assert [(s.start, s.end, s.emotion, s.confidence) for s in forced.sections] == [(0.0, 40.0, "fear", 1.0)]
    short = plan_timeline(*story((0.0, 1.0, "joy", 0.6), (1.5, 3.0, "sadness", 0.9)), 3.2)
    assert [s.emotion for s in short.sections] == ["sadness"]


def test_phrases_past_the_end_are_clipped():
    phrases, sc = story((0.0, 8.0, "joy", 0.8), (9.0, 20.0, "sadness", 0.8), (31.0, 33.0, "fear", 0.9))
    tl = plan_timeline(phrases, sc, 30.0)
    assert tl.duration == 30.0 and [s.emotion for s in tl.sections] == ["joy", "sadness"]


def test_thousands_of_phrases():
    rng = np.random.default_rng(7)
    phrases, sc, t = [], [], 0.0
    for _ in range(3000):
        t += rng.uniform(0.0, 1.0)
        length = rng.uniform(0.5, 5.0)
        phrases.append(Phrase(t, t + length, "x"))
        sc.append(EmotionScores.from_probs(rng.dirichlet(np.full(7, 0.3))))
        t += length
    tl = plan_timeline(phrases, sc, t + 1.0, cuts=rng.uniform(0, t, 300).tolist())
    assert 1 < len(tl.sections) < 3000 / 2
    assert min(s.duration for s in tl.sections) >= OPTS.min_section - TOL


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_section": 0.0}, "min_section"),
        ({"min_confidence": 1.5}, "min_confidence"),
        ({"switch_cost": 0.0}, "switch_cost"),
        ({"snap_window": -1.0}, "snap_window"),
        ({"force_emotion": "bliss"}, "unknown emotion"),
        ({"neutral_weight": math.nan}, "neutral_weight"),
    ],
)
def test_options_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TimelineOptions(**kwargs)


def test_plan_rejects_mismatched_inputs():
    phrases, sc = joy_then_sadness()
    with pytest.raises(ValueError, match="7 phrases but 6"):
        plan_timeline(phrases, sc[:-1], 40.0)
    with pytest.raises(ValueError, match="duration"):
        plan_timeline(phrases, sc, 0.0)


# ---------------------------------------------------------------- user overrides


def test_override_round_trips_and_closes_small_slips():
    phrases, sc = joy_then_sadness()
    planned = plan_timeline(phrases, sc, 40.0, cuts=[19.2])
    assert load_timeline_override(json.loads(json.dumps(planned.to_dict())), 40.0) == planned
    edited = {
        "duration": 40.0,
        "sections": [
            {"start": 0.01, "end": 10.0, "emotion": "Joy"},
            {"start": 10.02, "end": 39.98, "emotion": "fear", "confidence": 0.5},
        ],
    }
    tl = load_timeline_override(edited, 40.0)
    assert [(s.start, s.end, s.emotion, s.confidence) for s in tl.sections] == [
        (0.0, 10.02, "joy", 1.0),
        (10.02, 40.0, "fear", 0.5),
    ]


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ([], "empty"),
        ([{"start": 0, "end": 10, "emotion": "joy"}], "last section ends at 10.000"),
        ([{"start": 1, "end": 20, "emotion": "joy"}], "first section starts"),
        (
            [{"start": 0, "end": 8, "emotion": "joy"}, {"start": 9, "end": 20, "emotion": "fear"}],
            "gap of 1.000 s between section 1",
        ),
        (
            [{"start": 0, "end": 12, "emotion": "joy"}, {"start": 9, "end": 20, "emotion": "fear"}],
            "overlap of 3.000 s",
        ),
        ([{"start": 0, "end": 20, "emotion": "bliss"}], "unknown emotion 'bliss'"),
        ([{"start": 0, "end": 20}], "lacks emotion"),
        ([{"start": "zero", "end": 20, "emotion": "joy"}], "start must be a number"),
        ([{"start": 0, "end": 20, "emotion": "joy", "confidence": 2}], "confidence must be in"),
        ([{"start": 5, "end": 0, "emotion": "joy"}], "ends"),
    ],
)
def test_override_errors_say_what_is_wrong(sections, message):
    with pytest.raises(ValueError, match=message):
        load_timeline_override({"sections": sections}, 20.0)


def test_override_rejects_wrong_shape_and_duration():
    with pytest.raises(ValueError, match="'sections' list"):
        load_timeline_override({"segments": []}, 20.0)
    with pytest.raises(ValueError, match="does not match the media"):
        load_timeline_override(
            {"duration": 30, "sections": [{"start": 0, "end": 30, "emotion": "joy"}]}, 20.0
        )
