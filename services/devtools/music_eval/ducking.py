"""How the mix treats the music: effective duck depth, level under speech, pumping.

The music as mixed is measured, not assumed: for every 10 ms frame, ``mix.wav`` is regressed (least
squares over both channels) on the job's two stems, ``bgm.wav`` (stereo) and ``voice.wav`` (mono, on
both channels): ``mix ≈ a·bgm + b·voice``. ``a`` is the gain the mix gave the music in that frame --
ducking, loudness normalisation and the limiter included -- whatever code produced it; the music in
the mix is ``a·bgm``. (The stems are uncorrelated, so the 2x2 system is well conditioned wherever the
music sounds; frames where it is silent are left out.)

* duck depth: the median gain where the music is settled at its bed level (out of speech, at least
  ``SETTLE_S`` after the previous speech and ``LEAD_S`` before the next) minus the median gain inside
  the speech spans (after ``ATTACK_S``). With no settled frame the 99th percentile of the gain is the
  reference.
* level under speech: K-weighted loudness of ``a·bgm`` over each section's speech frames.
* pumps: pauses between speech spans shorter than ``PUMP_PAUSE_S`` in which the music's gain rises
  more than ``PUMP_DB`` above where it was at the end of the speech.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter

from moodbgm.loudness import KWeighting

FRAME_RATE = 100
SETTLE_S = 1.5
LEAD_S = 0.3
ATTACK_S = 0.15
PUMP_PAUSE_S = 1.2
PUMP_DB = 2.0
MIN_SPEECH_S = 1.0  # a section needs this much speech to have a level under speech
Span = tuple[float, float]


@dataclass(frozen=True)
class Pause:
    start: float
    end: float
    rise_db: float  # highest music gain in the pause over the gain at its start

    @property
    def pump(self) -> bool:
        return self.end - self.start < PUMP_PAUSE_S and self.rise_db > PUMP_DB


@dataclass(frozen=True)
class DuckStats:
    depth_db: float  # bed gain minus gain under speech (nan: no speech)
    reference: str  # "settled" | "p99"
    bed_gain_db: float
    speech_gain_db: float
    under_speech_lufs: tuple[float, ...]  # per section (nan: < MIN_SPEECH_S of speech)
    pauses: tuple[Pause, ...]

    @property
    def pumps(self) -> int:
        return sum(p.pump for p in self.pauses)

    @property
    def under_speech_spread_db(self) -> float:
        v = [x for x in self.under_speech_lufs if math.isfinite(x)]
        return max(v) - min(v) if len(v) > 1 else 0.0


def music_gain(mix: np.ndarray, bgm: np.ndarray, voice: np.ndarray | None, sample_rate: int) -> np.ndarray:
    """Per-frame (``FRAME_RATE``) linear gain of the music in the mix; nan where the music is silent."""
    hop = sample_rate // FRAME_RATE
    n = min(len(mix), len(bgm)) // hop * hop
    m = _stereo(mix)[:n].reshape(-1, hop, 2)
    b = _stereo(bgm)[:n].reshape(-1, hop, 2)
    a11 = (b * b).sum(axis=(1, 2))
    c1 = (m * b).sum(axis=(1, 2))
    if voice is None:
        a = c1 / np.maximum(a11, 1e-30)
    else:
        v = _mono(voice)
        v = np.pad(v, (0, max(0, n - len(v))))[:n].reshape(-1, hop)
        a12 = (v * b.sum(axis=2)).sum(axis=1)
        a22 = 2 * (v * v).sum(axis=1)
        c2 = (v * m.sum(axis=2)).sum(axis=1)
        det = a11 * a22 - a12 * a12
        solo = c1 / np.maximum(a11, 1e-30)
        ok = det > 1e-9 * np.maximum(a11 * a22, 1e-30)
        a = np.where(ok, (c1 * a22 - c2 * a12) / np.where(ok, det, 1.0), solo)
    silent = a11 / (2 * hop) < 1e-8  # music under -80 dBFS
    return np.where(silent, np.nan, a)


def gain_db(gain: np.ndarray) -> np.ndarray:
    g = np.where(gain > 0, gain, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = 20 * np.log10(g)
    filled = np.where(np.isnan(d), np.nanmedian(d) if np.any(np.isfinite(d)) else 0.0, d)
    return np.where(np.isnan(d), np.nan, median_filter(filled, size=5, mode="nearest"))


def _stereo(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return np.repeat(a, 2, axis=1) if a.shape[1] == 1 else a[:, :2]


def _mono(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    return a.mean(axis=1) if a.ndim == 2 else a


def _mask(spans: Sequence[Span], frames: int, trim_start: float = 0.0) -> np.ndarray:
    m = np.zeros(frames, dtype=bool)
    for s, e in spans:
        m[max(0, round((s + trim_start) * FRAME_RATE)) : max(0, round(e * FRAME_RATE))] = True
    return m


def duck_stats(
    gain: np.ndarray,
    bgm: np.ndarray,
    speech: Sequence[Span],
    sections: Sequence[Span],
    sample_rate: int,
) -> DuckStats:
    gdb = gain_db(gain)
    frames = len(gdb)
    spans = sorted(speech)
    inside = _mask(spans, frames, ATTACK_S)
    settled = np.ones(frames, dtype=bool)
    for s, e in spans:
        settled[max(0, round((s - LEAD_S) * FRAME_RATE)) : round((e + SETTLE_S) * FRAME_RATE)] = False
    finite = np.isfinite(gdb)
    if np.any(settled & finite):
        bed, ref = float(np.median(gdb[settled & finite])), "settled"
    else:
        bed, ref = (float(np.percentile(gdb[finite], 99)) if finite.any() else math.nan), "p99"
    under = float(np.median(gdb[inside & finite])) if np.any(inside & finite) else math.nan
    pauses = []
    for (_, e0), (s1, _) in itertools.pairwise(spans):
        a, b = round(e0 * FRAME_RATE), min(frames, round((s1 + 0.1) * FRAME_RATE))
        base = gdb[max(0, a - 20) : a]
        seg = gdb[a:b]
        if b - a < 1 or not np.any(np.isfinite(seg)) or not np.any(np.isfinite(base)):
            continue
        pauses.append(Pause(e0, s1, float(np.nanmax(seg) - np.nanmedian(base))))
    return DuckStats(
        depth_db=bed - under,
        reference=ref,
        bed_gain_db=bed,
        speech_gain_db=under,
        under_speech_lufs=_under_speech(gain, bgm, spans, sections, sample_rate),
        pauses=tuple(pauses),
    )


def _under_speech(
    gain: np.ndarray, bgm: np.ndarray, spans: Sequence[Span], sections: Sequence[Span], sample_rate: int
) -> tuple[float, ...]:
    """K-weighted loudness (LUFS, ungated) of the music as mixed over each section's speech frames."""
    hop = sample_rate // FRAME_RATE
    k = KWeighting(sample_rate, 2).push(_stereo(bgm))
    n = min(len(gain), len(k) // hop)
    power = (k[: n * hop] ** 2).reshape(n, hop, 2).sum(axis=2).mean(axis=1) * np.nan_to_num(gain[:n]) ** 2
    inside = _mask(spans, n, ATTACK_S)
    out = []
    for s, e in sections:
        sel = inside.copy()
        sel[: round(s * FRAME_RATE)] = False
        sel[round(e * FRAME_RATE) :] = False
        p = power[sel]
        ok = len(p) >= MIN_SPEECH_S * FRAME_RATE and p.mean() > 0
        out.append(-0.691 + 10 * math.log10(p.mean()) if ok else math.nan)
    return tuple(out)
