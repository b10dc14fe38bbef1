"""The composer's score: section plans, parts and notes (times in beats from the section start).

A ``Score`` is the single source for both outputs: ``midi.score_to_midi`` writes it as a standard MIDI
file and ``render.render`` plays it through FluidSynth, so the MIDI and the audio always agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

ROLES: tuple[str, ...] = ("pad", "bass", "arp", "melody", "drums")
CHANNELS: dict[str, int] = {"pad": 0, "bass": 1, "arp": 2, "melody": 3, "drums": 9}


@dataclass(frozen=True, slots=True)
class Note:
    """One note: ``start`` and ``duration`` in beats from the start of its section."""

    start: float
    duration: float
    pitch: int
    velocity: int

    def __post_init__(self) -> None:
        if not (
            self.start >= 0 and self.duration > 0 and 0 <= self.pitch <= 127 and 1 <= self.velocity <= 127
        ):
            raise ValueError(f"bad note {self}")

    @property
    def end(self) -> float:
        return self.start + self.duration


@dataclass(frozen=True)
class SectionPlan:
    """Where a section sits in time and its musical frame.

    ``start``/``end`` are where the music actually changes (on bar lines); ``target_start``/
    ``target_end`` are the timeline's times. ``bars`` lists bar lengths in beats (all whole bars).
    ``tempo`` is the section's tempo; ``tempi``, when given, is the tempo of every beat (a ramp from
    the previous section's tempo over the first bar, a ritardando into the final chord), and beat
    times follow it. Beats past the end (notes that bridge into the next section) keep the last tempo.
    """

    index: int
    emotion: str
    target_start: float
    target_end: float
    start: float
    tempo: float
    bars: tuple[int, ...]
    beats_per_bar: int
    start_beat: int  # beats before this section, for the MIDI tick grid
    tonic: int  # pitch class 0..11
    mode: str
    tempi: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tempo) and self.tempo > 0):
            raise ValueError(f"section {self.index}: tempo must be > 0, got {self.tempo}")
        if not self.bars or any(b <= 0 or b > self.beats_per_bar for b in self.bars):
            raise ValueError(f"section {self.index}: bad bar lengths {self.bars}")
        if not 0 <= self.tonic < 12:
            raise ValueError(f"section {self.index}: tonic must be a pitch class, got {self.tonic}")
        if self.tempi and (
            len(self.tempi) != self.beats or not all(math.isfinite(t) and t > 0 for t in self.tempi)
        ):
            raise ValueError(f"section {self.index}: tempi must give one tempo > 0 per beat")

    @property
    def beats(self) -> int:
        return sum(self.bars)

    @property
    def seconds_per_beat(self) -> float:
        return 60.0 / self.tempo

    def beat_tempo(self, beat: int) -> float:
        """The tempo of beat ``beat`` (0-based)."""
        if not self.tempi:
            return self.tempo
        return self.tempi[min(max(beat, 0), len(self.tempi) - 1)]

    @cached_property
    def _beat_times(self) -> tuple[float, ...]:
        """Seconds from the section start of every beat 0..beats."""
        out, t = [0.0], 0.0
        for b in range(self.beats):
            t += 60.0 / self.beat_tempo(b)
            out.append(t)
        return tuple(out)

    @property
    def duration(self) -> float:
        return self._beat_times[-1]

    @property
    def end(self) -> float:
        return self.start + self.duration

    def time(self, beat: float) -> float:
        """Seconds from the start of the piece of ``beat`` (beats from this section's start)."""
        times = self._beat_times
        if beat >= self.beats:
            return self.start + times[-1] + (beat - self.beats) * 60.0 / self.beat_tempo(self.beats - 1)
        i = max(0, math.floor(beat))
        return self.start + times[i] + (beat - i) * 60.0 / self.beat_tempo(i)

    @property
    def bar_starts(self) -> tuple[int, ...]:
        out, t = [], 0
        for b in self.bars:
            out.append(t)
            t += b
        return tuple(out)


@dataclass(frozen=True)
class Part:
    """One instrument's notes in one section."""

    role: str
    program: int  # GM program, 0-based (the drum kit preset for drums)
    volume: int  # CC7
    notes: tuple[Note, ...]

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown part role {self.role!r}")
        if not (0 <= self.program <= 127 and 0 <= self.volume <= 127):
            raise ValueError(f"part {self.role}: program and volume must be 0..127")

    @property
    def channel(self) -> int:
        return CHANNELS[self.role]

    @property
    def is_drum(self) -> bool:
        return self.role == "drums"


@dataclass(frozen=True)
class SectionScore:
    plan: SectionPlan
    parts: tuple[Part, ...]
    reverb: float
    chords: tuple[str, ...] = ()  # roman numeral of each bar


@dataclass(frozen=True)
class Score:
    """The whole piece: sections back to back; ``duration`` is the length the audio must have."""

    sections: tuple[SectionScore, ...]
    duration: float
    style: str
    seed: int

    def __post_init__(self) -> None:
        if not self.sections:
            raise ValueError("Score: needs at least one section")
        if not (math.isfinite(self.duration) and self.duration > 0):
            raise ValueError(f"Score: duration must be > 0, got {self.duration}")

    @property
    def plans(self) -> tuple[SectionPlan, ...]:
        return tuple(s.plan for s in self.sections)

    def note_count(self) -> int:
        return sum(len(p.notes) for s in self.sections for p in s.parts)

    def bar_plan(self) -> dict[str, Any]:
        """The tempo and bar plan as the job records it (``bars.json``): per section its start and end
        (seconds, where the music changes), tempo (BPM), metre and the start time of every bar inside the
        piece; the editor draws the bar lines as snap guides."""
        sections = []
        for sec in self.sections:
            p = sec.plan
            bars = [round(p.time(b), 4) for b in p.bar_starts if p.time(b) < self.duration - 1e-6]
            sections.append(
                {
                    "index": p.index,
                    "emotion": p.emotion,
                    "start": round(p.start, 4),
                    "end": round(min(p.end, self.duration), 4),
                    "tempo": round(p.tempo, 3),
                    "meter": f"{p.beats_per_bar}/4",
                    "beats_per_bar": p.beats_per_bar,
                    "bars": bars,
                }
            )
        return {"generator": "composer", "duration": self.duration, "sections": sections}
