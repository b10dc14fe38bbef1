"""Benchmark of the timeline planner and chart on synthetic transcripts (the demo video is not needed).

Target: planning thousands of phrases takes well under a second; the chart of a 10-minute video a few.
"""

from __future__ import annotations

import pathlib
import statistics
import time
from typing import Any

import numpy as np

from moodbgm.report import render_timeline_png
from moodbgm.timeline import plan_timeline
from moodbgm.types import EMOTIONS, EmotionScores, Phrase, Transcript

_SR = 8_000


def _synthetic(n: int, seed: int) -> tuple[list[Phrase], list[EmotionScores], float, list[float]]:
    """``n`` phrases in mood runs (80 % on the run's emotion), with gaps and scene cuts."""
    rng = np.random.default_rng(seed)
    phrases, scores, t, mood = [], [], 0.5, "joy"
    for _ in range(n):
        if rng.random() < 0.1:
            mood = str(rng.choice(EMOTIONS))
        length = float(rng.uniform(0.4, 5.0))
        phrases.append(Phrase(t, t + length, "benchmark phrase"))
        confidence = float(rng.uniform(0.3, 0.95))
        probs = np.full(len(EMOTIONS), (1 - confidence) / (len(EMOTIONS) - 1))
        probs[EMOTIONS.index(mood if rng.random() < 0.8 else str(rng.choice(EMOTIONS)))] = confidence
        scores.append(EmotionScores.from_probs(probs))
        t += length + float(rng.uniform(0.1, 2.0))
    duration = t + 1.0
    cuts = sorted(rng.uniform(0.0, duration, max(1, int(duration / 8))).tolist())
    return phrases, scores, duration, cuts


def run(sample: pathlib.Path, workdir: pathlib.Path) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for n in (200, 5000):
        phrases, scores, duration, cuts = _synthetic(n, seed=n)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            timeline = plan_timeline(phrases, scores, duration, cuts)
            times.append(time.perf_counter() - t0)
        metrics[f"plan_{n}_phrases_s"] = round(statistics.median(times), 4)
        metrics[f"plan_{n}_phrases_sections"] = len(timeline.sections)
        metrics[f"plan_{n}_phrases_duration_s"] = round(duration, 1)

    phrases, scores, duration, cuts = _synthetic(150, seed=10)  # about ten minutes of talk
    timeline = plan_timeline(phrases, scores, duration, cuts)
    audio = np.random.default_rng(0).normal(0.0, 0.1, int(duration * _SR)).astype(np.float32)
    t0 = time.perf_counter()
    render_timeline_png(
        workdir / "timeline.png", audio, _SR, Transcript("en", tuple(phrases)), scores, timeline
    )
    metrics["render_s"] = round(time.perf_counter() - t0, 3)
    metrics["render_video_s"] = round(duration, 1)
    metrics["render_png_bytes"] = (workdir / "timeline.png").stat().st_size
    return metrics
