"""Chords, scales, voicing and key choice (pure functions).

Chords are written as roman numerals relative to the key's tonic, on the major-scale degrees
(I=0, II=2, III=4, IV=5, V=7, VI=9, VII=11 semitones); ``b``/``#`` alter the root; upper case is a
major triad and lower case a minor one; suffixes: ``o`` diminished, ``o7`` diminished seventh,
``ø7`` half-diminished, ``7`` dominant (upper) / minor (lower) seventh, ``maj7``, ``5`` power chord,
``sus2``, ``sus4``, ``add9``, ``+`` augmented. ``bVI`` in C is A-flat major; ``viio7`` is B-D-F-A-flat.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from moodbgm.generate.composer.mapping import SCALES

_DEGREES = {"I": 0, "II": 2, "III": 4, "IV": 5, "V": 7, "VI": 9, "VII": 11}
_ROMAN = re.compile(r"^(b|#)?(VII|VI|IV|V|III|II|I|vii|vi|iv|v|iii|ii|i)(.*)$")
_SUFFIX: dict[str, tuple[int, ...] | None] = {
    "": None,  # triad from the numeral's case
    "o": (0, 3, 6),
    "o7": (0, 3, 6, 9),
    "ø7": (0, 3, 6, 10),
    "5": (0, 7),
    "+": (0, 4, 8),
    "sus2": (0, 2, 7),
    "sus4": (0, 5, 7),
}


@dataclass(frozen=True)
class Chord:
    """A chord relative to the key: ``root`` in semitones above the tonic, ``intervals`` above the root."""

    symbol: str
    root: int
    intervals: tuple[int, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.root < 12 or not self.intervals or self.intervals[0] != 0:
            raise ValueError(f"bad chord {self.symbol!r}")

    def pitch_classes(self, tonic: int) -> tuple[int, ...]:
        """Absolute pitch classes, root first, no duplicates."""
        out: list[int] = []
        for i in self.intervals:
            pc = (tonic + self.root + i) % 12
            if pc not in out:
                out.append(pc)
        return tuple(out)


@lru_cache(maxsize=256)
def parse_chord(symbol: str) -> Chord:
    m = _ROMAN.match(symbol)
    if not m:
        raise ValueError(f"cannot parse chord {symbol!r}")
    accidental, numeral, suffix = m.groups()
    root = (_DEGREES[numeral.upper()] + {"b": -1, "#": 1, None: 0}[accidental]) % 12
    major = numeral.isupper()
    triad = (0, 4, 7) if major else (0, 3, 7)
    if suffix in _SUFFIX:
        intervals = _SUFFIX[suffix] or triad
    elif suffix == "7":
        intervals = (*triad, 10)
    elif suffix == "maj7":
        intervals = (*triad, 11)
    elif suffix == "add9":
        intervals = (*triad, 14)
    else:
        raise ValueError(f"cannot parse chord {symbol!r}: unknown suffix {suffix!r}")
    return Chord(symbol, root, intervals)


def scale_pitches(tonic: int, mode: str, low: int, high: int) -> list[int]:
    """MIDI pitches of the key's scale in ``[low, high]``."""
    pcs = {(tonic + s) % 12 for s in SCALES[mode]}
    return [p for p in range(low, high + 1) if p % 12 in pcs]


def pitches_of(pcs: tuple[int, ...], low: int, high: int) -> list[int]:
    return [p for p in range(low, high + 1) if p % 12 in pcs]


def nearest_pitch(pc: int, target: int) -> int:
    """The pitch of class ``pc`` closest to ``target``."""
    base = target - ((target - pc) % 12)
    return base if target - base <= 6 else base + 12


def voice_chord(
    pcs: tuple[int, ...],
    low: int,
    high: int,
    previous: tuple[int, ...] | None,
    rng: np.random.Generator,
    voices: int = 4,
    spread: int = 3,
) -> tuple[int, ...]:
    """A voicing of ``pcs`` within ``[low, high]`` that moves little from ``previous``.

    The root is always present and every pitch class is used when ``voices`` allows; among the
    ``spread`` smoothest candidates one is drawn at random, so repeated progressions are revoiced.
    """
    pool = pitches_of(pcs, low, high)
    needed = set(pcs[: min(voices, len(pcs))])
    n = min(voices, len(pool))
    candidates: list[tuple[float, tuple[int, ...]]] = []
    centre = (low + high) / 2
    for combo in itertools.combinations(pool, n):
        classes = {p % 12 for p in combo}
        if not needed <= classes or combo[-1] - combo[0] > 16:
            continue
        if any(b - a < 2 for a, b in itertools.pairwise(combo)) and len(pcs) < 5:
            continue
        if previous:
            ref = sorted(previous)
            if len(ref) == len(combo):
                cost = float(sum(abs(a - b) for a, b in zip(combo, ref, strict=True)))
            else:
                cost = abs(sum(combo) / n - sum(ref) / len(ref)) * n
        else:
            cost = abs(sum(combo) / n - centre) * n
        candidates.append((cost, combo))
    if not candidates:  # range too narrow for the rules: stack from the root upwards
        root = nearest_pitch(pcs[0], low + 6)
        return tuple(sorted(nearest_pitch(pc, root + 6) for pc in pcs[:voices]))
    candidates.sort(key=lambda c: (c[0], c[1]))
    pick = int(rng.integers(0, min(spread, len(candidates))))
    return candidates[pick][1]


def choose_key(tonics: tuple[int, ...], previous: int | None, rng: np.random.Generator) -> int:
    """A key centre: one of the emotion's preferred tonics, close on the circle of fifths to ``previous``."""
    if previous is None:
        return int(tonics[int(rng.integers(0, len(tonics)))])

    def fifths(a: int, b: int) -> int:
        d = ((a - b) * 7) % 12  # steps around the circle of fifths
        return min(d, 12 - d)

    weights = np.array([1.0 / (1.0 + fifths(t, previous)) for t in tonics])
    return int(tonics[int(rng.choice(len(tonics), p=weights / weights.sum()))])
