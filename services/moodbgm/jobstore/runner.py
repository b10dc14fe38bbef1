"""A job of the service around the pipeline's lifecycle: one stage run with its state mirrored into
the job store, failures, cancellation and removal.

Plain functions (no Celery): a stage task calls ``execute_stage``; its ``on_failure`` calls
``mark_failed``; the API calls ``cancel_job`` / ``remove_job`` and sweeps stale jobs (``fail_stale``).

With a remote artifact store (``artifacts.remote``: object storage) a stage works in this process's
scratch copy of the job: its declared inputs (the Stage table) and ``job.json`` are staged in, the stage
runs through the one lifecycle, then its outputs and ``job.json`` are published (manifest last) before
the job store says the stage (or the job) is done; the scratch copy is removed afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from moodbgm import pipeline
from moodbgm.artifacts import ArtifactMissing, ArtifactStore
from moodbgm.errors import CancelledError, JobGoneError
from moodbgm.jobs import TERMINAL, JobDir, JobError, check_job_id
from moodbgm.jobstore.store import JobStore
from moodbgm.models import Models
from moodbgm.stages import BY_NAME, STAGES, Stage

RECORD = "job.json"

log = logging.getLogger(__name__)

LAST_STAGE = STAGES[-1].name


def job_dir(data_dir: Path, job_id: str) -> JobDir:
    return JobDir(data_dir / check_job_id(job_id))


class StoreEvents(pipeline.JobEvents):
    """Mirrors a stage's lifecycle into the job store; stops the stage when the job is deleted."""

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        timeout_errors: tuple[type[BaseException], ...] = (),
        time_limit_s: float | None = None,
        retryable: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.retryable = retryable
        self.timeout_errors = (*pipeline.JobEvents.timeout_errors, *timeout_errors)
        self.time_limit_s = time_limit_s

    def check(self) -> None:
        current = self.store.get(self.job_id)
        if current is None:
            raise JobGoneError(f"job {self.job_id} was deleted")
        if current.status == "cancelled":
            raise CancelledError(f"job {self.job_id} was cancelled")
        if current.status == "failed":  # e.g. failed by the stale-job sweep: stop, record nothing
            raise JobGoneError(f"job {self.job_id} was marked failed")

    def started(self, job: JobDir, stage: str) -> None:
        self.store.update(
            self.job_id,
            status="running",
            stage=stage,
            progress=pipeline.overall_progress(stage, 0.0),
            heartbeat=job.read().stages[stage].heartbeat,
        )

    def progress(self, job: JobDir, stage: str, fraction: float) -> None:
        self.store.set_progress(self.job_id, stage, pipeline.overall_progress(stage, fraction))

    def heartbeat(self, job: JobDir, stage: str, at: float) -> None:
        self.store.heartbeat(self.job_id, at)

    def finished(self, job: JobDir, stage: str, seconds: float | None) -> None:
        if seconds is not None:
            self.store.record_stage(self.job_id, stage, seconds)
        fields: dict[str, object] = {"heartbeat": None, "artifacts": job.files()}
        if stage == "emotion":  # the language note, for the API's job status
            fields["emotion_warning"] = job.read().emotion_warning
        self.store.update(self.job_id, **fields)

    def failed(self, job: JobDir, error: JobError) -> None:
        state = self.store.get(self.job_id)
        if state is None:
            return
        if state.status == "cancelled":  # cancelled stays cancelled, with the error shape of a cancel
            if error.kind != "cancelled":
                error = JobError("cancelled", error.stage, f"job {self.job_id} was cancelled")
            if state.error is None:
                self.store.update(self.job_id, error=error.to_dict(), heartbeat=None)
            return
        status = "cancelled" if error.kind == "cancelled" else "failed"
        self.store.update(
            self.job_id, status=status, stage=error.stage, error=error.to_dict(), heartbeat=None
        )


def is_remote(artifacts: ArtifactStore | None) -> bool:
    return artifacts is not None and bool(getattr(artifacts, "remote", False))


def stage_inputs(artifacts: ArtifactStore, job_id: str, stage: Stage) -> list[str]:
    """``job.json``, the stage's declared inputs (``input.*`` resolved) and its optional inputs that
    are in the store."""
    present = artifacts.list(job_id)
    names = [RECORD]
    for pattern in stage.inputs:
        names += fnmatch.filter(present, pattern)[:1] if "*" in pattern else [pattern]
    names += [n for n in stage.optional if n in present and n not in stage.outputs]
    return list(dict.fromkeys(names))


def _publish_record(artifacts: ArtifactStore, job: JobDir) -> None:
    """Best effort: job.json of a failed or cancelled stage (its error) into the store."""
    if job.exists():
        try:
            artifacts.publish(job.id, "record", [RECORD])
        except Exception as e:
            log.warning("job %s: could not store job.json: %s", job.id, e)


def execute_stage(
    job_id: str,
    stage: str,
    data_dir: Path,
    store: JobStore,
    models: Models,
    events: StoreEvents | None = None,
    artifacts: ArtifactStore | None = None,
) -> bool:
    """Run ``stage`` of the job unless it is done; True when it did work.

    ``artifacts`` remote (object storage): ``data_dir`` is ignored; the stage runs in the store's
    scratch copy of the job (see the module docstring). Raises ``CancelledError`` (cancelled job),
    ``JobGoneError`` (deleted job) or the stage's error (already recorded in job.json and the store).
    """
    if stage not in BY_NAME:
        raise ValueError(f"unknown stage {stage!r}")
    events = events or StoreEvents(store, job_id)
    remote = is_remote(artifacts)
    if remote:
        assert artifacts is not None
        if store.get(job_id) is None:
            raise JobGoneError(f"job {job_id} no longer exists")
        work = artifacts.workdir(job_id)
        shutil.rmtree(work, ignore_errors=True)  # nothing stale from an earlier run in this pod
        try:
            artifacts.stage_in(job_id, stage_inputs(artifacts, job_id, BY_NAME[stage]))
        except ArtifactMissing:
            if not artifacts.exists(job_id, RECORD):
                shutil.rmtree(work, ignore_errors=True)
                raise JobGoneError(f"job {job_id} has no files in the store") from None
            # a missing input: the stage fails on it with the usual error
        data_dir = work.parent
    job = job_dir(data_dir, job_id)
    try:
        return _execute(job, stage, store, models, events, artifacts if remote else None)
    except JobGoneError:
        raise
    except BaseException:
        if remote:
            assert artifacts is not None
            _publish_record(artifacts, job)
        raise
    finally:
        if remote:
            shutil.rmtree(job.root, ignore_errors=True)


def _execute(
    job: JobDir,
    stage: str,
    store: JobStore,
    models: Models,
    events: StoreEvents,
    artifacts: ArtifactStore | None,
) -> bool:
    job_id = job.id
    if store.get(job_id) is None or not job.exists():
        _remove_dir(job)  # a stage that finished after a delete may have re-made the folder
        raise JobGoneError(f"job {job_id} no longer exists")
    if stage == STAGES[0].name:
        pipeline.start_job(job)
    try:
        did = pipeline.run_stage(job, stage, models, events=events)
    except CancelledError:
        job.clean_partials()
        raise
    if stage == LAST_STAGE:
        pipeline.finish_job(job)
    files = job.files()
    if artifacts is not None:  # the outputs and the record go up before anyone is told it is done
        if store.get(job_id) is None:
            artifacts.delete(job_id)
            raise JobGoneError(f"job {job_id} was deleted")
        spec = BY_NAME[stage]
        outputs = [n for n in (*spec.outputs, *spec.optional) if n in files and n not in spec.inputs]
        artifacts.publish(job_id, stage, [*outputs, RECORD])
        files = artifacts.list(job_id)
        store.update(job_id, artifacts=files)
    if stage == LAST_STAGE:
        store.update(job_id, status="done", stage=None, progress=1.0, error=None, artifacts=files)
    if store.get(job_id) is None:  # deleted while this stage ran: leave nothing behind
        _remove_dir(job)
        if artifacts is not None:
            artifacts.delete(job_id)
        raise JobGoneError(f"job {job_id} was deleted")
    return did


@contextlib.contextmanager
def _record_copy(job_id: str, data_dir: Path, artifacts: ArtifactStore | None) -> Iterator[JobDir]:
    """The job's directory to edit job.json in: ``data_dir``'s, or (remote store) a scratch copy of
    job.json that is published back afterwards."""
    if not is_remote(artifacts):
        yield job_dir(data_dir, job_id)
        return
    assert artifacts is not None
    with contextlib.suppress(ArtifactMissing):
        artifacts.stage_in(job_id, [RECORD])
    job = JobDir(artifacts.workdir(job_id))
    try:
        yield job
        _publish_record(artifacts, job)
    finally:
        shutil.rmtree(job.root, ignore_errors=True)


def mark_failed(
    job_id: str,
    stage: str,
    exc: BaseException,
    data_dir: Path,
    store: JobStore,
    events: StoreEvents | None = None,
    artifacts: ArtifactStore | None = None,
) -> JobError:
    """A task failed outside the stage's own handling (hard time limit, lost connection...): the same
    record as a failure inside it (``pipeline.fail_job``)."""
    events = events or StoreEvents(store, job_id)
    with _record_copy(job_id, data_dir, artifacts) as job:
        if not job.exists():
            return pipeline.describe_error(stage, exc, events)
        record = job.read()
        if (
            record.status in ("failed", "cancelled")
            and record.error is not None
            and record.error.stage == stage
        ):
            events.failed(job, record.error)  # recorded by the stage itself: mirror it (idempotent)
            return record.error
        return pipeline.fail_job(job, stage, exc, events)


def fail_lost(
    job_id: str,
    stage: str,
    message: str,
    data_dir: Path,
    store: JobStore,
    artifacts: ArtifactStore | None = None,
) -> JobError | None:
    """Fail a job whose worker is gone (no heartbeat, or killed on every delivery): the job store and
    job.json say ``message``. None when the job is no longer running (finished, cancelled, deleted)."""
    state = store.get(job_id)
    if state is None or state.status in TERMINAL:
        return None
    error = JobError("internal", stage, message)
    store.update(job_id, status="failed", stage=stage, error=error.to_dict(), heartbeat=None)
    with _record_copy(job_id, data_dir, artifacts) as job, job.locked():
        if job.exists():
            record = job.read()
            if record.status not in TERMINAL:
                stages = dict(record.stages)
                if stage in stages and stages[stage].status == "running":
                    stages[stage] = dataclasses.replace(stages[stage], status="failed")
                job.write(record.replace(status="failed", stage=stage, error=error, stages=stages))
    log.warning("job %s failed in %s: %s", job_id, stage, message)
    return error


def fail_stale(
    store: JobStore,
    timeout_s: float,
    data_dir: Path,
    artifacts: ArtifactStore | None = None,
    now: float | None = None,
) -> list[str]:
    """Fail every running job whose stage's heartbeat is older than ``timeout_s``; their ids."""
    failed = []
    for state in store.stale(timeout_s, time.time() if now is None else now):
        stage = state.stage or "job"
        message = f"worker stopped sending heartbeats while running {stage}"
        if fail_lost(state.id, stage, message, data_dir, store, artifacts) is not None:
            failed.append(state.id)
    return failed


def worker_died_message(stage: str) -> str:
    return f"worker died running {stage} (out of memory?)"


def cancel_job(job_id: str, data_dir: Path, store: JobStore) -> bool:
    """Mark a job cancelled in the store and its job.json; False when there is no such job."""
    if not store.update(job_id, status="cancelled", heartbeat=None):
        return False
    job = job_dir(data_dir, job_id)
    pipeline.cancel_job(job)
    record = job.read() if job.exists() else None
    if record is not None and record.error is not None:
        store.update(job_id, error=record.error.to_dict())
    return True


def remove_job(job_id: str, data_dir: Path, store: JobStore, artifacts: ArtifactStore | None = None) -> None:
    """Every file of the job (in the artifact store too) and its Redis state."""
    store.delete(job_id)
    _remove_dir(job_dir(data_dir, job_id))
    if is_remote(artifacts):
        assert artifacts is not None
        artifacts.delete(job_id)


def _remove_dir(job: JobDir) -> None:
    shutil.rmtree(job.root, ignore_errors=True)
