"""Drum grooves on a 16th-note grid, with per-phrase variants, fills and style kit mapping (pure).

Patterns are strings, one character a 16th: ``x`` accent, ``o`` normal, ``-`` ghost, ``.`` rest.
A 4/4 pattern has 16 steps, the 5/4 ``uneven`` groove 20. Crash cymbals only mark structural
downbeats (the first bar of a section); grooves of the irregular emotions (fear) drop and displace
hits at random; the piece's last bar is a single soft hit under the closing chord.
GM drum notes: 36 kick, 37 side stick, 38 snare, 39 clap, 41/43/45/47/48/50 toms low..high,
42 closed hat, 46 open hat, 49 crash, 51 ride, 70 maracas.
"""

from __future__ import annotations

import numpy as np

from moodbgm.generate.composer.events import Note
from moodbgm.generate.composer.mapping import Groove
from moodbgm.generate.composer.parts import SectionContext

Pattern = dict[int, str]

DRUM_GROOVES: dict[str, tuple[Pattern, ...]] = {
    "backbeat": (
        {36: "x.....o.x.......", 38: "....x.......x...", 42: "o.-.o.-.o.-.o.-."},
        {36: "x.....o...o.x...", 38: "....x.......x..-", 42: "o.o.o.o.o.o.o.oo"},
        {36: "x..o..o.x.......", 38: "....x..-....x...", 42: "o.-.o.-.o.-.o.o."},
    ),
    "driving": (
        {36: "x.o.x.o.x.o.x.o.", 38: "....x.......x...", 51: "x.o.x.o.x.o.x.o."},
        {36: "x.xox.o.x.xox.o.", 38: "....x..o....x...", 42: "xoxoxoxoxoxoxoxo"},
        {36: "xxo.xxo.xxo.xxo.", 38: "....x.......x.o.", 51: "x.o.x.o.x.o.x.o."},
    ),
    "ostinato": (
        {41: "o-o-o-o-o-o-o-o-", 36: "x.......x......."},
        {45: "o.-o.-o.-o.-o.-.", 36: "x..........o...."},
        {41: "o-o-o-o-o-o-o-o-", 36: "x.......x.....o."},
    ),
    "syncopated": (
        {36: "x..o..o...x.....", 38: "....x.......x...", 42: ".o.o.o.o.o.o.o.o"},
        {36: "x..o...o..o.....", 38: "....x...o...x...", 42: "o.oo.o.oo.o.o.o."},
        {36: "x.....x..o..x...", 39: "....x.......x..o", 42: ".o.o.o.o.o.o.o.o"},
    ),
    "uneven": (
        {36: "x.....x.....o.......", 38: "............x.......", 42: "o.-.o.o.-.o.o.-.o.-."},
        {36: "x.....x...o.....x...", 38: "............x...o...", 42: "o.o.o.o.o.o.o.o.o.o."},
    ),
    "soft": (
        {36: "x.......o.......", 37: "....-.......-...", 42: "-.-.-.-.-.-.-.-."},
        {36: "x.........o.....", 37: "............-...", 42: "-...-...-...-..."},
    ),
}
_LEVEL = {"x": 1.0, "o": 0.78, "-": 0.45}
_FILL_TOMS = (50, 48, 47, 45, 43, 41)


def drums(ctx: SectionContext, groove: Groove, rng: np.random.Generator) -> list[Note]:
    p, plan = ctx.profile, ctx.plan
    if p.drums == "none":
        return []
    variants = DRUM_GROOVES[p.drums]
    notes: list[Note] = []
    last_bar = len(plan.bars) - 1
    for bar, (b0, blen) in enumerate(zip(plan.bar_starts, plan.bars, strict=True)):
        ph = ctx.phrase_of(bar)
        if "drums" not in ph.layers:
            continue
        if ctx.is_final_bar(bar):
            notes.append(Note(b0, 1.0, 36, ctx.vel(0.7, rng, 3)))
            continue
        light = "drums_light" in ph.layers
        irregular = p.cues.regularity == "low" and p.drums != "uneven"
        pattern = dict(variants[ph.drum_variant % len(variants)])
        if groove.four_on_floor and p.drums in ("backbeat", "driving", "syncopated", "soft"):
            pattern[36] = "x...x...x...x..."
        steps = blen * 4
        phrase_end = bar == ph.first_bar + ph.n_bars - 1
        fill_from = steps
        if bar == last_bar and ctx.has_next:
            fill_from = steps - (8 if plan.tempo < 100 and blen >= 2 else 4)
        elif phrase_end and bar != last_bar and rng.random() < 0.6:
            fill_from = steps - 2
        for drum, line in pattern.items():
            if light and drum != 36:
                continue
            for step in range(min(steps, fill_from)):
                ch = line[step % len(line)]
                if ch == "." or drum == 49:
                    continue
                pos = step
                if irregular and step and rng.random() < 0.3:
                    if rng.random() < 0.5:
                        continue  # a dropped hit
                    pos = min(step + 1, steps - 1)  # displaced by a 16th
                notes.append(Note(b0 + pos / 4, 0.25, drum, ctx.vel(_LEVEL[ch] * 0.9, rng, 5)))
        if fill_from < steps:
            notes += _fill(b0, fill_from, steps, ctx, rng)
        if bar == 0 and plan.index > 0 and not light:
            notes.append(Note(b0, 0.5, 49, ctx.vel(0.85, rng, 4)))
    return [n for n in (_map(n, groove) for n in notes) if n is not None]


def _fill(b0: float, first: int, steps: int, ctx: SectionContext, rng: np.random.Generator) -> list[Note]:
    """Toms (and snare) in 16ths, descending, crescendo: the lead-in to the next phrase or section."""
    count = steps - first
    offset = int(rng.integers(0, 2))
    out = [Note(b0 + first / 4, 0.25, 36, ctx.vel(0.9, rng, 3))]
    for i in range(count):
        drum = (
            38
            if (i + offset) % 4 == 0
            else _FILL_TOMS[min(len(_FILL_TOMS) - 1, i * len(_FILL_TOMS) // count)]
        )
        out.append(
            Note(b0 + (first + i) / 4, 0.25, drum, ctx.vel(0.55 + 0.4 * i / max(1, count - 1), rng, 3))
        )
    return out


def _map(note: Note, groove: Groove) -> Note | None:
    if note.pitch not in groove.drum_map:
        return note
    new = groove.drum_map[note.pitch]
    return None if new is None else Note(note.start, note.duration, new, note.velocity)
