"""The remix: isolated voice + music bed -> final soundtrack (pure functions over arrays, plus a
block-wise file driver built on them).

1. The music is ducked under speech: a control-rate (100 Hz) gain curve from the speech spans, started
   ``lookahead_ms`` before each span (``duck_curve``, ``duck_gain``). Pauses shorter than ``hold_ms``
   are held down (a swell in every breath between phrases is the "pumping" a listener notices); after a
   longer pause the music comes back with an S-shaped release (two cascaded one-pole stages of
   ``release_ms / 2``, so it starts gently instead of jumping up), and goes down with ``attack_ms``.
2. The music bed is set ``music_level_db`` LU relative to the voice's loudness (in the gaps; under
   speech it is a further ``duck_db`` lower). The voice is full band, never filtered; outside the
   speech spans (padded by ``gate_pad_ms``) it is gated down by ``gate_db``, because what the voice
   isolation lets through there is residue of the old soundtrack (tones, music it took for voice).
   With no speech at all the music is simply normalised (there is no voice to set it against).
3. The sum is normalised to ``target_lufs`` (BS.1770 integrated) and a look-ahead true-peak limiter
   keeps it under ``true_peak_db`` (4x oversampled).

Pass 1 streams both inputs once and keeps only per-100 ms K-weighted energies (voice, music, ducked
music and their cross term), from which the loudness of the mix for any music gain follows exactly;
pass 2 streams again, applies the gains and the limiter, measures and writes. When the limiter has
cost more than 0.1 LU (peaky speech), pass 2 is repeated once or twice with the gain corrected by the
measured miss. Memory stays flat with duration.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from moodbgm import media
from moodbgm.files import atomic_path
from moodbgm.loudness import (
    KWeighting,
    LoudnessMeter,
    SegmentPowers,
    TruePeakLimiter,
    TruePeakMeter,
    gated_loudness,
    undb,
)
from moodbgm.types import SAMPLE_RATE
from moodbgm.vad import spans_to_mask

log = logging.getLogger(__name__)

CONTROL_RATE = 100  # duck curve values per second
LIMITER_MARGIN_DB = 0.05  # the limiter aims this far under the ceiling
LUFS_TOLERANCE = 0.1  # a render further than this from the target is redone with a corrected gain
MAX_RENDER_PASSES = 4
Span = tuple[float, float]


@dataclass(frozen=True)
class MixOptions:
    duck_db: float = 11.0  # music reduction under speech
    attack_ms: float = 50.0  # time constant of the duck going down
    release_ms: float = 600.0  # time constant of the music coming back (two stages of half each)
    lookahead_ms: float = 120.0  # the duck starts this long before speech
    hold_ms: float = 1200.0  # pauses shorter than this keep the music down (no pumping)
    music_level_db: float = -7.0  # bed loudness relative to the voice (LU); -18 LU under speech
    target_lufs: float = -16.0
    true_peak_db: float = -1.0
    gate_db: float = 30.0  # voice attenuation outside speech
    gate_pad_ms: float = 250.0  # the gate opens this long before speech and closes this long after
    limiter_release_ms: float = 80.0
    limiter_lookahead_ms: float = 5.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.duck_db <= 40.0:
            raise ValueError(f"MixOptions: duck_db must be in [0, 40], got {self.duck_db}")
        for name in ("attack_ms", "release_ms", "limiter_release_ms", "limiter_lookahead_ms"):
            if not 0.0 < getattr(self, name) <= 5000.0:
                raise ValueError(f"MixOptions: {name} must be in (0, 5000], got {getattr(self, name)}")
        if not 0.0 <= self.lookahead_ms <= 2000.0:
            raise ValueError(f"MixOptions: lookahead_ms must be in [0, 2000], got {self.lookahead_ms}")
        if not 0.0 <= self.hold_ms <= 5000.0:
            raise ValueError(f"MixOptions: hold_ms must be in [0, 5000], got {self.hold_ms}")
        if not -40.0 <= self.music_level_db <= 20.0:
            raise ValueError(f"MixOptions: music_level_db must be in [-40, 20], got {self.music_level_db}")
        if not -40.0 <= self.target_lufs <= -5.0:
            raise ValueError(f"MixOptions: target_lufs must be in [-40, -5], got {self.target_lufs}")
        if not 0.0 <= self.gate_db <= 80.0:
            raise ValueError(f"MixOptions: gate_db must be in [0, 80], got {self.gate_db}")
        if not 0.0 <= self.gate_pad_ms <= 2000.0:
            raise ValueError(f"MixOptions: gate_pad_ms must be in [0, 2000], got {self.gate_pad_ms}")
        if not -12.0 <= self.true_peak_db <= 0.0:
            raise ValueError(f"MixOptions: true_peak_db must be in [-12, 0], got {self.true_peak_db}")


@dataclass(frozen=True)
class MixReport:
    duration: float
    integrated_lufs: float  # of the output
    true_peak_db: float  # of the output, dBTP (4x oversampled)
    duck_depth_db: float  # music under its bed level during speech (median of the duck curve)
    voice_lufs: float  # the voice's loudness in the output (-inf: no voice)
    music_lufs: float  # the un-ducked music bed's loudness in the output
    music_gain_db: float  # gain applied to the music before normalisation
    gain_db: float  # normalisation gain applied to the sum
    limiter_db: float  # largest gain reduction by the limiter

    def to_dict(self) -> dict[str, float | None]:
        return {k: (v if math.isfinite(v) else None) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class MixResult:
    audio: np.ndarray  # float32 (n, 2)
    report: MixReport


def duck_curve(speech: Sequence[Span], n_samples: int, sample_rate: int, options: MixOptions) -> np.ndarray:
    """Music gain in dB at ``CONTROL_RATE``, one value per control frame covering ``n_samples``."""
    if sample_rate % CONTROL_RATE:
        raise ValueError(f"sample rate must be a multiple of {CONTROL_RATE} Hz, got {sample_rate}")
    hop = sample_rate // CONTROL_RATE
    frames = n_samples // hop + 2
    ahead = options.lookahead_ms / 1000.0
    held = _bridge([(max(0.0, s - ahead), e) for s, e in speech], options.hold_ms / 1000.0)
    target = np.where(spans_to_mask(held, frames, CONTROL_RATE), -options.duck_db, 0.0)
    half = options.release_ms / 2
    once = _smooth(target, down_ms=options.attack_ms, up_ms=half)
    # the second stage only shapes the release; going down it follows the first at once
    return np.minimum(_smooth(once, down_ms=1.0, up_ms=half), once)


def _bridge(spans: Sequence[Span], hold: float) -> list[Span]:
    """The spans with every gap shorter than ``hold`` filled."""
    out: list[Span] = []
    for s, e in sorted(spans):
        if out and s - out[-1][1] < hold:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def gate_curve(speech: Sequence[Span], n_samples: int, sample_rate: int, options: MixOptions) -> np.ndarray:
    """Voice gain in dB at ``CONTROL_RATE``: 0 over the padded speech spans, ``-gate_db`` elsewhere.

    It opens fast (10 ms) inside the padding before speech and closes slowly (150 ms) after it.
    """
    if sample_rate % CONTROL_RATE:
        raise ValueError(f"sample rate must be a multiple of {CONTROL_RATE} Hz, got {sample_rate}")
    frames = n_samples // (sample_rate // CONTROL_RATE) + 2
    pad = options.gate_pad_ms / 1000.0
    padded = [(max(0.0, s - pad), e + pad) for s, e in speech]
    target = np.where(spans_to_mask(padded, frames, CONTROL_RATE), 0.0, -options.gate_db)
    return _smooth(target, down_ms=150.0, up_ms=10.0)


def _smooth(target: np.ndarray, down_ms: float, up_ms: float) -> np.ndarray:
    """One-pole smoothing of a dB control curve, with separate time constants down and up."""
    dt = 1.0 / CONTROL_RATE
    a_down = math.exp(-dt / (down_ms / 1000.0))
    a_up = math.exp(-dt / (up_ms / 1000.0))
    out = np.empty(len(target))
    g = float(target[0]) if len(target) else 0.0
    for k, t in enumerate(target.tolist()):
        a = a_down if t < g else a_up
        g = a * g + (1.0 - a) * t
        out[k] = g
    return out


def duck_gain(curve_db: np.ndarray, start: int, n: int, sample_rate: int) -> np.ndarray:
    """Linear gain for samples ``start .. start + n``, interpolated from a control curve (duck or gate)."""
    hop = sample_rate // CONTROL_RATE
    pos = (start + np.arange(n)) / hop
    return np.power(10.0, np.interp(pos, np.arange(len(curve_db)), curve_db) / 20.0)


def duck_depth(curve_db: np.ndarray, speech: Sequence[Span]) -> float:
    """Achieved depth: how far (dB, median) the music sits under its bed level while someone speaks."""
    inside = spans_to_mask(speech, len(curve_db), CONTROL_RATE)
    if not inside.any():
        return 0.0
    return float(-np.median(curve_db[inside]))


def music_gain_db(voice_lufs: float, music_lufs: float, options: MixOptions) -> float:
    """Gain putting the un-ducked music ``music_level_db`` under the voice (0 when either is silent)."""
    if not (math.isfinite(voice_lufs) and math.isfinite(music_lufs)):
        return 0.0
    return voice_lufs + options.music_level_db - music_lufs


class _Reader:
    """Random-access blocks of an array or a WAV file, zero-padded past the end."""

    def __init__(self, src: np.ndarray | Path, mono: bool) -> None:
        self.mono = mono
        self._file: sf.SoundFile | None = None
        if isinstance(src, Path):
            self._file = sf.SoundFile(str(src))
            self.length, self.sample_rate = self._file.frames, self._file.samplerate
            self._array = None
        else:
            a = np.asarray(src, dtype=np.float32)
            if a.ndim not in (1, 2):
                raise ValueError(f"audio must be (n,) or (n, channels), got {a.shape}")
            self._array, self.length, self.sample_rate = a, len(a), 0

    def read(self, start: int, n: int) -> np.ndarray:
        if self._file is not None:
            self._file.seek(min(start, self.length))
            a = self._file.read(max(0, min(n, self.length - start)), dtype="float32", always_2d=True)
        else:
            a = self._array[start : start + n] if self._array is not None else np.zeros((0, 1))
            a = a.reshape(len(a), -1)
        out = a.mean(axis=1) if self.mono else (np.repeat(a, 2, axis=1) if a.shape[1] == 1 else a[:, :2])
        if len(out) < n:
            out = np.concatenate([out, np.zeros((n - len(out), *out.shape[1:]), dtype=out.dtype)])
        return out.astype(np.float64)

    def reopened(self) -> _Reader:
        """The same source with a position of its own (for another thread)."""
        if self._file is not None:
            return _Reader(Path(self._file.name), self.mono)
        return self

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _mix_blocks(
    voice: _Reader | None,
    music: _Reader,
    speech: Sequence[Span],
    sample_rate: int,
    options: MixOptions,
    block: int,
    sink: Path | None,
    aac: Path | None = None,
) -> MixResult:
    n = music.length
    if voice is not None and abs(voice.length - n) > sample_rate // 20:
        log.warning("voice is %d samples, music %d: the voice is padded/cut to the music", voice.length, n)
    if voice is None and len(speech):
        log.warning("speech spans given without a voice track; no ducking")
        speech = ()
    curve = duck_curve(speech, n, sample_rate, options)
    gate = gate_curve(speech, n, sample_rate, options)
    # the encoder process starts now and waits for pass 2's samples (its start-up off the path)
    encoder = media.AacEncoder(aac, sample_rate, 2) if aac is not None else None
    try:
        return _passes(voice, music, speech, curve, gate, sample_rate, options, block, sink, aac, encoder)
    except BaseException:
        if encoder is not None:
            encoder.abort()
        raise


def _passes(
    voice: _Reader | None,
    music: _Reader,
    speech: Sequence[Span],
    curve: np.ndarray,
    gate: np.ndarray,
    sample_rate: int,
    options: MixOptions,
    block: int,
    sink: Path | None,
    aac: Path | None,
    encoder: media.AacEncoder | None,
) -> MixResult:
    n = music.length

    # pass 1: K-weighted energies per 100 ms segment, the two halves of the file side by side
    s = _energies(voice, music, curve, gate, sample_rate, block)
    voice_lufs = gated_loudness(s[:, 0]) if voice is not None else -math.inf
    music_lufs = gated_loudness(s[:, 1])
    # no speech: the gated voice is residue, not a level to set the music against
    gm_db = music_gain_db(voice_lufs if len(speech) else -math.inf, music_lufs, options)
    gm = undb(gm_db)
    mix_lufs = gated_loudness(s[:, 0] + 2 * gm * s[:, 3] + gm * gm * s[:, 2])
    if math.isfinite(mix_lufs):
        gain_db = options.target_lufs - mix_lufs
    else:
        log.warning("the mix is silent; no loudness normalisation")
        gain_db = 0.0
    log.info(
        "mix: voice %.1f LUFS, music %.1f LUFS, music gain %+.1f dB, gain %+.1f dB",
        voice_lufs,
        music_lufs,
        gm_db,
        gain_db,
    )

    # pass 2: apply, limit, measure, write. The limiter lowers the loudness of peaky material, so a
    # render that misses the target by more than LUFS_TOLERANCE is redone with a corrected gain
    # (secant steps on the measured loudness-vs-gain slope; rarely more than two extra passes)
    slope = 1.0
    tried: tuple[float, float] | None = None
    for attempt in range(1, MAX_RENDER_PASSES + 1):
        if aac is not None and encoder is None:  # a pass again: a fresh encoder (the last one is closed)
            encoder = media.AacEncoder(aac, sample_rate, 2)
        rendered = _render(
            voice, music, curve, gate, undb(gm_db), undb(gain_db), sample_rate, options, block, sink, encoder
        )
        encoder = None
        miss = options.target_lufs - rendered.lufs
        if not math.isfinite(miss) or abs(miss) <= LUFS_TOLERANCE or attempt == MAX_RENDER_PASSES:
            break
        if tried is not None and gain_db != tried[0]:
            slope = min(1.0, max(0.1, (rendered.lufs - tried[1]) / (gain_db - tried[0])))
        tried = (gain_db, rendered.lufs)
        log.info("the limiter cost %.2f LU; rendering again with %+.2f dB", miss, miss / slope)
        gain_db += miss / slope
    if math.isfinite(miss) and abs(miss) > LUFS_TOLERANCE:
        log.warning("mix loudness %.2f LUFS misses the target %.1f", rendered.lufs, options.target_lufs)

    report = MixReport(
        duration=n / sample_rate,
        integrated_lufs=rendered.lufs,
        true_peak_db=rendered.true_peak_db,
        duck_depth_db=duck_depth(curve, speech),
        voice_lufs=voice_lufs + gain_db,
        music_lufs=music_lufs + gm_db + gain_db,
        music_gain_db=gm_db,
        gain_db=gain_db,
        limiter_db=rendered.limiter_db,
    )
    return MixResult(audio=rendered.audio, report=report)


PASS1_WARMUP_S = 1.0
"""Seconds of signal the K-weighting filters of a later part of the file run over before it, from rest:
the state they reach is the one of a run from the start (their slowest pole, the 38 Hz high pass,
decays by e^-240 in a second)."""


def _energies(
    voice: _Reader | None, music: _Reader, curve: np.ndarray, gate: np.ndarray, sample_rate: int, block: int
) -> np.ndarray:
    """Per 100 ms segment: K-weighted mean squares of the gated voice (both ears), the music, the ducked
    music, and the voice x ducked music cross term, ``(segments, 4)``. Files of over 20 s are measured
    in two halves in threads (the filters and the readers release the GIL)."""
    n, segment = music.length, sample_rate // 10
    half = (n // 2) // segment * segment
    if n < 20 * sample_rate:
        return _energies_of(voice, music, curve, gate, sample_rate, block, 0, n)
    warmup = round(PASS1_WARMUP_S * sample_rate)
    v2, m2 = (voice.reopened() if voice else None), music.reopened()  # positions of their own
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="mix-pass1") as pool:
            second = pool.submit(_energies_of, v2, m2, curve, gate, sample_rate, block, half, n, warmup)
            first = _energies_of(voice, music, curve, gate, sample_rate, block, 0, half)
            return np.concatenate([first, second.result()])
    finally:
        m2.close()
        if v2 is not None:
            v2.close()


def _energies_of(
    voice: _Reader | None,
    music: _Reader,
    curve: np.ndarray,
    gate: np.ndarray,
    sample_rate: int,
    block: int,
    begin: int,
    end: int,
    warmup: int = 0,
) -> np.ndarray:
    """``_energies`` of samples ``begin .. end`` (``begin`` on a segment boundary), after running the
    filters over the ``warmup`` samples before it."""
    kv, km, kd = KWeighting(sample_rate, 1), KWeighting(sample_rate, 2), KWeighting(sample_rate, 2)
    seg = SegmentPowers(sample_rate, 4)
    first = max(0, begin - warmup)
    bounds = [first, *range(begin, end, block), end] if first < begin else [*range(begin, end, block), end]
    for start, stop in itertools.pairwise(bounds):
        m = music.read(start, stop - start)
        dm = m * duck_gain(curve, start, len(m), sample_rate)[:, None]
        fm, fd = km.push(m), kd.push(dm)
        fv = (
            kv.push(_gated(voice, gate, start, len(m), sample_rate)[:, None])[:, 0]
            if voice is not None
            else np.zeros(len(m))
        )
        if start >= begin:
            seg.push(np.stack([2 * fv * fv, (fm * fm).sum(1), (fd * fd).sum(1), fv * fd.sum(1)], axis=1))
    return seg.means()


def _gated(voice: _Reader, gate: np.ndarray, start: int, n: int, sample_rate: int) -> np.ndarray:
    return voice.read(start, n) * duck_gain(gate, start, n, sample_rate)


@dataclass(frozen=True)
class _Rendered:
    audio: np.ndarray  # empty when written to a file
    lufs: float
    true_peak_db: float
    limiter_db: float


def _render(
    voice: _Reader | None,
    music: _Reader,
    curve: np.ndarray,
    gate: np.ndarray,
    gm: float,
    gn: float,
    sample_rate: int,
    options: MixOptions,
    block: int,
    out: Path | None,
    encoder: media.AacEncoder | None = None,
) -> _Rendered:
    """One pass: ``gn * (voice + gm * duck * music)`` through the limiter, measured, kept or written
    (to ``out`` as WAV and, encoded while the pass runs, to ``encoder``, which it closes)."""
    n = music.length
    limiter = TruePeakLimiter(
        sample_rate,
        2,
        options.true_peak_db - LIMITER_MARGIN_DB,
        options.limiter_lookahead_ms,
        options.limiter_release_ms,
    )
    meter, peak = LoudnessMeter(sample_rate, 2), TruePeakMeter(2)
    parts: list[np.ndarray] = []
    try:
        with contextlib.ExitStack() as stack:
            sink = None
            if out is not None:
                sink = stack.enter_context(
                    sf.SoundFile(str(out), "w", sample_rate, 2, subtype="FLOAT", format="WAV")
                )

            def emit(y: np.ndarray) -> None:
                y32 = y.astype(np.float32)
                if encoder is not None:
                    encoder.write(y32)  # encoded in ffmpeg's process while the next block is mixed
                meter.push(y32)
                peak.push(y32)
                if sink is not None:
                    sink.write(y32)
                else:
                    parts.append(y32)

            for start in range(0, n, block):
                m = music.read(start, min(block, n - start))
                y = (gn * gm) * m * duck_gain(curve, start, len(m), sample_rate)[:, None]
                if voice is not None:
                    y += gn * _gated(voice, gate, start, len(m), sample_rate)[:, None]
                emit(limiter.push(y))
            emit(limiter.finish())
        if encoder is not None:
            encoder.close()
    except BaseException:
        if encoder is not None:
            encoder.abort()
        raise
    audio = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.float32)
    return _Rendered(audio, meter.lufs(), peak.dbtp(), limiter.max_reduction_db)


def mix(
    voice: np.ndarray | None,
    music: np.ndarray,
    speech: Sequence[Span],
    options: MixOptions | None = None,
    sample_rate: int = SAMPLE_RATE,
    block: int | None = None,
) -> MixResult:
    """Mix in memory. ``voice``: ``(n,)`` or ``(n, ch)`` (downmixed) or None when the video has no audio;
    ``music``: ``(n, 2)`` (or mono); output ``(len(music), 2)`` float32."""
    opts = options or MixOptions()
    m = _Reader(music, mono=False)
    v = _Reader(voice, mono=True) if voice is not None else None
    return _mix_blocks(v, m, speech, sample_rate, opts, block or max(m.length, 1), None)


def mix_files(
    voice_wav: Path | None,
    music_wav: Path,
    out_wav: Path,
    speech: Sequence[Span],
    options: MixOptions | None = None,
    block_seconds: float = 10.0,
    out_aac: Path | None = None,
) -> MixReport:
    """Block-wise ``mix`` over WAV files (flat memory); writes a stereo float WAV atomically and, with
    ``out_aac``, the same samples as AAC (``.m4a``), encoded while the mix is made."""
    opts = options or MixOptions()
    music = _Reader(Path(music_wav), mono=False)
    voice = _Reader(Path(voice_wav), mono=True) if voice_wav is not None else None
    try:
        sr = music.sample_rate
        if voice is not None and voice.sample_rate != sr:
            raise ValueError(f"voice is {voice.sample_rate} Hz but music is {sr} Hz")
        block = max(int(block_seconds * sr), 1)
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(out_wav))
            tmp_aac = stack.enter_context(atomic_path(out_aac)) if out_aac is not None else None
            result = _mix_blocks(voice, music, speech, sr, opts, block, tmp, tmp_aac)
    finally:
        music.close()
        if voice is not None:
            voice.close()
    r = result.report
    log.info(
        "mixed %s: %.2f LUFS, %.2f dBTP, duck %.1f dB",
        out_wav,
        r.integrated_lufs,
        r.true_peak_db,
        r.duck_depth_db,
    )
    return r
