"""What the score says: per-section features of ``bgm.mid`` (tempo, key and mode, register, density,
articulation, regularity, dissonance, melody) and the final cadence.

Key and mode: Krumhansl & Kessler (1982) probe-tone profiles correlated with the section's
duration-weighted pitch-class histogram (the Krumhansl–Schmuckler algorithm); the best of the 24
rotations names the key. Dissonance: the mean over simultaneously sounding note pairs (weighted by
how long they overlap) of the negated interval-class consonance of Huron (1994, "Interval-class
content of equally tempered pitch-class sets", Music Perception 11(3)): a minor second / major
seventh counts +1.43, a tritone +0.45, a perfect fourth/fifth -1.24; a major or minor triad scores
-0.74, a dominant seventh -0.19, a chromatic cluster +1.15. Unisons and octaves are left out.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np
import pretty_midi

# Krumhansl & Kessler (1982) key profiles, tonic first
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
# Huron (1994) consonance per interval class 1..6; index 0 (unison/octave) is not counted
HURON_CONSONANCE = np.array([np.nan, -1.428, -0.582, 0.594, 0.386, 1.240, -0.453])
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MELODY_NAMES = ("melody", "lead", "theme")
PADS = ("pad",)  # sustained chords: left out of articulation (unless nothing else plays)
MAX_IOI_BEATS = 2.0  # longer gaps between onsets are phrase breaks, not articulation or rhythm


@dataclass(frozen=True)
class Key:
    tonic: int  # pitch class
    mode: str  # "major" | "minor"
    r: float  # correlation with the profile (Pearson)
    margin: float  # r minus the best key of the other mode

    @property
    def name(self) -> str:
        return PITCH_NAMES[self.tonic] + ("" if self.mode == "major" else "m")


@dataclass(frozen=True)
class ScoreFeatures:
    """One section of the score. Pitches are MIDI numbers, rates per second, ratios unitless."""

    tempo: float  # BPM, time-weighted over the section
    key: Key | None  # None: no pitched notes
    mean_pitch: float  # mean MIDI pitch of the pitched notes (nan: none)
    note_density: float  # pitched note onsets per second
    articulation: float  # median sounding duration / inter-onset interval within a part (nan: none)
    regularity_cv: float  # IOI coefficient of variation of the accompaniment's pulse (0 = metronomic)
    dissonance: float  # overlap-weighted mean negated Huron consonance of sounding pairs (nan: no pairs)
    melody_per_bar: float  # melody-part note onsets per bar
    melody_pitch: float  # mean MIDI pitch of the melody part (nan: no melody)
    velocity: float  # mean MIDI velocity of the pitched notes (played dynamics; nan: none)
    f0_hz: float  # duration x velocity weighted mean fundamental of the pitched notes (nan: none)


@dataclass(frozen=True)
class Cadence:
    chord: tuple[int, ...]  # pitch classes of the final chord
    bass: int | None  # its lowest pitch class
    key: Key | None  # the key of the last section
    onset: float  # when the final chord starts (s)
    release_s: float  # from the final chord to the end of the piece
    is_tonic: bool  # bass on the tonic and every pitch class in the tonic triad (+ added 9th/6th)


def load_midi(path: str | Path | bytes) -> pretty_midi.PrettyMIDI:
    src = io.BytesIO(path) if isinstance(path, bytes) else str(path)
    return pretty_midi.PrettyMIDI(src)


def section_starts_from_markers(data: bytes, pm: pretty_midi.PrettyMIDI) -> list[float]:
    """Times of the MIDI marker events (the composer writes one at each section's start)."""
    mid = mido.MidiFile(file=io.BytesIO(data))
    ticks = []
    for track in mid.tracks:
        now = 0
        for msg in track:
            now += msg.time
            if msg.type == "marker":
                ticks.append(now)
    return sorted(float(pm.tick_to_time(t)) for t in ticks)


def detect_key(hist: np.ndarray) -> Key | None:
    """Krumhansl–Schmuckler: the key whose rotated KK profile correlates best with ``hist`` (12 bins)."""
    h = np.asarray(hist, dtype=float)
    if h.sum() <= 0 or np.ptp(h) == 0:
        return None
    best: dict[str, tuple[float, int]] = {}
    for mode, prof in (("major", KK_MAJOR), ("minor", KK_MINOR)):
        rs = [float(np.corrcoef(h, np.roll(prof, t))[0, 1]) for t in range(12)]
        t = int(np.argmax(rs))
        best[mode] = (rs[t], t)
    mode = max(best, key=lambda m: best[m][0])
    other = "minor" if mode == "major" else "major"
    return Key(best[mode][1], mode, best[mode][0], best[mode][0] - best[other][0])


def _notes(pm: pretty_midi.PrettyMIDI, t0: float, t1: float) -> list[tuple[str, pretty_midi.Note]]:
    return [
        (inst.name.lower(), n)
        for inst in pm.instruments
        if not inst.is_drum
        for n in inst.notes
        if t0 <= n.start < t1
    ]


def pitch_class_histogram(notes: Sequence[pretty_midi.Note]) -> np.ndarray:
    h = np.zeros(12)
    for n in notes:
        h[n.pitch % 12] += n.end - n.start
    return h


def tempo_at(pm: pretty_midi.PrettyMIDI, t0: float, t1: float) -> float:
    """The prevailing tempo over ``[t0, t1)`` from the MIDI tempo map: the time-weighted median, so a
    ramp into the section does not pull it."""
    times, tempi = pm.get_tempo_changes()
    edges = np.append(times, np.inf)
    w = np.array([max(0.0, min(b, t1) - max(a, t0)) for a, b in itertools.pairwise(edges)])
    if w.sum() <= 0:
        return float(tempi[-1])
    order = np.argsort(tempi)
    cum = np.cumsum(w[order])
    return float(tempi[order][np.searchsorted(cum, cum[-1] / 2)])


def dissonance(notes: Sequence[pretty_midi.Note]) -> float:
    num = den = 0.0
    ordered = sorted(notes, key=lambda n: n.start)
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            if b.start >= a.end:
                break
            ic = abs(a.pitch - b.pitch) % 12
            ic = min(ic, 12 - ic)
            if ic == 0:
                continue
            w = min(a.end, b.end) - b.start
            num += w * -HURON_CONSONANCE[ic]
            den += w
    return num / den if den > 0 else float("nan")


def articulation(parts: dict[str, list[pretty_midi.Note]], beat: float) -> float:
    """Median of duration / IOI over the notes of each part (chord tones share an onset)."""
    ratios = []
    for notes in parts.values():
        onsets = np.unique(np.round([n.start for n in notes], 3))
        for n in notes:
            later = onsets[onsets > n.start + 1e-3]
            if len(later) and later[0] - n.start <= MAX_IOI_BEATS * beat:
                ratios.append(min((n.end - n.start) / (later[0] - n.start), 1.5))
    return float(np.median(ratios)) if ratios else float("nan")


def regularity_cv(parts: dict[str, list[pretty_midi.Note]], beat: float) -> float:
    """How steady the pulse is: the IOI coefficient of variation of each accompaniment part (not the
    pads, whose stabs follow the harmony, nor the melody, whose rhythm is the theme's), averaged with
    weights by note count. A part in even eighths scores 0, a long-short figure about 0.35, displaced
    or uneven onsets more. Falls back to the melody, then to every part, when nothing else plays.
    ``parts`` should leave out the section's last bar, where a pickup run leads into the next one."""
    pulse = {k: v for k, v in parts.items() if k not in PADS and not any(m in k for m in MELODY_NAMES)}
    pulse = pulse or {k: v for k, v in parts.items() if k not in PADS} or parts
    cvs, weights = [], []
    for notes in pulse.values():
        onsets = np.unique(np.round([n.start for n in notes], 2))
        ioi = np.diff(onsets)
        ioi = ioi[ioi <= MAX_IOI_BEATS * beat]
        if len(ioi) >= 3:
            cvs.append(float(np.std(ioi) / np.mean(ioi)))
            weights.append(len(onsets))
    return float(np.average(cvs, weights=weights)) if cvs else float("nan")


def _mean_f0(notes: Sequence[pretty_midi.Note]) -> float:
    """Fundamentals (Hz) averaged with weights duration x velocity: roughly where the notes' energy sits
    if they were pure tones."""
    w = np.array([(n.end - n.start) * n.velocity for n in notes], dtype=float)
    if not len(notes) or w.sum() <= 0:
        return float("nan")
    f = pretty_midi.note_number_to_hz(np.array([n.pitch for n in notes], dtype=float))
    return float(np.average(f, weights=w))


def score_features(pm: pretty_midi.PrettyMIDI, t0: float, t1: float, beats_per_bar: int = 4) -> ScoreFeatures:
    tagged = _notes(pm, t0, t1)
    notes = [n for _, n in tagged]
    tempo = tempo_at(pm, t0, t1)
    beat = 60.0 / tempo
    parts: dict[str, list[pretty_midi.Note]] = {}
    for name, n in tagged:
        parts.setdefault(name, []).append(n)
    melody = [n for name, n in tagged if any(m in name for m in MELODY_NAMES)]
    bars = max((t1 - t0) / (beats_per_bar * beat), 1e-9)
    dur = max(t1 - t0, 1e-9)
    return ScoreFeatures(
        tempo=tempo,
        key=detect_key(pitch_class_histogram(notes)),
        mean_pitch=float(np.mean([n.pitch for n in notes])) if notes else float("nan"),
        note_density=len(notes) / dur,
        articulation=articulation({k: v for k, v in parts.items() if k not in PADS} or parts, beat),
        regularity_cv=regularity_cv(
            {k: [n for n in v if n.start < t1 - beats_per_bar * beat] for k, v in parts.items()}, beat
        ),
        dissonance=dissonance(notes),
        melody_per_bar=len(melody) / bars,
        melody_pitch=float(np.mean([n.pitch for n in melody])) if melody else float("nan"),
        velocity=float(np.mean([n.velocity for n in notes])) if notes else float("nan"),
        f0_hz=_mean_f0(notes),
    )


def final_cadence(pm: pretty_midi.PrettyMIDI, key: Key | None, end: float, window: float = 0.1) -> Cadence:
    """The chord sounding just after the last pitched onset (a chord's tones may spread over ``window``
    s); ``key`` is the key it should be the tonic of."""
    notes = [n for inst in pm.instruments if not inst.is_drum for n in inst.notes]
    if not notes:
        return Cadence((), None, key, end, 0.0, False)
    last = max(n.start for n in notes)
    onset = min(n.start for n in notes if n.start >= last - window)
    chord = [n for n in notes if n.start <= last + 1e-6 and n.end > last + 0.05]
    pcs = tuple(sorted({n.pitch % 12 for n in chord}))
    bass = min(chord, key=lambda n: n.pitch).pitch % 12 if chord else None
    ok = False
    if key is not None and bass is not None:
        third = 4 if key.mode == "major" else 3
        allowed = {(key.tonic + i) % 12 for i in (0, third, 7, 2, 9 if key.mode == "major" else 0)}
        ok = bass == key.tonic and set(pcs) <= allowed
    return Cadence(pcs, bass, key, onset, end - onset, ok)
