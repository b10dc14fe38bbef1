"""One job (or hand-made inputs) -> the music report: per-section features and cue agreement, level
jumps, cadence, ducking and pumping, and the pass/fail checks of issue 12."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pretty_midi
import soundfile as sf

from devtools.music_eval import audio as au
from devtools.music_eval.cues import Measured, brightness_order, judge, table
from devtools.music_eval.ducking import DuckStats, duck_stats, gain_db, music_gain
from devtools.music_eval.symbolic import (
    Cadence,
    ScoreFeatures,
    final_cadence,
    load_midi,
    score_features,
    section_starts_from_markers,
)
from moodbgm.files import read_json

# the bar (issue 12, "Done when")
MIN_AGREEMENT = 0.90
MAX_JUMP_LU = 3.0
MAX_FROM_MEDIAN_LU = 3.0
RELEASE_S = (1.0, 2.5)
MIN_TAIL_DROP_DB = 10.0
DUCK_TOLERANCE_DB = 1.5
MAX_UNDER_SPEECH_SPREAD_DB = 4.0
Span = tuple[float, float]


@dataclass(frozen=True)
class SectionReport:
    start: float
    end: float
    emotion: str
    score: ScoreFeatures
    lufs: float  # bgm.wav, before ducking
    centroid_hz: float
    cues: dict[str, bool | None]  # per cue: agrees, disagrees, or not judged


@dataclass(frozen=True)
class MusicReport:
    sections: tuple[SectionReport, ...]
    jumps_lu: tuple[float, ...]  # between adjacent sections (signed, next minus previous)
    cadence: Cadence
    tail_drop_db: float
    duck: DuckStats | None  # None: no mix to judge
    duck_setting_db: float | None
    music_gain_db: np.ndarray | None = field(default=None, repr=False)  # per 10 ms frame, for the figure
    speech: tuple[Span, ...] = ()

    @property
    def agreement(self) -> float:
        pairs = [v for s in self.sections for v in s.cues.values() if v is not None]
        return sum(pairs) / len(pairs) if pairs else math.nan

    def checks(self) -> dict[str, bool]:
        lufs = [s.lufs for s in self.sections if math.isfinite(s.lufs)]
        med = float(np.median(lufs)) if lufs else math.nan
        out = {
            "cue_agreement": self.agreement >= MIN_AGREEMENT,
            "loudness_jumps": all(round(abs(j), 1) <= MAX_JUMP_LU for j in self.jumps_lu if math.isfinite(j)),
            "loudness_balance": all(round(abs(x - med), 1) <= MAX_FROM_MEDIAN_LU for x in lufs),
            "melody_everywhere": all(s.score.melody_per_bar > 0 for s in self.sections),
            "cadence_tonic": self.cadence.is_tonic,
            "cadence_release": RELEASE_S[0] <= self.cadence.release_s <= RELEASE_S[1]
            and self.tail_drop_db >= MIN_TAIL_DROP_DB,
        }
        if self.duck is not None:
            out["no_pumps"] = self.duck.pumps == 0
            if self.duck_setting_db is not None and math.isfinite(self.duck.depth_db):
                out["duck_depth"] = abs(self.duck.depth_db - self.duck_setting_db) <= DUCK_TOLERANCE_DB
            out["under_speech_spread"] = self.duck.under_speech_spread_db <= MAX_UNDER_SPEECH_SPREAD_DB
        return out

    @property
    def passed(self) -> bool:
        return all(self.checks().values())

    def to_dict(self) -> dict[str, Any]:
        def clean(x: Any) -> Any:
            if isinstance(x, np.generic):
                x = x.item()
            if isinstance(x, float):
                return round(x, 3) if math.isfinite(x) else None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, list | tuple):
                return [clean(v) for v in x]
            return x

        d: dict[str, Any] = {
            "sections": [asdict(s) for s in self.sections],
            "jumps_lu": list(self.jumps_lu),
            "cadence": asdict(self.cadence),
            "tail_drop_db": self.tail_drop_db,
            "agreement": self.agreement,
            "checks": self.checks(),
            "passed": self.passed,
            "speech": list(self.speech),
        }
        for s, sec in zip(d["sections"], self.sections, strict=True):
            s["score"]["key"] = sec.score.key.name if sec.score.key else None
        d["cadence"]["key"] = self.cadence.key.name if self.cadence.key else None
        if self.duck is not None:
            d["duck"] = {
                **{k: v for k, v in asdict(self.duck).items() if k != "pauses"},
                "setting_db": self.duck_setting_db,
                "pumps": self.duck.pumps,
                "under_speech_spread_db": self.duck.under_speech_spread_db,
                "pauses": [{**asdict(p), "pump": p.pump} for p in self.duck.pauses],
            }
        return clean(d)


def evaluate(
    pm: pretty_midi.PrettyMIDI,
    bgm: np.ndarray,
    sample_rate: int,
    sections: Sequence[tuple[float, float, str]],
    mix: np.ndarray | None = None,
    voice: np.ndarray | None = None,
    speech: Sequence[Span] = (),
    duck_setting_db: float | None = None,
) -> MusicReport:
    """Judge a bed (``bgm``, stereo or mono, and its MIDI) over ``sections`` (start, end, emotion), and,
    given ``mix`` (+ ``voice`` and the ``speech`` spans), how it was ducked."""
    cue_table = table()
    feats = [score_features(pm, s, e) for s, e, _ in sections]
    segs = [bgm[int(s * sample_rate) : int(e * sample_rate)] for s, e, _ in sections]
    lufs = [au.lufs(x, sample_rate) for x in segs]
    cents = [au.spectral_centroid(x, sample_rate) for x in segs]
    octaves = [
        math.log2(c / f.f0_hz) if c > 0 and f.f0_hz > 0 else math.nan
        for c, f in zip(cents, feats, strict=True)
    ]
    bright = brightness_order([cue_table[emo].brightness for *_, emo in sections], octaves)
    median_l = _median([x for x in lufs if math.isfinite(x)])
    reports = []
    for (s, e, emo), f, lu, c, b in zip(sections, feats, lufs, cents, bright, strict=True):
        m = Measured(
            tempo=f.tempo,
            mode=f.key.mode if f.key else None,
            melody_pitch=f.melody_pitch,
            loudness=lu - median_l,
            articulation=f.articulation,
            brightness=b,
            regularity_cv=f.regularity_cv,
            dissonance=f.dissonance,
        )
        reports.append(SectionReport(s, e, emo, f, lu, c, judge(cue_table[emo], m)))
    end = len(bgm) / sample_rate
    cad = final_cadence(pm, feats[-1].key, end)
    duck = gdb = None
    if mix is not None:
        gain = music_gain(mix, bgm, voice, sample_rate)
        duck = duck_stats(gain, bgm, speech, [(s, e) for s, e, _ in sections], sample_rate)
        gdb = gain_db(gain)
    return MusicReport(
        sections=tuple(reports),
        jumps_lu=tuple(b - a for a, b in itertools.pairwise(lufs)),
        cadence=cad,
        tail_drop_db=au.tail_drop_db(bgm, sample_rate, cad.onset),
        duck=duck,
        duck_setting_db=duck_setting_db,
        music_gain_db=gdb,
        speech=tuple(speech),
    )


def _median(xs: Sequence[float]) -> float:
    return float(np.median(xs)) if len(xs) else math.nan


def evaluate_job(root: str | Path) -> MusicReport:
    """A finished job directory: bgm.mid, bgm.wav, mix.wav, voice.wav, timeline.json, mix.json, job.json."""
    job = Path(root)
    data = (job / "bgm.mid").read_bytes()
    pm = load_midi(data)
    timeline = read_json(job / "timeline.json")
    secs = [(float(s["start"]), float(s["end"]), str(s["emotion"])) for s in timeline["sections"]]
    starts = section_starts_from_markers(data, pm)
    if len(starts) == len(secs):  # where the music really changes (bar lines), not the timeline's times
        ends = [*starts[1:], secs[-1][1]]
        secs = [(a, b, emo) for a, b, (_, _, emo) in zip(starts, ends, secs, strict=True)]
    bgm, sr = sf.read(str(job / "bgm.wav"), dtype="float32", always_2d=True)
    mix = voice = None
    speech: list[Span] = []
    setting = None
    if (job / "mix.wav").exists() and (job / "mix.json").exists():
        mix, msr = sf.read(str(job / "mix.wav"), dtype="float32", always_2d=True)
        if msr != sr:
            raise ValueError(f"{job}: mix.wav is {msr} Hz but bgm.wav {sr} Hz")
        speech = [(float(a), float(b)) for a, b in read_json(job / "mix.json")["speech"]]
        if (job / "voice.wav").exists():
            voice, _ = sf.read(str(job / "voice.wav"), dtype="float32")
        setting = float(read_json(job / "job.json").get("options", {}).get("duck_db", 11.0))
    return evaluate(pm, bgm, sr, secs, mix, voice, speech, setting)
