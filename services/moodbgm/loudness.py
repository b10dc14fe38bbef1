"""Streaming loudness DSP for the remix: BS.1770 K-weighting and gating, true peak, a true-peak limiter.

Every class here takes audio in blocks of any size and carries its filter state across blocks, so a
10-minute mix is measured and limited with flat memory and gives the same result as one big block.
The K-weighting filters are pyloudnorm's (the project's reference meter), so ``gated_loudness`` over
``SegmentPowers`` agrees with ``pyloudnorm.Meter.integrated_loudness``.
"""

from __future__ import annotations

import math

import numpy as np
from pyloudnorm.iirfilter import IIRfilter
from scipy import ndimage, signal

ABSOLUTE_GATE = -70.0
RELATIVE_GATE = -10.0
SEGMENTS_PER_BLOCK = 4  # 400 ms gating blocks, 75 % overlap = 100 ms segments


def db(x: float) -> float:
    return 20.0 * math.log10(x) if x > 0 else -math.inf


def undb(x: float) -> float:
    return 10.0 ** (x / 20.0)


class KWeighting:
    """BS.1770 K-weighting (pyloudnorm's high shelf + high pass) with state, for ``channels`` channels."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        stages = [
            IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, sample_rate, "high_shelf"),
            IIRfilter(0.0, 0.5, 38.0, sample_rate, "high_pass"),
        ]
        self._sos = np.array([np.concatenate([st.b, st.a]) for st in stages])
        self._gain = float(np.prod([st.passband_gain for st in stages]))
        self._zi = np.zeros((len(stages), 2, channels))

    def push(self, x: np.ndarray) -> np.ndarray:
        """``(n, channels)`` -> K-weighted float64 ``(n, channels)``."""
        y, self._zi = signal.sosfilt(self._sos, np.asarray(x, dtype=np.float64), axis=0, zi=self._zi)
        return y * self._gain


class SegmentPowers:
    """Sums per-sample values into 100 ms segments (the building block of BS.1770 gating)."""

    def __init__(self, sample_rate: int, columns: int) -> None:
        if sample_rate % 10:
            raise ValueError(f"sample rate must be a multiple of 10 Hz, got {sample_rate}")
        self.segment = sample_rate // 10
        self._done: list[np.ndarray] = []
        self._acc = np.zeros(columns)
        self._fill = 0

    def push(self, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=np.float64)
        i = 0
        if self._fill:
            k = min(self.segment - self._fill, len(v))
            self._acc += v[:k].sum(axis=0)
            self._fill += k
            i = k
            if self._fill == self.segment:
                self._done.append(self._acc / self.segment)
                self._acc, self._fill = np.zeros_like(self._acc), 0
        n_full = (len(v) - i) // self.segment
        if n_full:
            full = v[i : i + n_full * self.segment].reshape(n_full, self.segment, -1).mean(axis=1)
            self._done.extend(full)
            i += n_full * self.segment
        if i < len(v):
            self._acc += v[i:].sum(axis=0)
            self._fill += len(v) - i

    def means(self) -> np.ndarray:
        """Mean value per complete segment, ``(segments, columns)`` (an unfinished segment is left out)."""
        if not self._done:
            return np.zeros((0, len(self._acc)))
        return np.array(self._done)


def gated_loudness(segment_power: np.ndarray) -> float:
    """Integrated loudness (LUFS) from channel-summed K-weighted mean squares per 100 ms segment."""
    p = np.asarray(segment_power, dtype=np.float64)
    if len(p) < SEGMENTS_PER_BLOCK:
        return -math.inf
    z = np.convolve(p, np.ones(SEGMENTS_PER_BLOCK) / SEGMENTS_PER_BLOCK, mode="valid")
    with np.errstate(divide="ignore"):
        lj = -0.691 + 10.0 * np.log10(np.maximum(z, 0.0))
    gated = z[lj >= ABSOLUTE_GATE]
    if not len(gated):
        return -math.inf
    rel = -0.691 + 10.0 * math.log10(gated.mean()) + RELATIVE_GATE
    gated = z[(lj > rel) & (lj > ABSOLUTE_GATE)]
    if not len(gated):
        return -math.inf
    return -0.691 + 10.0 * math.log10(gated.mean())


class LoudnessMeter:
    """Integrated loudness of a signal pushed in blocks."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        self._k = KWeighting(sample_rate, channels)
        self._seg = SegmentPowers(sample_rate, 1)

    def push(self, x: np.ndarray) -> None:
        y = self._k.push(np.asarray(x).reshape(len(x), -1))
        self._seg.push((y * y).sum(axis=1, keepdims=True))

    def lufs(self) -> float:
        return gated_loudness(self._seg.means()[:, 0])


class Oversampler:
    """4x (``factor``) polyphase interpolation; ``push`` returns each input sample's peak over the
    interpolated points from that sample up to the next, ``delay`` samples late.

    Only peaks above ``floor`` matter to the callers (the limiter's ceiling, the meter's running
    maximum), so ``push`` interpolates only where they are possible: an interpolated point is at most
    ``bound`` (the largest sum of absolute taps of a phase) times the largest input sample under the
    filter. Elsewhere it returns that bound, which is ``<= floor``; with ``floor = 0`` every peak is exact.
    When more than an eighth of a block can reach the floor, the whole block is interpolated.
    """

    def __init__(self, channels: int, factor: int = 4, half_taps: int = 8) -> None:
        self.factor = factor
        self.delay = half_taps
        n = 2 * half_taps * factor + 1
        t = (np.arange(n) - (n - 1) / 2) / factor
        h = np.sinc(t) * np.kaiser(n, 8.0)
        self._taps = -(-n // factor)
        # phase p's taps, zero-padded to one length: y_p[i] = sum_j h[p + j * factor] * x[i - j]
        phases = np.stack([np.pad(h[p::factor], (0, self._taps - len(h[p::factor]))) for p in range(factor)])
        self._matrix = phases[:, ::-1].T.copy()  # (taps, factor): window x[i - taps + 1 .. i] @ it
        self.bound = float(np.abs(phases).sum(axis=1).max())
        self._hist = np.zeros((self._taps - 1, channels))

    def push(self, x: np.ndarray, floor: float = 0.0) -> np.ndarray:
        x2 = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        xx = np.concatenate([self._hist, x2])
        self._hist = xx[len(xx) - (self._taps - 1) :]
        n, taps = len(x2), self._taps
        if n == 0:
            return np.zeros(0)
        # output i reads xx[i : i + taps]; its peak is at most bound * max |xx| over that window
        level = np.abs(xx[:, 0])
        for c in range(1, xx.shape[1]):
            np.maximum(level, np.abs(xx[:, c]), out=level)
        reach = ndimage.maximum_filter1d(level, size=taps, mode="nearest")
        peak = self.bound * reach[taps // 2 : taps // 2 + n]
        hot = np.flatnonzero(peak > floor)
        if len(hot) > n // 8:  # loud material: interpolate everything, phase by phase
            peak[:] = 0.0
            for c in range(xx.shape[1]):
                col = np.ascontiguousarray(xx[:, c])
                for p in range(self.factor):
                    np.maximum(peak, np.abs(np.convolve(col, self._matrix[::-1, p], mode="valid")), out=peak)
        elif len(hot):
            windows = xx[hot[:, None] + np.arange(taps)]  # (k, taps, channels)
            peak[hot] = np.abs(np.einsum("ktc,tp->kcp", windows, self._matrix)).max(axis=(1, 2))
        return peak


class TruePeakMeter:
    """Maximum oversampled absolute sample value (dBTP) of a signal pushed in blocks."""

    def __init__(self, channels: int, factor: int = 4) -> None:
        self._os = Oversampler(channels, factor)
        self._channels = channels
        self.peak = 0.0

    def push(self, x: np.ndarray) -> None:
        if len(x):
            # the true peak is at least the sample peak: only points above both can raise it
            floor = max(self.peak, float(np.abs(x).max()))
            self.peak = max(self.peak, float(self._os.push(x, floor).max()))

    def dbtp(self) -> float:
        """Flushes the interpolator's tail and returns the true peak in dBTP."""
        self.push(np.zeros((self._os.delay + 1, self._channels)))
        return db(self.peak)


class TruePeakLimiter:
    """Look-ahead limiter keeping the oversampled peak under ``ceiling_db``.

    The gain is the minimum required gain over a window around each sample (look-ahead), released
    exponentially, then box-smoothed over the look-ahead length; the audio is delayed to match.
    ``push`` withholds the first ``latency`` samples; ``finish`` returns them, so the total output is
    exactly as long as the input.
    """

    def __init__(
        self,
        sample_rate: int,
        channels: int,
        ceiling_db: float,
        lookahead_ms: float = 5.0,
        release_ms: float = 80.0,
        factor: int = 4,
    ) -> None:
        self._ceiling = undb(ceiling_db)
        self._os = Oversampler(channels, factor)
        self._channels = channels
        self._len = max(1, round(lookahead_ms * sample_rate / 1000.0))
        self.latency = self._len + self._os.delay
        self._log_beta = -1.0 / max(release_ms * sample_rate / 1000.0, 1.0)
        L = self._len
        # required gain r[j] aligned with the audio (index j = sample j of the audio)
        self._r = np.ones(0)  # r values not yet consumed by the min window
        self._r_base = -self._os.delay  # audio index of self._r[0]
        self._u = 0.0  # attenuation (1 - h) of the last computed h
        self._h_hist = np.ones(L - 1)  # last L-1 values of h for the box average
        self._audio = np.zeros((0, channels))  # delayed audio not yet output
        self._n_in = 0
        self._n_out = 0
        self.max_reduction_db = 0.0
        # L leading zeros, so that the box average at the first samples sees computed gains
        self._drop = L
        self._push(np.zeros((L, channels)))

    def _gains(self, upto: int) -> np.ndarray:
        """Smoothed gains for audio samples ``self._n_out .. upto`` (exclusive)."""
        L = self._len
        j0 = self._n_out
        n = upto - j0
        if n <= 0:
            return np.ones(0)
        # gmin[k] = min r over [k-1, k+L] for k in j0..upto-1 (r index = audio index - r_base)
        lo = j0 - 1 - self._r_base
        win = self._r[lo : lo + n + L + 1]
        size = L + 2
        gmin = ndimage.minimum_filter1d(win, size=size, mode="nearest")[size // 2 : size // 2 + n]
        # release: u[k] = max(1 - gmin[k], beta * u[k-1]), vectorised as a cumulative max in log space
        a = 1.0 - gmin
        k = np.arange(1, n + 1, dtype=np.float64)
        with np.errstate(divide="ignore"):
            w = np.log(np.maximum(a, 0.0)) - k * self._log_beta
            start = math.log(self._u) if self._u > 0 else -math.inf
        cm = np.maximum.accumulate(np.maximum(w, start))
        u = np.exp(cm + k * self._log_beta)
        self._u = float(u[-1])
        h = 1.0 - u
        hh = np.concatenate([self._h_hist, h])
        c = np.concatenate([[0.0], np.cumsum(hh)])
        g = (c[L:] - c[:-L]) / L
        self._h_hist = hh[-(L - 1) :] if L > 1 else np.ones(0)
        # drop r values no longer needed (keep from j = upto - 1)
        cut = upto - 1 - self._r_base
        self._r = self._r[cut:]
        self._r_base += cut
        return g

    def push(self, x: np.ndarray) -> np.ndarray:
        out = self._push(np.asarray(x, dtype=np.float64).reshape(len(x), -1))
        drop = min(self._drop, len(out))
        self._drop -= drop
        return out[drop:]

    def _push(self, x2: np.ndarray) -> np.ndarray:
        peak = self._os.push(x2, floor=self._ceiling)  # below the ceiling a peak needs no gain
        self._r = np.concatenate([self._r, np.minimum(1.0, self._ceiling / np.maximum(peak, 1e-12))])
        self._audio = np.concatenate([self._audio, x2])
        self._n_in += len(x2)
        # r known up to audio index n_in - delay - 1; gmin[k] needs r up to k + L
        upto = self._n_in - self._os.delay - self._len
        g = self._gains(upto)
        if not len(g):
            return np.zeros((0, self._channels))
        out = self._audio[: len(g)] * g[:, None]
        self._audio = self._audio[len(g) :]
        self._n_out += len(g)
        self.max_reduction_db = max(self.max_reduction_db, -db(float(g.min())))
        return out

    def finish(self) -> np.ndarray:
        """Flush: returns the withheld samples (the total output length equals the input length)."""
        n_in = self._n_in
        need = n_in - self._n_out - self._drop
        out = self.push(np.zeros((self.latency + 1, self._channels)))
        self._n_in = n_in
        return out[:need]
