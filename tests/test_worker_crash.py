"""Workers killed mid-stage (real processes, real Redis DB 14): the job still completes, and the stages
finished before the kill are not redone, and no half-written output is left.

- a pool child SIGKILLed (as the OOM killer would): ``reject_on_worker_lost`` requeues its task at once;
- the whole worker SIGKILLed and a new one started: the unacknowledged task comes back after the
  broker's visibility timeout (110 s here, above the hard limit 100 s);
- the only worker SIGKILLed and none started: the API's stale-job sweep fails the job once its
  heartbeat is older than ``heartbeat_timeout_s``;
- a pool child killed on every delivery of a task: after ``max_deliveries`` (3) the job fails with
  "worker died running STAGE (out of memory?)".

The time limits are generous (soft 90 s): they count model loading in the pool child, which takes
tens of seconds on a loaded machine; a tight limit made these tests fail for the wrong reason.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from devtools.local import LocalProcess, start_worker
from devtools.sample import make_sample
from helpers import redis_url
from moodbgm import media
from moodbgm.api.app import create_app
from moodbgm.config import Settings
from moodbgm.files import read_wav
from moodbgm.pipeline import STAGES

pytestmark = pytest.mark.slow
REDIS_URL = redis_url(14)
SOFT_S, HARD_S, VISIBILITY_S = 90, 100, 110
LIMITS = {
    "MOODBGM_TASK_SOFT_TIME_LIMIT_S": str(SOFT_S),
    "MOODBGM_TASK_TIME_LIMIT_S": str(HARD_S),
    "MOODBGM_BROKER_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
}
HEARTBEAT_TIMEOUT_S = 15.0  # 3 heartbeats (every 5 s) missed
SWEEP_S = 1.0
ORDER = [s.name for s in STAGES]


def _setup(tmp_path: Path, **overrides: Any) -> Iterator[tuple[Settings, dict[str, str], TestClient]]:
    redis.Redis.from_url(REDIS_URL).flushdb()
    settings = Settings(
        data_dir=tmp_path / "jobs",
        redis_url=REDIS_URL,
        redis_prefix="tc:",
        task_soft_time_limit_s=SOFT_S,
        task_time_limit_s=HARD_S,
        broker_visibility_timeout_s=VISIBILITY_S,
        auth="disabled",  # one caller, no per-key limits
        **overrides,
    )
    env = {
        "MOODBGM_DATA_DIR": str(settings.data_dir),
        "MOODBGM_REDIS_URL": REDIS_URL,
        "MOODBGM_REDIS_PREFIX": "tc:",
        "MOODBGM_STT_MODEL": "tiny.en",
        **LIMITS,
    }
    with TestClient(create_app(settings)) as client:
        yield settings, env, client
    redis.Redis.from_url(REDIS_URL).flushdb()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Settings, dict[str, str], TestClient]]:
    # no sweep while a killed worker's task waits for the visibility timeout to come back
    yield from _setup(tmp_path, heartbeat_timeout_s=3600.0)


@pytest.fixture
def swept(tmp_path: Path) -> Iterator[tuple[Settings, dict[str, str], TestClient]]:
    """The API sweeps for stale jobs every second, with a short heartbeat limit."""
    yield from _setup(tmp_path, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S, stale_sweep_interval_s=SWEEP_S)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sample(tmp_path_factory.mktemp("clip") / "clip.mp4", scale=0.05, seed=3).video


def submit(client: TestClient, clip: Path) -> str:
    with clip.open("rb") as f:
        r = client.post("/api/v1/jobs", files={"file": (clip.name, f)})
    assert r.status_code == 202, r.text
    job_id: str = r.json()["id"]
    return job_id


def wait_stage(client: TestClient, job_id: str, stage: str, worker: LocalProcess) -> None:
    """Until ``stage`` is running (the stages before it are finished)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        st = client.get(f"/api/v1/jobs/{job_id}").json()
        if st["status"] == "running" and ORDER.index(st["stage"] or "media") >= ORDER.index(stage):
            return
        assert st["status"] in ("queued", "running"), st
        time.sleep(0.1)
    raise AssertionError(f"stage {stage} never started:\n{worker.log_text()[-3000:]}")


def wait_done(client: TestClient, job_id: str, worker: LocalProcess, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
        if st["status"] in ("done", "failed", "cancelled"):
            return st
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish:\n{worker.log_text()[-3000:]}")


def finished_stages(job_dir: Path) -> dict[str, float]:
    """The stages finished so far (a running stage has a record too, with no finish time)."""
    stages = json.loads((job_dir / "job.json").read_text()).get("stages", {})
    return {name: s["finished"] for name, s in stages.items() if s.get("finished") is not None}


def check_outputs(job_dir: Path, clip: Path, before: dict[str, float]) -> None:
    after = finished_stages(job_dir)
    assert set(after) == set(ORDER)
    for name, finished in before.items():  # finished before the kill: not redone
        assert after[name] == finished, name
    assert not [p.name for p in job_dir.iterdir() if ".part" in p.name]
    audio, _ = read_wav(job_dir / "audio.wav")
    for name in ("voice.wav", "bgm.wav", "mix.wav"):
        assert abs(len(read_wav(job_dir / name)[0]) - len(audio)) <= 1, name
    out = media.probe(job_dir / "output.mp4")
    assert out.video is not None and out.audio is not None
    assert out.duration == pytest.approx(media.probe(clip).duration, abs=0.2)


def test_pool_child_killed_mid_stage(setup: tuple[Settings, dict[str, str], TestClient], clip: Path) -> None:
    settings, env, client = setup
    worker = start_worker(env, settings.data_dir.parent / "worker.log")
    try:
        job_id = submit(client, clip)
        wait_stage(client, job_id, "stt", worker)
        before = finished_stages(settings.data_dir / job_id)
        children = worker.children()
        assert children, "the prefork pool has no child"
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        st = wait_done(client, job_id, worker)
        assert st["status"] == "done", (st["error"], worker.log_text()[-3000:])
        assert "WorkerLostError" in worker.log_text() or "lost" in worker.log_text().lower()
        check_outputs(settings.data_dir / job_id, clip, before)
    finally:
        worker.stop()


def test_whole_worker_killed_then_restarted(
    setup: tuple[Settings, dict[str, str], TestClient], clip: Path
) -> None:
    settings, env, client = setup
    log = settings.data_dir.parent / "worker.log"
    first = start_worker(env, log)
    second = None
    try:
        job_id = submit(client, clip)
        wait_stage(client, job_id, "separate", first)
        before = finished_stages(settings.data_dir / job_id)
        first.kill()  # SIGKILL to the worker and its pool: nothing is acknowledged
        assert client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "running"
        second = start_worker(env, log)
        st = wait_done(client, job_id, second, timeout=VISIBILITY_S + 300)
        assert st["status"] == "done", (st["error"], second.log_text()[-3000:])
        check_outputs(settings.data_dir / job_id, clip, before)
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_only_worker_killed_job_fails_within_the_sweep_limit(
    swept: tuple[Settings, dict[str, str], TestClient], clip: Path
) -> None:
    settings, env, client = swept
    worker = start_worker(env, settings.data_dir.parent / "worker.log")
    try:
        job_id = submit(client, clip)
        wait_stage(client, job_id, "stt", worker)
        stage = client.get(f"/api/v1/jobs/{job_id}").json()["stage"]
        worker.kill()  # nothing restarts it
        killed = time.monotonic()
        st = wait_done(client, job_id, worker, timeout=HEARTBEAT_TIMEOUT_S + 60)
        elapsed = time.monotonic() - killed
        assert st["status"] == "failed", st
        assert st["error"]["message"] == f"worker stopped sending heartbeats while running {stage}"
        assert st["error"]["stage"] == stage
        # the last heartbeat was at most 5 s before the kill; the sweep runs every second
        assert elapsed <= HEARTBEAT_TIMEOUT_S + SWEEP_S + 10, elapsed
        record = json.loads((settings.data_dir / job_id / "job.json").read_text())
        assert record["status"] == "failed" and record["stages"][stage]["status"] == "failed"
    finally:
        worker.stop()


def test_task_killed_three_times_fails_with_a_clear_message(
    setup: tuple[Settings, dict[str, str], TestClient], clip: Path
) -> None:
    settings, env, client = setup
    worker = start_worker(env, settings.data_dir.parent / "worker.log")
    r = redis.Redis.from_url(REDIS_URL)
    try:
        job_id = submit(client, clip)
        wait_stage(client, job_id, "stt", worker)

        def deliveries() -> int:  # of the one stt task (key: job, stage, Celery task id, retry number)
            keys = r.keys(f"tc:deliveries:{job_id}:stt:*:0")
            assert len(keys) <= 1, keys
            return int(r.get(keys[0]) or 0) if keys else 0

        for delivery in (1, 2, 3):  # the OOM killer, every time the task is taken
            deadline = time.monotonic() + 120
            while deliveries() < delivery or not worker.children():
                assert time.monotonic() < deadline, worker.log_text()[-3000:]
                time.sleep(0.05)
            for pid in worker.children():
                os.kill(pid, signal.SIGKILL)
        st = wait_done(client, job_id, worker, timeout=120)
        assert st["status"] == "failed", st
        assert st["error"] == {
            "kind": "internal",
            "stage": "stt",
            "message": "worker died running stt (out of memory?)",
        }
        assert deliveries() == 4  # the 4th delivery gave up at once
        assert worker.alive()  # the worker itself carries on with other jobs
    finally:
        worker.stop()
