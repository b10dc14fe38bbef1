"""The cue table the score is judged against, and how a measurement is read as a cue.

PROVISIONAL: the composer owns the one cue table (issue 12); until it ships, this one stands in.
Sources: Juslin & Laukka (2003), "Communication of emotions in vocal expression and music
performance", Psychological Bulletin 129(5), Table 11; Gabrielsson & Lindström (2010), "The role of
structure in the musical expression of emotions", Handbook of Music and Emotion, ch. 14.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

CUES = ("tempo", "mode", "pitch", "loudness", "articulation", "brightness", "regularity", "dissonance")


@dataclass(frozen=True)
class CueSpec:
    tempo: tuple[float, float]  # BPM range
    mode: str | None  # major | minor
    pitch: str | None  # low | mid | high
    loudness: str | None  # soft | medium | loud (played dynamics: MIDI velocity)
    articulation: str | None  # staccato | detached | legato
    brightness: str | None  # dark | bright
    regularity: str | None  # regular | irregular
    dissonance: str | None  # consonant | dissonant


PROVISIONAL_TABLE: dict[str, CueSpec] = {
    "joy": CueSpec((105, 140), "major", "high", "medium", "staccato", "bright", "regular", "consonant"),
    "sadness": CueSpec((50, 80), "minor", "low", "soft", "legato", "dark", "regular", None),
    "anger": CueSpec((120, 180), "minor", None, "loud", "detached", "bright", None, "dissonant"),
    "fear": CueSpec((80, 160), "minor", "high", "soft", None, None, "irregular", "dissonant"),
    "surprise": CueSpec((110, 150), "major", "high", "medium", "staccato", "bright", "irregular", None),
    "disgust": CueSpec((60, 100), "minor", "low", "medium", None, "dark", None, "dissonant"),
    "neutral": CueSpec((70, 105), "major", "mid", "soft", "legato", None, "regular", "consonant"),
}


def cue_table() -> Mapping[str, CueSpec]:
    return PROVISIONAL_TABLE


# how a measurement reads as a cue word (the evaluator's thresholds, not the composer's targets)
TEMPO_TOLERANCE = 0.05
PITCH_LOW, PITCH_HIGH = 56.0, 62.0  # mean MIDI pitch: below = low, above = high, 54..64 = mid
VELOCITY_SOFT, VELOCITY_LOUD = 72.0, 82.0  # mean velocity: <= soft, >= loud, 55..95 medium
STACCATO, DETACHED, LEGATO = 0.6, 0.8, 0.85  # duration / IOI
BRIGHT_RATIO = 0.95  # centroid vs the piece's median: bright >= 0.95x, dark <= 1/0.95x
IRREGULAR_CV = 0.6  # IOI coefficient of variation
DISSONANT = -0.45  # Huron-weighted pair dissonance: >= dissonant, < consonant


@dataclass(frozen=True)
class Measured:
    """What ``judge`` needs of one section (see ``symbolic.ScoreFeatures``, ``audio``)."""

    tempo: float
    mode: str | None
    mean_pitch: float
    velocity: float
    articulation: float
    centroid_ratio: float  # section centroid / median section centroid of the piece
    regularity_cv: float
    dissonance: float


def judge(cue: str, want: object, m: Measured) -> bool | None:
    """Whether the section shows ``want`` for ``cue``; None when the cue is unspecified or unmeasurable."""
    if want is None:
        return None
    if cue == "tempo":
        lo, hi = want  # type: ignore[misc]
        return lo * (1 - TEMPO_TOLERANCE) <= m.tempo <= hi * (1 + TEMPO_TOLERANCE)
    if cue == "mode":
        return None if m.mode is None else m.mode == want
    value = {
        "pitch": m.mean_pitch,
        "loudness": m.velocity,
        "articulation": m.articulation,
        "brightness": m.centroid_ratio,
        "regularity": m.regularity_cv,
        "dissonance": m.dissonance,
    }[cue]
    if not math.isfinite(value):
        return None
    tests = {
        ("pitch", "low"): value < PITCH_LOW,
        ("pitch", "mid"): PITCH_LOW - 2 <= value <= PITCH_HIGH + 2,
        ("pitch", "high"): value > PITCH_HIGH,
        ("loudness", "soft"): value <= VELOCITY_SOFT,
        ("loudness", "medium"): 55 <= value <= 95,
        ("loudness", "loud"): value >= VELOCITY_LOUD,
        ("articulation", "staccato"): value <= STACCATO,
        ("articulation", "detached"): value <= DETACHED,
        ("articulation", "legato"): value >= LEGATO,
        ("brightness", "bright"): value >= BRIGHT_RATIO,
        ("brightness", "dark"): value <= 1 / BRIGHT_RATIO,
        ("regularity", "regular"): value < IRREGULAR_CV,
        ("regularity", "irregular"): value >= IRREGULAR_CV,
        ("dissonance", "consonant"): value < DISSONANT,
        ("dissonance", "dissonant"): value >= DISSONANT,
    }
    key = (cue, str(want))
    if key not in tests:
        raise ValueError(f"cue table: {cue}={want!r} is not a value the evaluator can judge")
    return tests[key]
