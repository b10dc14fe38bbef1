"""Score -> audio through FluidSynth, offline (no audio driver), 48 kHz stereo float32.

Each section is rendered on its own from a reset synth (its programs, volumes and reverb), for its
length plus a tail of release and reverb (``crossfade`` seconds, longer when pad tones are held over
the change); the tail fades out under the next section's start, which gives a crossfade at every
change. Each section is then brought to the piece's reference loudness plus its emotion's small
offset (``mapping.CUES``, +-1.5 LU), measured with the ITU-R BS.1770 meter of ``pyloudnorm`` on the
section as it will sound (the last one with its release), so levels stay balanced across emotions
and styles. The synth writes 32-bit float samples (``fluid_synth_write_float``, no 16-bit rounding
or clipping on the way); the bed is then cut to the exact length, faded in/out at the ends (the
final fade is the closing chord's release) and peak-normalised to ``peak_dbfs``.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyloudnorm
import scipy.signal

from moodbgm.config import DEFAULT_SOUNDFONT
from moodbgm.errors import ModelNotFoundError
from moodbgm.generate.composer.events import Score, SectionScore
from moodbgm.generate.composer.mapping import CUES
from moodbgm.types import SAMPLE_RATE

logger = logging.getLogger(__name__)

Progress = Callable[[float], None]
_DRUM_BANK = 128
_BLOCK = 64  # FluidSynth's internal block size
REFERENCE_LUFS = -20.0  # sections are balanced around this before the final peak normalisation
_MIN_LOUDNESS_S = 0.5  # shorter sections are not measured
_MAX_GAIN_DB = 18.0


@dataclass(frozen=True)
class RenderOptions:
    sample_rate: int = SAMPLE_RATE
    gain: float = 0.5
    polyphony: int = 64
    cpu_cores: int = 1
    crossfade: float = 0.35  # seconds a section's tail overlaps the next one
    fade_out: float = 1.5  # seconds, at the very end of the bed: the closing chord's release
    peak_dbfs: float = -1.0
    balance: bool = True  # bring every section to the reference loudness (+ its emotion's offset)

    def __post_init__(self) -> None:
        if not 8000 <= self.sample_rate <= 192000:
            raise ValueError(f"sample_rate must be 8000..192000, got {self.sample_rate}")
        if not 0 < self.gain <= 10 or self.polyphony < 16 or self.cpu_cores < 1:
            raise ValueError("gain must be in (0, 10], polyphony >= 16, cpu_cores >= 1")
        if self.crossfade < 0 or self.fade_out < 0 or self.peak_dbfs > 0:
            raise ValueError("crossfade and fade_out must be >= 0, peak_dbfs <= 0")


def _check_soundfont(path: Path) -> Path:
    if not Path(path).is_file():
        raise ModelNotFoundError(
            f"SoundFont not found at {path}: install it with `apt-get install fluid-soundfont-gm` "
            "or set MOODBGM_SOUNDFONT to a .sf2 file"
        )
    return Path(path)


class FluidRenderer:
    """Renders scores with a SoundFont. Each ``render`` call builds a fresh synth (about a second to
    load the SoundFont from the page cache): FluidSynth keeps voice state across resets, and a fresh
    synth is what makes the same score give the same samples every time."""

    def __init__(self, soundfont: Path = DEFAULT_SOUNDFONT, options: RenderOptions | None = None) -> None:
        self.soundfont = _check_soundfont(soundfont)
        self.options = options or RenderOptions()

    def _open(self) -> tuple[Any, int, Any]:
        fluidsynth = _import_fluidsynth()
        o = self.options
        synth = fluidsynth.Synth(
            gain=o.gain,
            samplerate=float(o.sample_rate),
            **{"synth.polyphony": o.polyphony, "synth.cpu-cores": o.cpu_cores, "synth.chorus.active": 0},
        )
        sfid = synth.sfload(str(self.soundfont))
        if sfid < 0:
            synth.delete()
            raise ModelNotFoundError(f"FluidSynth could not load the SoundFont {self.soundfont}")
        write = fluidsynth._fl.fluid_synth_write_float
        write.argtypes = [ctypes.c_void_p, ctypes.c_int] + [ctypes.c_void_p, ctypes.c_int, ctypes.c_int] * 2
        write.restype = ctypes.c_int
        return synth, sfid, write

    def render(self, score: Score, duration: float, progress: Progress | None = None) -> np.ndarray:
        """``(round(duration * sample_rate), 2)`` float32 audio of ``score``."""
        if not (math.isfinite(duration) and duration > 0):
            raise ValueError(f"duration must be > 0, got {duration}")
        sr = self.options.sample_rate
        total = round(duration * sr)
        out = np.zeros((total, 2), dtype=np.float32)
        synth = _Synth(*self._open())
        meter = _Loudness(sr)
        fade_out = min(total // 4, round(self.options.fade_out * sr))
        try:
            last = len(score.sections) - 1
            for k, sec in enumerate(score.sections):
                first = round(sec.plan.start * sr)
                if first >= total:
                    break
                body = round(sec.plan.end * sr) - first
                tail = round(max(self.options.crossfade, _overhang(sec) + 0.3) * sr)
                length = min(body + tail, total - first) if k < last else total - first
                audio = synth.section(sec, length, sr)
                if k > 0:  # de-click the entry; the previous tail fades under it
                    ramp = min(length, round(0.005 * sr))
                    audio[:ramp] *= np.linspace(0.0, 1.0, ramp, dtype=np.float32)[:, None]
                if k < last and length > body:
                    audio[body:length] *= _fade(tail)[: length - body, None]
                if self.options.balance:
                    heard = audio[: min(body, length)]
                    if k == last and fade_out:  # measured as heard: with the final release
                        heard = heard.copy()
                        n = min(fade_out, len(heard))
                        heard[-n:] *= _fade(fade_out)[-n:, None]
                    audio *= np.float32(_balance_gain(meter, heard, CUES[sec.plan.emotion].loudness))
                out[first : first + length] += audio
                if progress is not None:
                    progress(min(1.0, (first + body) / total))
        finally:
            synth.close()
        return _finish(out, sr, self.options)


@dataclass
class _Synth:
    synth: Any
    sfid: int
    write: Any

    def close(self) -> None:
        self.synth.delete()

    def section(self, sec: SectionScore, length: int, sr: int) -> np.ndarray:
        """One section from a reset synth, ``length`` samples."""
        synth = self.synth
        synth.system_reset()
        synth.set_reverb(0.6 + 0.3 * sec.reverb, 0.4, 0.8, sec.reverb)
        plan = sec.plan
        events: list[tuple[int, int, int, int, int]] = []  # (sample, on?, channel, pitch, velocity)
        for part in sec.parts:
            ch = part.channel
            bank = _DRUM_BANK if part.is_drum else 0
            if synth.program_select(ch, self.sfid, bank, part.program) != 0:
                logger.warning("SoundFont has no preset %d:%d; using %d:0", bank, part.program, bank)
                synth.program_select(ch, self.sfid, bank, 0)
            synth.cc(ch, 7, part.volume)
            synth.cc(ch, 91, round(sec.reverb * 127))
            for n in part.notes:
                on = round((plan.time(n.start) - plan.start) * sr)
                off = max(on + 1, round((plan.time(n.end) - plan.start) * sr))
                events.append((on, 1, ch, n.pitch, n.velocity))
                events.append((off, 0, ch, n.pitch, 0))
        events.sort()
        # whole synth blocks, so every section starts on a block boundary (same state -> same samples)
        padded = -(-length // _BLOCK) * _BLOCK
        audio = np.zeros((padded, 2), dtype=np.float32)
        pos = 0
        for at, on, ch, pitch, vel in events:
            if at >= length:
                break
            if at > pos:
                self.fill(audio, pos, at)
                pos = at
            if on:
                synth.noteon(ch, pitch, vel)
            else:
                synth.noteoff(ch, pitch)
        if pos < padded:
            self.fill(audio, pos, padded)
        return audio[:length]

    def fill(self, audio: np.ndarray, start: int, stop: int) -> None:
        ptr = audio[start:stop].ctypes.data
        self.write(self.synth.synth, stop - start, ptr, 0, 2, ptr, 1, 2)


def _overhang(sec: SectionScore) -> float:
    """Seconds that held notes sound past the section's end."""
    plan = sec.plan
    ends = [n.end for p in sec.parts for n in p.notes if n.end > plan.beats]
    return max((plan.time(e) - plan.end for e in ends), default=0.0)


def _balance_gain(meter: _Loudness, audio: np.ndarray, offset_lu: float) -> float:
    """Linear gain that brings ``audio`` to ``REFERENCE_LUFS + offset_lu`` (1 for silence or < 0.5 s)."""
    loudness = meter(audio)
    if not math.isfinite(loudness):
        return 1.0
    gain_db = float(np.clip(REFERENCE_LUFS + offset_lu - loudness, -_MAX_GAIN_DB, _MAX_GAIN_DB))
    return float(10 ** (gain_db / 20))


class _Loudness:
    """ITU-R BS.1770-4 integrated loudness (K-weighting, 400 ms blocks with 75 % overlap, absolute
    and relative gates), vectorised; the K-weighting filters are pyloudnorm's."""

    def __init__(self, sr: int) -> None:
        self.sr = sr
        filters = pyloudnorm.Meter(sr)._filters.values()
        self.sos = np.array([np.concatenate([f.b, f.a]) for f in filters])

    def __call__(self, audio: np.ndarray) -> float:
        hop = round(0.1 * self.sr)
        n = len(audio) // hop
        if len(audio) < _MIN_LOUDNESS_S * self.sr or n < 4:
            return -math.inf
        y = scipy.signal.sosfilt(self.sos, audio[: n * hop], axis=0)
        hops = np.square(y).reshape(n, hop, -1).mean(axis=1).sum(axis=1)  # per 100 ms, channels summed
        blocks = np.convolve(hops, np.ones(4) / 4, mode="valid")  # 400 ms blocks, 75 % overlap
        with np.errstate(divide="ignore"):
            level = -0.691 + 10 * np.log10(blocks)
        gated = blocks[level > -70.0]
        if not len(gated):
            return -math.inf
        relative = -0.691 + 10 * np.log10(gated.mean()) - 10.0
        gated = blocks[(level > -70.0) & (level > relative)]
        return float(-0.691 + 10 * np.log10(gated.mean()))


def _fade(n: int) -> np.ndarray:
    """Equal-power fade-out of ``n`` samples, 1 -> 0."""
    return (
        np.cos(np.linspace(0.0, np.pi / 2, n, dtype=np.float32)).astype(np.float32)
        if n
        else np.ones(0, np.float32)
    )


def _finish(out: np.ndarray, sr: int, options: RenderOptions) -> np.ndarray:
    fade_in = min(len(out), round(0.01 * sr))
    out[:fade_in] *= np.linspace(0.0, 1.0, fade_in, dtype=np.float32)[:, None]
    fade_out = min(len(out) // 4, round(options.fade_out * sr))
    if fade_out:
        out[-fade_out:] *= _fade(fade_out)[:, None]
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > 0:
        out *= np.float32(10 ** (options.peak_dbfs / 20) / peak)
    else:
        logger.warning("the rendered music is silent")
    return out


def render(
    score: Score,
    duration: float,
    soundfont: Path = DEFAULT_SOUNDFONT,
    options: RenderOptions | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Render ``score`` to ``(round(duration * 48000), 2)`` float32 with a one-off synth."""
    return FluidRenderer(soundfont, options).render(score, duration, progress)


def _import_fluidsynth() -> Any:
    """pyfluidsynth, imported on first use (libfluidsynth is loaded then, not at import of this module).

    With CI set in the environment it prints where it found the library to stdout, which would
    corrupt the CLI's output; that line goes to the debug log instead.
    """
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        import fluidsynth
    if buffer.getvalue().strip():
        logger.debug("pyfluidsynth: %s", buffer.getvalue().strip())
    return fluidsynth
