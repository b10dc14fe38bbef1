"""Phrases and their emotions (plus scene cuts) -> a smoothed timeline of emotion sections.

Pure planning: no I/O, no models. ``plan_timeline`` is one exact optimisation, not a stack of rules.

Model
-----
Phrase ``i`` has a weight ``w_i = max(duration_i, weight_floor)`` seconds and an *evidence* vector
``a_i`` over the seven emotions. A phrase is *decisive* when its label is not ``neutral`` and its
confidence is at least ``min_confidence``; it then says ``a_i(e) = w_i * p_i(e)``: the expected number of
seconds a section of emotion ``e`` agrees with it (so evidence is weighted by duration and confidence).
The shipped classifier's scores are temperature-calibrated (README, Emotion classifier), so ``p_i(e)``
is the measured probability that ``e`` is right and this expectation is literal; ``min_confidence``
(0.40) is likewise a probability: out of fold, 74 % of the phrases it lets decide are right.
A non-decisive phrase (neutral, or below the threshold) decides nothing; its evidence depends only on
its context, never on its own scores:

* *bracketed* -- the nearest decisive phrases before and after it share one label: evidence 0 for every
  emotion (the fill rule: it takes the emotion around it);
* otherwise (between two different emotions, or before the first / after the last decisive phrase):
  ``a_i(neutral) = neutral_weight * w_i`` and 0 for the other emotions.

A timeline is a split of the phrase sequence into contiguous segments, each with one emotion. Its score
is the summed evidence of every phrase for its segment's emotion minus ``switch_cost`` per boundary.
Boundaries may only fall in a silence between phrases (never inside one), and each silence has one
fixed boundary position chosen *before* optimising: the scene cut inside the silence nearest the
natural position (or, failing that, the silence edge nearest a cut within ``snap_window`` of it), else
``max(middle of the silence, end of the silence - lead_in)``. Speech-free stretches thus belong to a
neighbour, and a section's length is known exactly, so ``min_section`` is a *hard* constraint.

Consequences (property-tested): a run of neutral/low-confidence phrases between two phrases of one
emotion that end up in sections of that emotion is never split off (doing so costs two switches and
gains nothing); a section of a non-neutral emotion always contains a decisive phrase (otherwise merging
it into a neighbour is strictly better); changing the scores of low-confidence phrases changes nothing.

Dynamic programme
-----------------
Candidate boundaries ``b_k`` (``b_0 = 0``, ``b_n = duration``) sit between phrases ``k-1`` and ``k``.
With prefix sums ``P_k(e)`` of evidence, ``F_j(e)`` is the best score of phrases ``[0, j)`` whose last
segment ``[i, j)`` has emotion ``e``::

    F_j(e) = P_j(e) + max_{i : b_j - b_i >= min_section} G_i(e)
    G_0(e) = 0,    G_i(e) = max_e' F_i(e') - switch_cost - P_i(e)

``b`` is non-decreasing, so the admissible ``i`` for increasing ``j`` form a growing prefix: a running
maximum of ``G`` makes the whole programme ``O(n * 7)``. (Allowing ``e' = e`` is harmless: two adjacent
segments of one emotion always lose to their merge.) Ties go to the earliest boundary and to
``neutral`` first, so the result is deterministic. When the video is shorter than ``min_section`` the
whole video is one section.

Section confidence is the duration-weighted mean score of the section's emotion over its phrases (1.0 for
a section without phrases, i.e. no speech, and for ``force_emotion``). ``Timeline.cuts`` holds every scene
cut inside ``(0, duration)``, whether or not a boundary snapped to it, so the chart can draw them.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from moodbgm.types import DEFAULT_INTENSITY, EMOTIONS, EmotionScores, Phrase, Section, Timeline, check_emotion

logger = logging.getLogger(__name__)

_NEUTRAL = EMOTIONS.index("neutral")
# internal column order: neutral first, so that ties resolve to neutral
_ORDER = np.array([_NEUTRAL] + [k for k in range(len(EMOTIONS)) if k != _NEUTRAL])
_EPS = 1e-9


@dataclass(frozen=True)
class TimelineOptions:
    """How the timeline is smoothed. Times in seconds; evidence in 'seconds of agreement'."""

    min_section: float = 5.0  # hard lower bound on a section's length
    min_confidence: float = 0.40  # a phrase below this decides no emotion
    switch_cost: float = 1.5  # evidence a change of emotion must pay for
    snap_window: float = 1.5  # cuts this close to a silence attract its boundary
    force_emotion: str | None = None  # one section of this emotion, ignoring the phrases
    neutral_weight: float = 0.5  # neutral evidence per second of unbracketed non-decisive speech
    lead_in: float = 1.0  # in a long silence, the new emotion starts this long before the speech
    weight_floor: float = 0.25  # the least weight of a phrase, however short

    def __post_init__(self) -> None:
        for name in (
            "min_section",
            "min_confidence",
            "switch_cost",
            "snap_window",
            "neutral_weight",
            "lead_in",
            "weight_floor",
        ):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"TimelineOptions: {name} must be finite and >= 0, got {value}")
        if self.min_section <= 0:
            raise ValueError(f"TimelineOptions: min_section must be > 0, got {self.min_section}")
        if self.switch_cost <= 0:
            raise ValueError(f"TimelineOptions: switch_cost must be > 0, got {self.switch_cost}")
        if self.min_confidence > 1:
            raise ValueError(f"TimelineOptions: min_confidence must be <= 1, got {self.min_confidence}")
        if self.force_emotion is not None:
            check_emotion(self.force_emotion)


def plan_timeline(
    phrases: Sequence[Phrase],
    scores: Sequence[EmotionScores],
    duration: float,
    cuts: Sequence[float] = (),
    options: TimelineOptions = TimelineOptions(),
) -> Timeline:
    """Sections tiling ``[0, duration]`` that follow the phrases' emotions (see the module docstring)."""
    if len(phrases) != len(scores):
        raise ValueError(f"plan_timeline: {len(phrases)} phrases but {len(scores)} emotion scores")
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"plan_timeline: duration must be > 0, got {duration}")
    clean_cuts = _clean_cuts(cuts, duration)
    if options.force_emotion is not None:
        return Timeline(duration, (Section(0.0, duration, options.force_emotion, 1.0),), clean_cuts)

    order = sorted(range(len(phrases)), key=lambda k: (phrases[k].start, phrases[k].end))
    starts = np.array([min(phrases[k].start, duration) for k in order], dtype=np.float64)
    ends = np.array([min(phrases[k].end, duration) for k in order], dtype=np.float64)
    late = sum(1 for p in phrases if p.end > duration + 0.5)
    if late:
        logger.warning("%d phrase(s) end after the media's duration %.2f s; clipped", late, duration)
    probs = np.array([scores[k].scores for k in order], dtype=np.float64).reshape(len(order), len(EMOTIONS))
    if len(order) == 0:
        return Timeline(duration, (Section(0.0, duration, "neutral", 1.0),), clean_cuts)

    weights = np.maximum(ends - starts, options.weight_floor)
    evidence = _evidence(probs, weights, options)[:, _ORDER]
    n = len(order)
    if duration < options.min_section:
        segments = [(0, n, int(np.argmax(evidence.sum(axis=0))))]
        bounds = np.array([0.0] + [math.nan] * (n - 1) + [duration])
    else:
        bounds = _candidate_bounds(starts, ends, duration, clean_cuts, options)
        segments = _optimise(evidence, bounds, options)

    sections = []
    for i, j, col in segments:
        emotion = int(_ORDER[col])
        w = weights[i:j]
        confidence = float(np.dot(w, probs[i:j, emotion]) / w.sum())
        sections.append(Section(float(bounds[i]), float(bounds[j]), EMOTIONS[emotion], min(1.0, confidence)))
    return Timeline(duration, tuple(sections), clean_cuts)


def _clean_cuts(cuts: Sequence[float], duration: float) -> tuple[float, ...]:
    return tuple(sorted({float(c) for c in cuts if math.isfinite(c) and 0.0 < c < duration}))


def _evidence(probs: np.ndarray, weights: np.ndarray, options: TimelineOptions) -> np.ndarray:
    """Per-phrase evidence ``(n, 7)`` in ``EMOTIONS`` order (see the module docstring)."""
    labels = probs.argmax(axis=1)
    decisive = (labels != _NEUTRAL) & (probs.max(axis=1) >= options.min_confidence)
    n = len(labels)
    left = np.full(n, -1)
    right = np.full(n, -1)
    last = -1
    for k in range(n):
        left[k] = last
        if decisive[k]:
            last = int(labels[k])
    last = -1
    for k in range(n - 1, -1, -1):
        right[k] = last
        if decisive[k]:
            last = int(labels[k])
    bracketed = (left >= 0) & (left == right)
    evidence = np.zeros_like(probs)
    evidence[decisive] = probs[decisive] * weights[decisive, None]
    loose = ~decisive & ~bracketed
    evidence[loose, _NEUTRAL] = options.neutral_weight * weights[loose]
    return evidence


def _candidate_bounds(
    starts: np.ndarray, ends: np.ndarray, duration: float, cuts: tuple[float, ...], options: TimelineOptions
) -> np.ndarray:
    """``b_k`` for ``k = 0..n``: the boundary between phrases ``k-1`` and ``k``; NaN where none may fall."""
    n = len(starts)
    bounds = np.full(n + 1, math.nan)
    bounds[0], bounds[n] = 0.0, duration
    reach = np.maximum.accumulate(ends)  # the latest end of phrases 0..k
    for k in range(1, n):
        g0, g1 = float(reach[k - 1]), float(starts[k])
        if g0 <= g1:
            bounds[k] = _place_boundary(g0, g1, cuts, options)
    return bounds


def _place_boundary(g0: float, g1: float, cuts: tuple[float, ...], options: TimelineOptions) -> float:
    """Where in the silence ``[g0, g1]`` the music changes, snapped to a scene cut when one is near."""
    natural = max(g0 + (g1 - g0) / 2, g1 - options.lead_in)
    inside = cuts[bisect.bisect_left(cuts, g0) : bisect.bisect_right(cuts, g1)]
    if inside:
        return min(inside, key=lambda c: abs(c - natural))
    w = options.snap_window
    near = cuts[bisect.bisect_left(cuts, g0 - w) : bisect.bisect_right(cuts, g1 + w)]
    if near:
        nearest = min(near, key=lambda c: g0 - c if c < g0 else c - g1)
        return g0 if nearest < g0 else g1
    return natural


def _optimise(
    evidence: np.ndarray, bounds: np.ndarray, options: TimelineOptions
) -> list[tuple[int, int, int]]:
    """The segmental DP: ``[(i, j, column)]`` segments covering phrases ``0..n``, in order."""
    n, m = evidence.shape
    prefix = np.vstack([np.zeros(m), np.cumsum(evidence, axis=0)])
    valid = [k for k in range(n + 1) if not math.isnan(bounds[k])]
    best_f = np.full((n + 1, m), -math.inf)
    best_total = np.full(n + 1, -math.inf)
    back = np.full((n + 1, m), -1, dtype=np.int64)
    run_g = np.full(m, -math.inf)  # running max over admissible i of G_i(e)
    run_i = np.full(m, -1, dtype=np.int64)
    best_total[0] = 0.0
    p = 0  # next index in `valid` to admit
    for j in valid[1:]:
        limit = bounds[j] - options.min_section + _EPS
        while p < len(valid) and valid[p] < j and bounds[valid[p]] <= limit:
            i = valid[p]
            if best_total[i] > -math.inf:
                cost = 0.0 if i == 0 else options.switch_cost
                g = best_total[i] - cost - prefix[i]
                better = g > run_g
                run_g[better] = g[better]
                run_i[better] = i
            p += 1
        if not np.any(np.isfinite(run_g)):
            continue
        best_f[j] = prefix[j] + run_g
        back[j] = run_i
        best_total[j] = best_f[j].max()
    if not math.isfinite(best_total[n]):  # cannot happen when duration >= min_section; keep it loud
        raise ValueError("plan_timeline: no split satisfies min_section")
    segments = []
    j, col = n, int(np.argmax(best_f[n]))
    while j > 0:
        i = int(back[j, col])
        segments.append((i, j, col))
        j, col = i, (int(np.argmax(best_f[i])) if i > 0 else -1)
    segments.reverse()
    return segments


def load_timeline_override(data: Mapping[str, Any], duration: float, tolerance: float = 0.05) -> Timeline:
    """A user-edited ``timeline.json`` as a ``Timeline`` over ``[0, duration]``.

    Sections must be in order and tile ``[0, duration]``: gaps, overlaps or ends further than
    ``tolerance`` seconds off raise a ``ValueError`` that names the section; smaller slips are closed.
    """
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"timeline override: duration must be > 0, got {duration}")
    if not isinstance(data, Mapping) or not isinstance(data.get("sections"), list):
        raise ValueError("timeline override: expected an object with a 'sections' list")
    raw = data["sections"]
    if not raw:
        raise ValueError("timeline override: 'sections' is empty")
    if "duration" in data:
        stated = _number(data["duration"], "duration")
        if abs(stated - duration) > tolerance:
            raise ValueError(
                f"timeline override: duration {stated:.3f} s does not match the media ({duration:.3f} s)"
            )
    parsed: list[tuple[float, float, str, float, float]] = []
    for k, item in enumerate(raw, start=1):
        if not isinstance(item, Mapping):
            raise ValueError(f"timeline override: section {k} is not an object")
        missing = [key for key in ("start", "end", "emotion") if key not in item]
        if missing:
            raise ValueError(f"timeline override: section {k} lacks {', '.join(missing)}")
        start = _number(item["start"], f"section {k} start")
        end = _number(item["end"], f"section {k} end")
        emotion = str(item["emotion"]).strip().lower()
        if emotion not in EMOTIONS:
            raise ValueError(
                f"timeline override: section {k} has unknown emotion {item['emotion']!r}; "
                f"expected one of {', '.join(EMOTIONS)}"
            )
        confidence = _number(item.get("confidence", 1.0), f"section {k} confidence")
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"timeline override: section {k} confidence must be in [0, 1], got {confidence}")
        intensity = _number(item.get("intensity", DEFAULT_INTENSITY), f"section {k} intensity")
        if not 0.0 <= intensity <= 1.0:
            raise ValueError(f"timeline override: section {k} intensity must be in [0, 1], got {intensity}")
        if end <= start:
            raise ValueError(
                f"timeline override: section {k} ends ({end:.3f}) before it starts ({start:.3f})"
            )
        parsed.append((start, end, emotion, confidence, intensity))
    if abs(parsed[0][0]) > tolerance:
        raise ValueError(f"timeline override: the first section starts at {parsed[0][0]:.3f} s, not 0")
    if abs(parsed[-1][1] - duration) > tolerance:
        raise ValueError(
            f"timeline override: the last section ends at {parsed[-1][1]:.3f} s, "
            f"not at the media's end ({duration:.3f} s)"
        )
    for k in range(1, len(parsed)):
        prev_end, start = parsed[k - 1][1], parsed[k][0]
        if abs(start - prev_end) > tolerance:
            kind = "gap" if start > prev_end else "overlap"
            raise ValueError(
                f"timeline override: {kind} of {abs(start - prev_end):.3f} s between section {k} "
                f"(ends {prev_end:.3f}) and section {k + 1} (starts {start:.3f})"
            )
    edges = [0.0] + [p[0] for p in parsed[1:]] + [duration]
    sections = []
    for k, (_, _, emotion, confidence, intensity) in enumerate(parsed):
        if edges[k + 1] <= edges[k]:
            raise ValueError(f"timeline override: section {k + 1} is empty once aligned to the media")
        sections.append(Section(edges[k], edges[k + 1], emotion, confidence, intensity))
    cuts = data.get("cuts", [])
    if not isinstance(cuts, list):
        raise ValueError("timeline override: 'cuts' must be a list of times")
    return Timeline(duration, tuple(sections), _clean_cuts([_number(c, "cut") for c in cuts], duration))


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"timeline override: {what} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"timeline override: {what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"timeline override: {what} must be finite, got {value!r}")
    return number
