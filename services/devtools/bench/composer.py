"""Benchmark: compose and render a 10-minute, multi-section bed with the symbolic composer.

Goal: the whole bed (48 kHz stereo) in under 20 s on a 2-core CPU, i.e. faster than 30x real time.
``render_s`` includes loading the SoundFont (the default ``RenderOptions``: one synth). ``cpu_s`` is the
process's CPU time (all threads), which stays meaningful when other jobs share the cores.
``sample`` is not needed: the timeline is synthetic and fixed (every emotion, sections of 12-75 s).
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import numpy as np

from moodbgm.generate.base import GenerateOptions
from moodbgm.generate.composer import ComposerGenerator, compose, score_to_midi
from moodbgm.types import EMOTIONS, Section, Timeline

DURATION = 600.0


def bench_timeline(duration: float = DURATION, seed: int = 0) -> Timeline:
    rng = np.random.default_rng(seed)
    sections: list[Section] = []
    t, previous = 0.0, ""
    while t < duration:
        emotion = str(rng.choice([e for e in EMOTIONS if e != previous]))
        end = min(duration, t + float(rng.uniform(12.0, 75.0)))
        if duration - end < 8.0:
            end = duration
        sections.append(Section(t, end, emotion))
        t, previous = end, emotion
    return Timeline(duration, tuple(sections))


def run(sample: pathlib.Path, workdir: pathlib.Path) -> dict[str, Any]:
    del sample  # synthetic timeline
    workdir.mkdir(parents=True, exist_ok=True)
    tl = bench_timeline()
    options = GenerateOptions(style="cinematic", seed=0)
    generator = ComposerGenerator()
    c0, t0 = time.process_time(), time.perf_counter()
    score = compose(tl, DURATION, options)
    midi = score_to_midi(score)
    t1 = time.perf_counter()
    audio = generator.renderer.render(score, DURATION)
    t2, c2 = time.perf_counter(), time.process_time()
    (workdir / "bench_composer.mid").write_bytes(midi)
    total = t2 - t0
    return {
        "duration_s": DURATION,
        "sections": len(tl.sections),
        "notes": score.note_count(),
        "compose_s": round(t1 - t0, 3),
        "render_s": round(t2 - t1, 3),
        "total_s": round(total, 3),
        "x_realtime": round(DURATION / total, 1),
        "cpu_s": round(c2 - c0, 3),  # this process's CPU time: the speed without other load
        "peak_dbfs": round(float(20 * np.log10(np.max(np.abs(audio)))), 2),
    }
