"""Voice activity: where in the soundtrack someone speaks, as ``(start, end)`` spans in seconds.

The model is Silero VAD's ONNX file, shipped inside the ``silero-vad`` wheel, run with onnxruntime
directly (no torch, no network; the package itself is not imported because its import changes torch's
global thread count). The caller builds a ``SpeechDetector``; nothing is loaded at import time.
Probabilities come per 32 ms window (512 samples at 16 kHz); ``spans_from_probs`` turns them into
spans with the usual hysteresis (enter at ``threshold``, leave below ``threshold - 0.15``).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from moodbgm.errors import MediaError, ModelNotFoundError
from moodbgm.files import wav_blocks

log = logging.getLogger(__name__)

VAD_RATE = 16_000
WINDOW = 512  # samples per probability at 16 kHz
_CONTEXT = 64  # samples of the previous window the model sees (Silero v5+)

Span = tuple[float, float]


@dataclass(frozen=True)
class VadOptions:
    threshold: float = 0.5  # speech probability to enter speech
    neg_threshold: float | None = None  # probability below which speech may end (threshold - 0.15)
    min_speech_ms: float = 250.0  # shorter detections are dropped
    min_silence_ms: float = 200.0  # pauses shorter than this stay inside one span
    speech_pad_ms: float = 60.0  # added on both sides of every span

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"VadOptions: threshold must be in (0, 1), got {self.threshold}")
        if self.neg_threshold is not None and not 0.0 <= self.neg_threshold <= self.threshold:
            raise ValueError("VadOptions: need 0 <= neg_threshold <= threshold")
        if min(self.min_speech_ms, self.min_silence_ms, self.speech_pad_ms) < 0:
            raise ValueError("VadOptions: durations must be >= 0")

    @property
    def exit_threshold(self) -> float:
        return self.neg_threshold if self.neg_threshold is not None else max(self.threshold - 0.15, 0.01)


def merge_spans(spans: Sequence[Span], gap: float = 0.0) -> list[Span]:
    """Sort spans and merge those that overlap or are closer than ``gap`` seconds."""
    out: list[Span] = []
    for s, e in sorted((float(a), float(b)) for a, b in spans):
        if e < s:
            raise ValueError(f"span end before start: {s}..{e}")
        if out and s <= out[-1][1] + gap:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def spans_from_probs(probs: Sequence[float] | np.ndarray, duration: float, options: VadOptions) -> list[Span]:
    """Speech spans (seconds) from per-window speech probabilities (window = 32 ms)."""
    p = np.asarray(probs, dtype=np.float64)
    win = WINDOW / VAD_RATE
    enter, leave = options.threshold, options.exit_threshold
    min_silence = options.min_silence_ms / 1000.0
    raw: list[Span] = []
    start: float | None = None
    quiet_since: float | None = None
    for i, prob in enumerate(p):
        t = i * win
        if start is None:
            if prob >= enter:
                start, quiet_since = t, None
            continue
        if prob >= enter:
            quiet_since = None
        elif prob < leave:
            if quiet_since is None:
                quiet_since = t
            if t + win - quiet_since >= min_silence:
                raw.append((start, quiet_since))
                start, quiet_since = None, None
    if start is not None:
        raw.append((start, min(duration, len(p) * win) if quiet_since is None else quiet_since))
    min_speech = options.min_speech_ms / 1000.0
    pad = options.speech_pad_ms / 1000.0
    padded = [(max(0.0, s - pad), min(duration, e + pad)) for s, e in raw if e - s >= min_speech]
    return merge_spans(padded)


def spans_to_mask(spans: Sequence[Span], n: int, sample_rate: int, start: int = 0) -> np.ndarray:
    """Boolean activity for samples ``start .. start + n`` at ``sample_rate`` (True inside a span).

    Calling it block by block with increasing ``start`` gives exactly the whole-signal mask.
    """
    if n < 0 or start < 0 or sample_rate <= 0:
        raise ValueError("spans_to_mask: need n >= 0, start >= 0, sample_rate > 0")
    mask = np.zeros(n, dtype=bool)
    for s, e in spans:
        a = max(round(s * sample_rate) - start, 0)
        b = min(round(e * sample_rate) - start, n)
        if b > a:
            mask[a:b] = True
    return mask


def silero_model_path() -> Path:
    """The ONNX model inside the installed ``silero-vad`` wheel (located without importing it)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError("silero-vad is not installed: pip install silero-vad==6.2.3")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise ModelNotFoundError(f"silero-vad's ONNX model is missing: {path}")
    return path


class _ProbStream:
    """Runs the model over 16 kHz samples pushed in blocks of any size."""

    def __init__(self, session: object) -> None:
        self._session = session
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, _CONTEXT), dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._sr = np.array(VAD_RATE, dtype=np.int64)

    def _window(self, x: np.ndarray) -> float:
        inp = np.concatenate([self._context, x[None, :]], axis=1)
        out, self._state = self._session.run(None, {"input": inp, "state": self._state, "sr": self._sr})  # type: ignore[attr-defined]
        self._context = inp[:, -_CONTEXT:]
        return float(out.reshape(-1)[0])

    def push(self, block: np.ndarray) -> list[float]:
        data = np.concatenate([self._pending, np.asarray(block, dtype=np.float32)])
        n_full = len(data) // WINDOW * WINDOW
        probs = [self._window(data[i : i + WINDOW]) for i in range(0, n_full, WINDOW)]
        self._pending = data[n_full:]
        return probs

    def finish(self) -> list[float]:
        if not len(self._pending):
            return []
        last = np.zeros(WINDOW, dtype=np.float32)
        last[: len(self._pending)] = self._pending
        self._pending = np.zeros(0, dtype=np.float32)
        return [self._window(last)]


class _Decimator:
    """Stateful anti-alias filter + integer decimation (e.g. 48 kHz -> 16 kHz) for streamed blocks."""

    def __init__(self, factor: int) -> None:
        self.factor = factor
        self._sos = signal.cheby1(8, 0.05, 0.8 / factor, output="sos") if factor > 1 else None
        self._zi = signal.sosfilt_zi(self._sos) * 0.0 if self._sos is not None else None
        self._phase = 0  # index in the next block of the next kept sample

    def push(self, x: np.ndarray) -> np.ndarray:
        if self._sos is None:
            return np.asarray(x, dtype=np.float32)
        y, self._zi = signal.sosfilt(self._sos, x, zi=self._zi)
        kept = y[self._phase :: self.factor]
        self._phase = (self._phase - len(x)) % self.factor
        return kept.astype(np.float32)


class SpeechDetector:
    """Silero VAD. ``detect`` takes 16 kHz mono audio; ``detect_file`` streams a WAV at 16 kHz * k."""

    def __init__(self, options: VadOptions | None = None, model_path: Path | None = None) -> None:
        import onnxruntime as ort

        self.options = options or VadOptions()
        self.model_path = Path(model_path) if model_path is not None else silero_model_path()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(self.model_path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelNotFoundError(f"cannot load the Silero VAD model {self.model_path}: {exc}") from exc

    def probabilities(self, audio16k: np.ndarray) -> np.ndarray:
        """Speech probability for each 32 ms window of 16 kHz mono audio."""
        x = np.asarray(audio16k, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"audio16k must be mono (n,), got shape {x.shape}")
        stream = _ProbStream(self._session)
        return np.asarray(stream.push(x) + stream.finish(), dtype=np.float32)

    def detect(self, audio16k: np.ndarray) -> list[Span]:
        """Speech spans in seconds of 16 kHz mono audio."""
        x = np.asarray(audio16k, dtype=np.float32)
        return spans_from_probs(self.probabilities(x), len(x) / VAD_RATE, self.options)

    def detect_file(
        self, wav: Path, progress: Callable[[float], None] | None = None, block_seconds: float = 10.0
    ) -> list[Span]:
        """Speech spans of a WAV file (any channel count, rate a multiple of 16 kHz), streamed."""
        try:
            info = sf.info(str(wav))
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise MediaError(f"cannot read {wav}: {exc}", path=str(wav)) from exc
        if info.samplerate % VAD_RATE:
            raise MediaError(f"{wav}: VAD needs a rate that is a multiple of 16 kHz, got {info.samplerate}")
        dec = _Decimator(info.samplerate // VAD_RATE)
        stream = _ProbStream(self._session)
        probs: list[float] = []
        block = max(int(block_seconds * info.samplerate), WINDOW)
        done = 0
        for b in _mono_blocks(wav, block):
            probs.extend(stream.push(dec.push(b)))
            done += len(b)
            if progress is not None and info.frames:
                progress(min(1.0, done / info.frames))
        probs.extend(stream.finish())
        spans = spans_from_probs(probs, info.frames / info.samplerate, self.options)
        log.info(
            "VAD: %d speech spans, %.1f s of speech in %s", len(spans), sum(e - s for s, e in spans), wav
        )
        return spans


def _mono_blocks(wav: Path, block: int) -> Iterator[np.ndarray]:
    return wav_blocks(wav, block, mono=True)
