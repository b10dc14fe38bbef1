"""Riffusion's spectrogram image codec: audio <-> mel spectrogram <-> 8-bit image.

The conventions are Riffusion's, so its checkpoints (and LoRAs trained on our data set) read our
images the way they were trained: 44.1 kHz mono, 10 ms hop (one image column), 100 ms Hann window
in a 400 ms FFT, 512 HTK mel bins (no filter norm) over 0-10 kHz, amplitudes scaled to the image's
max, raised to the power 0.25, stored as ``255 - value`` in an RGB image (R = G = B) flipped so low
frequencies are at the bottom. A 512x512 image holds 5.12 s.

Decoding inverts the mel scale quickly (pseudo-inverse, clamped, refined by a few projected-gradient
steps of non-negative least squares) and recovers phase with fast Griffin-Lim (momentum 0.99, as
torchaudio), batched on whatever torch device the codec was built for.

Every image this module makes carries its params (and the amplitude it was scaled by) as JSON in a
PNG text chunk, ``PNG_KEY``. Reading an image whose params differ from the expected ones is a
``ValueError``; so is reading one without params (our data set images always have them).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse
import torch
from PIL import Image, PngImagePlugin
from scipy.signal import resample_poly

from moodbgm.files import atomic_path

PNG_KEY = "moodbgm:spectrogram"
DEFAULT_MAX_VALUE = 100.0
"""Amplitude assumed for an image that does not say (generated images): only the scale of the audio."""


@dataclass(frozen=True)
class SpectrogramParams:
    """How audio maps to an image. Riffusion's defaults; stored in every PNG we write."""

    sample_rate: int = 44_100
    step_size_ms: int = 10
    window_duration_ms: int = 100
    padded_duration_ms: int = 400
    num_frequencies: int = 512
    min_frequency: float = 0.0
    max_frequency: float = 10_000.0
    mel_scale: Literal["htk", "slaney"] = "htk"
    mel_norm: Literal["slaney"] | None = None
    power_for_image: float = 0.25

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {self.sample_rate}")
        if not 0 < self.step_size_ms <= self.window_duration_ms <= self.padded_duration_ms:
            raise ValueError("need 0 < step_size_ms <= window_duration_ms <= padded_duration_ms")
        if self.hop_length < 1:
            raise ValueError("step_size_ms is shorter than one sample")
        if self.num_frequencies < 8:
            raise ValueError(f"num_frequencies must be >= 8, got {self.num_frequencies}")
        if not 0 <= self.min_frequency < self.max_frequency <= self.sample_rate / 2:
            raise ValueError("need 0 <= min_frequency < max_frequency <= sample_rate / 2")
        if self.mel_scale not in ("htk", "slaney") or self.mel_norm not in (None, "slaney"):
            raise ValueError(f"unknown mel scale/norm {self.mel_scale!r}/{self.mel_norm!r}")
        if not 0 < self.power_for_image <= 1:
            raise ValueError(f"power_for_image must be in (0, 1], got {self.power_for_image}")

    @property
    def n_fft(self) -> int:
        return int(self.padded_duration_ms / 1000.0 * self.sample_rate)

    @property
    def win_length(self) -> int:
        return int(self.window_duration_ms / 1000.0 * self.sample_rate)

    @property
    def hop_length(self) -> int:
        return int(self.step_size_ms / 1000.0 * self.sample_rate)

    @property
    def n_stft(self) -> int:
        return self.n_fft // 2 + 1

    def width_for(self, seconds: float) -> int:
        """Image columns that hold ``seconds`` of audio."""
        return round(seconds * self.sample_rate / self.hop_length)

    def seconds_for(self, width: int) -> float:
        return width * self.hop_length / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpectrogramParams:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


RIFFUSION_PARAMS = SpectrogramParams()
"""Riffusion v1's conventions (the defaults)."""


# --------------------------------------------------------------------------- mel filter bank


def _hz_to_mel(f: np.ndarray, scale: str) -> np.ndarray:
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    safe = np.maximum(f, min_log_hz)
    return np.where(f >= min_log_hz, min_log_mel + np.log(safe / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m: np.ndarray, scale: str) -> np.ndarray:
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(params: SpectrogramParams) -> np.ndarray:
    """Triangular filters ``(n_stft, num_frequencies)``, as torchaudio's ``melscale_fbanks``."""
    all_freqs = np.linspace(0, params.sample_rate // 2, params.n_stft)
    m_min = _hz_to_mel(np.array(params.min_frequency, dtype=np.float64), params.mel_scale)
    m_max = _hz_to_mel(np.array(params.max_frequency, dtype=np.float64), params.mel_scale)
    f_pts = _mel_to_hz(np.linspace(m_min, m_max, params.num_frequencies + 2), params.mel_scale)
    f_diff = np.diff(f_pts)
    slopes = f_pts[None, :] - all_freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))
    if params.mel_norm == "slaney":
        fb *= (2.0 / (f_pts[2:] - f_pts[:-2]))[None, :]
    return fb.astype(np.float32)


# --------------------------------------------------------------------------- images


def image_from_mel(mel: np.ndarray, params: SpectrogramParams, max_value: float | None = None) -> Image.Image:
    """``(num_frequencies, frames)`` mel amplitudes -> RGB image carrying ``params`` and its scale."""
    mel = np.asarray(mel, dtype=np.float64)
    if mel.ndim != 2 or mel.shape[0] != params.num_frequencies:
        raise ValueError(f"mel must have shape ({params.num_frequencies}, frames), got {mel.shape}")
    peak = float(mel.max()) if max_value is None else float(max_value)
    if not math.isfinite(peak) or peak <= 0:
        peak = 1.0  # silence: all white
    data = np.power(np.clip(mel / peak, 0.0, 1.0), params.power_for_image) * 255.0
    pixels = (255.0 - np.round(data)).astype(np.uint8)[::-1]
    image = Image.fromarray(np.ascontiguousarray(pixels), mode="L").convert("RGB")
    image.info[PNG_KEY] = json.dumps({**params.to_dict(), "max_value": peak})
    return image


def mel_from_image(
    image: Image.Image | np.ndarray, params: SpectrogramParams, max_value: float = DEFAULT_MAX_VALUE
) -> np.ndarray:
    """Image (PIL, or pixels ``(H, W[, 3])`` in 0..255) -> ``(num_frequencies, width)`` mel amplitudes.

    Colour is averaged over channels (a generated image is not exactly grey).
    """
    if isinstance(image, Image.Image):
        image = image if image.mode in ("L", "RGB") else image.convert("RGB")
    data = np.asarray(image, dtype=np.float32)
    if data.ndim == 3:
        data = data.mean(axis=2)
    if data.ndim != 2 or data.shape[0] != params.num_frequencies:
        raise ValueError(
            f"image of shape {data.shape}: height must be num_frequencies {params.num_frequencies}"
        )
    data = np.clip((255.0 - data[::-1]) / 255.0, 0.0, 1.0)
    return np.power(data, 1.0 / params.power_for_image) * float(max_value)


def image_metadata(image: Image.Image) -> tuple[SpectrogramParams, float] | None:
    """The params and amplitude scale an image carries, or ``None`` when it has none."""
    raw = image.info.get(PNG_KEY)
    if raw is None:
        return None
    d = json.loads(raw)
    return SpectrogramParams.from_dict(d), float(d.get("max_value", DEFAULT_MAX_VALUE))


def save_png(image: Image.Image, path: str | os.PathLike[str]) -> Path:
    """Write an image made by this module as PNG (atomically), its params in a text chunk."""
    raw = image.info.get(PNG_KEY)
    if raw is None:
        raise ValueError("image carries no spectrogram params; make it with image_from_mel/audio_to_image")
    info = PngImagePlugin.PngInfo()
    info.add_text(PNG_KEY, raw)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=info)
    return Path(path)


def load_png(
    path: str | os.PathLike[str], expected: SpectrogramParams | None = RIFFUSION_PARAMS
) -> tuple[Image.Image, SpectrogramParams, float]:
    """Read a spectrogram PNG: image, its params and amplitude scale.

    Raises ``ValueError`` when the image has no params, or (``expected`` given) different ones.
    """
    with Image.open(path) as im:
        im.load()
        image = im.copy()
    image.info.update(im.info)
    meta = image_metadata(image)
    if meta is None:
        raise ValueError(f"{path}: no spectrogram params in the PNG ({PNG_KEY!r} text chunk)")
    params, max_value = meta
    if expected is not None and params != expected:
        diff = {
            k: (v, getattr(expected, k)) for k, v in params.to_dict().items() if getattr(expected, k) != v
        }
        raise ValueError(f"{path}: spectrogram params differ from the expected ones (got, expected): {diff}")
    return image, params, max_value


# --------------------------------------------------------------------------- codec


class SpectrogramCodec:
    """Audio <-> spectrogram images on one torch device; caches the filter bank and its inverse.

    ``griffin_lim_iters``/``momentum`` set phase recovery, ``mel_inverse_iters`` the projected-gradient
    refinement of the pseudo-inverse mel inversion (0: pseudo-inverse + clamp only).
    """

    def __init__(
        self,
        params: SpectrogramParams = RIFFUSION_PARAMS,
        device: str | torch.device = "cpu",
        griffin_lim_iters: int = 32,
        momentum: float = 0.99,
        mel_inverse_iters: int = 8,
    ) -> None:
        if griffin_lim_iters < 0 or mel_inverse_iters < 0:
            raise ValueError("iteration counts must be >= 0")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.params = params
        self.device = torch.device(device)
        self.griffin_lim_iters = griffin_lim_iters
        self.momentum = momentum
        self.mel_inverse_iters = mel_inverse_iters
        fb = mel_filterbank(params).astype(np.float64)  # (F, M), ~2 non-zeros per row
        self._fb = torch.from_numpy(fb.astype(np.float32)).to_sparse().coalesce().to(self.device)
        self._fb_t = (
            torch.from_numpy(np.ascontiguousarray(fb.T, dtype=np.float32))
            .to_sparse()
            .coalesce()
            .to(self.device)
        )
        self._window = torch.hann_window(params.win_length, device=self.device)
        self._n_bins = int(np.flatnonzero(fb.any(axis=1)).max()) + 1  # STFT bins under some mel filter
        # minimum-norm inverse of mel = fb.T @ x is x = fb @ (fb.T fb)^-1 mel; the Gram matrix is small
        fb_sp = scipy.sparse.csr_matrix(fb)
        gram = np.asarray((fb_sp.T @ fb_sp).todense())
        gram += np.eye(gram.shape[0]) * (1e-9 * np.trace(gram) / gram.shape[0])
        self._gram_inv = torch.from_numpy(np.linalg.inv(gram).astype(np.float32)).to(self.device)
        # step 1/L, L = largest eigenvalue of the Gram matrix, bounded above by its largest row sum
        self._step = float(1.0 / np.abs(gram).sum(axis=1).max())

    # ---- analysis
    def _stft(self, x: torch.Tensor) -> torch.Tensor:
        p = self.params
        return torch.stft(
            x, p.n_fft, p.hop_length, p.win_length, self._window, center=True, pad_mode="reflect",
            return_complex=True,
        )  # fmt: skip

    def _istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """Inverse of ``_stft`` (``(B, F, T)`` -> ``(B, length)``), as ``torch.istft`` but faster.

        Only the ``win_length`` samples under the window of each inverse FFT frame are overlap-added
        (with ``fold``) and normalised by the summed squared window.
        """
        p = self.params
        b, _, t = spec.shape
        left = (p.n_fft - p.win_length) // 2
        frames = torch.fft.irfft(spec.transpose(1, 2), n=p.n_fft)[..., left : left + p.win_length]
        frames = (frames * self._window).transpose(1, 2)  # (B, win, T)
        total = p.win_length + p.hop_length * (t - 1)
        fold = torch.nn.functional.fold
        y = fold(frames, (1, total), (1, p.win_length), stride=(1, p.hop_length)).reshape(b, total)
        sq = (self._window**2).reshape(1, -1, 1).expand(1, -1, t)
        env = fold(sq, (1, total), (1, p.win_length), stride=(1, p.hop_length)).reshape(total)
        y = y / torch.where(env > 1e-11, env, torch.ones_like(env))
        start = p.n_fft // 2 - left  # centred frames: sample 0 sits at n_fft // 2 of the first frame
        y = y[:, start : start + length]
        if y.shape[1] < length:
            y = torch.nn.functional.pad(y, (0, length - y.shape[1]))
        return y

    def mel_from_audio(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Mono or ``(n, channels)`` audio -> ``(num_frequencies, n // hop)`` mel amplitudes (mono mix)."""
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim == 2:
            x = x.mean(axis=1)
        if x.ndim != 1:
            raise ValueError(f"audio must be (n,) or (n, channels), got {audio.shape}")
        p = self.params
        if sample_rate != p.sample_rate:
            g = math.gcd(int(sample_rate), p.sample_rate)
            x = resample_poly(x, p.sample_rate // g, int(sample_rate) // g).astype(np.float32)
        width = x.shape[0] // p.hop_length
        if width < 1:
            raise ValueError(f"audio shorter than one spectrogram column ({p.step_size_ms} ms)")
        with torch.no_grad():
            mag = self._stft(torch.from_numpy(x).to(self.device)).abs()
            mel = self._fb_t @ mag
        return mel[:, :width].cpu().numpy()

    def audio_to_image(self, audio: np.ndarray, sample_rate: int) -> Image.Image:
        """Audio -> spectrogram image (width = duration / hop), with its params attached."""
        return image_from_mel(self.mel_from_audio(audio, sample_rate), self.params)

    # ---- synthesis
    @staticmethod
    def _apply(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``matrix (N, K) @ x (B, K, T) -> (B, N, T)`` for a sparse or dense ``matrix``."""
        b, k, t = x.shape
        out = matrix @ x.permute(1, 0, 2).reshape(k, b * t)
        return out.reshape(-1, b, t).permute(1, 0, 2)

    def linear_from_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """``(B, M, T)`` mel -> ``(B, F, T)`` non-negative linear amplitudes (fast NNLS).

        Start from the minimum-norm solution, clamped at 0, then take ``mel_inverse_iters``
        projected-gradient steps on ``||fb.T x - mel||^2`` subject to ``x >= 0``.
        """
        x = torch.clamp(self._apply(self._fb, self._apply(self._gram_inv, mel)), min=0.0)
        for _ in range(self.mel_inverse_iters):
            residual = self._apply(self._fb_t, x) - mel
            x = torch.clamp(x - self._step * self._apply(self._fb, residual), min=0.0)
        return x

    def griffin_lim(self, magnitude: torch.Tensor, length: int, seed: int = 0) -> torch.Tensor:
        """``(B, F, T)`` linear magnitudes -> ``(B, length)`` waveforms (fast Griffin-Lim)."""
        # bins above the top mel filter stay zero: iterate on the ones below only (irfft zero-pads)
        k = self._n_bins
        magnitude = magnitude[:, :k]
        gen = torch.Generator(device="cpu").manual_seed(seed)
        phase = torch.rand(magnitude.shape, generator=gen, dtype=torch.float32) * (2 * math.pi)
        angles = torch.polar(torch.ones_like(phase), phase).to(self.device)
        alpha = self.momentum / (1.0 + self.momentum)
        tprev: torch.Tensor | None = None
        for _ in range(self.griffin_lim_iters):
            rebuilt = self._stft(self._istft(magnitude * angles, length))[:, :k]
            angles = rebuilt if tprev is None or alpha == 0 else rebuilt - alpha * tprev
            ri = torch.view_as_real(angles)
            angles = torch.view_as_complex(ri * torch.rsqrt((ri * ri).sum(-1, keepdim=True) + 1e-32))
            tprev = rebuilt
        return self._istft(magnitude * angles, length)

    def audio_from_mel(self, mel: np.ndarray | torch.Tensor, seed: int = 0) -> np.ndarray:
        """``(M, W)`` or ``(B, M, W)`` mel amplitudes -> float32 ``(W * hop,)`` / ``(B, W * hop)`` audio."""
        m = torch.as_tensor(np.asarray(mel, dtype=np.float32) if isinstance(mel, np.ndarray) else mel)
        single = m.ndim == 2
        m = (m[None] if single else m).to(self.device, torch.float32)
        if m.shape[1] != self.params.num_frequencies:
            raise ValueError(f"mel must have {self.params.num_frequencies} bins, got {m.shape[1]}")
        width = m.shape[2]
        # one more frame than columns, so the centred frames cover exactly width * hop samples
        m = torch.cat([m, m[:, :, -1:]], dim=2)
        with torch.no_grad():
            wave = self.griffin_lim(self.linear_from_mel(m), width * self.params.hop_length, seed)
        out = wave.cpu().numpy().astype(np.float32)
        return out[0] if single else out

    def images_to_audio(
        self, images: Sequence[Image.Image], max_values: Sequence[float] | None = None, seed: int = 0
    ) -> np.ndarray:
        """Equal-width images -> ``(B, width * hop)`` mono audio at ``params.sample_rate``.

        The amplitude scale of each image is ``max_values[i]``, else what the image carries, else
        ``DEFAULT_MAX_VALUE``. Images carrying other params are a ``ValueError``.
        """
        mels = []
        for i, image in enumerate(images):
            meta = image_metadata(image)
            if meta is not None and meta[0] != self.params:
                raise ValueError(f"image {i} carries spectrogram params different from the codec's")
            scale = max_values[i] if max_values is not None else (meta[1] if meta else DEFAULT_MAX_VALUE)
            mels.append(mel_from_image(image, self.params, scale))
        if len({m.shape for m in mels}) > 1:
            raise ValueError("images_to_audio needs images of equal size")
        return self.audio_from_mel(np.stack(mels), seed=seed)

    def image_to_audio(self, image: Image.Image, max_value: float | None = None, seed: int = 0) -> np.ndarray:
        return self.images_to_audio([image], None if max_value is None else [max_value], seed)[0]


def spectral_convergence(reference: np.ndarray, estimate: np.ndarray, params: SpectrogramParams) -> float:
    """``|| |S_ref| - |S_est| ||_F / || |S_ref| ||_F`` over the STFT of ``params`` (lower is better)."""
    n = min(len(reference), len(estimate))
    codec = SpectrogramCodec(params)
    with torch.no_grad():
        a = codec._stft(torch.from_numpy(np.ascontiguousarray(reference[:n], dtype=np.float32))).abs()
        b = codec._stft(torch.from_numpy(np.ascontiguousarray(estimate[:n], dtype=np.float32))).abs()
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(a))
