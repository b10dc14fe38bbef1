"""Accompaniment of one section: bass, pad and arpeggio (pure, seeded).

Every function takes a ``SectionContext`` (the section's plan, its chords bar by bar, its phrases,
the theme's bass line) and the section's ``numpy`` Generator, and returns notes in beats from the
section start. The bass plays the theme's bass line in the emotion's rhythm pattern; the pad holds,
stabs (staccato emotions) or swells in re-struck tremolo (fear); the arpeggio follows the cue
table's articulation. Variation comes per phrase: revoicing, another arpeggio shape or bass pattern.
The melody is the theme itself (``score``). In the final section the last bar holds the tonic chord.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from moodbgm.generate.composer.events import Note, SectionPlan
from moodbgm.generate.composer.harmony import Chord, nearest_pitch, pitches_of, voice_chord
from moodbgm.generate.composer.mapping import MoodProfile


@dataclass(frozen=True)
class Phrase:
    first_bar: int
    n_bars: int
    progression: tuple[str, ...]
    layers: frozenset[str]  # parts that play in this phrase
    arp_shape: str
    bass_pattern: str
    drum_variant: int
    kind: str = "statement"  # how the theme appears (score.VARIATIONS)


@dataclass(frozen=True)
class SectionContext:
    plan: SectionPlan
    profile: MoodProfile
    chords: tuple[Chord, ...]  # one per bar
    phrases: tuple[Phrase, ...]
    has_next: bool  # a section follows: end with a fill
    bass_line: tuple[tuple[float, float, int], ...] = ()  # (start, end, pitch class) in beats
    final: bool = False  # the piece's last section: its last bar is the closing chord, held

    def line_pc(self, pos: float) -> int | None:
        """The bass line's pitch class sounding at beat ``pos``, if any."""
        for start, end, pc in self.bass_line:
            if start - 1e-9 <= pos < end - 1e-9:
                return pc
        return None

    def is_final_bar(self, bar: int) -> bool:
        return self.final and bar == len(self.plan.bars) - 1

    def phrase_of(self, bar: int) -> Phrase:
        for ph in self.phrases:
            if ph.first_bar <= bar < ph.first_bar + ph.n_bars:
                return ph
        return self.phrases[-1]

    def bar_pcs(self, bar: int) -> tuple[int, ...]:
        return self.chords[bar].pitch_classes(self.plan.tonic)

    def vel(self, scale: float, rng: np.random.Generator, jitter: int = 6) -> int:
        v = self.profile.velocity * scale + rng.integers(-jitter, jitter + 1)
        return int(np.clip(round(v), 8, 124))


def _clip_register(pitch: int, low: int, high: int) -> int:
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return pitch


def bass(ctx: SectionContext, rng: np.random.Generator) -> list[Note]:
    p, plan = ctx.profile, ctx.plan
    centre = 36 + min(0, p.register) // 2
    notes: list[Note] = []
    for bar, (b0, blen) in enumerate(zip(plan.bar_starts, plan.bars, strict=True)):
        ph = ctx.phrase_of(bar)
        if "bass" not in ph.layers:
            continue
        root = _clip_register(nearest_pitch(ctx.bar_pcs(bar)[0], centre), 26, 50)
        fifth = root + 7 if root + 7 <= 50 else root - 5
        octave = root + 12 if root + 12 <= 55 else root
        pattern = "whole" if ctx.is_final_bar(bar) else ph.bass_pattern
        steps: list[tuple[float, float, int, float]]  # (pos, len, pitch, accent)
        if pattern == "whole":
            steps = [(0.0, float(blen), root, 1.0)]
        elif pattern == "half":
            half = blen / 2
            steps = [(0.0, half, root, 1.0), (half, half, fifth if rng.random() < 0.5 else root, 0.85)]
        elif pattern in ("pulse8", "octaves"):
            steps = [
                (i * 0.5, 0.5, octave if pattern == "octaves" and i % 2 else root, 1.0 if i % 2 == 0 else 0.8)
                for i in range(blen * 2)
            ]
        elif pattern == "gallop":
            steps = []
            for beat in range(blen):
                steps += [
                    (beat, 0.5, root, 1.0),
                    (beat + 0.5, 0.25, root, 0.75),
                    (beat + 0.75, 0.25, root, 0.8),
                ]
        elif pattern == "syncopated":
            hits = [x for x in (0.0, 1.5, 2.5, 3.0, 3.5, 4.5) if x < blen]
            steps = [(x, 0.5 if i else 1.0, (root, octave, fifth)[i % 3], 1.0) for i, x in enumerate(hits)]
        elif pattern == "ostinato":  # fear: root and its chromatic upper neighbour, quiet 8ths
            steps = [(i * 0.5, 0.5, root + (1 if i % 4 == 3 else 0), 0.8) for i in range(blen * 2)]
        elif pattern == "uneven":  # 3+3+2+2 eighths
            grid = [0.0, 1.5, 3.0, 4.0, 5.0]
            steps = [
                (x, min(1.5, blen - x), (root, root, root + 1, root)[i % 4], 1.0)
                for i, x in enumerate(grid)
                if x < blen
            ]
        else:
            raise ValueError(f"unknown bass pattern {pattern!r}")
        # walk towards the next chord on the bar's last beat
        if (
            bar + 1 < len(plan.bars)
            and ctx.chords[bar + 1] != ctx.chords[bar]
            and rng.random() < 0.4
            and blen >= 2
        ):
            nxt = _clip_register(nearest_pitch(ctx.bar_pcs(bar + 1)[0], root), 26, 50)
            approach = nxt + (1 if rng.random() < 0.5 else -1) if nxt != root else fifth
            steps = [s for s in steps if s[0] < blen - 1] + [(blen - 1.0, 1.0, approach, 0.85)]
        if pattern in ("whole", "half"):  # slow patterns take the line's own rhythm
            line = [(s0 - b0, e0 - s0, pc) for s0, e0, pc in ctx.bass_line if b0 - 1e-9 <= s0 < b0 + blen]
            if line and not ctx.is_final_bar(bar):
                steps = [(x, ln, _clip_register(nearest_pitch(pc, root), 26, 50), 1.0 if x == 0 else 0.85)
                         for x, ln, pc in line]  # fmt: skip
        legato = 1.0 if ctx.is_final_bar(bar) else p.legato
        for pos, length, pitch, accent in steps:
            pc = ctx.line_pc(b0 + pos)
            if pc is not None and pitch % 12 == root % 12 and pc != root % 12:
                pitch = _clip_register(nearest_pitch(pc, root), 26, 50)  # the theme's bass line
            dur = max(0.1, min(length, blen - pos) * (0.92 if legato > 0.9 else max(legato, 0.35)))
            notes.append(Note(b0 + pos, dur, pitch, ctx.vel(accent, rng)))
    return notes


def pad(ctx: SectionContext, rng: np.random.Generator) -> list[Note]:
    p, plan = ctx.profile, ctx.plan
    high = 67 if p.register > 0 else 64
    low = 50 if p.register > 0 else 45
    notes: list[Note] = []
    voicing: tuple[int, ...] | None = None
    bar = 0
    while bar < len(plan.bars):
        ph = ctx.phrase_of(bar)
        run = 1  # bars with the same chord inside one phrase are held as one
        while (
            bar + run < min(len(plan.bars), ph.first_bar + ph.n_bars)
            and ctx.chords[bar + run] == ctx.chords[bar]
            and p.pad_style not in ("stabs", "tremolo")
            and not ctx.is_final_bar(bar + run)
        ):
            run += 1
        start = plan.bar_starts[bar]
        length = sum(plan.bars[bar : bar + run])
        if "pad" in ph.layers:
            voicing = voice_chord(
                ctx.bar_pcs(bar), low, high, voicing, rng, voices=4 if p.register >= -5 else 3
            )
            played = voicing
            if p.cues.dissonance == "high" and not ctx.is_final_bar(
                bar
            ):  # a cluster: the root's upper semitone
                played = (*voicing, voicing[0] + 1 if voicing[0] + 1 not in voicing else voicing[0] + 13)
            if ctx.is_final_bar(bar) or (ctx.final and bar + run == len(plan.bars) and run > 1):
                for n in played:  # the closing chord, held
                    notes.append(Note(start, length, n, ctx.vel(0.62, rng, 4)))
            elif p.pad_style == "tremolo":  # re-struck every half beat, swelling over two bars
                k, swell_span = 0, 2 * plan.beats_per_bar
                while k * 0.5 < length - 1e-9:
                    x = start + k * 0.5
                    swell = 0.35 + 0.55 * math.sin(math.pi * (x % swell_span) / swell_span)
                    notes += [Note(x, 0.5, n, ctx.vel(swell, rng, 3)) for n in played]
                    k += 1
            elif p.pad_style == "stabs":
                hits = [x for x in (0.0, 1.5, 2.5, 3.0) if x < length] if rng.random() < 0.6 else [0.0, 2.0]
                for x in hits:
                    if x < length:
                        dur = 0.4 * min(1.0, p.legato / 0.5)
                        notes += [Note(start + x, dur, n, ctx.vel(0.7, rng)) for n in played]
            else:
                for n in played:
                    notes.append(Note(start, max(0.25, length - 0.05), n, ctx.vel(0.62, rng, 4)))
        bar += run
    return notes


def _arp_cell(shape: str, tones: list[int], rng: np.random.Generator) -> list[int]:
    if shape in ("up", "riff"):
        return tones
    if shape == "down":
        return tones[::-1]
    if shape == "updown":
        return tones + tones[-2:0:-1]
    if shape == "broken":
        return [tones[i] for i in (0, 2, 1, 3, 2, 4) if i < len(tones)]
    if shape == "pedal":
        return [x for t in tones[1:] for x in (tones[0], t)]
    if shape == "leaps":
        return [t + 12 * int(rng.integers(-1, 2)) for t in tones]
    if shape in ("ostinato", "chromatic", "uneven"):
        r = tones[0]
        return [r, r + 1, r, r + 3] if shape == "ostinato" else [r, tones[1], r + 1, tones[-1]]
    raise ValueError(f"unknown arpeggio shape {shape!r}")


def arpeggio(ctx: SectionContext, rng: np.random.Generator) -> list[Note]:
    p, plan = ctx.profile, ctx.plan
    centre = 58 + p.register
    low, high = centre - 8, centre + 8
    notes: list[Note] = []
    for bar, (b0, blen) in enumerate(zip(plan.bar_starts, plan.bars, strict=True)):
        ph = ctx.phrase_of(bar)
        if "arp" not in ph.layers:
            continue
        tones = pitches_of(ctx.bar_pcs(bar), low, high)[:5] or [nearest_pitch(ctx.bar_pcs(bar)[0], centre)]
        if ctx.is_final_bar(bar):  # a rolled closing chord
            notes += [
                Note(b0 + 0.06 * i, blen - 0.06 * i, t, ctx.vel(0.6, rng)) for i, t in enumerate(tones[:4])
            ]
            continue
        cell = _arp_cell(ph.arp_shape, tones, rng)
        if ph.arp_shape == "uneven":
            grid, x = [], 0.0
            while x < blen:
                grid.append(x)
                x += (0.75, 0.75, 0.5)[len(grid) % 3]
        else:
            step = 1.0 / p.arp_rate
            grid = [i * step for i in range(round(blen * p.arp_rate))]
        for i, x in enumerate(grid):
            accent = 0.72 if abs(x - round(x)) < 1e-9 else 0.58
            if ph.arp_shape == "riff" and rng.random() < 0.15:
                continue  # palm-muted riff with gaps
            if p.cues.regularity == "low" and i and rng.random() < 0.3:
                continue  # irregular: rests in the ostinato
            dur = (grid[i + 1] - x if i + 1 < len(grid) else blen - x) * max(p.legato, 0.25)
            notes.append(Note(b0 + x, max(0.08, dur), cell[i % len(cell)], ctx.vel(accent, rng)))
    return notes
