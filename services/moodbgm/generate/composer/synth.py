"""One FluidSynth synthesizer (offline, no audio driver) that renders a section at a time.

A section starts from ``system_reset`` with its programs, volumes and reverb, and is written as
32-bit float samples (``fluid_synth_write_float``, no 16-bit rounding or clipping) in whole
64-sample synth blocks. FluidSynth keeps some voice state across resets, so a section's samples
depend on the sections this synth rendered before it: the same sections in the same order on a fresh
synth give the same samples.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from moodbgm.errors import ModelNotFoundError
from moodbgm.generate.composer.events import SectionScore

logger = logging.getLogger(__name__)

_DRUM_BANK = 128
_BLOCK = 64  # FluidSynth's internal block size


def check_soundfont(path: Path) -> Path:
    if not Path(path).is_file():
        raise ModelNotFoundError(
            f"SoundFont not found at {path}: install it with `apt-get install fluid-soundfont-gm` "
            "or set MOODBGM_SOUNDFONT to a .sf2 file"
        )
    return Path(path)


class SectionSynth:
    """A fresh synth with the SoundFont loaded. FluidSynth shares the sample data of a file loaded
    twice in one process, so a second synth costs the preset parsing (about 0.4 s), not the samples'
    memory."""

    def __init__(self, soundfont: Path, sample_rate: int, gain: float, polyphony: int) -> None:
        fluidsynth = import_fluidsynth()
        self.sample_rate = sample_rate
        self.synth = fluidsynth.Synth(
            gain=gain,
            samplerate=float(sample_rate),
            **{"synth.polyphony": polyphony, "synth.cpu-cores": 1, "synth.chorus.active": 0},
        )
        self.sfid = self.synth.sfload(str(soundfont))
        if self.sfid < 0:
            self.synth.delete()
            raise ModelNotFoundError(f"FluidSynth could not load the SoundFont {soundfont}")
        write = fluidsynth._fl.fluid_synth_write_float
        write.argtypes = [ctypes.c_void_p, ctypes.c_int] + [ctypes.c_void_p, ctypes.c_int, ctypes.c_int] * 2
        write.restype = ctypes.c_int
        self._write = write

    def close(self) -> None:
        self.synth.delete()

    def section(self, sec: SectionScore, length: int) -> np.ndarray:
        """``(length, 2)`` float32 samples of ``sec`` from a reset synth (a view of a whole-block buffer)."""
        synth, sr = self.synth, self.sample_rate
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
        # whole synth blocks, so every section starts on a block boundary (same state -> same samples);
        # every sample is written by the synth, so the buffer needs no zeroing
        padded = -(-length // _BLOCK) * _BLOCK
        audio = np.empty((padded, 2), dtype=np.float32)
        pos = 0
        for at, on, ch, pitch, vel in events:
            if at >= length:
                break
            if at > pos:
                self._fill(audio, pos, at)
                pos = at
            if on:
                synth.noteon(ch, pitch, vel)
            else:
                synth.noteoff(ch, pitch)
        if pos < padded:
            self._fill(audio, pos, padded)
        return audio[:length]

    def _fill(self, audio: np.ndarray, start: int, stop: int) -> None:
        ptr = audio[start:stop].ctypes.data  # ctypes releases the GIL during the call
        self._write(self.synth.synth, stop - start, ptr, 0, 2, ptr, 1, 2)


def import_fluidsynth() -> Any:
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
