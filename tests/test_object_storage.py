"""A REST job end to end with the object-storage backend (``MOODBGM_STORAGE=s3``) against moto's
standalone S3 server on 127.0.0.1: the API under uvicorn and a real worker, each with its OWN data and
scratch directories, so every file goes from one process to the other through the object store.
Real Redis (DB 10), real models (tiny.en)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer

from devtools.local import LocalProcess, free_port, start_api, start_worker
from devtools.sample import make_sample
from helpers import redis_url
from moodbgm import media
from moodbgm.api.app import create_app
from moodbgm.client import Client
from moodbgm.config import Settings
from moodbgm.jobs import new_job_id

REDIS_URL = redis_url(10)
KEY = "object-storage-key-0123456789"
BUCKET = "moodbgm-e2e"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def _env(tmp_path: Path, who: str, endpoint: str, prefix: str) -> dict[str, str]:
    return {
        "MOODBGM_DATA_DIR": str(tmp_path / who / "data"),
        "MOODBGM_SCRATCH_DIR": str(tmp_path / who / "scratch"),
        "MOODBGM_STORAGE": "s3",
        "MOODBGM_S3_BUCKET": BUCKET,
        "MOODBGM_S3_PREFIX": prefix,
        "MOODBGM_S3_ENDPOINT_URL": endpoint,
        "MOODBGM_S3_REGION": "us-east-1",
        "MOODBGM_REDIS_URL": REDIS_URL,
        "MOODBGM_REDIS_PREFIX": "s3e2e:",
        "MOODBGM_STT_MODEL": "tiny.en",
        "MOODBGM_API_KEYS": f'["{KEY}"]',
        "AWS_ACCESS_KEY_ID": "moodbgm-test-key",
        "AWS_SECRET_ACCESS_KEY": "moodbgm-test-secret",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }


def _job_dirs(root: Path) -> list[str]:
    """Job directories (32 hex characters) anywhere under ``root``."""
    return [p.name for p in root.rglob("*") if p.is_dir() and len(p.name) == 32] if root.exists() else []


@pytest.mark.parametrize("mode", ["stream", "redirect"])
def test_downloads_are_streamed_or_redirected_to_a_presigned_url(
    tmp_path: Path, s3_endpoint: str, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _env(tmp_path, "api", s3_endpoint, "").items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    if BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=BUCKET)
    settings = Settings(
        storage="s3",
        s3_bucket=BUCKET,
        s3_prefix=f"dl-{secrets.token_hex(4)}/",
        s3_endpoint_url=s3_endpoint,
        s3_region="us-east-1",
        s3_downloads=mode,  # type: ignore[arg-type]
        scratch_dir=tmp_path / "scratch",
        data_dir=tmp_path / "data",
        redis_url=REDIS_URL,
        redis_prefix=f"dl{secrets.token_hex(4)}:",
        auth="disabled",
    )
    app = create_app(settings)
    svc = app.state.service
    job_id = new_job_id()
    svc.store.create(job_id, {})
    data = secrets.token_bytes(300_000)
    (svc.artifacts.workdir(job_id)).mkdir(parents=True)
    (svc.artifacts.workdir(job_id) / "output.mp4").write_bytes(data)
    svc.artifacts.publish(job_id, "mux", ["output.mp4"])
    with TestClient(app) as client:
        files = {f["name"]: f for f in client.get(f"/api/v1/jobs/{job_id}").json()["files"]}
        assert files["output.mp4"]["size"] == len(data)
        r = client.get(f"/api/v1/jobs/{job_id}/files/output.mp4?download=1", follow_redirects=False)
        if mode == "stream":
            assert r.status_code == 200 and r.content == data
            assert r.headers["content-type"] == "video/mp4"
            assert r.headers["content-disposition"].startswith("attachment;")
        else:
            assert r.status_code == 307
            fetched = httpx.get(r.headers["location"])
            assert fetched.status_code == 200 and fetched.content == data
            assert "attachment" in fetched.headers["content-disposition"]
        assert client.get(f"/api/v1/jobs/{job_id}/files/mix.wav").status_code == 404
        assert client.delete(f"/api/v1/jobs/{job_id}").status_code in (200, 204)
        assert svc.artifacts.list(job_id) == []
    redis.Redis.from_url(REDIS_URL).flushdb()


@pytest.mark.slow
def test_rest_job_completes_through_object_storage(tmp_path: Path, s3_endpoint: str) -> None:
    redis.Redis.from_url(REDIS_URL).flushdb()
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="moodbgm-test-key",
        aws_secret_access_key="moodbgm-test-secret",
    )
    s3.create_bucket(Bucket=BUCKET)
    prefix = f"run-{secrets.token_hex(4)}/"
    clip = make_sample(tmp_path / "talk.mp4", scale=0.05, seed=3).video
    port = free_port()
    procs: list[LocalProcess] = []
    try:
        procs.append(start_worker(_env(tmp_path, "worker", s3_endpoint, prefix), tmp_path / "worker.log"))
        procs.append(start_api(_env(tmp_path, "api", s3_endpoint, prefix), tmp_path / "api.log", port))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            client = Client(key=KEY, http=http)
            job_id = client.submit(clip).id
            deadline = time.monotonic() + 600
            while (st := client.job(job_id)).status not in ("done", "failed", "cancelled"):
                assert time.monotonic() < deadline, procs[0].log_text()[-3000:]
                time.sleep(0.5)
            assert st.status == "done", (st.error, procs[0].log_text()[-3000:])
            names = set(st.files)
            assert {"output.mp4", "mix.wav", "timeline.json"} <= names, names
            assert "input" in client.job(job_id, original=True).files

            # every output is in the bucket, each stage's manifest written
            keys = {
                o["Key"][len(prefix) :]
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
                for o in page.get("Contents", [])
            }
            assert f"{job_id}/output.mp4" in keys and f"{job_id}/job.json" in keys
            for stage in ("media", "stt", "emotion", "mix", "mux", "report"):
                assert f"{job_id}/.stages/{stage}.json" in keys, stage

            # a download is a 307 to a presigned URL of the object store; the client follows it
            auth = {"Authorization": f"Bearer {KEY}"}
            r = http.get(f"/api/v1/jobs/{job_id}/files/output.mp4", headers=auth)
            assert r.status_code == 307, r.text
            assert r.headers["location"].startswith(f"{s3_endpoint}/{BUCKET}/{prefix}{job_id}/output.mp4?")
            out = client.download(job_id, "output.mp4", tmp_path / "out" / "talk.mp4")
            info = media.probe(out)
            assert info.video is not None and info.audio is not None
            assert info.duration == pytest.approx(media.probe(clip).duration, abs=0.5)

            # nothing passed through (or stayed on) a local disk: no job folder in either process's
            # data directory, none left in their scratch
            for who in ("api", "worker"):
                assert _job_dirs(tmp_path / who) == [], who

            # deleting the job removes its objects
            client.delete(job_id)
            left = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}{job_id}/").get("KeyCount", 0)
            assert left == 0
    finally:
        for p in procs:
            p.stop()
        redis.Redis.from_url(REDIS_URL).flushdb()
