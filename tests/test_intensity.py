"""A section's intensity reaches the composer as activity (density, voices, drums), not as level, and
its default leaves the score byte for byte as it was before intensity existed."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from moodbgm.config import DEFAULT_SOUNDFONT
from moodbgm.generate.base import STYLES, GenerateOptions
from moodbgm.generate.composer import compose, render, score_to_midi
from moodbgm.generate.composer.events import SectionScore
from moodbgm.types import DEFAULT_INTENSITY, SAMPLE_RATE, Section, Timeline

# MIDI of this timeline at seed 7, computed with the composer before intensity existed (commit 81b6da5)
BEFORE = {
    "cinematic": "272369aed76dca66a9cdb776428a29e5e1af771487e170cbc4a1a30ec48acf80",
    "lofi": "7a0c6c3f212e369b9aea38a7226853cf7a32f5ae76fc3e52e32aa93e7589ff8d",
    "electronic": "e5b1d23115a3337900d0da31e705832a210722f0269e04d3732e9afd261e99c9",
    "acoustic": "4a06ff58600ea01217521001236fd4e2dfd2c9fed64e41e166f695582c9d4c5f",
}


def _three(intensity: float = DEFAULT_INTENSITY) -> Timeline:
    return Timeline(
        40.0,
        (
            Section(0, 12, "joy", 0.7, intensity),
            Section(12, 25, "fear", 0.6, intensity),
            Section(25, 40, "sadness", 0.9, intensity),
        ),
    )


@pytest.mark.parametrize("style", STYLES)
def test_default_intensity_leaves_the_score_bytes_unchanged(style: str) -> None:
    midi = score_to_midi(compose(_three(), 40.0, GenerateOptions(style=style, seed=7)))
    assert hashlib.sha256(midi).hexdigest() == BEFORE[style]


def _first(emotion: str, intensity: float, seed: int = 3) -> SectionScore:
    tl = Timeline(30.0, (Section(0, 15, emotion, 1.0, intensity), Section(15, 30, "neutral")))
    return compose(tl, 30.0, GenerateOptions(seed=seed)).sections[0]


def _activity(sec: SectionScore) -> tuple[float, int, int, int]:
    """Notes per second, drum hits, the most simultaneous voices, the register span (semitones)."""
    notes = [n for p in sec.parts for n in p.notes]
    pitched = [n for p in sec.parts if p.role != "drums" for n in p.notes]
    onsets: dict[float, int] = {}
    for n in pitched:
        onsets[n.start] = onsets.get(n.start, 0) + 1
    drums = sum(len(p.notes) for p in sec.parts if p.role == "drums")
    span = max(n.pitch for n in pitched) - min(n.pitch for n in pitched)
    return len(notes) / sec.plan.duration, drums, max(onsets.values()), span


@pytest.mark.parametrize("emotion", ["neutral", "joy", "sadness", "fear", "anger"])
@pytest.mark.parametrize("seed", [3, 11])
def test_higher_intensity_is_denser_and_more_active(emotion: str, seed: int) -> None:
    low, mid, high = (_activity(_first(emotion, i, seed)) for i in (0.0, DEFAULT_INTENSITY, 1.0))
    assert low[0] < mid[0] < high[0], (low, mid, high)  # note density
    assert high[0] > 1.15 * mid[0]
    assert low[1] <= mid[1] < high[1]  # drum activity (sadness has none until it is intense)
    assert high[2] >= mid[2] >= low[2]  # voices sounding together
    assert high[3] >= mid[3]  # register spread
    # the same tempo, bars and emotion: intensity is not a tempo or a key change
    a, b = _first(emotion, 1.0, seed).plan, _first(emotion, DEFAULT_INTENSITY, seed).plan
    assert (a.tempo, a.bars, a.tonic, a.mode) == (b.tempo, b.bars, b.tonic, b.mode)


def test_intensity_is_reproducible_and_validated() -> None:
    assert _first("joy", 0.8) == _first("joy", 0.8)
    with pytest.raises(ValueError, match="intensity"):
        Section(0, 1, "joy", 1.0, 1.5)


@pytest.mark.skipif(not DEFAULT_SOUNDFONT.is_file(), reason="FluidR3 GM SoundFont not installed")
def test_intensity_is_not_level() -> None:
    """Calm, default and intense sections of one piece stay within 3 LU (issue 12)."""
    import pyloudnorm

    tl = Timeline(
        24.0,
        (Section(0, 8, "joy", 1.0, 0.0), Section(8, 16, "joy", 1.0, 0.5), Section(16, 24, "joy", 1.0, 1.0)),
    )
    score = compose(tl, 24.0, GenerateOptions(seed=4))
    audio = render(score, 24.0)
    meter = pyloudnorm.Meter(SAMPLE_RATE)
    lufs = [
        meter.integrated_loudness(
            audio[round(s.plan.start * SAMPLE_RATE) : round(min(s.plan.end, 24.0) * SAMPLE_RATE)].astype(
                np.float64
            )
        )
        for s in score.sections
    ]
    assert max(lufs) - min(lufs) <= 3.0, lufs
