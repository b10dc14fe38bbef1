"""REST v1 without workers: uploads (limits, validation, nothing left on disk), status, downloads with
Range, cancel/delete, keys and owners, signed links, per-key limits, Idempotency-Key, the job list,
problem details, metrics, OpenAPI, and 503 when Redis is down. Real Redis (DB 11), real ffprobe."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from devtools.local import free_port
from helpers import redis_url
from moodbgm.api.app import create_app
from moodbgm.api.auth import key_id
from moodbgm.api.signing import LinkSigner
from moodbgm.client import ApiError, Client
from moodbgm.config import Settings
from moodbgm.jobstore import JobStore
from problemjson import assert_problem

REDIS_URL = redis_url(11)
KEY_A = "key-a-0123456789abcdef"
KEY_B = "key-b-0123456789abcdef"
ADMIN = "key-admin-0123456789ab"
KEYS = [KEY_A, KEY_B, {"key": ADMIN, "role": "admin"}]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


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
        "api_keys": KEYS,
    }
    return Settings(**{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers=bearer(KEY_A)) as c:
        yield c


def on_disk(settings: Settings) -> list[str]:
    """Every file and folder under the data dir (the empty .uploads folder itself excepted)."""
    root = settings.data_dir
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name != ".uploads")


def upload(
    client: TestClient,
    path: Path,
    name: str | None = None,
    headers: dict[str, str] | None = None,
    **fields: object,
) -> Any:
    with path.open("rb") as f:
        files = {"file": (name or path.name, f, "application/octet-stream")}
        data = {k: str(v) for k, v in fields.items()}
        return client.post("/api/v1/jobs", files=files, data=data, headers=headers)


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
    assert r.headers["location"] == f"/api/v1/jobs/{job_id}"
    st = client.get(f"/api/v1/jobs/{job_id}").json()
    assert st["status"] == "queued" and st["progress"] == 0 and st["name"] == "av.mp4"
    assert st["options"]["style"] == "lofi" and st["options"]["seed"] == 3
    assert st["owner"] == key_id(KEY_A) and KEY_A not in r.text + str(st)
    assert st["files"] == []  # the original upload is listed only when asked
    st = client.get(f"/api/v1/jobs/{job_id}?original=true").json()
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


def test_pick_a_variation_as_the_output(client: TestClient, settings: Settings, media_dir: Path) -> None:
    body = upload(client, media_dir / "av.mp4", seed=7, variations=2).json()
    batch_id, (first, second) = body["batch_id"], body["jobs"]
    pick = f"/api/v1/batches/{batch_id}/pick"
    assert client.get(f"/api/v1/batches/{batch_id}").json()["picked"] is None
    assert_problem(client.post(pick, json={"job": second}), 409)  # not done yet
    store = JobStore.from_url(REDIS_URL, settings.redis_prefix)
    store.update(second, status="done")
    r = client.post(pick, json={"job": second})
    assert r.status_code == 200, r.text
    assert r.json()["picked"] == second
    assert client.get(f"/api/v1/batches/{batch_id}").json()["picked"] == second
    api = Client(http=client)  # the typed client: the TestClient carries the key
    assert api.pick(batch_id, second)["picked"] == second
    with pytest.raises(ApiError) as err:
        api.pick(batch_id, first)  # not done
    assert err.value.status == 409
    assert_problem(client.post(pick, json={"job": "0" * 32}), 422)  # not one of its variations
    assert_problem(client.post(pick, json={"nope": 1}), 422)
    other = TestClient(client.app, headers=bearer(KEY_B))
    assert other.post(pick, json={"job": second}).status_code == 404  # another key's batch
    assert client.post(f"/api/v1/batches/{'0' * 32}/pick", json={"job": first}).status_code == 404


def test_batch_of_files(client: TestClient, media_dir: Path) -> None:
    files = [("files", (n, (media_dir / n).read_bytes(), "video/mp4")) for n in ("av.mp4", "video_only.mp4")]
    r = client.post("/api/v1/batches", files=files, data={"style": "acoustic"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert r.headers["location"] == f"/api/v1/batches/{body['id']}"
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
    assert words in assert_problem(r, code, "/api/v1/jobs")["detail"]
    assert on_disk(settings) == []
    assert not (settings.data_dir.parent / "etc").exists()


def test_too_large_and_too_long_uploads(tmp_path: Path, media_dir: Path) -> None:
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (1024 * 1024 + 10))
    small = make_settings(tmp_path, max_upload_mb=1, max_duration_s=2.0)
    with TestClient(create_app(small), headers=bearer(KEY_A)) as c:
        assert "limit" in assert_problem(upload(c, big), 413)["detail"]
        r = upload(c, media_dir / "av.mp4")  # 6 s > 2 s
        assert "limit is 2 s" in assert_problem(r, 400)["detail"]
    assert on_disk(small) == []


def test_malformed_requests(client: TestClient, settings: Settings, media_dir: Path) -> None:
    assert_problem(client.post("/api/v1/jobs", content=b"hello", headers={"content-type": "text/plain"}), 400)
    r = client.post("/api/v1/jobs", data={"style": "lofi"}, files={"x": ("", b"", "text/plain")})
    assert_problem(r, 400)
    assert_problem(upload(client, media_dir / "av.mp4", style="polka"), 422)
    assert_problem(upload(client, media_dir / "av.mp4", variations=99), 422)
    assert_problem(upload(client, media_dir / "av.mp4", seed="x"), 422)
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
        assert_problem(client.get(f"/api/v1/jobs/{job_id}/files/{bad}"), 404)
    assert_problem(client.get("/api/v1/jobs/..%2F..%2Fetc/files/input"), 404)
    assert_problem(client.get(f"/api/v1/jobs/{'0' * 32}/files/input"), 404)


def test_cancel_then_delete_removes_everything(
    client: TestClient, settings: Settings, media_dir: Path
) -> None:
    job_id = upload(client, media_dir / "av.mp4").json()["id"]
    r = client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert '"cancelled"' in (settings.data_dir / job_id / "job.json").read_text()
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    assert not (settings.data_dir / job_id).exists()
    assert_problem(client.get(f"/api/v1/jobs/{job_id}"), 404, f"/api/v1/jobs/{job_id}")
    assert_problem(client.delete(f"/api/v1/jobs/{job_id}"), 404)
    keys = redis.Redis.from_url(REDIS_URL).keys(f"{settings.redis_prefix}job:{job_id}*")
    assert keys == []


def test_no_key_is_401_and_a_wrong_one_too(settings: Settings, media_dir: Path) -> None:
    with TestClient(create_app(settings)) as c:
        for r in (
            upload(c, media_dir / "av.mp4"),
            c.get("/api/v1/jobs"),
            c.get(f"/api/v1/jobs/{'0' * 32}"),
            c.get(f"/api/v1/jobs/{'0' * 32}/files/output.mp4"),
            c.get("/api/v1/jobs", headers=bearer("not-a-key")),
            c.get("/api/v1/jobs", headers={"Authorization": KEY_A}),  # not "Bearer ..."
            c.get("/metrics"),
        ):
            assert "API key" in assert_problem(r, 401)["detail"] and r.headers["www-authenticate"]
        assert on_disk(settings) == []
        assert c.get("/healthz").status_code == 200 and c.get("/").status_code == 200


def test_keys_are_required_unless_auth_is_disabled(
    tmp_path: Path, media_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="MOODBGM_AUTH=disabled"):
        create_app(make_settings(tmp_path, api_keys=[]))
    s = make_settings(tmp_path, api_keys=[], auth="disabled")
    with caplog.at_level("WARNING"), TestClient(create_app(s)) as c:
        r = upload(c, media_dir / "av.mp4")
        assert r.status_code == 202 and c.get(r.headers["location"]).json()["owner"] == "anonymous"
        assert 'id="api-key"' not in c.get("/").text
    assert "AUTHENTICATION IS DISABLED" in caplog.text
    # keys with roles, and the plain list of strings, from the environment
    monkeypatch.setenv("MOODBGM_API_KEYS", '[{"key": "x", "role": "admin"}, "y"]')
    env = Settings()
    assert [k if isinstance(k, str) else (k.key, k.role) for k in env.api_keys] == [("x", "admin"), "y"]


def test_other_keys_cannot_see_cancel_delete_or_download(
    client: TestClient, settings: Settings, media_dir: Path
) -> None:
    r = upload(client, media_dir / "av.mp4", variations=2)
    job_id, batch_id, both = r.json()["id"], r.json()["batch_id"], set(r.json()["jobs"])
    b = bearer(KEY_B)
    paths = [
        ("GET", f"/api/v1/jobs/{job_id}"),
        ("GET", f"/api/v1/batches/{batch_id}"),
        ("POST", f"/api/v1/jobs/{job_id}/cancel"),
        ("DELETE", f"/api/v1/jobs/{job_id}"),
        ("GET", f"/api/v1/jobs/{job_id}/files/input"),
    ]
    for method, path in paths:
        r = client.request(method, path, headers=b)
        assert_problem(r, 404, path)
        # the same answer as for an id that never existed: nothing tells B the job is there
        ghost = path.replace(job_id, "0" * 32).replace(batch_id, "0" * 32)
        unknown = client.request(method, ghost, headers=b).json()
        assert r.json()["detail"].replace(job_id, "0" * 32).replace(batch_id, "0" * 32) == unknown["detail"]
    assert client.get("/api/v1/jobs", headers=b).json()["jobs"] == []
    assert client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "queued"  # B changed nothing
    assert (settings.data_dir / job_id / "input.mp4").is_file()
    # an admin key sees every key's jobs, and may cancel them
    assert {j["id"] for j in client.get("/api/v1/jobs", headers=bearer(ADMIN)).json()["jobs"]} == both
    assert client.get(f"/api/v1/batches/{batch_id}", headers=bearer(ADMIN)).status_code == 200
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", headers=bearer(ADMIN)).json()["status"] == "cancelled"


def test_signed_links_expire_and_cannot_be_altered(
    client: TestClient, settings: Settings, media_dir: Path
) -> None:
    job_id = upload(client, media_dir / "av.mp4").json()["id"]
    whole = (media_dir / "av.mp4").read_bytes()
    st = client.get(f"/api/v1/jobs/{job_id}?original=true").json()
    url = st["files"][0]["url"]
    assert "exp=" in url and "sig=" in url and "original=1" in url
    anonymous = TestClient(client.app)  # a browser's <video src>: no Authorization header
    assert anonymous.get(url).content == whole
    r = anonymous.get(url, headers={"Range": "bytes=0-9"})
    assert r.status_code == 206 and r.content == whole[:10]
    sig = url.split("sig=")[1]
    tampered = [
        url.replace(sig, ("0" if sig[0] != "0" else "1") + sig[1:]),  # another signature
        url.replace("exp=", "exp=9"),  # a later expiry
        url.replace("&original=1", ""),  # the flag dropped
        url.replace(job_id, "f" * 32),  # another job
    ]
    for bad in tampered:
        assert_problem(anonymous.get(bad), 403)
    # a link to another file of the job never opens the original upload
    (settings.data_dir / job_id / "timeline.json").write_text("{}")
    st = client.get(f"/api/v1/jobs/{job_id}").json()
    assert [f["name"] for f in st["files"]] == ["timeline.json"]
    link = st["files"][0]["url"]
    assert anonymous.get(link).json() == {}
    assert_problem(anonymous.get(link.replace("timeline.json", "input")), 403)
    assert_problem(anonymous.get(link.replace("timeline.json", "input") + "&original=1"), 403)
    # expired: signed by the same secret, an hour ago
    signer: LinkSigner = client.app.state.signer()  # type: ignore[attr-defined]
    base = f"/api/v1/jobs/{job_id}/files/timeline.json"
    old = f"{base}?{signer.query(job_id, 'timeline.json', time.time() - 7200)}"
    assert "expired" in assert_problem(anonymous.get(old), 403)["detail"]
    assert anonymous.get(f"{base}?{signer.query(job_id, 'timeline.json')}").status_code == 200
    # the owner's bearer key opens any file, the original included
    assert client.get(f"/api/v1/jobs/{job_id}/files/input").content == whole


def test_concurrent_job_limit_is_429_with_retry_after(tmp_path: Path, media_dir: Path) -> None:
    s = make_settings(tmp_path, max_active_jobs_per_key=2)
    with TestClient(create_app(s), headers=bearer(KEY_A)) as c:
        first = [upload(c, media_dir / "av.mp4").json()["id"] for _ in range(2)]
        r = upload(c, media_dir / "av.mp4")
        p = assert_problem(r, 429, "/api/v1/jobs")
        assert int(r.headers["retry-after"]) > 0 and p["retry_after"] == int(r.headers["retry-after"])
        assert p["type"].endswith("too-many-active-jobs") and "limit is 2" in p["detail"]
        assert_problem(upload(c, media_dir / "av.mp4", variations=2), 429)
        assert upload(c, media_dir / "av.mp4", headers=bearer(KEY_B)).status_code == 202  # per key
        assert upload(c, media_dir / "av.mp4", headers=bearer(ADMIN)).status_code == 202  # no limit
        assert c.post(f"/api/v1/jobs/{first[0]}/cancel").status_code == 200  # a finished job frees a slot
        assert upload(c, media_dir / "av.mp4").status_code == 202
        assert_problem(upload(c, media_dir / "av.mp4"), 429)
        # a refused upload leaves nothing: three jobs of A, one of B, one of the admin
        assert len([d for d in s.data_dir.iterdir() if d.name != ".uploads"]) == 5


def test_uploads_per_hour_and_storage_quota(tmp_path: Path, media_dir: Path) -> None:
    s = make_settings(tmp_path, max_uploads_per_hour=2, storage_quota_mb=1)
    with TestClient(create_app(s), headers=bearer(KEY_A)) as c:
        job_id = upload(c, media_dir / "av.mp4").json()["id"]
        assert_problem(upload(c, media_dir / "av.mp4", style="polka"), 422)  # counts: it was an upload
        r = upload(c, media_dir / "av.mp4")
        p = assert_problem(r, 429)
        assert 3500 <= int(r.headers["retry-after"]) <= 3600 and p["type"].endswith("rate-limited")
    s = make_settings(tmp_path, storage_quota_mb=1)
    with TestClient(create_app(s), headers=bearer(KEY_A)) as c:
        # storage: B's job folder grows over 1 MB (as outputs would), then B's next upload is refused
        job_id = upload(c, media_dir / "av.mp4").json()["id"]
        b = bearer(KEY_B)
        b_job = upload(c, media_dir / "av.mp4", headers=b).json()["id"]
        (s.data_dir / b_job / "mix.wav").write_bytes(b"\0" * 1024 * 1024)
        p = assert_problem(upload(c, media_dir / "av.mp4", headers=b), 413)
        assert p["type"].endswith("storage-quota") and "MB quota" in p["detail"]
        assert c.delete(f"/api/v1/jobs/{b_job}", headers=b).status_code == 204  # room again
        assert upload(c, media_dir / "av.mp4", headers=b).status_code == 202
        assert c.get(f"/api/v1/jobs/{job_id}").status_code == 200


def test_idempotency_key_makes_one_job(client: TestClient, media_dir: Path) -> None:
    key = {"Idempotency-Key": "upload-1"}
    first = upload(client, media_dir / "av.mp4", headers=key, seed=5)
    again = upload(client, media_dir / "av.mp4", headers=key, seed=5)  # another multipart boundary
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["location"] == first.headers["location"]
    assert [j["id"] for j in client.get("/api/v1/jobs").json()["jobs"]] == [first.json()["id"]]
    p = assert_problem(upload(client, media_dir / "av.mp4", headers=key, seed=6), 422)  # another body
    assert p["type"].endswith("idempotency-key-reused")
    assert_problem(upload(client, media_dir / "video_only.mp4", name="av.mp4", headers=key, seed=5), 422)
    # the same Idempotency-Key from another API key is another request
    other = upload(client, media_dir / "av.mp4", headers={**key, **bearer(KEY_B)}, seed=5)
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    # a failed first request does not hold the key
    bad = {"Idempotency-Key": "upload-2"}
    assert upload(client, media_dir / "random.mp4", headers=bad).status_code == 422
    assert upload(client, media_dir / "av.mp4", headers=bad).status_code == 202
    # cancel is idempotent too, and a key names one request
    job = first.json()["id"]
    c1 = client.post(f"/api/v1/jobs/{job}/cancel", headers={"Idempotency-Key": "c"})
    c2 = client.post(f"/api/v1/jobs/{job}/cancel", headers={"Idempotency-Key": "c"})
    assert (
        c1.status_code == c2.status_code == 200 and c1.json()["status"] == c2.json()["status"] == "cancelled"
    )
    r = client.post(f"/api/v1/jobs/{other.json()['id']}/cancel", headers={"Idempotency-Key": "c"})
    assert_problem(r, 422)  # key "c" named another request


def test_list_pages_through_25_jobs_with_a_cursor(tmp_path: Path, media_dir: Path) -> None:
    s = make_settings(tmp_path, max_active_jobs_per_key=100, max_uploads_per_hour=100)
    with TestClient(create_app(s), headers=bearer(KEY_A)) as c:
        made = [upload(c, media_dir / "av.mp4", seed=i).json()["id"] for i in range(25)]
        upload(c, media_dir / "av.mp4", headers=bearer(KEY_B))
        for job_id in made[:3]:
            c.post(f"/api/v1/jobs/{job_id}/cancel")
        seen: list[str] = []
        url: str | None = "/api/v1/jobs?limit=10"
        pages = 0
        while url:
            page = c.get(url).json()
            seen += [j["id"] for j in page["jobs"]]
            assert all(j["files"] == [] or "sig=" in j["files"][0]["url"] for j in page["jobs"])
            url = page["links"].get("next")
            assert (url is None) == (page["next_cursor"] is None)
            pages += 1
        assert pages == 3 and seen == made[::-1]  # newest first, each once, only A's
        cancelled = c.get("/api/v1/jobs?status=cancelled&limit=2").json()
        assert [j["id"] for j in cancelled["jobs"]] == made[2:0:-1] and cancelled["next_cursor"]
        rest = c.get(f"/api/v1/jobs?status=cancelled&limit=2&cursor={cancelled['next_cursor']}").json()
        assert [j["id"] for j in rest["jobs"]] == made[:1] and rest["next_cursor"] is None
        assert len(c.get("/api/v1/jobs?status=queued,running&limit=100").json()["jobs"]) == 22
        assert len(c.get("/api/v1/jobs?limit=100", headers=bearer(ADMIN)).json()["jobs"]) == 26
        assert_problem(c.get("/api/v1/jobs?status=sleeping"), 400)
        assert_problem(c.get("/api/v1/jobs?cursor=!!!"), 400)
        assert_problem(c.get("/api/v1/jobs?limit=0"), 422)


def test_cursor_holds_on_jobs_made_in_the_same_instant(settings: Settings) -> None:
    store = JobStore.from_url(REDIS_URL, settings.redis_prefix)
    ids = [f"{i:032x}" for i in range(7)]
    for job_id in ids:
        store.create(job_id, {}, owner="o")
    same = 1767225600.25
    store.redis.zadd(store.owner_index_key("o"), dict.fromkeys(ids, same))  # one timestamp for all
    for job_id in ids:
        store.redis.hset(store.job_key(job_id), "created", same)
    seen: list[str] = []
    after = None
    while True:
        page = store.list_jobs("o", None, after, 3)
        seen += [s.id for s in page]
        if len(page) < 3:
            break
        after = (page[-1].created, page[-1].id)
    assert seen == ids[::-1]  # ties newest-first by id, each once
    assert store.list_jobs("someone-else", None, None, 3) == []


def test_every_error_is_problem_json(client: TestClient, media_dir: Path) -> None:
    job_id = upload(client, media_dir / "av.mp4").json()["id"]
    cases = [
        (client.put("/api/v1/jobs"), 405),
        (client.get("/api/v1/nothing-here"), 404),
        (client.get(f"/api/v1/jobs/{job_id}/files/output.mp4"), 404),
        (client.get("/api/v1/jobs?limit=1000"), 422),
        (client.get(f"/api/v1/jobs/{job_id}?original=maybe"), 422),
        (client.get("/api/v1/batches/x"), 404),
        (client.get("/metrics"), 403),
        (client.post("/api/v1/jobs", headers={"Idempotency-Key": ""}, content=b""), 400),
    ]
    for r, code in cases:
        assert_problem(r, code)
    assert client.put("/api/v1/jobs").headers["allow"] == "POST"
    errs = assert_problem(client.get("/api/v1/jobs?limit=1000"), 422)["errors"]
    assert errs[0]["loc"] == ["query", "limit"]


def test_metrics_health_and_openapi(client: TestClient, media_dir: Path) -> None:
    upload(client, media_dir / "av.mp4")
    assert client.get("/readyz").json() == {"status": "ok", "redis": "ok"}
    assert_problem(client.get("/metrics"), 403)  # a user key
    text = client.get("/metrics", headers=bearer(ADMIN)).text
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
    # errors are documented as problem details
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "instance"} <= set(problem["required"])
    for path, method, code in [
        ("/api/v1/jobs", "post", "429"),
        ("/api/v1/jobs", "post", "413"),
        ("/api/v1/jobs", "get", "401"),
        ("/api/v1/jobs/{job_id}", "get", "404"),
        ("/api/v1/jobs/{job_id}/files/{name}", "get", "403"),
        ("/api/v1/jobs/{job_id}/cancel", "post", "422"),
    ]:
        content = spec["paths"][path][method]["responses"][code]["content"]
        assert list(content) == ["application/problem+json"], (path, method, code)


def test_cors_preflight(tmp_path: Path) -> None:
    s = make_settings(tmp_path, cors_origins=["https://example.org"])
    with TestClient(create_app(s)) as c:
        pre = c.options(
            "/api/v1/jobs",
            headers={
                "Origin": "https://example.org",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,idempotency-key",
            },
        )
        assert pre.headers["access-control-allow-origin"] == "https://example.org"
        assert "idempotency-key" in pre.headers["access-control-allow-headers"].lower()


def test_metrics_on_a_separate_port_need_no_key(tmp_path: Path) -> None:
    port = free_port()
    with TestClient(create_app(make_settings(tmp_path, metrics_port=port, metrics_host="127.0.0.1"))) as c:
        r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert r.status_code == 200 and "moodbgm_store_up 1.0" in r.text
        assert (
            httpx.get(f"http://127.0.0.1:{port}/api/v1/jobs", timeout=10).status_code == 404
        )  # only metrics
        assert_problem(c.get("/metrics"), 401)  # the API's port still wants a key
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)  # closed with the app


def test_docs_can_be_turned_off(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, docs_enabled=False))) as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert_problem(c.get(path), 404)
        assert "/docs" not in c.get("/").text


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
    with TestClient(create_app(s), headers=bearer(KEY_A)) as c:
        job_id = upload(c, media_dir / "av.mp4").json()["id"]
        link = c.get(f"/api/v1/jobs/{job_id}?original=true").json()["files"][0]["url"]
        proc.terminate()
        proc.wait()
        r = c.get(f"/api/v1/jobs/{job_id}")
        assert "Redis" in assert_problem(r, 503)["detail"] and r.headers["retry-after"] == "10"
        assert_problem(upload(c, media_dir / "av.mp4"), 503)
        # still ready: signed downloads need no Redis (readiness must not empty the Service)
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["redis"].startswith("unavailable")
        assert c.get(link).status_code == 200
        assert c.get("/healthz").status_code == 200
        assert "moodbgm_store_up 0.0" in c.get("/metrics", headers=bearer(ADMIN)).text
    assert on_disk(s) == [job_id, f"{job_id}/input.mp4", f"{job_id}/job.json"]  # only the first job
