"""The typed client (moodbgm.client) against the real API on a real Redis (DB 9): submit, list, cancel,
delete, problem details as ApiError, retries that honour Retry-After, resumable downloads; and
``moodbgm submit --wait`` end to end with a real worker and the API under uvicorn (slow)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from devtools.local import LocalProcess, free_port, start_api, start_worker
from devtools.sample import make_sample
from helpers import redis_url
from moodbgm import cli, media
from moodbgm.api.app import create_app
from moodbgm.client import ApiError, Client
from moodbgm.config import Settings

REDIS_URL = redis_url(9)
KEY_A = "client-key-a-0123456789"
KEY_B = "client-key-b-0123456789"


@pytest.fixture(scope="module", autouse=True)
def clean_db() -> Iterator[None]:
    r = redis.Redis.from_url(REDIS_URL)
    r.flushdb()
    yield
    r.flushdb()


def make_app(tmp_path: Path, **kw: object) -> TestClient:
    s = Settings(
        data_dir=tmp_path / "jobs",
        redis_url=REDIS_URL,
        redis_prefix=f"c{time.monotonic_ns()}:",
        api_keys=[KEY_A, KEY_B],
        **kw,
    )
    return TestClient(create_app(s))


def test_submit_list_cancel_delete(tmp_path: Path, media_dir: Path) -> None:
    with make_app(tmp_path) as http:
        api, other = Client(key=KEY_A, http=http), Client(key=KEY_B, http=http)
        sub = api.submit(media_dir / "av.mp4", style="lofi", seed=2)
        assert sub.location == f"/api/v1/jobs/{sub.id}" and sub.seeds == (2,)
        job = api.job(sub.id)
        assert job.status == "queued" and job.raw["options"]["style"] == "lofi" and job.files == {}
        assert set(api.job(sub.id, original=True).files) == {"input"}
        more = [api.submit(media_dir / "av.mp4", seed=i).id for i in range(3)]
        assert [j.id for j in api.iter_jobs(page_size=2)] == [*more[::-1], sub.id]
        with pytest.raises(ApiError) as e:
            other.job(sub.id)
        assert e.value.status == 404 and "no job" in e.value.detail and e.value.title == "Not Found"
        assert api.cancel(sub.id).status == "cancelled"
        assert [j.id for j in api.jobs(status="cancelled").jobs] == [sub.id]
        api.delete(sub.id)
        api.delete(sub.id)  # already gone: fine
        with pytest.raises(ApiError) as e:
            Client(key="wrong", http=http).jobs()
        assert e.value.status == 401
        with pytest.raises(ApiError) as e:
            api.submit(media_dir / "random.mp4")
        assert e.value.status == 422 and e.value.type.startswith("urn:moodbgm:problem:")


def test_retries_honour_retry_after(tmp_path: Path, media_dir: Path) -> None:
    with make_app(tmp_path, max_active_jobs_per_key=1) as http:
        first = Client(key=KEY_A, http=http).submit(media_dir / "av.mp4").id
        slept: list[float] = []

        def sleep(s: float) -> None:  # the server said when to come back; meanwhile a slot frees up
            slept.append(s)
            Client(key=KEY_A, http=http).cancel(first)

        api = Client(key=KEY_A, http=http, sleep=sleep)
        second = api.submit(media_dir / "av.mp4")
        assert slept == [30.0] and second.id != first
        assert len(api.jobs().jobs) == 2  # the refused attempt made no job
        # a Retry-After longer than the client will wait is raised, not slept through
        impatient = Client(key=KEY_A, http=http, max_wait_s=5, sleep=slept.append)
        with pytest.raises(ApiError) as e:
            impatient.submit(media_dir / "av.mp4")
        assert e.value.status == 429 and e.value.problem["retry_after"] == 30 and slept == [30.0]


def test_download_resumes_with_range(tmp_path: Path, media_dir: Path) -> None:
    whole = (media_dir / "av.mp4").read_bytes()
    with make_app(tmp_path) as http:
        api = Client(key=KEY_A, http=http)
        job_id = api.submit(media_dir / "av.mp4").id
        dest = tmp_path / "out" / "input.mp4"
        assert api.download(job_id, "input", dest).read_bytes() == whole
        # a broken earlier try left 1000 bytes: only the rest is fetched (marked bytes prove it)
        dest.with_name("input.mp4.part").write_bytes(b"\xee" * 1000)
        assert api.download(job_id, "input", dest).read_bytes() == b"\xee" * 1000 + whole[1000:]
        # a part that is already whole: the server answers 416 and the file is kept
        dest.with_name("input.mp4.part").write_bytes(whole)
        assert api.download(job_id, "input", dest).read_bytes() == whole
        assert not dest.with_name("input.mp4.part").exists()
        with pytest.raises(ApiError) as e:
            Client(key=KEY_B, http=http).download(job_id, "input", tmp_path / "b.mp4")
        assert e.value.status == 404


@pytest.mark.slow
def test_moodbgm_submit_wait_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = make_sample(tmp_path / "talk.mp4", scale=0.05, seed=3).video
    env = {
        "MOODBGM_DATA_DIR": str(tmp_path / "jobs"),
        "MOODBGM_REDIS_URL": REDIS_URL,
        "MOODBGM_REDIS_PREFIX": "e2e:",
        "MOODBGM_STT_MODEL": "tiny.en",
        "MOODBGM_API_KEYS": f'["{KEY_A}"]',
    }
    port = free_port()
    procs: list[LocalProcess] = [start_worker(env, tmp_path / "worker.log")]
    try:
        procs.append(start_api(env, tmp_path / "api.log", port))
        out = tmp_path / "out"
        argv = ["submit", str(clip), "--wait", "-o", str(out), "--style", "acoustic"]
        code = cli.main([*argv, "--url", f"http://127.0.0.1:{port}", "--key", KEY_A, "--poll", "0.5"])
        printed = capsys.readouterr()
        assert code == 0, printed.err + procs[0].log_text()[-3000:]
        assert printed.out.splitlines()[-1] == str(out / "talk.mp4")
        info = media.probe(out / "talk.mp4")
        assert info.video is not None and info.audio is not None
        assert info.duration == pytest.approx(media.probe(clip).duration, abs=0.5)
        assert "done" in printed.err and not list(out.glob("*.part"))
        # without a key the same command is refused in plain words, exit code 2
        assert cli.main(["submit", str(clip), "--url", f"http://127.0.0.1:{port}", "--key", "nope"]) == 2
        assert "401" in capsys.readouterr().err
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(tmp_path / "jobs", ignore_errors=True)
