"""One thin Celery task per pipeline stage (``moodbgm.<stage>``, on that stage's queue).

A task takes the job id, runs ``jobstore.execute_stage`` with the worker process's models and returns
whether the stage did work. Transient errors (``TransientError``, Redis/connection errors) are retried
with exponential backoff; anything else fails the job once, with the error in plain words.

Before running, a task counts its delivery in Redis (job, stage, retry number): one delivered more than
``Settings.max_deliveries`` times was killed each time (the OOM killer), so it fails the job with
"worker died running STAGE (out of memory?)" instead of looping. A task of a job that has already
failed (e.g. by the API's stale-job sweep) is dropped.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Task
from celery.exceptions import Ignore, SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import worker_process_init

from moodbgm.errors import CancelledError, InputError, JobGoneError, TransientError
from moodbgm.jobstore import (
    StoreEvents,
    execute_stage,
    fail_lost,
    mark_failed,
    worker_died_message,
)
from moodbgm.stages import STAGES, Stage

log = logging.getLogger(__name__)

RETRY_ON: tuple[type[BaseException], ...] = (
    TransientError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
)


class StageTask(Task):
    """Reliability settings shared by every stage task."""

    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = RETRY_ON
    dont_autoretry_for = (InputError,)
    retry_backoff = 2  # seconds: 2, 4, 8, ... (with jitter)
    retry_backoff_max = 120
    retry_jitter = True
    stage = ""

    def events(self, job_id: str) -> StoreEvents:
        limit = self.app.settings.task_soft_time_limit_s
        timeouts = (SoftTimeLimitExceeded, TimeLimitExceeded)
        return StoreEvents(self.app.store, job_id, timeouts, limit, retryable=RETRY_ON)

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        job_id = args[0] if args else kwargs.get("job_id", "")
        settings = self.app.settings
        try:
            events = self.events(job_id)
            store, artifacts = self.app.store, self.app.artifacts
            mark_failed(job_id, self.stage, exc, settings.data_dir, store, events, artifacts)
        except Exception as e:  # Redis or the object store unreachable: say so, the sweep fails it later
            log.error("job %s failed in %s and its state could not be saved: %s", job_id, self.stage, e)


def _register(app: Any, stage: Stage) -> None:
    @app.task(
        bind=True,
        base=StageTask,
        name=stage.task,
        queue=stage.queue,
        max_retries=app.settings.task_max_retries,
        stage=stage.name,
        shared=False,
    )
    def run(self: StageTask, job_id: str) -> bool:
        settings = app.settings
        try:
            state = app.store.get(job_id)
            if state is not None and state.status == "failed":
                raise JobGoneError(f"job {job_id} has failed ({(state.error or {}).get('message')})")
            # a task delivered again and again was killed each time (the OOM killer, a node lost)
            deliveries = app.store.count_delivery(
                job_id, self.stage, str(self.request.id), self.request.retries or 0
            )
            if deliveries > settings.max_deliveries:
                message = worker_died_message(self.stage)
                fail_lost(job_id, self.stage, message, settings.data_dir, app.store, app.artifacts)
                raise JobGoneError(f"delivered {deliveries} times: {message}")
            events = self.events(job_id)
            return execute_stage(
                job_id, self.stage, settings.data_dir, app.store, app.models, events, app.artifacts
            )
        except (CancelledError, JobGoneError) as e:
            log.info("%s: %s; the rest of its chain is dropped", self.name, e)
            raise Ignore() from None


def register_tasks(app: Any) -> None:
    for stage in STAGES:
        _register(app, stage)
    worker_process_init.connect(lambda **_: app.reset_process_state(), weak=False)
