"""What a stage task does around ``pipeline.run_stage``: state in the store, progress, cancel, failure.

Kept apart from Celery so it can be read (and tested) as plain functions. A stage task calls
``execute_stage``; its ``on_failure`` calls ``mark_failed``; the API calls ``cancel``/``remove``.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from pathlib import Path

from moodbgm.errors import CancelledError, InputError
from moodbgm.jobs import JobDir
from moodbgm.models import Models
from moodbgm.pipeline import BY_NAME, STAGES, overall_progress, run_stage, versions
from moodbgm.worker.store import JobStore

log = logging.getLogger(__name__)

LAST_STAGE = STAGES[-1].name
PROGRESS_INTERVAL_S = 0.5  # at most this often a stage writes its progress (and checks for cancel)


class JobGoneError(Exception):
    """The job was deleted while (or before) its stage ran; nothing is left to do."""


def job_dir(data_dir: Path, job_id: str) -> JobDir:
    if not job_id.isalnum():  # ids are uuid4 hex; never let one walk out of data_dir
        raise InputError(f"bad job id {job_id!r}")
    return JobDir(data_dir / job_id)


def execute_stage(job_id: str, stage: str, data_dir: Path, store: JobStore, models: Models) -> bool:
    """Run ``stage`` of the job unless it is done; True when it did work.

    Raises ``CancelledError`` (cancelled job), ``JobGoneError`` (deleted job) or the stage's error.
    """
    if stage not in BY_NAME:
        raise ValueError(f"unknown stage {stage!r}")
    state = store.get(job_id)
    job = job_dir(data_dir, job_id)
    if state is None or not job.record_path.exists():
        _remove_dir(job)  # a stage that finished after a delete may have re-made the folder
        raise JobGoneError(f"job {job_id} no longer exists")
    if state.status == "cancelled":
        raise CancelledError(f"job {job_id} was cancelled")
    if stage == STAGES[0].name:
        job.update(versions=versions(), error=None)
    store.set_progress(job_id, stage, overall_progress(stage, 0.0))

    last = [0.0]

    def progress(name: str, fraction: float) -> None:
        now = time.monotonic()
        if now - last[0] < PROGRESS_INTERVAL_S and fraction < 1.0:
            return
        last[0] = now
        current = store.get(job_id)
        if current is None:
            raise JobGoneError(f"job {job_id} was deleted")
        if current.status == "cancelled":
            raise CancelledError(f"job {job_id} was cancelled")
        store.set_progress(job_id, name, overall_progress(name, fraction))

    did = run_stage(job, stage, models, progress)
    record = job.read()
    seconds = record.get("stages", {}).get(stage, {}).get("seconds")
    if did and seconds is not None:
        store.record_stage(job_id, stage, float(seconds))
    if stage == LAST_STAGE:
        _clean_partials(job)
        job.update(status="done", stage=None, progress=1.0, error=None)
        store.update(job_id, status="done", stage=None, progress=1.0, artifacts=job.files())
    else:
        store.update(job_id, artifacts=job.files())
    if store.get(job_id) is None:  # deleted while this stage ran: leave nothing behind
        _remove_dir(job)
        raise JobGoneError(f"job {job_id} was deleted")
    return did


def describe_error(stage: str, exc: BaseException, soft_limit_s: float | None = None) -> dict[str, str]:
    """An error in plain words, for job.json and the API."""
    from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

    if isinstance(exc, InputError):
        return {"kind": "input", "stage": stage, "message": str(exc)}
    if isinstance(exc, SoftTimeLimitExceeded | TimeLimitExceeded):
        limit = f" ({soft_limit_s:g} s)" if soft_limit_s else ""
        return {"kind": "timeout", "stage": stage, "message": f"the {stage} stage took too long{limit}"}
    return {
        "kind": "internal",
        "stage": stage,
        "message": f"internal error in the {stage} stage: {type(exc).__name__}: {exc}",
    }


def mark_failed(job_id: str, stage: str, error: dict[str, str], data_dir: Path, store: JobStore) -> None:
    job = job_dir(data_dir, job_id)
    with contextlib.suppress(InputError, FileNotFoundError):
        if job.read().get("status") != "cancelled":
            job.update(status="failed", error=error)
    state = store.get(job_id)
    if state is not None and state.status != "cancelled":
        store.update(job_id, status="failed", stage=stage, error=error)
    log.warning("job %s failed in %s: %s", job_id, stage, error["message"])


def mark_cancelled(job_id: str, data_dir: Path, store: JobStore) -> bool:
    """Mark a job cancelled in the store and its job.json; False when there is no such job."""
    if not store.update(job_id, status="cancelled"):
        return False
    job = job_dir(data_dir, job_id)
    with contextlib.suppress(InputError, FileNotFoundError):
        job.update(status="cancelled")
    return True


def remove_job(job_id: str, data_dir: Path, store: JobStore) -> None:
    """Every file of the job and its Redis state."""
    store.delete(job_id)
    _remove_dir(job_dir(data_dir, job_id))


def _remove_dir(job: JobDir) -> None:
    shutil.rmtree(job.root, ignore_errors=True)


def _clean_partials(job: JobDir) -> None:
    """Temp files a killed stage left behind (``.name.xxxx.part.ext``); the final names are all whole."""
    for p in job.root.glob(".*.part*"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
