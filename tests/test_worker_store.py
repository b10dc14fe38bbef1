"""JobStore over a real Redis (DB 11, a key prefix per test): records, TTLs, guarded updates, metrics."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import redis

from helpers import redis_url
from moodbgm.jobstore import JobStore

REDIS_URL = redis_url(11)


@pytest.fixture
def store() -> Iterator[JobStore]:
    prefix = f"st{uuid.uuid4().hex[:8]}:"
    s = JobStore.from_url(REDIS_URL, prefix, retention_s=60)
    yield s
    keys = s.redis.keys(f"{prefix}*")
    if keys:
        s.redis.delete(*keys)


def test_create_update_read(store: JobStore) -> None:
    st = store.create("a" * 32, {"seed": 1}, name="x.mp4")
    assert st.status == "queued" and st.options == {"seed": 1} and st.name == "x.mp4" and st.error is None
    assert store.set_progress("a" * 32, "stt", np.float64(0.5))  # stages report numpy scalars
    assert store.record_stage("a" * 32, "stt", 2.25)
    assert store.update(
        "a" * 32, error={"kind": "input", "message": "bad"}, artifacts=["x.wav"], tasks=("t1",)
    )
    st = store.get("a" * 32)
    assert st is not None
    assert (st.status, st.stage, st.progress) == ("running", "stt", 0.5)
    assert st.timings == {"stt": 2.25} and st.error == {"kind": "input", "message": "bad"}
    assert st.artifacts == ("x.wav",) and st.tasks == ("t1",)
    assert 0 < store.redis.ttl(store.job_key("a" * 32)) <= 60  # retention as a key TTL


def test_updates_to_a_deleted_job_do_not_bring_it_back(store: JobStore) -> None:
    store.create("b" * 32, {})
    store.delete("b" * 32)
    assert store.update("b" * 32, status="done") is False
    assert store.get("b" * 32) is None and not store.redis.exists(store.job_key("b" * 32))


def test_batches_and_counts(store: JobStore) -> None:
    for i, status in enumerate(("queued", "running", "done", "done")):
        store.create(f"{i:032x}", {})
        store.update(f"{i:032x}", status=status)
    b = store.create_batch("c" * 32, "variations", [f"{i:032x}" for i in range(4)])
    assert store.get_batch("c" * 32) == b
    assert [s.status for s in store.get_many(b.jobs) if s] == ["queued", "running", "done", "done"]
    store.redis.delete(store.job_key(f"{0:032x}"))  # expired
    assert store.counts_by_status() == {"running": 1, "done": 2}
    assert store.redis.zcard(store.index_key) == 3
    with pytest.raises(ValueError):
        store.create_batch("d" * 32, "other", [])


def test_stage_histogram(store: JobStore) -> None:
    for s in (0.3, 4.0, 4000.0):
        store.observe_stage("mix", s)
    buckets, total = store.stage_histograms(["mix", "stt"])["mix"]
    d = dict(buckets)
    assert (
        d["0.5"] == 1 and d["5"] == 2 and d["3600"] == 2 and d["+Inf"] == 3 and total == pytest.approx(4004.3)
    )


def test_unreachable_redis_raises() -> None:
    s = JobStore.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(redis.exceptions.ConnectionError):
        s.ping()
