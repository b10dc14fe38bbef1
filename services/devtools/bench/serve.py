"""Serving benchmark: 20 short jobs submitted at once to a real API + worker stack on Redis.

Measures throughput (jobs per minute), end-to-end latency per job (upload accepted -> done, p50/p95)
and the API's ``GET /api/v1/jobs/{id}`` latency while the workers are busy (p50/p95; goal p95 < 50 ms).
Clips are one-sentence ``devtools.sample`` videos (~4 s); the demo ``sample`` is not used (too long
for 20 jobs on a small machine). Uses Redis DB 10 (flushed), tiny.en for speech.
"""

from __future__ import annotations

import logging
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import redis

from devtools.local import free_port, start_api, start_worker
from devtools.sample import make_sample

log = logging.getLogger(__name__)

N_JOBS = 20
N_CLIPS = 4
REDIS_URL = "redis://127.0.0.1:6379/10"
TIMEOUT_S = 1800.0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 4)


def run(sample: Path, workdir: Path) -> dict[str, Any]:
    redis.Redis.from_url(REDIS_URL).flushdb()
    cpus = len(os.sched_getaffinity(0))
    env = {
        "MOODBGM_DATA_DIR": str(workdir / "jobs"),
        "MOODBGM_REDIS_URL": REDIS_URL,
        "MOODBGM_REDIS_PREFIX": "bench:",
        "MOODBGM_STT_MODEL": "tiny.en",
        "MOODBGM_STT_THREADS": "1",
        "MOODBGM_LOG_LEVEL": "WARNING",
    }
    clips = [make_sample(workdir / f"clip{i}.mp4", scale=0.05, seed=i).video for i in range(N_CLIPS)]
    port = free_port()
    worker = start_worker(env, workdir / "worker.log", concurrency=cpus)
    api = start_api(env, workdir / "api.log", port)
    base = f"http://127.0.0.1:{port}/api/v1"
    get_ms: list[float] = []
    submitted: dict[str, float] = {}
    done_at: dict[str, float] = {}
    status: dict[str, str] = {}
    try:

        def submit(i: int) -> None:
            clip = clips[i % N_CLIPS]
            with httpx.Client(timeout=120) as c, clip.open("rb") as f:
                r = c.post(f"{base}/jobs", files={"file": (clip.name, f, "video/mp4")}, data={"seed": str(i)})
            r.raise_for_status()
            submitted[r.json()["id"]] = time.monotonic()

        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(submit, range(N_JOBS)))
        submit_s = time.monotonic() - t0

        stop = threading.Event()

        def poll() -> None:  # a client following every job, as the web form does
            with httpx.Client(timeout=30) as c:
                while not stop.is_set():
                    for job_id in list(submitted):
                        if job_id in done_at:
                            continue
                        t = time.perf_counter()
                        r = c.get(f"{base}/jobs/{job_id}")
                        get_ms.append(1000 * (time.perf_counter() - t))
                        st = r.json()["status"]
                        if st in ("done", "failed", "cancelled"):
                            done_at[job_id] = time.monotonic()
                            status[job_id] = st
                    time.sleep(0.2)

        pollers = [threading.Thread(target=poll) for _ in range(2)]
        for p in pollers:
            p.start()
        deadline = time.monotonic() + TIMEOUT_S
        while len(done_at) < N_JOBS and time.monotonic() < deadline and worker.alive():
            time.sleep(0.5)
        stop.set()
        for p in pollers:
            p.join()
        elapsed = max(done_at.values(), default=time.monotonic()) - t0
        e2e = [done_at[j] - submitted[j] for j in done_at]
        n_done = sum(1 for s in status.values() if s == "done")
        return {
            "jobs": N_JOBS,
            "done": n_done,
            "failed": sum(1 for s in status.values() if s == "failed"),
            "unfinished": N_JOBS - len(done_at),
            "worker_concurrency": cpus,
            "clip_seconds": round(statistics.mean(_duration(c) for c in clips), 2),
            "submit_all_s": round(submit_s, 3),
            "elapsed_s": round(elapsed, 2),
            "throughput_jobs_per_min": round(60 * n_done / elapsed, 2) if elapsed > 0 else 0.0,
            "e2e_p50_s": _pct(e2e, 0.5),
            "e2e_p95_s": _pct(e2e, 0.95),
            "get_job_requests": len(get_ms),
            "get_job_p50_ms": _pct(get_ms, 0.5),
            "get_job_p95_ms": _pct(get_ms, 0.95),
            "get_job_p95_goal_ms": 50,
        }
    finally:
        api.stop()
        worker.stop(timeout=60)
        redis.Redis.from_url(REDIS_URL).flushdb()


def _duration(clip: Path) -> float:
    from moodbgm import media

    return media.probe(clip).duration
