"""Audio -> training crops: decode and resample, seeded crop offsets, silence rejection, loudness.

Every step is a plain function of its arguments; crop offsets come from a generator seeded with the
build seed and a hash of the track's id, so they do not depend on the order tracks are processed in.
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path

import numpy as np
import pyloudnorm
import soundfile as sf
from scipy.signal import resample_poly

logger = logging.getLogger(__name__)

_PEAK = 0.99


def stable_hash(text: str) -> int:
    """A 64-bit hash of ``text`` that is the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def load_mono(path: Path, sample_rate: int) -> tuple[np.ndarray, int]:
    """Any audio file -> (mono float32 at ``sample_rate``, the file's own sample rate).

    Formats libsndfile reads (WAV, FLAC, OGG, MP3) are read directly; anything else is decoded by
    ffmpeg through ``moodbgm.media`` (the project's one ffmpeg boundary), whose ``MediaError``
    subclasses (``NotMediaError``, ``TruncatedMediaError``, ...) name what is wrong with the file.
    """
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.LibsndfileError:
        from moodbgm.errors import MediaError
        from moodbgm.media import load_audio, probe

        info = probe(path)
        if info.audio is None:
            raise MediaError(f"{path}: no audio stream", str(path)) from None
        return load_audio(path, sample_rate=sample_rate, mono=True).astype(np.float32), info.audio.sample_rate
    mono = audio.mean(axis=1)
    if sr != sample_rate:
        g = math.gcd(int(sr), sample_rate)
        mono = resample_poly(mono, sample_rate // g, int(sr) // g)
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)


def crop_offsets(n_samples: int, crop_samples: int, count: int, seed: int, source: str) -> list[int]:
    """``count`` random crop starts (samples) in ``[0, n_samples - crop_samples]``, in draw order.

    Seeded by ``seed`` and ``source``; empty when the audio is shorter than one crop.
    """
    if crop_samples < 1 or count < 0:
        raise ValueError("need crop_samples >= 1 and count >= 0")
    room = n_samples - crop_samples
    if room < 0:
        return []
    rng = np.random.default_rng([seed, stable_hash(source)])
    return [int(x) for x in rng.integers(0, room + 1, size=count)]


def rms_dbfs(x: np.ndarray) -> float:
    """RMS level of the signal around its mean, in dB relative to full scale (a full-scale sine is
    -3 dBFS); ``-inf`` for silence. A DC offset is no sound: a constant crop is ``-inf``."""
    x64 = x.astype(np.float64)
    rms = float(np.sqrt(np.mean(np.square(x64 - x64.mean())))) if x.size else 0.0
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def normalize_loudness(x: np.ndarray, sample_rate: int, target_lufs: float) -> np.ndarray:
    """Scale ``x`` to ``target_lufs`` integrated loudness (BS.1770), then down to peak 0.99 if it clips."""
    meter = pyloudnorm.Meter(sample_rate)
    loudness = meter.integrated_loudness(x.astype(np.float64))
    if not math.isfinite(loudness):
        raise ValueError("crop has no measurable loudness (silent)")
    y = x.astype(np.float64) * 10.0 ** ((target_lufs - loudness) / 20.0)
    peak = float(np.abs(y).max())
    if peak > _PEAK:
        logger.debug("crop peaks at %.2f after loudness normalisation; scaled down", peak)
        y *= _PEAK / peak
    return y.astype(np.float32)
