"""One job (or hand-made inputs) -> the music report: per-section features and cue agreement, level
jumps, cadence, ducking and pumping, and the pass/fail checks of issue 12."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pretty_midi
import soundfile as sf

from devtools.music_eval import audio as au
from devtools.music_eval.cues import CUES, Measured, cue_table, judge
from devtools.music_eval.ducking import DuckStats, duck_stats, music_gain
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

    @property
    def agreement(self) -> float:
        pairs = [v for s in self.sections for v in s.cues.values() if v is not None]
        return sum(pairs) / len(pairs) if pairs else math.nan

    def checks(self) -> dict[str, bool]:
        lufs = [s.lufs for s in self.sections if math.isfinite(s.lufs)]
        med = float(np.median(lufs)) if lufs else math.nan
        out = {
            "cue_agreement": self.agreement >= MIN_AGREEMENT,
            "loudness_jumps": all(abs(j) <= MAX_JUMP_LU for j in self.jumps_lu if math.isfinite(j)),
            "loudness_balance": all(abs(x - med) <= MAX_FROM_MEDIAN_LU for x in lufs),
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
    table = cue_table()
    feats = [score_features(pm, s, e) for s, e, _ in sections]
    segs = [bgm[int(s * sample_rate) : int(e * sample_rate)] for s, e, _ in sections]
    lufs = [au.lufs(x, sample_rate) for x in segs]
    cents = [au.spectral_centroid(x, sample_rate) for x in segs]
    finite = [c for c in cents if math.isfinite(c)]
    median_c = float(np.median(finite)) if finite else math.nan
    reports = []
    for (s, e, emo), f, lu, c in zip(sections, feats, lufs, cents, strict=True):
        m = Measured(
            tempo=f.tempo,
            mode=f.key.mode if f.key else None,
            mean_pitch=f.mean_pitch,
            velocity=f.velocity,
            articulation=f.articulation,
            centroid_ratio=c / median_c if median_c > 0 else math.nan,
            regularity_cv=f.regularity_cv,
            dissonance=f.dissonance,
        )
        spec = table[emo]
        cues = {cue: judge(cue, getattr(spec, cue), m) for cue in CUES}
        reports.append(SectionReport(s, e, emo, f, lu, c, cues))
    end = len(bgm) / sample_rate
    cad = final_cadence(pm, feats[-1].key, end)
    duck = None
    if mix is not None:
        gain = music_gain(mix, bgm, voice, sample_rate)
        duck = duck_stats(gain, bgm, speech, [(s, e) for s, e, _ in sections], sample_rate)
    return MusicReport(
        sections=tuple(reports),
        jumps_lu=tuple(b - a for a, b in zip(lufs, lufs[1:], strict=False)),
        cadence=cad,
        tail_drop_db=au.tail_drop_db(bgm, sample_rate, cad.onset),
        duck=duck,
        duck_setting_db=duck_setting_db,
    )


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
