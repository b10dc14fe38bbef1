"""The whole ``moodbgm run`` process, timed from outside: start-up, model loading and every stage.

For the sample (66 s) and for a ~10-minute video (the sample looped), each run is a fresh
``python -m moodbgm.cli -q run VIDEO -o DIR`` child process in a new job directory. Per run:

- ``wall_s`` and ``rtf`` (wall / media duration);
- ``cpu_s`` (user + sys of the child and every process it waited for, e.g. ffmpeg, from ``wait4``)
  and ``cpu_per_media_s``;
- ``peak_rss_mb``: the largest sum of RSS over the process tree (sampled every 50 ms with psutil);
- ``stages_s``: the seconds each stage recorded in ``job.json`` (stages may overlap).

Each figure is the median over the runs (3 at 66 s; ``long_runs`` at 10 minutes, 1 by default
because three 10-minute runs take about as long as the rest of the benchmark put together).
Goals on the 2-core CPU: RTF <= 0.35 at 66 s, CPU-s per media-s <= 0.6, peak RSS at 10 minutes
<= 1.5x the 66 s peak. Run alone: ``python -m devtools.bench.pipeline VIDEO [--runs N] [--long-runs N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from moodbgm import media
from moodbgm.files import read_json

RUNS = 3
LONG_RUNS = 1
LONG_SECONDS = 600.0
GOALS = {"rtf": 0.35, "cpu_per_media_s": 0.6, "rss_ratio": 1.5}


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:  # exited between the listing and the read
            continue
    return total


def run_once(video: Path, outdir: Path, seed: int = 0) -> dict[str, Any]:
    """One ``moodbgm run`` in its own process; its figures (see the module docstring)."""
    cmd = [
        sys.executable,
        "-m",
        "moodbgm.cli",
        "-q",
        "run",
        str(video),
        "-o",
        str(outdir),
        "--seed",
        str(seed),
    ]
    peak = 0
    stop = threading.Event()
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc = psutil.Process(child.pid)

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.05):
            try:
                peak = max(peak, _tree_rss(proc))
            except psutil.Error:
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert child.stderr is not None
    err = child.stderr.read()  # drained while it runs (a full pipe would block the child)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    child.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"moodbgm run failed ({child.returncode}): {err.decode(errors='replace')[-2000:]}")
    duration = media.probe(video).duration
    cpu = usage.ru_utime + usage.ru_stime
    stages = {k: v["seconds"] for k, v in read_json(outdir / "job.json")["stages"].items()}
    return {
        "media_s": round(duration, 2),
        "wall_s": round(wall, 2),
        "rtf": round(wall / duration, 4),
        "cpu_s": round(cpu, 2),
        "cpu_per_media_s": round(cpu / duration, 4),
        "peak_rss_mb": round(max(peak, usage.ru_maxrss * 1024) / 2**20, 1),
        "stages_s": stages,
    }


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": len(runs)}
    for key in ("media_s", "wall_s", "rtf", "cpu_s", "cpu_per_media_s", "peak_rss_mb"):
        out[key] = round(statistics.median(r[key] for r in runs), 4)
    names = runs[0]["stages_s"]
    out["stages_s"] = {n: round(statistics.median(r["stages_s"].get(n, 0.0) for r in runs), 3) for n in names}
    out["each"] = [{k: r[k] for k in ("wall_s", "cpu_s", "peak_rss_mb")} for r in runs]
    return out


def measure(video: Path, workdir: Path, runs: int) -> dict[str, Any]:
    results = []
    for i in range(runs):
        results.append(run_once(video, workdir / f"{video.stem}-{i}"))
        print(f"bench pipeline {video.name} run {i + 1}/{runs}: {json.dumps(results[-1])}", file=sys.stderr)
    return _median(results)


def run(sample: Path, workdir: Path, runs: int = RUNS, long_runs: int = LONG_RUNS) -> dict[str, Any]:
    times = max(1, round(LONG_SECONDS / media.probe(sample).duration))
    long_video = media.loop_video(sample, workdir / "ten_minutes.mp4", times=times)
    out: dict[str, Any] = {
        "sample": measure(sample, workdir, runs),
        "ten_minutes": measure(long_video, workdir, long_runs) if long_runs else None,
    }
    goals = {
        f"rtf_sample<={GOALS['rtf']}": out["sample"]["rtf"] <= GOALS["rtf"],
        f"cpu_per_media_s<={GOALS['cpu_per_media_s']}": out["sample"]["cpu_per_media_s"]
        <= GOALS["cpu_per_media_s"],
    }
    if out["ten_minutes"] is not None:
        ratio = out["ten_minutes"]["peak_rss_mb"] / out["sample"]["peak_rss_mb"]
        out["rss_ratio_10min_vs_sample"] = round(ratio, 3)
        goals[f"rss_ratio<={GOALS['rss_ratio']}"] = ratio <= GOALS["rss_ratio"]
    out["goals"] = goals
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.bench.pipeline", description=__doc__.splitlines()[0])
    p.add_argument("video", type=Path)
    p.add_argument("--runs", type=int, default=RUNS, help="runs of the sample (median)")
    p.add_argument("--long-runs", type=int, default=LONG_RUNS, help="runs of the 10-minute video (0: none)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        print(json.dumps(run(args.video.resolve(), Path(tmp), args.runs, args.long_runs), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
