"""Score -> audio through FluidSynth, offline (no audio driver), 48 kHz stereo float32.

Each section is rendered on its own from a reset synth (its programs, volumes and reverb, see
``synth.py``), for its length plus a tail of release and reverb (``crossfade`` seconds, longer when
pad tones are held over the change); the tail fades out under the next section's start, which gives
a crossfade at every change. Each section is then brought to the piece's reference loudness plus its
emotion's small offset (``mapping.CUES``, +-1.5 LU), measured (ITU-R BS.1770, ``loudness.py``) on the
section as it will sound (the last one with its release), so levels stay balanced across emotions
and styles. The bed is then cut to the exact length, faded in/out at the ends (the final fade is the
closing chord's release) and peak-normalised to ``peak_dbfs``.

``workers`` synths render the sections side by side in threads (FluidSynth runs without the GIL).
The sections are dealt to them in score order, each to the synth with the fewest samples so far, so
the split depends only on the score: a synth's sections depend on the ones it rendered before
(FluidSynth keeps some voice state across resets), which makes the audio a function of the score
and ``workers`` -- the same seed and settings give the same bytes, however the threads run. The
default is two: on 2 idle cores of an AMD EPYC the 66 s demo bed takes 0.8 s against 1.2 s with one.

Each ``render`` builds fresh synths; the renderer keeps one more synth alive that never plays, so
that FluidSynth's sample cache holds the SoundFont and a fresh synth costs 0.03 s instead of 0.13 s.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moodbgm.config import DEFAULT_SOUNDFONT
from moodbgm.generate.composer.events import Score, SectionScore
from moodbgm.generate.composer.loudness import Loudness, balance_gain
from moodbgm.generate.composer.mapping import CUES
from moodbgm.generate.composer.synth import SectionSynth, check_soundfont
from moodbgm.types import SAMPLE_RATE

logger = logging.getLogger(__name__)
Progress = Callable[[float], None]
_AHEAD_S = 120.0  # seconds of music a synth may render ahead of the section the bed waits for


@dataclass(frozen=True)
class RenderOptions:
    sample_rate: int = SAMPLE_RATE
    gain: float = 0.5
    polyphony: int = 64
    workers: int = 2  # synths rendering sections side by side; the audio depends on it (see above)
    crossfade: float = 0.35  # seconds a section's tail overlaps the next one
    fade_out: float = 1.5  # seconds, at the very end of the bed: the closing chord's release
    peak_dbfs: float = -1.0
    balance: bool = True  # bring every section to the reference loudness (+ its emotion's offset)

    def __post_init__(self) -> None:
        if not 8000 <= self.sample_rate <= 192000:
            raise ValueError(f"sample_rate must be 8000..192000, got {self.sample_rate}")
        if not 0 < self.gain <= 10 or self.polyphony < 16 or not 1 <= self.workers <= 8:
            raise ValueError("gain must be in (0, 10], polyphony >= 16, workers 1..8")
        if self.crossfade < 0 or self.fade_out < 0 or self.peak_dbfs > 0:
            raise ValueError("crossfade and fade_out must be >= 0, peak_dbfs <= 0")


@dataclass(frozen=True)
class _Job:
    index: int
    sec: SectionScore
    first: int  # sample of the bed where the section starts
    body: int  # samples up to the next section's start
    tail: int  # samples of release after the body, faded out under the next section
    length: int  # samples rendered: body + tail, cut at the bed's end
    last: bool


class FluidRenderer:
    """Renders scores with a SoundFont. Each ``render`` call builds fresh synths: a fresh synth is
    what makes the same score give the same samples every time. Building the renderer loads the
    SoundFont once into a synth kept for its lifetime (see above)."""

    def __init__(self, soundfont: Path = DEFAULT_SOUNDFONT, options: RenderOptions | None = None) -> None:
        self.soundfont = check_soundfont(soundfont)
        self.options = options or RenderOptions()
        self._anchor = self._open()  # never plays: keeps the SoundFont's samples in FluidSynth's cache

    def close(self) -> None:
        """Frees the SoundFont (the renderer cannot be used afterwards)."""
        self._anchor.close()

    def _open(self) -> SectionSynth:
        o = self.options
        return SectionSynth(self.soundfont, o.sample_rate, o.gain, o.polyphony)

    def render(self, score: Score, duration: float, progress: Progress | None = None) -> np.ndarray:
        """``(round(duration * sample_rate), 2)`` float32 audio of ``score``."""
        if not (math.isfinite(duration) and duration > 0):
            raise ValueError(f"duration must be > 0, got {duration}")
        sr = self.options.sample_rate
        total = round(duration * sr)
        jobs = _jobs(score, total, sr, self.options.crossfade)
        out = np.zeros((total, 2), dtype=np.float32)
        meter = Loudness(sr)
        results: dict[int, Future[np.ndarray]] = {job.index: Future() for job in jobs}
        window = _Window(round(_AHEAD_S * sr))
        threads: list[threading.Thread] = []
        try:
            for mine in _lanes(jobs, self.options.workers):
                args = (mine, results, window, total, meter)
                threads.append(threading.Thread(target=self._lane, args=args, daemon=True))
                threads[-1].start()
            for job in jobs:
                audio = results[job.index].result()
                del results[job.index]  # the only reference to the future, which holds the samples
                out[job.first : job.first + len(audio)] += audio
                del audio
                window.advance(job.first + job.body)
                if progress is not None:
                    progress(min(1.0, (job.first + job.body) / total))
        finally:
            window.stop()
            for t in threads:
                t.join()
        return _finish(out, sr, self.options)

    def _lane(
        self,
        mine: list[_Job],
        results: dict[int, Future[np.ndarray]],
        window: _Window,
        total: int,
        meter: Loudness,
    ) -> None:
        """Renders ``mine`` in order with a synth of its own (built here, beside the other lanes: the
        anchor's samples are reused, 0.03 s; closed at the end); an error goes to every result left."""
        synth: SectionSynth | None = None
        try:
            synth = self._open()
            for job in mine:
                if not window.enter(job.first):
                    return
                audio = self._section(synth, job, total, meter)
                results[job.index].set_result(audio)  # the bed deletes a future only once it is done
        except BaseException as e:
            for job in mine:
                future = results.get(job.index)
                if future is not None and not future.done():
                    future.set_exception(e)
        finally:
            if synth is not None:
                synth.close()

    def _section(self, synth: SectionSynth, job: _Job, total: int, meter: Loudness) -> np.ndarray:
        """The section's samples with its entry ramp, tail fade and balance gain."""
        sr, length, body = self.options.sample_rate, job.length, job.body
        audio = synth.section(job.sec, length)
        if job.index > 0:  # de-click the entry; the previous tail fades under it
            ramp = min(length, round(0.005 * sr))
            audio[:ramp] *= np.linspace(0.0, 1.0, ramp, dtype=np.float32)[:, None]
        if not job.last and length > body:
            audio[body:length] *= _fade(job.tail)[: length - body, None]
        if self.options.balance:
            heard = audio[: min(body, length)]
            fade_out = min(total // 4, round(self.options.fade_out * sr))
            if job.last and fade_out:  # measured as heard: with the final release
                heard = heard.copy()
                n = min(fade_out, len(heard))
                heard[-n:] *= _fade(fade_out)[-n:, None]
            audio *= np.float32(balance_gain(meter, heard, CUES[job.sec.plan.emotion].loudness))
        return audio


class _Window:
    """A synth may start a section only while it starts at most ``ahead`` samples after the section
    the bed waits for, so finished sections do not pile up in memory (the awaited section itself may
    always start: no deadlock); ``stop`` releases every synth."""

    def __init__(self, ahead: int) -> None:
        self._cond = threading.Condition()
        self._ahead = ahead
        self._awaited = 0  # first sample of the section the bed waits for
        self._stopped = False

    def enter(self, first: int) -> bool:
        """Waits until a section starting at sample ``first`` may be rendered; False once stopped."""
        with self._cond:
            self._cond.wait_for(lambda: self._stopped or first - self._awaited <= self._ahead)
            return not self._stopped

    def advance(self, awaited: int) -> None:
        with self._cond:
            self._awaited = awaited
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()


def _jobs(score: Score, total: int, sr: int, crossfade: float) -> list[_Job]:
    jobs: list[_Job] = []
    last = len(score.sections) - 1
    for k, sec in enumerate(score.sections):
        first = round(sec.plan.start * sr)
        if first >= total:
            break
        body = round(sec.plan.end * sr) - first
        tail = round(max(crossfade, _overhang(sec) + 0.3) * sr)
        length = min(body + tail, total - first) if k < last else total - first
        jobs.append(_Job(k, sec, first, body, tail, length, k == last))
    return jobs


def _lanes(jobs: list[_Job], workers: int) -> list[list[_Job]]:
    """The jobs dealt in score order to ``workers`` synths, each to the one with the fewest samples
    so far (the first on a tie); empty lanes dropped. Depends only on the jobs."""
    lanes: list[list[_Job]] = [[] for _ in range(workers)]
    load = [0] * workers
    for job in jobs:
        i = load.index(min(load))
        lanes[i].append(job)
        load[i] += job.length
    return [lane for lane in lanes if lane]


def _overhang(sec: SectionScore) -> float:
    """Seconds that held notes sound past the section's end."""
    plan = sec.plan
    ends = [n.end for p in sec.parts for n in p.notes if n.end > plan.beats]
    return max((plan.time(e) - plan.end for e in ends), default=0.0)


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
    peak = max(float(out.max()), -float(out.min())) if out.size else 0.0  # no full-length temporary
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
    """Render ``score`` to ``(round(duration * 48000), 2)`` float32 with one-off synths."""
    renderer = FluidRenderer(soundfont, options)
    try:
        return renderer.render(score, duration, progress)
    finally:
        renderer.close()
