"""Real Celery worker processes on a real Redis (DB 12) running real jobs end to end, driven over REST.

Jobs are ~4 s generated speech clips (``devtools.sample`` with one sentence) and the tiny.en model.
"""

from __future__ import annotations

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
from moodbgm.pipeline import STAGES

pytestmark = pytest.mark.slow
REDIS_URL = redis_url(12)
JOB_TIMEOUT_S = 300


def worker_env(data_dir: Path, redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    return {
        "MOODBGM_DATA_DIR": str(data_dir),
        "MOODBGM_REDIS_URL": redis_url,
        "MOODBGM_REDIS_PREFIX": prefix,
        "MOODBGM_STT_MODEL": "tiny.en",
        "MOODBGM_LOG_LEVEL": "INFO",
        **extra,
    }


def wait_for(
    client: TestClient,
    job_id: str,
    worker: LocalProcess,
    until: tuple[str, ...] = ("done", "failed", "cancelled"),
) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        r = client.get(f"/api/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        st: dict[str, Any] = r.json()
        if st["status"] in until:
            return st
        assert worker.alive(), worker.log_text()[-3000:]
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} not {until} in time:\n{worker.log_text()[-3000:]}")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("clips")
    return [make_sample(d / f"clip{i}.mp4", scale=0.05, seed=i).video for i in range(3)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, LocalProcess]]:
    redis.Redis.from_url(REDIS_URL).flushdb()
    d = tmp_path_factory.mktemp("stack")
    settings = Settings(
        data_dir=d / "jobs", redis_url=REDIS_URL, redis_prefix="tw:", stt_model="tiny.en", auth="disabled"
    )
    worker = start_worker(worker_env(settings.data_dir, REDIS_URL, "tw:"), d / "worker.log")
    yield settings, worker
    code = worker.stop()
    assert code == 0, worker.log_text()[-3000:]  # SIGTERM is a clean warm shutdown
    redis.Redis.from_url(REDIS_URL).flushdb()


@pytest.fixture(scope="module")
def client(stack: tuple[Settings, LocalProcess]) -> Iterator[TestClient]:
    with TestClient(create_app(stack[0])) as c:
        yield c


def submit(client: TestClient, clip: Path, **fields: object) -> dict[str, Any]:
    with clip.open("rb") as f:
        r = client.post(
            "/api/v1/jobs", files={"file": (clip.name, f)}, data={k: str(v) for k, v in fields.items()}
        )
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


def test_submit_complete_download(
    client: TestClient, stack: tuple[Settings, LocalProcess], clips: list[Path], tmp_path: Path
) -> None:
    settings, worker = stack
    job_id = submit(client, clips[0], style="lofi", seed=5)["id"]
    st = wait_for(client, job_id, worker)
    assert st["status"] == "done", st["error"]
    assert st["progress"] == 100 and st["stage"] is None
    assert set(st["timings"]) == {s.name for s in STAGES}
    # the original upload ("input") is listed only with ?original=true
    names = {f["name"] for f in st["files"]}
    assert {"output.mp4", "mix.wav", "bgm.wav", "bgm.mid", "timeline.json", "emotions.json"} <= names
    r = client.get(f"/api/v1/jobs/{job_id}/files/output.mp4")
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    out = tmp_path / "output.mp4"
    out.write_bytes(r.content)
    info = media.probe(out)
    assert info.video is not None and info.audio is not None
    assert info.duration == pytest.approx(media.probe(clips[0]).duration, abs=0.2)
    r = client.get(f"/api/v1/jobs/{job_id}/files/output.mp4", headers={"Range": "bytes=0-1023"})
    assert r.status_code == 206 and len(r.content) == 1024
    timeline = client.get(f"/api/v1/jobs/{job_id}/files/timeline.json").json()
    assert timeline["sections"] and timeline["duration"] == pytest.approx(info.duration, abs=0.2)
    record = (settings.data_dir / job_id / "job.json").read_text()
    assert '"status": "done"' in record
    assert not [p for p in (settings.data_dir / job_id).iterdir() if ".part" in p.name]
    metrics = client.get("/metrics").text
    assert 'moodbgm_stage_duration_seconds_count{stage="stt"}' in metrics
    assert 'moodbgm_jobs{status="done"}' in metrics


def test_batch_of_three(client: TestClient, stack: tuple[Settings, LocalProcess], clips: list[Path]) -> None:
    _, worker = stack
    files = [("files", (c.name, c.read_bytes(), "video/mp4")) for c in clips]
    r = client.post("/api/v1/batches", files=files, data={"style": "acoustic"})
    assert r.status_code == 202, r.text
    body = r.json()
    for job_id in body["jobs"]:
        assert wait_for(client, job_id, worker)["status"] == "done"
    batch = client.get(f"/api/v1/batches/{body['id']}").json()
    assert batch["status"] == "done" and batch["progress"] == 100
    assert [j["name"] for j in batch["jobs"]] == [c.name for c in clips]
    assert all("output.mp4" in {f["name"] for f in j["files"]} for j in batch["jobs"])


def test_cancel_then_delete_while_running(
    client: TestClient, stack: tuple[Settings, LocalProcess], clips: list[Path]
) -> None:
    settings, worker = stack
    job_id = submit(client, clips[1])["id"]
    wait_for(client, job_id, worker, until=("running",))
    st = client.post(f"/api/v1/jobs/{job_id}/cancel").json()
    assert st["status"] == "cancelled"
    follow = submit(client, clips[2])["id"]  # runs once the worker has dropped the cancelled chain
    assert wait_for(client, follow, worker)["status"] == "done"
    st = client.get(f"/api/v1/jobs/{job_id}").json()
    assert st["status"] == "cancelled" and "output.mp4" not in {f["name"] for f in st["files"]}
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    assert not (settings.data_dir / job_id).exists()

    doomed = submit(client, clips[0], seed=9)["id"]
    wait_for(client, doomed, worker, until=("running",))
    assert client.delete(f"/api/v1/jobs/{doomed}").status_code == 204
    after = submit(client, clips[1], seed=9)["id"]
    assert wait_for(client, after, worker)["status"] == "done"
    assert not (settings.data_dir / doomed).exists()  # a stage that ended after the delete left nothing
    assert client.get(f"/api/v1/jobs/{doomed}").status_code == 404


def test_input_error_in_a_stage_fails_the_job_once_in_plain_words(
    client: TestClient, stack: tuple[Settings, LocalProcess], clips: list[Path]
) -> None:
    settings, worker = stack
    # no Riffusion weights on this machine: the generate stage raises ModelNotFoundError (an InputError)
    job_id = submit(client, clips[0], generator="riffusion")["id"]
    st = wait_for(client, job_id, worker)
    assert st["status"] == "failed" and st["stage"] == "generate"
    message = st["error"]["message"]
    assert "Riffusion" in message or "riffusion" in message, message
    if st["error"]["kind"] == "input":  # ModelNotFoundError, once the backend is complete
        assert "Riffusion model" in message
    else:
        assert st["error"]["kind"] == "internal" and message.startswith(
            "internal error in the generate stage"
        )
    assert "output.mp4" not in {f["name"] for f in st["files"]}
    record = (settings.data_dir / job_id / "job.json").read_text()
    assert '"status": "failed"' in record
    assert "Retry in" not in worker.log_text()  # only transient errors are retried
