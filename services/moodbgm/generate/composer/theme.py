"""The job's theme: a 4-bar idea drawn from the seed, and the transformations that vary it (pure).

A ``Theme`` is written in scale degrees (0 = tonic, 7 = the octave above, negative below) over four
4/4 bars: a 2-bar motif and its answer (the motif's rhythm, sequenced onto the third bar's chord and
closed on a chord tone), a bass line (chord roots with passing or fifth notes) and a harmonic rhythm
(one chord degree per bar). Degrees make it key- and mode-free: ``realise`` puts it in any key and
mode, so the same theme sounds in major for joy and in Phrygian for anger.

Transformations (classical motivic development): ``invert`` (mirror the intervals), ``scale_time``
(augmentation x2 for sadness, diminution x0.5 for anger and fear), ``fragment`` (the head of the
motif), ``sequence`` (transpose by scale steps), ``displace`` (shift the rhythm), ``leap`` (octave
displacement, for surprise) and ``counter_line`` (a slow line of chord tones in contrary motion).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from moodbgm.generate.composer.harmony import Chord, nearest_pitch, parse_chord
from moodbgm.generate.composer.mapping import SCALES

THEME_BARS = 4
THEME_BEATS = 4 * THEME_BARS  # the theme is written in 4/4
_HARMONIES: tuple[tuple[int, int, int, int], ...] = (
    (0, 3, 4, 0),
    (0, 5, 3, 4),
    (0, 4, 5, 3),
    (0, 3, 0, 4),
    (0, 5, 1, 4),
    (0, 2, 3, 4),
    (0, 3, 5, 4),
)
_CELLS: tuple[tuple[float, ...], ...] = (  # 2-beat rhythm cells
    (1.0, 1.0),
    (1.5, 0.5),
    (0.5, 0.5, 1.0),
    (1.0, 0.5, 0.5),
    (0.5, 1.0, 0.5),
    (0.75, 0.25, 1.0),
)
_ENDINGS: tuple[tuple[float, ...], ...] = ((2.0,), (1.5, 0.5), (1.0, 1.0))
_BASS_STYLES = ("root", "fifth", "walk")
_NUMERALS = ("I", "II", "III", "IV", "V", "VI", "VII")
_MAJOR = SCALES["major"]

# emotion -> theme chord degree -> chord symbol replacing the mode's own triad (the colour of the
# cue table's dissonance column: bII, the tritone bV and dim7 for the negative, high-arousal ones)
CHORD_COLOURS: dict[str, dict[int, str]] = {
    "anger": {1: "bII5", 4: "bV5", 6: "bVII5"},
    "fear": {1: "bII", 4: "viio7", 6: "viio7"},
    "disgust": {1: "bIImaj7", 3: "iv7", 6: "bVII"},
    "sadness": {3: "iv7", 6: "bVII"},
    "neutral": {4: "Vsus4"},
    "joy": {6: "V"},
    "surprise": {1: "II", 5: "II"},  # the raised 4th of Lydian, as II
}


@dataclass(frozen=True, slots=True)
class TNote:
    """A theme note: ``onset``/``length`` in beats from the phrase start, ``degree`` a scale step."""

    onset: float
    length: float
    degree: int


@dataclass(frozen=True)
class Theme:
    melody: tuple[TNote, ...]
    bass: tuple[TNote, ...]
    harmony: tuple[int, ...]  # chord degree (0..6) of each 4/4 bar

    def __post_init__(self) -> None:
        if len(self.harmony) != THEME_BARS or not self.melody or not self.bass:
            raise ValueError("Theme: needs a melody, a bass line and one chord per bar for 4 bars")


def _chord_tones(degree: int) -> tuple[int, ...]:
    return tuple((degree + k) % 7 for k in (0, 2, 4))


def _nearest_tone(prev: int, tones: tuple[int, ...], rng: np.random.Generator, reach: int = 4) -> int:
    """The degree nearest ``prev`` (within ``reach``) whose class is in ``tones``; ties at random."""
    options = [d for d in range(prev - reach, prev + reach + 1) if d % 7 in tones and d != prev]
    options.sort(key=lambda d: (abs(d - prev), d))
    best = [d for d in options if abs(d - prev) == abs(options[0] - prev)]
    return int(best[int(rng.integers(0, len(best)))])


def make_theme(seed: int) -> Theme:
    """The seed's theme (deterministic)."""
    rng = np.random.default_rng([seed, 0x7E3E])
    harmony = _HARMONIES[int(rng.integers(0, len(_HARMONIES)))]
    first = _CELLS[int(rng.integers(0, len(_CELLS)))]
    cells = [first, _CELLS[int(rng.integers(0, len(_CELLS)))], first]  # the head returns: a motif
    cells.append(_ENDINGS[int(rng.integers(0, len(_ENDINGS)))])
    rhythm: list[tuple[float, float]] = []
    t = 0.0
    for cell in cells:
        for d in cell:
            rhythm.append((t, d))
            t += d
    degree = int(rng.choice([0, 2, 4]))
    motif: list[TNote] = []
    for i, (onset, length) in enumerate(rhythm):
        bar = int(onset // 4)
        tones = _chord_tones(harmony[bar])
        if i > 0:
            strong = abs(onset - round(onset)) < 1e-9 and round(onset) % 2 == 0
            if strong:
                degree = _nearest_tone(degree, tones, rng)
            else:  # a step, rising in the first bar and falling in the second (an arch)
                up = onset < 4
                if rng.random() < 0.25:
                    up = not up
                degree += 1 if up else -1
        degree = int(np.clip(degree, -3, 9))
        motif.append(TNote(onset, length, degree))
    # the answer: the motif sequenced onto bar 3's chord, closing on a chord tone of bar 4's
    shift = (harmony[2] - harmony[0] + 3) % 7 - 3
    answer = [TNote(n.onset + 8, n.length, n.degree + shift) for n in motif]
    last = answer[-1]
    answer[-1] = TNote(last.onset, last.length, _nearest_tone(last.degree, _chord_tones(harmony[3]), rng, 5))
    if last.degree % 7 in _chord_tones(harmony[3]):
        answer[-1] = last
    bass_style = _BASS_STYLES[int(rng.integers(0, len(_BASS_STYLES)))]
    bass: list[TNote] = []
    for bar, chord in enumerate(harmony):
        root = chord - 7 if chord > 3 else chord
        nxt = harmony[(bar + 1) % THEME_BARS]
        if bass_style == "root":
            bass.append(TNote(bar * 4, 4.0, root))
        elif bass_style == "fifth":
            bass += [TNote(bar * 4, 2.0, root), TNote(bar * 4 + 2, 2.0, root + 4 - 7)]
        else:
            target = nxt - 7 if nxt > 3 else nxt
            step = root + (1 if target > root else -1) if target != root else root + 2
            bass += [TNote(bar * 4, 3.0, root), TNote(bar * 4 + 3, 1.0, step)]
    return Theme(tuple(motif + answer), tuple(bass), harmony)


# --- transformations (on tuples of TNote) -------------------------------------------------------


def invert(notes: tuple[TNote, ...], axis: int | None = None) -> tuple[TNote, ...]:
    """Mirror every interval around ``axis`` (default: the first note)."""
    if not notes:
        return notes
    a = notes[0].degree if axis is None else axis
    return tuple(replace(n, degree=2 * a - n.degree) for n in notes)


def scale_time(notes: tuple[TNote, ...], factor: float) -> tuple[TNote, ...]:
    """Augmentation (``factor`` > 1) or diminution (< 1)."""
    return tuple(TNote(n.onset * factor, n.length * factor, n.degree) for n in notes)


def fragment(notes: tuple[TNote, ...], beats: float) -> tuple[TNote, ...]:
    """The head: notes starting before ``beats``, cut there."""
    return tuple(replace(n, length=min(n.length, beats - n.onset)) for n in notes if n.onset < beats)


def sequence(notes: tuple[TNote, ...], steps: int) -> tuple[TNote, ...]:
    return tuple(replace(n, degree=n.degree + steps) for n in notes)


def shift(notes: tuple[TNote, ...], beats: float) -> tuple[TNote, ...]:
    return tuple(replace(n, onset=n.onset + beats) for n in notes)


def displace(notes: tuple[TNote, ...], beats: float, span: float) -> tuple[TNote, ...]:
    """Rhythmic displacement: every onset later by ``beats``, cut at ``span``."""
    out = []
    for n in notes:
        onset = n.onset + beats
        if onset < span - 1e-9:
            out.append(TNote(onset, min(n.length, span - onset), n.degree))
    return tuple(out)


def leap(notes: tuple[TNote, ...], rng: np.random.Generator, share: float = 0.3) -> tuple[TNote, ...]:
    """Octave displacement of some notes (wide, surprising leaps); the first note stays."""
    return tuple(
        replace(n, degree=n.degree + (7 if n.degree < 4 else -7)) if i and rng.random() < share else n
        for i, n in enumerate(notes)
    )


def counter_line(harmony: tuple[int, ...], beats_per_chord: float, start: int = 2) -> tuple[TNote, ...]:
    """A slow line, one note a chord, moving by the smallest step to a chord tone (3rd or 5th first)."""
    out: list[TNote] = []
    degree = start
    for i, chord in enumerate(harmony):
        tones = (_chord_tones(chord)[1], _chord_tones(chord)[2], chord % 7)
        if i:
            options = [d for d in range(degree - 3, degree + 4) if d % 7 in tones]
            degree = min(options, key=lambda d: (abs(d - degree), d % 7 != tones[0]))
        out.append(TNote(i * beats_per_chord, beats_per_chord, degree))
    return tuple(out)


def to_meter(notes: tuple[TNote, ...], beats_per_bar: int) -> tuple[TNote, ...]:
    """4/4 positions onto bars of ``beats_per_bar`` beats (bar by bar; a 5/4 bar holds its 5th beat)."""
    if beats_per_bar == 4:
        return notes
    out = []
    for n in notes:
        bar, pos = divmod(n.onset, 4.0)
        if pos >= beats_per_bar:
            continue
        onset = bar * beats_per_bar + pos
        end_pos = pos + n.length
        length = n.length + (beats_per_bar - 4 if end_pos >= 4 - 1e-9 else 0)
        out.append(TNote(onset, min(length, beats_per_bar - pos), n.degree))
    return tuple(out)


# --- realisation in a key -----------------------------------------------------------------------


def degree_offset(degree: int, mode: str) -> int:
    """Semitones of scale ``degree`` above the tonic in ``mode``."""
    scale = SCALES[mode]
    octave, step = divmod(degree, 7)
    return 12 * octave + scale[step]


def realise(degree: int, mode: str, base: int) -> int:
    """The MIDI pitch of ``degree`` with the tonic at MIDI ``base``."""
    return base + degree_offset(degree, mode)


def tonic_base(tonic: int, centre: int, degrees: list[int], mode: str) -> int:
    """The tonic's MIDI pitch that puts the mean of ``degrees`` nearest ``centre``."""
    mean = float(np.mean([degree_offset(d, mode) for d in degrees])) if degrees else 0.0
    return nearest_pitch(tonic, round(centre - mean))


def _symbol(root: int, intervals: tuple[int, ...]) -> str:
    if root in _MAJOR:
        numeral, accidental = _NUMERALS[_MAJOR.index(root)], ""
    else:
        numeral, accidental = _NUMERALS[_MAJOR.index((root + 1) % 12)], "b"
    third = intervals[1] if len(intervals) > 1 else 4
    fifth = intervals[2] if len(intervals) > 2 else 7
    if third == 4:
        return accidental + numeral
    return accidental + numeral.lower() + ("o" if fifth == 6 else "")


def chord_for(degree: int, mode: str, emotion: str) -> Chord:
    """The chord on theme degree ``degree`` in ``mode``, coloured for ``emotion``."""
    colour = CHORD_COLOURS.get(emotion, {}).get(degree % 7)
    if colour is not None:
        return parse_chord(colour)
    scale = SCALES[mode]
    d = degree % 7
    root = scale[d]
    intervals = tuple((scale[(d + k) % 7] - root) % 12 for k in (0, 2, 4))
    return Chord(_symbol(root, intervals), root, intervals)


def cadence_chords(mode: str, style: str) -> tuple[Chord, Chord]:
    """The closing pair: plagal (IV-I) for acoustic and lofi, authentic (V-I, V major in minor)."""
    minor = SCALES[mode][2] == 3
    if style in ("acoustic", "lofi"):
        return parse_chord("iv" if minor else "IV"), parse_chord("i" if minor else "I")
    return parse_chord("V7"), parse_chord("i" if minor else "I")
