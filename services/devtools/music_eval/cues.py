"""Reading measurements as cues, against the composer's one cue table.

The table (tempo, mode, pitch height, loudness, articulation, brightness, regularity, dissonance per
emotion, after Juslin & Laukka 2003 and Gabrielsson & Lindström 2010) is
``moodbgm.generate.composer.mapping.CUES``; this module only says how a measured section is compared
with it -- the evaluator's tolerances, not targets of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from moodbgm.generate.composer.mapping import CUES as TABLE
from moodbgm.generate.composer.mapping import MAJOR_MODES, Cues

CUE_NAMES = ("tempo", "mode", "pitch", "loudness", "articulation", "brightness", "regularity", "dissonance")

# tolerances: how far a measurement may sit from the table's target and still agree
TEMPO_TOLERANCE = 0.03  # beyond the table's own stretch range
HEIGHT_SEMITONES = 5.0  # melody centre vs the table's height
LOUDNESS_LU = 1.5  # section level relative to the piece's median vs the table's offset
ARTICULATION = 0.2  # sounding fraction
# brightness is judged by order within the piece (absolute centroids depend on the style's instruments):
# the timbre's brightness -- log2 of the spectral centroid over the notes' mean fundamental, so register
# does not count as brightness -- must rank the sections as the table's levels do, within this margin
BRIGHT_OCTAVES = 0.15
LEVEL_RANK = {"low": 0, "mid": 1, "high": 2}
# regularity: IOI coefficient of variation of the accompaniment's parts (0 = a steady pulse)
REGULAR = {"high": (0.0, 0.3), "mid": (0.1, 0.6), "low": (0.3, math.inf)}
# dissonance: Huron-weighted mean pair dissonance (a triad -0.74, a dominant seventh -0.19)
DISSONANT = {"low": (-math.inf, -0.5), "mid": (-0.75, -0.2), "high": (-0.45, math.inf)}


@dataclass(frozen=True)
class Measured:
    """What ``judge`` needs of one section (see ``symbolic.ScoreFeatures`` and ``audio``)."""

    tempo: float
    mode: str | None  # major | minor (Krumhansl–Kessler)
    melody_pitch: float  # mean MIDI pitch of the melody part (nan: no melody)
    loudness: float  # LU relative to the piece's median section
    articulation: float
    brightness: bool | None  # see ``brightness_order``
    regularity_cv: float
    dissonance: float


def table() -> dict[str, Cues]:
    return TABLE


def judge(cues: Cues, m: Measured) -> dict[str, bool | None]:
    """Per cue: True (agrees), False, or None (not measurable in this section)."""

    def within(x: float, lo: float, hi: float) -> bool | None:
        return None if not math.isfinite(x) else bool(lo <= x <= hi)

    lo, hi = cues.tempo_range
    return {
        "tempo": within(m.tempo, lo * (1 - TEMPO_TOLERANCE), hi * (1 + TEMPO_TOLERANCE)),
        "mode": None if m.mode is None else m.mode == ("major" if cues.mode in MAJOR_MODES else "minor"),
        "pitch": within(m.melody_pitch, cues.height - HEIGHT_SEMITONES, cues.height + HEIGHT_SEMITONES),
        "loudness": within(m.loudness, cues.loudness - LOUDNESS_LU, cues.loudness + LOUDNESS_LU),
        "articulation": within(
            m.articulation, cues.articulation - ARTICULATION, cues.articulation + ARTICULATION
        ),
        "brightness": m.brightness,
        "regularity": within(m.regularity_cv, *REGULAR[cues.regularity]),
        "dissonance": within(m.dissonance, *DISSONANT[cues.dissonance]),
    }


def brightness_order(levels: list[str], octaves: list[float]) -> list[bool | None]:
    """Per section: is it at least as bright as every section the table puts lower, and no brighter than
    every section it puts higher? None where no finite section differs in level (nothing to rank)."""
    out: list[bool | None] = []
    for lv, b in zip(levels, octaves, strict=True):
        others = [
            (LEVEL_RANK[o] - LEVEL_RANK[lv], x)
            for o, x in zip(levels, octaves, strict=True)
            if o != lv and math.isfinite(x)
        ]
        if not math.isfinite(b) or not others:
            out.append(None)
            continue
        out.append(
            all(b >= x - BRIGHT_OCTAVES for d, x in others if d < 0)
            and all(b <= x + BRIGHT_OCTAVES for d, x in others if d > 0)
        )
    return out
