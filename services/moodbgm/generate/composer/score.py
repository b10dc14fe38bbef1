"""Timeline -> Score: a key and tempo plan over whole bars, then the theme in every section (pure).

Planning (``plan_sections``): each section gets whole bars of its emotion's metre at a tempo within
+-8 % of the emotion's nominal tempo (``mapping.TEMPO_STRETCH``), the bar count and tempo chosen so
the section ends as close to the timeline's boundary as possible; where no whole-bar fit exists the
change lands on the nearest bar line and the next section aims at its own planned end, so errors
never add up. A section too short for half a bar is merged into the one before. A tempo change is a
ramp over the new section's first bar (one tempo per beat), unless the tempi are equal or related by
half/double time. The last section ends exactly at the duration: its final bar is a ritardando that
absorbs the remainder and holds the closing tonic chord. Keys follow ``keys``: one home key, closely
related keys per section, home again at the end.

Composing (``compose``): the seed's theme (``theme.make_theme``) is presented in every section,
transformed by the emotion (mode, augmentation or diminution, register, articulation, leaps), with
phrase-by-phrase variation (inversion, sequence, rhythmic displacement, counter-line, episodes on
the emotion's own progressions built from the motif's head). Each section's last bar pivots into the
next key, a pickup in the melody leads into the next section's first note and a pad tone common to
both chords is held across the change. The piece ends with a cadence (``theme.cadence_chords``).

All randomness comes from ``numpy`` Generators seeded with ``(seed, section index)``: the same seed
gives the same notes, MIDI bytes and audio.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from moodbgm.generate.base import GenerateOptions
from moodbgm.generate.composer import drums as drum_part
from moodbgm.generate.composer import keys, parts
from moodbgm.generate.composer import theme as th
from moodbgm.generate.composer.events import ROLES, Note, Part, Score, SectionPlan, SectionScore
from moodbgm.generate.composer.harmony import Chord, nearest_pitch, parse_chord
from moodbgm.generate.composer.intensity import intensify
from moodbgm.generate.composer.mapping import Groove, MoodProfile, groove, instruments, profile
from moodbgm.types import Timeline

logger = logging.getLogger(__name__)

_VELOCITY_CAP = {"melody": 64}  # the melody stays soft under the voice
_RAMP_SAME = math.log(1.03)  # tempi this close need no ramp
_RIT_MAX = 1.6  # the bar before the closing chord may last up to this many times its a-tempo length
RELEASE_S = 1.5  # the closing chord sounds this long before the end (the render's fade-out)
PLAIN_MODES = {"phrygian": "minor", "lydian": "major"}  # the last section: home, unambiguous
VARIATIONS = ("inversion", "sequence", "displaced", "counter", "episode")


# --- tempo and bar plan -------------------------------------------------------------------------


def _ramped(prev: float | None, tempo: float) -> bool:
    if prev is None:
        return False
    r = abs(math.log(prev / tempo))
    return r > _RAMP_SAME and abs(r - math.log(2)) > _RAMP_SAME


def section_tempi(
    n_bars: int, bpb: int, tempo: float, ramp_from: float | None, rit: float = 1.0
) -> tuple[float, ...]:
    """One tempo per beat: a geometric ramp from ``ramp_from`` over the first bar, ``tempo`` after,
    and a ritardando to ``tempo * rit`` over the last bar (``rit`` < 1)."""
    out = [tempo] * (n_bars * bpb)
    if _ramped(ramp_from, tempo):
        assert ramp_from is not None
        for b in range(bpb):
            out[b] = ramp_from * (tempo / ramp_from) ** ((b + 1) / bpb)
    if rit != 1.0:
        for b in range(bpb):
            i = (n_bars - 1) * bpb + b
            out[i] = out[i] * rit ** ((b + 1) / bpb)
    return tuple(out)


def _seconds(tempi: tuple[float, ...]) -> float:
    return sum(60.0 / t for t in tempi)


def _bisect(f: Callable[[float], float], lo: float, hi: float, target: float) -> float:
    """``x`` in [lo, hi] with ``f(x) == target`` for a decreasing ``f`` (clamped)."""
    if f(lo) <= target:
        return lo
    if f(hi) >= target:
        return hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if f(mid) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def fit_tempo(
    length: float, prof: MoodProfile, ramp_from: float | None = None, last: bool = False
) -> tuple[float, int, tuple[float, ...]]:
    """``(tempo, bars, tempi)``: whole bars and a tempo within the emotion's range for ``length`` s.

    The exact fit nearest the nominal tempo; else the nearest whole-bar length. ``last``: the bars
    fill ``length - RELEASE_S`` exactly (the bar before the final one is a ritardando that absorbs
    the remainder), and one more bar holds the closing chord, struck ``RELEASE_S`` before the end.
    """
    if not (math.isfinite(length) and length > 0):
        raise ValueError(f"section length must be > 0, got {length}")
    lo, nominal, hi = prof.tempo
    bpb = prof.beats_per_bar
    if last:
        body = length - RELEASE_S
        final_tempo = min(nominal, bpb * 60.0 / RELEASE_S)  # the held chord lasts past the end
        if body < bpb * 30.0 / hi:  # no room before the closing chord: it covers the section
            n = max(1, math.ceil(length * lo / 60.0 / bpb - 1e-9))
            while _seconds(section_tempi(n, bpb, lo, ramp_from)) < length:
                n += 1
            tempi = section_tempi(n, bpb, lo, ramp_from)
            return lo, n, tempi if any(abs(t - lo) > 1e-9 for t in tempi) else ()
        tempo, n, tempi = _fit(body, prof, ramp_from, rit=True)
        tempi = (tempi or (tempo,) * (n * bpb)) + (min(tempo, final_tempo),) * bpb
        return tempo, n + 1, tempi
    return _fit(length, prof, ramp_from, rit=False)


def _fit(
    length: float, prof: MoodProfile, ramp_from: float | None, rit: bool
) -> tuple[float, int, tuple[float, ...]]:
    lo, nominal, hi = prof.tempo
    bpb = prof.beats_per_bar

    def dur(n: int, t: float, r: float = 1.0) -> float:
        return _seconds(section_tempi(n, bpb, t, ramp_from, r))

    def longest(n: int, t: float) -> float:  # with the slowest ritardando
        return dur(n, t) + (_RIT_MAX - 1) * bpb * 60 / t

    n_min = max(1, math.floor(length * lo / 60 / bpb / (_RIT_MAX if rit else 1.0)))
    n_max = max(n_min, math.ceil(length * hi / 60 / bpb) + 1)
    best: tuple[float, float, int] | None = None
    for n in range(n_min, n_max + 1):
        if rit:  # a tempo whose a-tempo length fits under `length` and whose rit. can reach it
            t_fast = _bisect(partial(dur, n), lo, hi, length)
            t_slow = _bisect(partial(longest, n), lo, hi, length)
            if dur(n, t_fast) > length + 1e-6 or longest(n, t_slow) < length - 1e-6:
                continue
            t = min(max(nominal, t_fast), max(t_fast, t_slow))
        else:
            t = _bisect(partial(dur, n), lo, hi, length)
            if abs(dur(n, t) - length) > 1e-6:
                continue
        cost = abs(math.log(t / nominal))
        if best is None or cost < best[0]:
            best = (cost, t, n)
    if best is None:  # no exact fit: the nearest whole-bar length at a tempo in range
        options = [(abs(dur(n, t) - length), abs(math.log(t / nominal)), t, n)
                   for n in range(max(1, n_min - 1), n_max + 2) for t in (lo, nominal, hi)]  # fmt: skip
        _, _, tempo, n = min(options)
    else:
        _, tempo, n = best
    tempi = section_tempi(n, bpb, tempo, ramp_from)
    if rit:  # the last bar stretches (or squeezes) to end exactly at `length`
        before = _seconds(tempi[: (n - 1) * bpb])
        target = max(length - before, 1e-3)
        factor = _bisect(lambda r: dur(n, tempo, r) - before, 0.05, 4.0, target)
        tempi = section_tempi(n, bpb, tempo, ramp_from, factor)
    return tempo, n, tempi if any(abs(t - tempo) > 1e-9 for t in tempi) else ()


def plan_sections(timeline: Timeline, duration: float, seed: int) -> tuple[SectionPlan, ...]:
    """Whole-bar plans for the timeline's sections over ``[0, duration]``, with the key plan."""
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be > 0, got {duration}")
    targets = [(i, s) for i, s in enumerate(timeline.sections) if s.start < duration - 1e-6]
    plans: list[SectionPlan] = []
    home: tuple[int, str] | None = None
    for k, (i, sec) in enumerate(targets):
        prof = profile(sec.emotion)
        last = k == len(targets) - 1
        target_end = duration if last else min(sec.end, duration)
        cursor = plans[-1].end if plans else 0.0
        half_bar = prof.beats_per_bar * 30.0 / prof.tempo[2]
        if target_end - cursor < half_bar and not plans and not last:
            # a first section too short for half a bar: the next section starts the piece
            logger.debug("section %d (%s) opens shorter than half a bar; the next starts", i, sec.emotion)
            continue
        if plans and target_end - cursor < half_bar:
            # too short for half a bar after alignment: the previous section carries on over it
            logger.debug("section %d (%s) is shorter than half a bar; merged", i, sec.emotion)
            prev = plans.pop()
            plans.append(
                _plan(prev.index, prev.emotion, prev.target_start, target_end, plans, prev.tonic, last)
            )
            continue
        rng = np.random.default_rng([seed, i, 1])
        if home is None:
            tonic = int(prof.tonics[int(rng.integers(0, len(prof.tonics)))])
            home = (tonic, prof.mode)
        elif last:
            tonic = home[0]  # home again for the cadence
        else:
            tonic = keys.related_tonic(prof.mode, home, (plans[-1].tonic, plans[-1].mode), prof.tonics, rng)
        plans.append(_plan(i, sec.emotion, sec.start, target_end, plans, tonic, last))
    if home is not None and plans[-1].tonic != home[0]:  # the last section was merged into another
        p = plans.pop()
        plans.append(_plan(p.index, p.emotion, p.target_start, p.target_end, plans, home[0], True))
    return tuple(plans)


def _plan(
    index: int,
    emotion: str,
    target_start: float,
    target_end: float,
    before: list[SectionPlan],
    tonic: int,
    last: bool,
) -> SectionPlan:
    prof = profile(emotion)
    start = before[-1].end if before else 0.0
    start_beat = before[-1].start_beat + before[-1].beats if before else 0
    ramp_from = before[-1].beat_tempo(before[-1].beats - 1) if before else None
    length = max(target_end - start, prof.beats_per_bar * 30.0 / prof.tempo[2])
    tempo, n, tempi = fit_tempo(length, prof, ramp_from, last)
    bpb = prof.beats_per_bar
    mode = PLAIN_MODES.get(prof.mode, prof.mode) if last else prof.mode
    return SectionPlan(
        index, emotion, target_start, target_end, start, tempo, (bpb,) * n, bpb, start_beat, tonic, mode,
        tempi if any(abs(t - tempo) > 1e-9 for t in tempi) else (),
    )  # fmt: skip


# --- the theme in a section ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Phrase:
    kind: str
    first_bar: int
    n_bars: int


@dataclass(frozen=True)
class Layout:
    """A section's harmony, melody (degrees) and bass line before the parts are written."""

    phrases: tuple[parts.Phrase, ...]
    chords: tuple[Chord, ...]  # one per bar
    melody: tuple[th.TNote, ...]  # section beats, scale degrees
    bass: tuple[tuple[float, float, int], ...]  # (start, end, pitch class), section beats
    base: int  # MIDI pitch of the tonic for the melody


def _phrase_plan(n_bars: int, prof: MoodProfile, rng: np.random.Generator) -> list[_Phrase]:
    span = max(th.THEME_BARS, round(th.THEME_BARS * prof.theme_rate))
    out: list[_Phrase] = []
    bar, prev = 0, ""
    while bar < n_bars:
        k = len(out)
        kind = "statement" if k % 4 == 0 else str(rng.choice([v for v in VARIATIONS if v != prev]))
        length = min(4 if kind == "episode" else span, n_bars - bar)
        out.append(_Phrase(kind, bar, length))
        bar, prev = bar + length, kind
    return out


def _chord_degree(chord: Chord, mode: str) -> int:
    """The scale degree nearest below the chord's root."""
    scale = th.SCALES[mode]
    return max(d for d in range(7) if scale[d] <= chord.root)


def _theme_phrase(
    theme: th.Theme, kind: str, prof: MoodProfile, rng: np.random.Generator
) -> tuple[tuple[int, ...], tuple[th.TNote, ...], tuple[th.TNote, ...]]:
    """(harmony degree per 4/4 theme bar, melody, bass) for one theme-based phrase, in 4/4 beats."""
    harmony = theme.harmony
    melody, bass = theme.melody, theme.bass
    if kind == "inversion":
        melody = th.invert(melody)
    elif kind == "sequence":
        head = th.fragment(melody, 8.0)
        melody = head + th.shift(th.sequence(head, 1), 8.0)
        harmony = (harmony[0], harmony[1], (harmony[0] + 1) % 7, (harmony[1] + 1) % 7)
        bass_head = th.fragment(bass, 8.0)
        bass = bass_head + th.shift(th.sequence(bass_head, 1), 8.0)
    elif kind == "displaced":
        melody = th.displace(melody, float(rng.choice([0.5, 1.0])), float(th.THEME_BEATS))
    elif kind == "counter":
        melody = th.counter_line(harmony, 4.0, start=melody[0].degree + 2)
    if prof.melody_leap:
        melody = th.leap(melody, rng)
    return harmony, melody, bass


def _held(notes: tuple[th.TNote, ...], until: float) -> tuple[th.TNote, ...]:
    """The last note sustained to ``until`` beats."""
    if not notes:
        return notes
    last = notes[-1]
    return (*notes[:-1], th.TNote(last.onset, until - last.onset, last.degree))


def _bar_degrees(harmony: tuple[int, ...], rate: float, n_bars: int) -> list[int]:
    """The theme's chord degree of each bar of a phrase (augmentation holds each chord two bars)."""
    per_bar = [h for h in harmony for _ in range(2)] if rate >= 2 else list(harmony)
    return [per_bar[b % len(per_bar)] for b in range(n_bars)]


def layout(plan: SectionPlan, prof: MoodProfile, theme: th.Theme, rng: np.random.Generator) -> Layout:
    """Phrases, chords, melody and bass line of one section (before pivot, pickup and cadence)."""
    n_bars, bpb, mode = len(plan.bars), plan.beats_per_bar, plan.mode
    chords: list[Chord] = []
    melody: list[th.TNote] = []
    bass: list[tuple[float, float, int]] = []
    phrases: list[parts.Phrase] = []
    plan_phrases = _phrase_plan(n_bars, prof, rng)
    for k, ph in enumerate(plan_phrases):
        b0 = float(plan.bar_starts[ph.first_bar])
        span = float(ph.n_bars * bpb)
        if ph.kind == "episode":
            prog = prof.progressions[int(rng.integers(0, len(prof.progressions)))]
            ph_chords = [parse_chord(prog[b % len(prog)]) for b in range(ph.n_bars)]
            head = th.fragment(theme.melody, 2.0)
            notes: list[th.TNote] = []
            for b, chord in enumerate(ph_chords):
                target = _chord_degree(chord, mode) + 2  # the head starts on the chord's third
                step = target - head[0].degree
                step -= 7 * round(step / 7)
                notes += th.shift(th.sequence(head, step), 4.0 * b)
            ph_melody = th.to_meter(tuple(notes), bpb)
            ph_bass: tuple[th.TNote, ...] = ()
            bar_degrees: list[int] = []
            progression = prog
        else:
            harmony, mel, bl = _theme_phrase(theme, ph.kind, prof, rng)
            rate = prof.theme_rate
            bar_degrees = _bar_degrees(harmony, rate, ph.n_bars)
            ph_chords = [th.chord_for(d, mode, plan.emotion) for d in bar_degrees]
            ph_melody = th.to_meter(th.scale_time(mel, rate), bpb)
            ph_bass = th.to_meter(th.scale_time(bl, max(rate, 1.0)), bpb)
            if rate < 1:  # diminution: the motif compressed into a bar and its last note held, then
                # its head fragmented, a step higher and displaced by an eighth, and held again
                motif = th.fragment(ph_melody, float(bpb))
                head = th.displace(th.sequence(th.fragment(motif, 0.5 * bpb), 1), 0.5, float(bpb))
                ph_melody = _held(motif, 2.0 * bpb) + th.shift(_held(head, 2.0 * bpb), 2.0 * bpb)
            progression = tuple(c.symbol for c in ph_chords)
        chords += ph_chords
        melody += [
            th.TNote(b0 + n.onset, min(n.length, span - n.onset), n.degree)
            for n in ph_melody
            if n.onset < span - 1e-9
        ]
        for n in ph_bass:
            if n.onset >= span - 1e-9:
                continue
            bar = int(n.onset // bpb)
            chord = ph_chords[bar]
            on_root = ph.kind != "episode" and n.degree % 7 == bar_degrees[bar] % 7
            pc = (plan.tonic + (chord.root if on_root else th.degree_offset(n.degree, mode))) % 12
            bass.append((b0 + n.onset, b0 + min(n.onset + n.length, span), pc))
        layers = {"pad", "bass", "arp", "drums", "melody"}
        total = len(plan_phrases)
        if total >= 3 and k == 0 and rng.random() < 0.7:
            layers.add("drums_light")  # intro: kick only
        elif 0 < k < total - 1 and rng.random() < 0.15:
            layers.discard("drums")  # breakdown (the level under speech stays steady: bass and arp go on)
        phrases.append(
            parts.Phrase(
                ph.first_bar, ph.n_bars, progression, frozenset(layers),
                str(rng.choice(prof.arp_shapes)), str(rng.choice(prof.bass_patterns)),
                0 if k == 0 else int(rng.integers(0, 3)), ph.kind,
            )
        )  # fmt: skip
    # register: the tonic's octave and a shift by a third (a chord tone moves to the next one) that
    # put the melody's mean nearest the cue table's height
    best: tuple[float, int, int] | None = None
    for step in (0, 2, -2):
        degrees = [n.degree + step for n in melody] or [0]
        base = th.tonic_base(plan.tonic, prof.cues.height, degrees, mode)
        mean = float(np.mean([th.realise(d, mode, base) for d in degrees]))
        if best is None or abs(mean - prof.cues.height) < best[0] - 1e-9:
            best = (abs(mean - prof.cues.height), step, base)
    assert best is not None
    _, step, base = best
    melody = [th.TNote(n.onset, n.length, n.degree + step) for n in melody]
    return Layout(tuple(phrases), tuple(chords), tuple(melody), tuple(bass), base)


def _with_ending(lay: Layout, plan: SectionPlan, style: str) -> Layout:
    """The closing cadence: penultimate chord V (or IV), the last bar the tonic, held."""
    n, bpb = len(plan.bars), plan.beats_per_bar
    pre, tonic_chord = th.cadence_chords(plan.mode, style)
    chords = list(lay.chords)
    chords[-1] = tonic_chord
    last0 = float(plan.bar_starts[-1])
    cut = float(plan.bar_starts[-2]) if n >= 2 else last0
    melody = [th.TNote(m.onset, min(m.length, cut - m.onset), m.degree) for m in lay.melody if m.onset < cut]
    prev = melody[-1].degree if melody else 0
    if n >= 2:
        chords[-2] = pre
        pen0 = float(plan.bar_starts[-2])
        line = (5, 3) if pre.symbol.upper().startswith("IV") else (4, 1)
        octave = 7 * round((prev - line[0]) / 7)
        half = bpb / 2
        melody += [
            th.TNote(pen0, half, line[0] + octave),
            th.TNote(pen0 + half, bpb - half, line[1] + octave),
        ]
        prev = line[1] + octave
    final = 2 if pre.symbol.upper().startswith("IV") else 0
    final += 7 * round((prev - final) / 7)
    melody.append(th.TNote(last0, float(bpb), final))
    bass = [b for b in lay.bass if b[0] < cut]
    if n >= 2:
        bass.append((float(plan.bar_starts[-2]), last0, (plan.tonic + pre.root) % 12))
    bass.append((last0, last0 + bpb, plan.tonic))
    return Layout(lay.phrases, tuple(chords), tuple(melody), tuple(bass), lay.base)


def _with_pivot(lay: Layout, plan: SectionPlan, nxt: SectionPlan) -> Layout:
    pivot = keys.pivot_chord((plan.tonic, plan.mode), (nxt.tonic, nxt.mode))
    if pivot is None or len(plan.bars) < 2:
        return lay
    if pivot.symbol == "V/new" and len(plan.bars) < 8:  # a foreign dominant would blur a short section's key
        return lay
    chords = (*lay.chords[:-1], pivot)
    last0 = float(plan.bar_starts[-1])
    bass = tuple(b for b in lay.bass if b[0] < last0)  # the pivot's root in the bass
    return Layout(lay.phrases, chords, lay.melody, bass, lay.base)


def _realise_melody(
    lay: Layout, plan: SectionPlan, prof: MoodProfile, rng: np.random.Generator
) -> list[Note]:
    """Degrees -> pitches and the emotion's articulation, accents and swells."""
    cues = prof.cues
    out: list[Note] = []
    notes = sorted(lay.melody, key=lambda n: n.onset)
    base_vel = min(60, round(prof.velocity * 0.72))
    bar_beats = plan.beats_per_bar
    for i, n in enumerate(notes):
        slot = (notes[i + 1].onset if i + 1 < len(notes) else plan.beats) - n.onset
        length = min(n.length, slot)
        if length <= 0:
            continue
        length = length * cues.articulation if cues.articulation < 0.9 else length
        onset = n.onset
        if cues.regularity == "low" and prof.beats_per_bar == 4 and i and rng.random() < 0.35:
            onset = min(onset + 0.25, n.onset + max(0.0, slot - 0.3))  # displaced by a 16th
        pitch = th.realise(n.degree, plan.mode, lay.base)
        accent = 1.0 if abs(onset % bar_beats) < 1e-9 else 0.85
        if cues.dissonance == "high" and cues.regularity == "high":  # marcato (anger)
            accent = 1.1 if abs(onset - round(onset)) < 1e-9 else 0.8
        vel = base_vel * accent
        if prof.pad_style == "tremolo":  # swells: 2-bar crescendo and decrescendo
            vel *= 0.75 + 0.3 * math.sin(math.pi * (onset % (2 * bar_beats)) / (2 * bar_beats))
        vel_i = int(np.clip(round(vel + rng.integers(-3, 4)), 12, 64))
        out.append(Note(onset, max(0.08, length), pitch, vel_i))
    return out


def _pickup(notes: list[Note], plan: SectionPlan, nxt_first: int, nxt: SectionPlan) -> list[Note]:
    """Two eighths on the last beat, stepping up to the next section's first note (its pitch class)
    in the next key."""
    scale = sorted(
        p
        for p in range(nxt_first - 14, nxt_first)
        if (p - nxt.tonic) % 12 in {s for s in th.SCALES[nxt.mode]}
    )
    steps = scale[-2:]
    start = plan.beats - 1.0
    kept = []
    for n in notes:
        if n.start >= start:
            continue
        kept.append(
            Note(n.start, min(n.duration, start - n.start), n.pitch, n.velocity) if n.end > start else n
        )
    vel = max(24, min(56, (kept[-1].velocity if kept else 44)))
    if kept:  # in this section's register, nearest its last note: the pitch classes lead on
        octave = 12 * round((kept[-1].pitch - steps[-1]) / 12)
        steps = [p + octave for p in steps]
    kept += [Note(start + 0.5 * i, 0.45, p, vel) for i, p in enumerate(steps)]
    return kept


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
    return _tidy(out)


def _tidy(notes: list[Note]) -> list[Note]:
    """Sorted, and a note of a pitch ends where the next note of that pitch starts."""
    notes = sorted(notes, key=lambda n: (n.start, n.pitch))
    tidy: list[Note] = []
    last: dict[int, int] = {}  # pitch -> index in tidy
    for n in notes:
        j = last.get(n.pitch)
        if j is not None and tidy[j].end > n.start:
            prev = tidy[j]
            tidy[j] = Note(prev.start, max(0.01, n.start - prev.start), prev.pitch, prev.velocity)
        last[n.pitch] = len(tidy)
        tidy.append(n)
    return [n for n in tidy if n.duration >= 0.02]


def _bridge(plan: SectionPlan, lay: Layout, nxt: SectionPlan, nxt_lay: Layout) -> Note | None:
    """A soft pad tone common to the last chord and the next section's first, held over the change."""
    a = lay.chords[-1].pitch_classes(plan.tonic)
    b = nxt_lay.chords[0].pitch_classes(nxt.tonic)
    pc = keys.common_tone(a, b, keys.scale_pcs(plan.tonic, plan.mode) & keys.scale_pcs(nxt.tonic, nxt.mode))
    if pc is None:
        return None
    start = float(plan.beats - 1)  # from the last beat
    overhang_s = min(1.2, 0.5 * nxt.beats_per_bar * 60.0 / nxt.beat_tempo(0))
    overhang = overhang_s * plan.beat_tempo(plan.beats - 1) / 60.0
    return Note(start, plan.beats - start + overhang, nearest_pitch(pc, 40), 50)  # below the pads


def compose(timeline: Timeline, duration: float, options: GenerateOptions) -> Score:
    """The score for ``timeline`` over ``duration`` seconds (pure and deterministic)."""
    plans = plan_sections(timeline, duration, options.seed)
    grv = groove(options.style)
    theme = th.make_theme(options.seed)
    rngs = [np.random.default_rng([options.seed, p.index]) for p in plans]
    layouts = [layout(p, profile(p.emotion), theme, r) for p, r in zip(plans, rngs, strict=True)]
    first_pitches = [
        th.realise(lay.melody[0].degree, p.mode, lay.base) if lay.melody else None
        for p, lay in zip(plans, layouts, strict=True)
    ]
    for k, plan in enumerate(plans):
        if k + 1 < len(plans):
            layouts[k] = _with_pivot(layouts[k], plan, plans[k + 1])
        else:
            layouts[k] = _with_ending(layouts[k], plan, options.style)
    sections: list[SectionScore] = []
    for k, plan in enumerate(plans):
        prof, rng, lay = profile(plan.emotion), rngs[k], layouts[k]
        has_next = k + 1 < len(plans)
        melody = _realise_melody(lay, plan, prof, rng)
        nxt_first = first_pitches[k + 1] if has_next else None
        if has_next and nxt_first is not None and plan.beats >= 2:
            melody = _pickup(melody, plan, nxt_first, plans[k + 1])
        ctx = parts.SectionContext(plan, prof, lay.chords, lay.phrases, has_next, lay.bass, not has_next)
        raw = {
            "pad": parts.pad(ctx, rng),
            "bass": parts.bass(ctx, rng),
            "arp": parts.arpeggio(ctx, rng),
            "melody": melody,
            "drums": drum_part.drums(ctx, grv, rng),
        }
        # the edit's intensity as activity (density, articulation, voices, drums); a no-op at the default
        more = np.random.default_rng([options.seed, plan.index, 2])
        raw = intensify(raw, timeline.sections[plan.index].intensity, plan, not has_next, more)
        inst = instruments(options.style, plan.emotion)
        section_parts = []
        for role in ROLES:
            notes = _perform(raw[role], plan, grv, rng, _VELOCITY_CAP.get(role, 127))
            if role == "pad" and has_next:
                bridge = _bridge(plan, lay, plans[k + 1], layouts[k + 1])
                if bridge is not None:
                    notes = _tidy(
                        [n for n in notes if n.pitch != bridge.pitch or n.end <= bridge.start] + [bridge]
                    )
            if not has_next:  # the closing chord ends with the piece
                notes = _cut(notes, plan, duration)
            if notes:
                program = inst.kit if role == "drums" else getattr(inst, role)
                section_parts.append(Part(role, program, inst.volumes[role], tuple(notes)))
        chords = tuple(c.symbol for c in lay.chords)
        sections.append(SectionScore(plan, tuple(section_parts), prof.reverb, chords))
    return Score(_untangle_bridges(sections), float(duration), options.style, options.seed)


def _cut(notes: list[Note], plan: SectionPlan, duration: float) -> list[Note]:
    """Notes cut at ``duration`` seconds (the last bar may run past the end of the video)."""
    if plan.end <= duration + 1e-9:
        return notes
    last = len(plan.bars) - 1
    b0 = plan.bar_starts[last]
    end = b0 + (duration - plan.time(b0)) * plan.beat_tempo(b0) / 60.0
    return [
        Note(n.start, min(n.duration, end - n.start), n.pitch, n.velocity)
        for n in notes
        if n.start < end - 0.02
    ]


def _untangle_bridges(sections: list[SectionScore]) -> tuple[SectionScore, ...]:
    """A note held past its section ends before the next section plays that pitch on that part."""
    out = list(sections)
    for k in range(len(out) - 1):
        sec, nxt = out[k], out[k + 1]
        plan = sec.plan
        new_parts = []
        for part in sec.parts:
            nxt_part = next((p for p in nxt.parts if p.role == part.role), None)
            notes = []
            for n in part.notes:
                if n.end > plan.beats + 1e-9 and nxt_part is not None:
                    clash = [m.start for m in nxt_part.notes if m.pitch == n.pitch]
                    if clash:
                        t_clash = nxt.plan.time(min(clash))
                        # beats of this section (extrapolated at its last tempo) up to the clash
                        beats = plan.beats + (t_clash - plan.end) * plan.beat_tempo(plan.beats - 1) / 60.0
                        end = min(n.end, max(float(plan.beats), beats - 0.05))
                        n = Note(n.start, end - n.start, n.pitch, n.velocity)
                notes.append(n)
            new_parts.append(Part(part.role, part.program, part.volume, tuple(notes)))
        out[k] = SectionScore(plan, tuple(new_parts), sec.reverb, sec.chords)
    return tuple(out)
