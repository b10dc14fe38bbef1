"""The service's job back-end, apart from Celery: job state in Redis (``store``) and what the API and
the workers do with a job around the pipeline's lifecycle (``runner``: run a stage, fail, cancel,
remove). ``moodbgm.worker`` only wires these into Celery tasks."""

from moodbgm.jobstore.runner import (
    StoreEvents,
    cancel_job,
    execute_stage,
    fail_lost,
    fail_stale,
    is_remote,
    job_dir,
    mark_failed,
    remove_job,
    worker_died_message,
)
from moodbgm.jobstore.store import BatchState, JobState, JobStore

__all__ = [
    "BatchState",
    "JobState",
    "JobStore",
    "StoreEvents",
    "cancel_job",
    "execute_stage",
    "fail_lost",
    "fail_stale",
    "is_remote",
    "job_dir",
    "mark_failed",
    "remove_job",
    "worker_died_message",
]
