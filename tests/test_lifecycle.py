"""One lifecycle: the CLI (``pipeline.run_job``) and a worker (``jobstore.execute_stage`` per stage,
``mark_failed`` as a task's ``on_failure``) leave the same job.json shape for success, failure,
timeout and cancel; the job store mirrors the record (error, heartbeat)."""

from __future__ import annotations

import contextlib
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from helpers import redis_url
from moodbgm import pipeline
from moodbgm.config import Settings
from moodbgm.errors import CancelledError, InputError, StageTimeoutError
from moodbgm.files import read_json
from moodbgm.jobs import JobDir, JobOptions, create_job
from moodbgm.jobstore import JobStore, StoreEvents, cancel_job, execute_stage, mark_failed
from moodbgm.models import Models
from moodbgm.stages import STAGES, TIMELINE_OVERRIDE

REDIS_URL = redis_url(15)


def shape(value: Any) -> Any:
    """The structure of a JSON value: keys kept, leaves replaced by their type."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return (
        "number" if isinstance(value, int | float) and not isinstance(value, bool) else type(value).__name__
    )


@pytest.fixture(scope="module")
def store() -> Iterator[JobStore]:
    s = JobStore.from_url(REDIS_URL, prefix=f"lc{uuid.uuid4().hex[:6]}:", retention_s=600)
    yield s
    keys = list(s.redis.scan_iter(f"{s.prefix}*"))
    if keys:
        s.redis.delete(*keys)


@pytest.fixture(scope="module")
def models() -> Models:
    return Models(Settings(stt_model="tiny.en"))


@pytest.fixture(scope="module")
def done(media_dir: Path, tmp_path_factory: pytest.TempPathFactory, models: Models) -> Path:
    """A finished job directory (by the CLI path) that the cases below copy and re-run in part."""
    job = create_job(tmp_path_factory.mktemp("done") / "job", media_dir / "av.mp4", JobOptions())
    pipeline.run_job(job, models)
    return job.root


def cli_copy(done: Path, tmp_path: Path) -> JobDir:
    root = tmp_path / "cli"
    shutil.copytree(done, root)
    return JobDir(root)


def worker_copy(done: Path, tmp_path: Path, store: JobStore) -> tuple[str, Path]:
    job_id = uuid.uuid4().hex
    data = tmp_path / "data"
    shutil.copytree(done, data / job_id)
    JobDir(data / job_id).update(id=job_id, status="queued")
    store.create(job_id, read_json(data / job_id / "job.json")["options"])
    return job_id, data


def redo(root: Path, *names: str) -> None:
    """Make stages run again (their outputs lost)."""
    for n in names:
        (root / n).unlink()


def run_worker(
    job_id: str, data: Path, store: JobStore, models: Models, events: StoreEvents | None = None
) -> BaseException | None:
    """The stage tasks of a chain, in order, as Celery would run them (on_failure -> mark_failed)."""
    events = events or StoreEvents(store, job_id, (SoftTimeLimitExceeded,), 30.0)
    for stage in STAGES:
        try:
            execute_stage(job_id, stage.name, data, store, models, events)
        except CancelledError as e:
            return e  # the task ignores it (no on_failure)
        except Exception as e:
            mark_failed(job_id, stage.name, e, data, store, events)
            return e
    return None


def records(cli: JobDir, worker: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    a, b = read_json(cli.record_path), read_json(worker / "job.json")
    assert shape(a) == shape(b)
    return a, b


@contextlib.contextmanager
def alarm(exc: Callable[[], BaseException], after_s: float) -> Iterator[None]:
    """Raise ``exc()`` in the main thread after ``after_s``, the way Celery's soft time limit does."""

    def fire(signum: int, frame: Any) -> None:
        raise exc()

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, after_s)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_success(done: Path, tmp_path: Path, store: JobStore, models: Models) -> None:
    cli = cli_copy(done, tmp_path)
    redo(cli.root, "mix.wav")
    pipeline.run_job(cli, models)
    job_id, data = worker_copy(done, tmp_path, store)
    redo(data / job_id, "mix.wav")
    assert run_worker(job_id, data, store, models) is None
    a, b = records(cli, data / job_id)
    assert a["status"] == b["status"] == "done" and a["error"] is b["error"] is None
    assert {s["status"] for s in b["stages"].values()} == {"done"}
    st = store.get(job_id)
    assert st is not None and st.status == "done" and st.heartbeat is None and st.timings.keys() == {"mix"}


def test_failure(done: Path, tmp_path: Path, store: JobStore, models: Models) -> None:
    bad = '{"duration": 6, "sections": [{"start": 0, "end": 2, "emotion": "joy"}]}'  # leaves a gap
    cli = cli_copy(done, tmp_path)
    (cli.root / TIMELINE_OVERRIDE).write_text(bad)
    with pytest.raises(InputError):
        pipeline.run_job(cli, models)
    job_id, data = worker_copy(done, tmp_path, store)
    (data / job_id / TIMELINE_OVERRIDE).write_text(bad)
    assert isinstance(run_worker(job_id, data, store, models), InputError)
    a, b = records(cli, data / job_id)
    assert a["status"] == b["status"] == "failed"
    assert a["error"] == b["error"] and a["error"]["kind"] == "input" and a["error"]["stage"] == "timeline"
    assert a["stages"]["timeline"]["status"] == b["stages"]["timeline"]["status"] == "failed"
    st = store.get(job_id)
    assert st is not None and st.status == "failed" and st.error == b["error"]


def slow_composer(models: Models, monkeypatch: pytest.MonkeyPatch) -> None:
    """The generate stage lasts at least 0.3 s, however fast the machine (the time-based tests need it)."""
    generator = models.generator("composer")
    generate = generator.generate

    def slow_generate(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.3)
        return generate(*args, **kwargs)

    monkeypatch.setattr(generator, "generate", slow_generate)


def test_timeout(
    done: Path, tmp_path: Path, store: JobStore, models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_composer(models, monkeypatch)
    cli = cli_copy(done, tmp_path)
    redo(cli.root, "bgm.wav")
    with pytest.raises(StageTimeoutError):
        pipeline.run_job(cli, models, time_limit_s=0.05)  # the (slowed) composer takes longer
    job_id, data = worker_copy(done, tmp_path, store)
    redo(data / job_id, "bgm.wav")
    events = StoreEvents(store, job_id, (SoftTimeLimitExceeded,), 0.05)
    for stage in STAGES:
        if stage.name == "generate":
            with alarm(SoftTimeLimitExceeded, 0.05), pytest.raises(SoftTimeLimitExceeded) as e:
                execute_stage(job_id, stage.name, data, store, models, events)
            mark_failed(job_id, stage.name, e.value, data, store, events)
            break
        execute_stage(job_id, stage.name, data, store, models, events)
    a, b = records(cli, data / job_id)
    assert a["status"] == b["status"] == "failed"
    assert a["error"] == b["error"] == {
        "kind": "timeout", "stage": "generate", "message": "the generate stage took too long (0.05 s)",
    }  # fmt: skip
    assert not list(cli.root.glob(".*.part*")) and not list((data / job_id).glob(".*.part*"))
    st = store.get(job_id)
    assert st is not None and st.error == b["error"]


def test_cancel_while_a_stage_runs(done: Path, tmp_path: Path, store: JobStore, models: Models) -> None:
    cli = cli_copy(done, tmp_path)
    redo(cli.root, "mix.wav")

    def cancel_in_mix(stage: str, fraction: float) -> None:
        if stage == "mix":
            pipeline.cancel_job(cli)

    with pytest.raises(CancelledError):
        pipeline.run_job(cli, models, progress=cancel_in_mix)

    job_id, data = worker_copy(done, tmp_path, store)
    redo(data / job_id, "mix.wav")

    class CancelInMix(StoreEvents):
        def progress(self, job: JobDir, stage: str, fraction: float) -> None:
            super().progress(job, stage, fraction)
            if stage == "mix":
                cancel_job(job_id, data, store)  # what DELETE/cancel in the API does

    events = CancelInMix(store, job_id, (SoftTimeLimitExceeded,), 30.0)
    assert isinstance(run_worker(job_id, data, store, models, events), CancelledError)
    a, b = records(cli, data / job_id)
    assert a["status"] == b["status"] == "cancelled"
    assert a["error"]["kind"] == b["error"]["kind"] == "cancelled"
    assert a["error"]["stage"] == b["error"]["stage"] == "mix"
    assert a["stages"]["mix"]["status"] == b["stages"]["mix"]["status"] == "cancelled"
    assert "mux" not in {k for k, v in b["stages"].items() if v["status"] != "done"}
    st = store.get(job_id)
    assert (
        st is not None
        and st.status == "cancelled"
        and st.error is not None
        and st.error["kind"] == "cancelled"
    )


def test_heartbeat_is_renewed_while_a_stage_runs(
    done: Path, tmp_path: Path, store: JobStore, models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, data = worker_copy(done, tmp_path, store)
    redo(data / job_id, "bgm.wav")
    seen: list[float] = []
    slow_composer(models, monkeypatch)

    class Watch(StoreEvents):
        def heartbeat(self, job: JobDir, stage: str, at: float) -> None:
            super().heartbeat(job, stage, at)
            st = store.get(job_id)
            assert st is not None and st.heartbeat == at
            assert job.read().stages[stage].heartbeat == at  # the record and the store agree
            seen.append(at)

    events = Watch(store, job_id)
    job = JobDir(data / job_id)
    pipeline.run_stage(job, "generate", models, events=events, heartbeat_s=0.05)
    assert len(seen) >= 2 and seen == sorted(seen)
    st = store.get(job_id)
    assert st is not None and st.heartbeat is None  # no stage runs now
