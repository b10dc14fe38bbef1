"""The stage scheduler: dependencies respected, independent stages overlap, failures stop new starts."""

from __future__ import annotations

import io
import os
import sys
import threading
import time

import pytest

from moodbgm.progress import JobProgress
from moodbgm.stagegraph import BACKGROUND_NICENESS, in_background, ready, run_graph
from moodbgm.stages import STAGES, upstream

DEPS = {s.name: upstream(s) for s in STAGES}
ORDER = [s.name for s in STAGES]


def test_every_stage_runs_once_after_its_inputs() -> None:
    finished: list[str] = []
    lock = threading.Lock()

    def run(name: str) -> None:
        with lock:
            assert all(d in finished for d in DEPS[name]), (name, finished)
        time.sleep(0.01)
        with lock:
            finished.append(name)

    run_graph(ORDER, DEPS, run, workers=2)
    assert sorted(finished) == sorted(ORDER)


def test_separation_overlaps_transcription() -> None:
    both = threading.Barrier(2, timeout=5)  # only passes when separate and stt run at the same time
    seen: list[str] = []

    def run(name: str) -> None:
        if name in ("separate", "stt"):
            both.wait()
        seen.append(name)

    run_graph(ORDER, DEPS, run, workers=2)
    assert set(seen) == set(ORDER)


def test_one_worker_runs_in_order() -> None:
    seen: list[str] = []
    run_graph(ORDER, DEPS, seen.append, workers=1)
    assert seen == ORDER


def test_failure_stops_new_stages_and_is_raised() -> None:
    seen: list[str] = []

    def run(name: str) -> None:
        seen.append(name)
        if name == "stt":
            raise ValueError("boom")
        if name == "separate":
            time.sleep(0.05)  # still running when stt fails: it finishes

    with pytest.raises(ValueError, match="boom"):
        run_graph(ORDER, DEPS, run, workers=2)
    assert "emotion" not in seen and "mix" not in seen and "separate" in seen


def test_bad_graphs_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown"):
        run_graph(["a"], {"a": ["b"]}, print)
    with pytest.raises(ValueError, match="cycle"):
        run_graph(["a", "b"], {"a": ["b"], "b": ["a"]}, print)
    with pytest.raises(ValueError, match="workers"):
        run_graph(["a"], {}, print, workers=0)
    assert ready(["a", "b", "c"], {"b": ["a"], "c": ["b"]}, {"a"}) == ["b"]


def test_progress_is_one_line_per_stage_start_and_end_when_not_a_terminal() -> None:
    out = io.StringIO()
    progress = JobProgress({"a": 1.0, "b": 3.0}, stream=out)
    progress("a", 0.0)
    progress("b", 0.0)
    progress("a", 0.5)
    progress("a", 1.0)
    progress("b", 1.0)
    progress.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [ln.split(":")[1].strip().split()[0] for ln in lines] == ["a", "b", "a", "b"]
    assert lines[2].endswith("(25 % of the job)") and lines[3].endswith("(100 % of the job)")
    assert progress.overall == 1.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_in_background_runs_at_the_lowest_priority_and_hands_back_the_result() -> None:
    def work() -> tuple[int, str]:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), threading.current_thread().name

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    nice, name = in_background(work, "chart")
    assert nice == max(before, BACKGROUND_NICENESS) and name == "moodbgm-chart"
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before  # the caller keeps its own

    def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        in_background(fail)
