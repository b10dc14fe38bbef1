"""Timeline -> Score: section plans that land on bar lines, then the parts of each section (pure).

Each section gets a tempo inside its emotion's range and a whole number of bars chosen so that the
bars fill the section: for sections longer than a few bars the tempo is stretched slightly and the
change lands exactly on the timeline's boundary; a short section that no tempo in range can fill
ends with one shorter bar, and if even that cannot fit, it ends on the nearest beat (within one beat
of the planned time; the next section then aims at its own planned end, so errors never add up).

All randomness comes from ``numpy`` Generators seeded with ``(seed, section index)``: the same seed
gives the same notes, MIDI bytes and audio.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from moodbgm.generate.base import GenerateOptions
from moodbgm.generate.composer import drums as drum_part
from moodbgm.generate.composer import parts
from moodbgm.generate.composer.events import ROLES, Note, Part, Score, SectionPlan, SectionScore
from moodbgm.generate.composer.harmony import choose_key, parse_chord
from moodbgm.generate.composer.mapping import Groove, MoodProfile, groove, instruments, profile
from moodbgm.types import Timeline

logger = logging.getLogger(__name__)

_VELOCITY_CAP = {"melody": 64}  # the melody stays soft under the voice


def fit_tempo(length: float, prof: MoodProfile, cover: bool = False) -> tuple[float, int]:
    """``(tempo, beats)`` for a section of ``length`` seconds.

    Prefers whole bars at a tempo in the emotion's range (closest to nominal), then whole beats; when
    nothing in range fits exactly, the nearest beat count at a clamped tempo (``cover``: at least
    ``length``, for the last section, whose audio is cut to the duration).
    """
    if not (math.isfinite(length) and length > 0):
        raise ValueError(f"section length must be > 0, got {length}")
    lo, nominal, hi = prof.tempo
    for unit in (prof.beats_per_bar, 1):
        best: tuple[float, float, int] | None = None
        first = max(1, math.floor(length * lo / 60 / unit))
        for n in range(first, max(first, math.ceil(length * hi / 60 / unit)) + 1):
            tempo = n * unit * 60 / length
            if lo - 1e-9 <= tempo <= hi + 1e-9:
                cost = abs(math.log(tempo / nominal))
                if best is None or cost < best[0]:
                    best = (cost, tempo, n * unit)
        if best is not None:
            return best[1], best[2]
    beats = max(1, round(length * nominal / 60))
    tempo = min(hi, max(lo, beats * 60 / length))
    exact = length * tempo / 60
    beats = max(1, math.ceil(exact - 1e-9) if cover else round(exact))
    return tempo, beats


def plan_sections(timeline: Timeline, duration: float, seed: int) -> tuple[SectionPlan, ...]:
    """Bar-aligned plans for the timeline's sections over ``[0, duration]``."""
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be > 0, got {duration}")
    targets = [(i, s) for i, s in enumerate(timeline.sections) if s.start < duration - 1e-6]
    plans: list[SectionPlan] = []
    tonic: int | None = None
    for k, (i, sec) in enumerate(targets):
        prof = profile(sec.emotion)
        last = k == len(targets) - 1
        target_end = duration if last else min(sec.end, duration)
        cursor = plans[-1].end if plans else 0.0
        if target_end - cursor < 60 / prof.tempo[2] and plans:
            # shorter than a beat after alignment: the previous section carries on over it, so the
            # next one still starts where it was planned
            logger.debug("section %d (%s) is shorter than a beat after alignment; merged", i, sec.emotion)
            prev = plans.pop()
            plans.append(
                _plan(prev.index, prev.emotion, prev.target_start, target_end, plans, prev.tonic, last)
            )
            continue
        tonic = choose_key(prof.tonics, tonic, np.random.default_rng([seed, i, 1]))
        plans.append(_plan(i, sec.emotion, sec.start, target_end, plans, tonic, last))
    return tuple(plans)


def _plan(
    index: int,
    emotion: str,
    target_start: float,
    target_end: float,
    before: list[SectionPlan],
    tonic: int,
    cover: bool,
) -> SectionPlan:
    prof = profile(emotion)
    start = before[-1].end if before else 0.0
    start_beat = before[-1].start_beat + before[-1].beats if before else 0
    tempo, beats = fit_tempo(max(target_end - start, 60 / prof.tempo[2]), prof, cover=cover)
    bpb = prof.beats_per_bar
    bars = (bpb,) * (beats // bpb) + ((beats % bpb,) if beats % bpb else ())
    return SectionPlan(
        index, emotion, target_start, target_end, start, tempo, bars, bpb, start_beat, tonic, prof.mode
    )


def _phrases(plan: SectionPlan, prof: MoodProfile, rng: np.random.Generator) -> list[parts.Phrase]:
    out: list[parts.Phrase] = []
    n_bars = len(plan.bars)
    bar, prev = 0, -1
    while bar < n_bars:
        choices = [j for j in range(len(prof.progressions)) if j != prev] or [0]
        j = int(rng.choice(choices))
        prog = prof.progressions[j]
        length = min(len(prog) * prof.bars_per_chord, n_bars - bar)
        out.append(parts.Phrase(bar, length, prog, frozenset(), "", "", 0))
        bar, prev = bar + length, j
    total = len(out)
    phrases: list[parts.Phrase] = []
    for k, ph in enumerate(out):
        layers = {"pad", "bass", "arp", "drums"}
        if total >= 3 and k == 0 and rng.random() < 0.7:
            layers.add("drums_light")  # intro: kick only
        elif 0 < k < total - 1 and rng.random() < 0.15:
            layers -= {"drums", "bass"}  # breakdown
        if total > 1 and rng.random() < 0.15 and "drums" in layers:
            layers.discard("arp")
        if k % 2 == 1 or (total == 1 and rng.random() < 0.5):
            layers.add("melody")
        shape = str(rng.choice(prof.arp_shapes))
        pattern = str(rng.choice(prof.bass_patterns))
        variant = 0 if k == 0 else int(rng.integers(0, 3))
        phrases.append(
            parts.Phrase(ph.first_bar, ph.n_bars, ph.progression, frozenset(layers), shape, pattern, variant)
        )
    return phrases


def _context(
    plan: SectionPlan, prof: MoodProfile, has_next: bool, rng: np.random.Generator
) -> parts.SectionContext:
    phrases = _phrases(plan, prof, rng)
    chords = []
    for ph in phrases:
        for b in range(ph.n_bars):
            chords.append(parse_chord(ph.progression[(b // prof.bars_per_chord) % len(ph.progression)]))
    if len(chords) >= 2:  # cadence: the section's last bar returns to its phrase's first chord
        chords[-1] = parse_chord(phrases[-1].progression[0])
    return parts.SectionContext(plan, prof, tuple(chords), tuple(phrases), has_next)


def _perform(
    notes: list[Note], plan: SectionPlan, grv: Groove, rng: np.random.Generator, max_velocity: int = 127
) -> list[Note]:
    """Swing, humanised timing and velocity; notes end by the section's end; no same-pitch overlaps."""
    total = float(plan.beats)
    beat_s = plan.tempo / 60.0  # beats per second
    out: list[Note] = []
    for n in sorted(notes, key=lambda n: (n.start, n.pitch)):
        s = n.start
        frac = s % 1.0
        if grv.swing and abs(frac - 0.5) < 1e-6:
            s += grv.swing * 0.5
        elif grv.swing and abs(frac - 0.75) < 1e-6:
            s += grv.swing * 0.25
        if grv.humanize and s > 0:
            s += float(np.clip(rng.normal(0.0, grv.humanize / 2), -grv.humanize, grv.humanize)) * beat_s
        s = min(max(0.0, s), total - 0.02)
        end = min(total, n.end + (s - n.start))
        if end - s < 0.02:
            continue
        vel = int(
            np.clip(n.velocity + rng.integers(-grv.velocity_jitter, grv.velocity_jitter + 1), 1, max_velocity)
        )
        out.append(Note(s, end - s, n.pitch, vel))
    out.sort(key=lambda n: (n.start, n.pitch))
    tidy: list[Note] = []
    last: dict[int, int] = {}  # pitch -> index in tidy
    for n in out:
        j = last.get(n.pitch)
        if j is not None and tidy[j].end > n.start:
            prev = tidy[j]
            tidy[j] = Note(prev.start, max(0.01, n.start - prev.start), prev.pitch, prev.velocity)
        last[n.pitch] = len(tidy)
        tidy.append(n)
    return [n for n in tidy if n.duration >= 0.02]


def compose(timeline: Timeline, duration: float, options: GenerateOptions) -> Score:
    """The score for ``timeline`` over ``duration`` seconds (pure and deterministic)."""
    plans = plan_sections(timeline, duration, options.seed)
    grv = groove(options.style)
    sections: list[SectionScore] = []
    for k, plan in enumerate(plans):
        prof = profile(plan.emotion)
        rng = np.random.default_rng([options.seed, plan.index])
        ctx = _context(plan, prof, k + 1 < len(plans), rng)
        raw = {
            "pad": parts.pad(ctx, rng),
            "bass": parts.bass(ctx, rng),
            "arp": parts.arpeggio(ctx, rng),
            "melody": parts.melody(ctx, rng),
            "drums": drum_part.drums(ctx, grv, rng),
        }
        inst = instruments(options.style, plan.emotion)
        section_parts = []
        for role in ROLES:
            notes = _perform(raw[role], plan, grv, rng, _VELOCITY_CAP.get(role, 127))
            if notes:
                program = inst.kit if role == "drums" else getattr(inst, role)
                section_parts.append(Part(role, program, inst.volumes[role], tuple(notes)))
        chords = tuple(c.symbol for c in ctx.chords)
        sections.append(SectionScore(plan, tuple(section_parts), prof.reverb, chords))
    return Score(tuple(sections), float(duration), options.style, options.seed)
