"""REST v1 without workers: uploads (limits, validation, nothing left on disk), status, downloads with
Range, cancel/delete, auth, metrics, OpenAPI, and 503 when Redis is down. Real Redis (DB 11), real
ffprobe."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from devtools.local import free_port
from helpers import redis_url
from moodbgm.api.app import create_app
from moodbgm.config import Settings

REDIS_URL = redis_url(11)


@pytest.fixture(scope="module", autouse=True)
def clean_db() -> Iterator[None]:
    r = redis.Redis.from_url(REDIS_URL)
    r.flushdb()
    yield
    r.flushdb()


def make_settings(tmp_path: Path, **kw: object) -> Settings:
    base: dict[str, object] = {
        "data_dir": tmp_path / "jobs",
        "redis_url": REDIS_URL,
        "redis_prefix": f"t{time.monotonic_ns()}:",
    }
    return Settings(**{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def on_disk(settings: Settings) -> list[str]:
    """Every file and folder under the data dir (the empty .uploads folder itself excepted)."""
    root = settings.data_dir
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name != ".uploads")


def upload(client: TestClient, path: Path, name: str | None = None, **fields: object) -> object:
    with path.open("rb") as f:
        files = {"file": (name or path.name, f, "application/octet-stream")}
        return client.post("/api/v1/jobs", files=files, data={k: str(v) for k, v in fields.items()})


def test_submit_makes_a_queued_job_with_its_input(
    client: TestClient, settings: Settings, media_dir: Path
) -> None:
    r = upload(client, media_dir / "av.mp4", seed=3, style="lofi")
    assert r.status_code == 202, r.text
    body = r.json()
    job_id = body["id"]
    assert (
        len(job_id) == 32 and body["jobs"] == [job_id] and body["seeds"] == [3] and body["batch_id"] is None
    )
    st = client.get(f"/api/v1/jobs/{job_id}").json()
    assert st["status"] == "queued" and st["progress"] == 0 and st["name"] == "av.mp4"
    assert st["options"]["style"] == "lofi" and st["options"]["seed"] == 3
    assert [f["name"] for f in st["files"]] == ["input"]
    stored = settings.data_dir / job_id / "input.mp4"
    assert stored.read_bytes() == (media_dir / "av.mp4").read_bytes()
    assert not list((settings.data_dir / ".uploads").iterdir())  # staging cleaned
    # the chain of stage tasks waits on the first stage's queue
    assert redis.Redis.from_url(REDIS_URL).llen("media") >= 1


def test_variations_share_the_upload_with_consecutive_seeds(
    client: TestClient, settings: Settings, media_dir: Path
) -> None:
    r = upload(client, media_dir / "av.mp4", seed=7, variations=3)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["seeds"] == [7, 8, 9] and len(set(body["jobs"])) == 3
    batch = client.get(f"/api/v1/batches/{body['batch_id']}").json()
    assert batch["kind"] == "variations" and [j["id"] for j in batch["jobs"]] == body["jobs"]
    assert [j["options"]["seed"] for j in batch["jobs"]] == [7, 8, 9]
    inputs = [settings.data_dir / j / "input.mp4" for j in body["jobs"]]
    assert len({p.stat().st_ino for p in inputs}) == 1  # one file, hard-linked
    assert client.delete(f"/api/v1/jobs/{body['jobs'][0]}").status_code == 204
    assert inputs[1].read_bytes() == (media_dir / "av.mp4").read_bytes()


def test_batch_of_files(client: TestClient, media_dir: Path) -> None:
    files = [("files", (n, (media_dir / n).read_bytes(), "video/mp4")) for n in ("av.mp4", "video_only.mp4")]
    r = client.post("/api/v1/batches", files=files, data={"style": "acoustic"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["names"] == ["av.mp4", "video_only.mp4"] and len(body["jobs"]) == 2
    batch = client.get(f"/api/v1/batches/{body['id']}").json()
    assert batch["kind"] == "files" and batch["status"] == "running"
    assert {j["options"]["style"] for j in batch["jobs"]} == {"acoustic"}


@pytest.mark.parametrize(
    ("name", "sent_as", "code", "words"),
    [
        ("random.mp4", "random.mp4", 422, "media"),
        ("empty.mp4", "empty.mp4", 400, "empty"),
        ("audio_only.m4a", "audio_only.mp4", 422, "video"),
        ("truncated.mp4", "truncated.mp4", 422, ""),
        ("av.mp4", "../../etc/evil.mp4", 400, "unsafe file name"),
        ("av.mp4", "..\\evil.mp4", 400, "unsafe file name"),
    ],
)
def test_bad_uploads_are_refused_and_leave_nothing(
    client: TestClient, settings: Settings, media_dir: Path, name: str, sent_as: str, code: int, words: str
) -> None:
    r = upload(client, media_dir / name, name=sent_as)
    assert r.status_code == code, r.text
    assert words in r.json()["detail"]
    assert on_disk(settings) == []
    assert not (settings.data_dir.parent / "etc").exists()


def test_too_large_and_too_long_uploads(tmp_path: Path, media_dir: Path) -> None:
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (1024 * 1024 + 10))
    small = make_settings(tmp_path, max_upload_mb=1, max_duration_s=2.0)
    with TestClient(create_app(small)) as c:
        r = upload(c, big)
        assert r.status_code == 413 and "limit" in r.json()["detail"]
        r = upload(c, media_dir / "av.mp4")  # 6 s > 2 s
        assert r.status_code == 400 and "limit is 2 s" in r.json()["detail"]
    assert on_disk(small) == []


def test_malformed_requests(client: TestClient, settings: Settings, media_dir: Path) -> None:
    assert (
        client.post("/api/v1/jobs", content=b"hello", headers={"content-type": "text/plain"}).status_code
        == 400
    )
    r = client.post("/api/v1/jobs", data={"style": "lofi"}, files={"x": ("", b"", "text/plain")})
    assert r.status_code == 400
    assert upload(client, media_dir / "av.mp4", style="polka").status_code == 422
    assert upload(client, media_dir / "av.mp4", variations=99).status_code == 422
    assert upload(client, media_dir / "av.mp4", seed="x").status_code == 422
    assert on_disk(settings) == []


def test_downloads_have_types_and_ranges(client: TestClient, settings: Settings, media_dir: Path) -> None:
    job_id = upload(client, media_dir / "av.mp4").json()["id"]
    whole = (media_dir / "av.mp4").read_bytes()
    r = client.get(f"/api/v1/jobs/{job_id}/files/input")
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4" and r.content == whole
    assert r.headers["accept-ranges"] == "bytes"
    r = client.get(f"/api/v1/jobs/{job_id}/files/input", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == whole[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(whole)}"
    (settings.data_dir / job_id / "timeline.json").write_text('{"duration": 6, "sections": []}')
    r = client.get(f"/api/v1/jobs/{job_id}/files/timeline.json?download=true")
    assert (
        r.headers["content-type"] == "application/json" and "attachment" in r.headers["content-disposition"]
    )
    for bad in ("job.json", "media.json", "..%2Fjob.json", "output.mp4", "input.mp4"):
        assert client.get(f"/api/v1/jobs/{job_id}/files/{bad}").status_code == 404, bad
    assert client.get("/api/v1/jobs/..%2F..%2Fetc/files/input").status_code == 404
    assert client.get(f"/api/v1/jobs/{'0' * 32}/files/input").status_code == 404


def test_cancel_then_delete_removes_everything(
    client: TestClient, settings: Settings, media_dir: Path
) -> None:
    job_id = upload(client, media_dir / "av.mp4").json()["id"]
    r = client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert '"cancelled"' in (settings.data_dir / job_id / "job.json").read_text()
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    assert not (settings.data_dir / job_id).exists()
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 404
    keys = redis.Redis.from_url(REDIS_URL).keys(f"{settings.redis_prefix}job:{job_id}*")
    assert keys == []


def test_api_keys_and_file_tokens(tmp_path: Path, media_dir: Path) -> None:
    s = make_settings(tmp_path, api_keys=["s3cret"], cors_origins=["https://example.org"])
    with TestClient(create_app(s)) as c:
        assert upload(c, media_dir / "av.mp4").status_code == 401
        assert c.get("/healthz").status_code == 200
        auth = {"Authorization": "Bearer s3cret"}
        with (media_dir / "av.mp4").open("rb") as f:
            r = c.post("/api/v1/jobs", files={"file": ("av.mp4", f)}, headers=auth)
        assert r.status_code == 202
        job_id = r.json()["id"]
        assert c.get(f"/api/v1/jobs/{job_id}").status_code == 401
        st = c.get(f"/api/v1/jobs/{job_id}", headers=auth).json()
        url = st["files"][0]["url"]
        assert "token=" in url and c.get(url).status_code == 200  # a <video src> needs no header
        assert c.get(f"/api/v1/jobs/{job_id}/files/input?token=wrong").status_code == 401
        pre = c.options(
            "/api/v1/jobs", headers={"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
        )
        assert pre.headers["access-control-allow-origin"] == "https://example.org"


def test_metrics_health_and_openapi(client: TestClient, media_dir: Path) -> None:
    upload(client, media_dir / "av.mp4")
    assert client.get("/readyz").json() == {"status": "ok", "redis": "ok"}
    text = client.get("/metrics").text
    assert 'moodbgm_jobs{status="queued"} 1.0' in text
    assert 'moodbgm_queue_length{queue="media"}' in text and "moodbgm_store_up 1.0" in text
    spec = client.get("/openapi.json").json()
    assert {
        "/api/v1/jobs",
        "/api/v1/batches",
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/files/{name}",
    } <= set(spec["paths"])
    body = spec["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["properties"]["file"]["format"] == "binary" and "variations" in body["properties"]
    assert "JobStatus" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_web_form_is_served(client: TestClient) -> None:
    html = client.get("/").text
    for needle in (
        'for="file"',
        'id="upload-progress"',
        'aria-live="polite"',
        'id="timeline-chart"',
        "cinematic",
    ):
        assert needle in html
    assert "XMLHttpRequest" in client.get("/static/app.js").text
    assert "http://" not in html and "https://" not in html  # no CDN


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(50):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.1)
    yield url, proc
    if proc.poll() is None:
        proc.terminate()
        proc.wait()


def test_redis_down_gives_503_and_no_crash(
    tmp_path: Path, media_dir: Path, throwaway_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, proc = throwaway_redis
    s = make_settings(tmp_path, redis_url=url)
    with TestClient(create_app(s)) as c:
        job_id = upload(c, media_dir / "av.mp4").json()["id"]
        proc.terminate()
        proc.wait()
        r = c.get(f"/api/v1/jobs/{job_id}")
        assert r.status_code == 503 and "Redis" in r.json()["detail"]
        r = upload(c, media_dir / "av.mp4")
        assert r.status_code == 503
        assert c.get("/readyz").status_code == 503
        assert c.get("/healthz").status_code == 200
        assert "moodbgm_store_up 0.0" in c.get("/metrics").text
    assert on_disk(s) == [job_id, f"{job_id}/input.mp4", f"{job_id}/job.json"]  # only the first job
