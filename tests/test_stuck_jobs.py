"""No job stuck forever, without workers (real Redis DB 11, a key prefix per test): the stale-job sweep
(``jobstore.fail_stale``, run by the API), the redelivery counter, and the emotion warning mirrored
into the job store and the API's job status. With real workers: tests/test_worker_crash.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import redis_url
from moodbgm.jobs import JobDir, JobOptions, create_job, new_job_id
from moodbgm.jobstore import JobStore, StoreEvents, fail_lost, fail_stale, worker_died_message

REDIS_URL = redis_url(11)


@pytest.fixture
def store() -> Iterator[JobStore]:
    prefix = f"sj{uuid.uuid4().hex[:8]}:"
    s = JobStore.from_url(REDIS_URL, prefix, retention_s=60)
    yield s
    keys = s.redis.keys(f"{prefix}*")
    if keys:
        s.redis.delete(*keys)


def _running(store: JobStore, data_dir: Path, stage: str, heartbeat: float) -> JobDir:
    """A job whose ``stage`` runs (job.json and the store), last heard of at ``heartbeat``."""
    src = data_dir / "clip.mp4"
    src.write_bytes(b"not really a video")
    job_id = new_job_id()
    job = create_job(data_dir / job_id, src, JobOptions())
    store.create(job_id, {})
    job.update_stage(stage, status="running", started=heartbeat, heartbeat=heartbeat)
    job.update(status="running", stage=stage)
    store.update(job_id, status="running", stage=stage, heartbeat=heartbeat)
    return job


def test_sweep_fails_only_jobs_whose_heartbeat_is_stale(store: JobStore, tmp_path: Path) -> None:
    now = time.time()
    silent = _running(store, tmp_path, "stt", now - 121)
    alive = _running(store, tmp_path, "stt", now - 5)
    between = _running(store, tmp_path, "emotion", now - 500)
    store.update(between.id, heartbeat=None)  # between stages (next one queued): no heartbeat to judge
    done = _running(store, tmp_path, "mux", now - 500)
    store.update(done.id, status="done")

    assert fail_stale(store, 120, tmp_path, now=now) == [silent.id]

    message = "worker stopped sending heartbeats while running stt"
    state = store.get(silent.id)
    assert state is not None and state.status == "failed" and state.heartbeat is None
    assert state.error == {"kind": "internal", "stage": "stt", "message": message}
    record = silent.read()
    assert record.status == "failed" and record.error is not None and record.error.message == message
    assert record.stages["stt"].status == "failed"
    for job, status in ((alive, "running"), (between, "running"), (done, "done")):
        st = store.get(job.id)
        assert st is not None and st.status == status and st.error is None
    assert fail_stale(store, 120, tmp_path, now=now) == []  # once only


def test_a_failed_job_stays_failed(store: JobStore, tmp_path: Path) -> None:
    job = _running(store, tmp_path, "generate", time.time())
    assert fail_lost(job.id, "generate", worker_died_message("generate"), tmp_path, store) is not None
    assert fail_lost(job.id, "generate", "again", tmp_path, store) is None
    state = store.get(job.id)
    assert state is not None and state.error is not None
    assert state.error["message"] == "worker died running generate (out of memory?)"
    # a stage still running somewhere stops at its next progress report instead of reviving the job
    with pytest.raises(Exception, match="marked failed"):
        StoreEvents(store, job.id).check()


def test_deliveries_are_counted_per_job_stage_and_attempt(store: JobStore) -> None:
    job_id = new_job_id()
    assert [store.count_delivery(job_id, "stt", "t1", 0) for _ in range(4)] == [1, 2, 3, 4]
    assert store.count_delivery(job_id, "stt", "t1", 1) == 1  # a retry after a transient error: new attempt
    assert store.count_delivery(job_id, "emotion", "t2", 0) == 1
    assert store.count_delivery(job_id, "stt", "t3", 0) == 1  # a re-render (editor): a new task
    assert 0 < store.redis.ttl(f"{store.prefix}deliveries:{job_id}:stt:t1:0") <= 60


def test_emotion_warning_reaches_the_job_store(store: JobStore, tmp_path: Path) -> None:
    job = _running(store, tmp_path, "emotion", time.time())
    warning = "speech is not in English (fr): every phrase is neutral"
    job.update(emotion_warning=warning)
    StoreEvents(store, job.id).finished(job, "emotion", 0.5)
    state = store.get(job.id)
    assert state is not None and state.emotion_warning == warning and state.heartbeat is None
