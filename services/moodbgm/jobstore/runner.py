"""A job of the service around the pipeline's lifecycle: one stage run with its state mirrored into
the job store, failures, cancellation and removal.

Plain functions (no Celery): a stage task calls ``execute_stage``; its ``on_failure`` calls
``mark_failed``; the API calls ``cancel_job`` / ``remove_job``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from moodbgm import pipeline
from moodbgm.errors import CancelledError, JobGoneError
from moodbgm.jobs import JobDir, JobError, check_job_id
from moodbgm.jobstore.store import JobStore
from moodbgm.models import Models
from moodbgm.stages import BY_NAME, STAGES

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
        self.store.update(self.job_id, heartbeat=None, artifacts=job.files())

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


def execute_stage(
    job_id: str,
    stage: str,
    data_dir: Path,
    store: JobStore,
    models: Models,
    events: StoreEvents | None = None,
) -> bool:
    """Run ``stage`` of the job unless it is done; True when it did work.

    Raises ``CancelledError`` (cancelled job), ``JobGoneError`` (deleted job) or the stage's error
    (already recorded in job.json and the store).
    """
    if stage not in BY_NAME:
        raise ValueError(f"unknown stage {stage!r}")
    events = events or StoreEvents(store, job_id)
    job = job_dir(data_dir, job_id)
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
        store.update(job_id, status="done", stage=None, progress=1.0, error=None, artifacts=job.files())
    if store.get(job_id) is None:  # deleted while this stage ran: leave nothing behind
        _remove_dir(job)
        raise JobGoneError(f"job {job_id} was deleted")
    return did


def mark_failed(
    job_id: str,
    stage: str,
    exc: BaseException,
    data_dir: Path,
    store: JobStore,
    events: StoreEvents | None = None,
) -> JobError:
    """A task failed outside the stage's own handling (hard time limit, lost connection...): the same
    record as a failure inside it (``pipeline.fail_job``)."""
    events = events or StoreEvents(store, job_id)
    job = job_dir(data_dir, job_id)
    if not job.exists():
        return pipeline.describe_error(stage, exc, events)
    record = job.read()
    if record.status in ("failed", "cancelled") and record.error is not None and record.error.stage == stage:
        events.failed(job, record.error)  # recorded by the stage itself: mirror it (idempotent)
        return record.error
    return pipeline.fail_job(job, stage, exc, events)


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


def remove_job(job_id: str, data_dir: Path, store: JobStore) -> None:
    """Every file of the job and its Redis state."""
    store.delete(job_id)
    _remove_dir(job_dir(data_dir, job_id))


def _remove_dir(job: JobDir) -> None:
    shutil.rmtree(job.root, ignore_errors=True)
