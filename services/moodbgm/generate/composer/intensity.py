"""A section's intensity (the editor's slider, 0..1) as music-psychology cues, never as level (pure).

The renderer balances every section's loudness (issue 12, +-3 LU), so intensity changes *activity*:
note density, articulation, the number of voices and their register spread, and drum activity.
``DEFAULT_INTENSITY`` (0.5) is the emotion's own texture: ``intensify`` returns the parts unchanged
(the same notes, MIDI bytes and audio as before intensity existed). Above it, with ``a = 2 (i - 0.5)``:

* arpeggio: each note of at least an eighth is split, with probability ``a``, into two halves, the
  second an octave higher (denser, wider register);
* drums: empty eighths (sixteenths above ``a = 0.5``) get a soft hi-hat with probability ``a``; a
  section without drums gets a soft eighth-note pulse above ``a = 0.5``;
* pad: each chord gains, with probability ``a``, its top voice an octave higher (one more voice);
* melody: detached, its notes shortened to ``1 - 0.4 a`` of their length.

Below it, with ``a = 2 (0.5 - i)``: off-beat arpeggio notes and drum hits are dropped with probability
``a`` (only bar downbeats keep drums from ``a = 0.8``), chords of three or more voices lose their top
voice above ``a = 0.5``, and the melody is legato (each note held to the next). The closing bar of the
piece is never changed. Randomness comes from the caller's Generator (seeded apart from the
composer's, so the default path draws nothing).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable

import numpy as np

from moodbgm.generate.composer.events import Note, SectionPlan
from moodbgm.types import DEFAULT_INTENSITY

_TOP = 96  # no added voice above this MIDI note
_HAT = 42  # GM closed hi-hat, when the section has no drum to copy


def intensify(
    raw: dict[str, list[Note]], intensity: float, plan: SectionPlan, final: bool, rng: np.random.Generator
) -> dict[str, list[Note]]:
    """``raw`` (role -> notes, beats from the section start) at ``intensity``; unchanged at the default."""
    if not 0.0 <= intensity <= 1.0:
        raise ValueError(f"intensity must be in [0, 1], got {intensity}")
    if intensity == DEFAULT_INTENSITY:
        return raw
    body_end = float(plan.bar_starts[-1]) if final else float(plan.beats)
    out = dict(raw)
    if intensity > DEFAULT_INTENSITY:
        a = 2.0 * (intensity - DEFAULT_INTENSITY)
        out["arp"] = _split(raw["arp"], a, body_end, rng)
        out["drums"] = _busier(raw["drums"], a, body_end, rng)
        out["pad"] = _more_voices(raw["pad"], a, body_end, rng)
        short = 1 - 0.4 * a
        out["melody"] = [
            Note(n.start, max(0.08, n.duration * short), n.pitch, n.velocity) if n.start < body_end else n
            for n in raw["melody"]
        ]
    else:
        a = 2.0 * (DEFAULT_INTENSITY - intensity)
        out["arp"] = _thin(raw["arp"], a, body_end, rng, keep=_on_beat)
        downbeats = {float(b) for b in plan.bar_starts}
        if a >= 0.8:
            out["drums"] = [n for n in raw["drums"] if n.start >= body_end or n.start in downbeats]
        else:
            out["drums"] = _thin(raw["drums"], a, body_end, rng, keep=_on_beat)
        out["pad"] = _fewer_voices(raw["pad"], body_end) if a > 0.5 else raw["pad"]
        out["melody"] = _legato(raw["melody"], body_end)
    return out


def _on_beat(n: Note) -> bool:
    return abs(n.start - round(n.start)) < 1e-6


def _split(notes: list[Note], a: float, body_end: float, rng: np.random.Generator) -> list[Note]:
    out = []
    for n in notes:
        if n.start < body_end and n.duration >= 0.5 - 1e-9 and rng.random() < a:
            half = n.duration / 2
            up = n.pitch + 12 if n.pitch + 12 <= _TOP else n.pitch
            echo = Note(n.start + half, half, up, max(1, round(0.9 * n.velocity)))
            out += [Note(n.start, half, n.pitch, n.velocity), echo]
        else:
            out.append(n)
    return out


def _busier(notes: list[Note], a: float, body_end: float, rng: np.random.Generator) -> list[Note]:
    taken = {round(n.start * 4) for n in notes}
    if notes:
        kicks_snares = {35, 36, 37, 38, 39, 40}
        others = Counter(n.pitch for n in notes if n.pitch not in kicks_snares)
        hat = others.most_common(1)[0][0] if others else _HAT
        vel = max(12, round(0.6 * float(np.median([n.velocity for n in notes]))))
        step = 1 if a > 0.5 else 2  # sixteenths or eighths
    elif a > 0.5:
        hat, vel, step = _HAT, 30, 2
    else:
        return notes
    added = []
    for q in range(0, int(body_end * 4), step):
        if q not in taken and rng.random() < a:
            added.append(Note(q / 4, 0.25, hat, vel + int(rng.integers(-3, 4))))
    return sorted(notes + added, key=lambda n: (n.start, n.pitch))


def _chords(notes: list[Note], body_end: float) -> dict[float, list[Note]]:
    groups: dict[float, list[Note]] = defaultdict(list)
    for n in notes:
        if n.start < body_end:
            groups[n.start].append(n)
    return groups


def _more_voices(notes: list[Note], a: float, body_end: float, rng: np.random.Generator) -> list[Note]:
    added = []
    for _, chord in sorted(_chords(notes, body_end).items()):
        top = max(chord, key=lambda n: n.pitch)
        if top.pitch + 12 <= _TOP and rng.random() < a:
            added.append(Note(top.start, top.duration, top.pitch + 12, max(1, round(0.75 * top.velocity))))
    return notes + added


def _fewer_voices(notes: list[Note], body_end: float) -> list[Note]:
    drop = set()
    for chord in _chords(notes, body_end).values():
        if len(chord) >= 3:
            drop.add(id(max(chord, key=lambda n: n.pitch)))
    return [n for n in notes if id(n) not in drop]


def _thin(
    notes: list[Note], a: float, body_end: float, rng: np.random.Generator, keep: Callable[[Note], bool]
) -> list[Note]:
    return [n for n in notes if n.start >= body_end or keep(n) or rng.random() >= a]


def _legato(notes: list[Note], body_end: float) -> list[Note]:
    ordered = sorted(notes, key=lambda n: (n.start, n.pitch))
    out = []
    for i, n in enumerate(ordered):
        nxt = next((m.start for m in ordered[i + 1 :] if m.start > n.start + 1e-9), None)
        if n.start < body_end and nxt is not None and nxt <= body_end and nxt > n.end:
            n = Note(n.start, nxt - n.start, n.pitch, n.velocity)
        out.append(n)
    return out
