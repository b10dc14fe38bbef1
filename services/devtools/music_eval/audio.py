"""What the audio says: loudness (BS.1770, pyloudnorm), brightness and the tail of a rendered bed."""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm as pyln

MIN_LOUDNESS_S = 0.45  # BS.1770 needs a 400 ms block


def lufs(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness (LUFS) of ``(n,)`` or ``(n, ch)``; -inf for silence or < 0.45 s."""
    a = np.asarray(audio, dtype=np.float64)
    if len(a) < MIN_LOUDNESS_S * sample_rate or not np.any(a):
        return -math.inf
    return float(pyln.Meter(sample_rate).integrated_loudness(a))


def spectral_centroid(audio: np.ndarray, sample_rate: int, n_fft: int = 4096) -> float:
    """Centroid (Hz) of the long-term magnitude spectrum (mean of Hann frames); nan for silence."""
    x = np.asarray(audio, dtype=np.float64)
    x = x.mean(axis=1) if x.ndim == 2 else x
    if len(x) < n_fft or not np.any(x):
        return float("nan")
    hop = n_fft // 2
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    mag = np.abs(np.fft.rfft(frames, axis=1)).mean(axis=0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    return float((freqs * mag).sum() / mag.sum())


def frame_db(audio: np.ndarray, sample_rate: int, frame_s: float = 0.05) -> np.ndarray:
    """RMS level (dBFS) of consecutive frames, channels summed in power."""
    x = np.asarray(audio, dtype=np.float64)
    x = x.reshape(len(x), -1)
    hop = max(1, int(frame_s * sample_rate))
    n = len(x) // hop
    p = (x[: n * hop] ** 2).reshape(n, hop, -1).mean(axis=(1, 2))
    return 10 * np.log10(np.maximum(p, 1e-12))


def tail_drop_db(audio: np.ndarray, sample_rate: int, onset: float) -> float:
    """How far (dB) the last 100 ms sit under the loudest 100 ms after ``onset``: a release decays, a cut
    does not."""
    i = int(onset * sample_rate)
    seg = frame_db(np.asarray(audio)[i:], sample_rate, 0.1)
    if len(seg) < 2:
        return 0.0
    return float(seg.max() - seg[-1])
