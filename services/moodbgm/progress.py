"""Progress of a whole job on stderr, for stages that may run at the same time.

``JobProgress`` turns ``(stage, fraction)`` reports into the job's overall fraction (each stage
weighted by ``Stage.weight``; parallel stages add up). On a terminal it drives a tqdm bar; otherwise
(a log file, a pipe, CI) it writes one plain line when a stage starts and one when it ends, never
carriage-return bars.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from typing import TextIO


class JobProgress:
    """Thread-safe sink for ``pipeline.StageProgress`` reports: ``progress(stage, fraction)``."""

    def __init__(
        self, weights: Mapping[str, float], enabled: bool = True, stream: TextIO | None = None
    ) -> None:
        if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError("JobProgress: need non-negative stage weights with a positive sum")
        self._weights = dict(weights)
        self._total = sum(weights.values())
        self._fractions: dict[str, float] = {}
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = enabled
        self._bar = None
        if enabled and self._stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=100,
                unit="%",
                file=self._stream,
                bar_format="{l_bar}{bar}| {elapsed}<{remaining}",
            )

    @property
    def overall(self) -> float:
        """Weighted fraction of the job done, in [0, 1]."""
        done = sum(self._weights.get(s, 0.0) * f for s, f in self._fractions.items())
        return min(1.0, done / self._total)

    def __call__(self, stage: str, fraction: float) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        with self._lock:
            before = self._fractions.get(stage)
            self._fractions[stage] = max(fraction, before or 0.0)
            if not self._enabled:
                return
            if self._bar is not None:
                self._bar.set_description(stage.ljust(8))
                self._bar.n = round(100 * self.overall, 1)
                self._bar.refresh()
                return
            now = time.perf_counter()
            if before is None:
                self._started[stage] = now
                self._line(f"{stage}: started")
            if fraction >= 1.0 and (before is None or before < 1.0):
                took = now - self._started.get(stage, now)
                self._line(f"{stage}: done in {took:.1f} s ({100 * self.overall:.0f} % of the job)")

    def _line(self, text: str) -> None:
        print(f"moodbgm: {text}", file=self._stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
