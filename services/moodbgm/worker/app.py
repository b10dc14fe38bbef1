"""The Celery application: Redis broker and result backend, one queue per resource, reliable delivery.

Reliability (declared here and on the tasks):

- ``acks_late`` + ``reject_on_worker_lost``: a message is acknowledged only after its stage finished; a
  worker killed mid-stage (OOM, SIGKILL, node loss) leaves it to be delivered again. Stages are
  idempotent (``pipeline.run_stage`` skips a stage whose outputs are current), so a redelivered task
  redoes only what was not finished.
- ``worker_prefetch_multiplier=1``: a worker process reserves one task at a time (long tasks).
- the broker's visibility timeout exceeds the hard time limit, so a running task is never handed to a
  second worker while the first is still allowed to run it. After a whole worker is lost, its unacked
  messages come back once the visibility timeout has passed.
- soft/hard time limits per stage; retries with exponential backoff for transient errors only.

``celery -A moodbgm.worker.app ...`` (the worker probes in ``k8s/`` and the images' HEALTHCHECK) finds the
module-level ``app``: built on first access from the process's ``Settings`` (PEP 562 ``__getattr__``), so
importing this module builds nothing and reads no environment.
"""

from __future__ import annotations

import socket
from typing import Any

from celery import Celery, chain
from kombu import Queue

from moodbgm.artifacts import ArtifactStore, open_store
from moodbgm.config import Settings
from moodbgm.jobstore import JobStore
from moodbgm.models import Models
from moodbgm.stages import QUEUES, STAGES


class MoodbgmCelery(Celery):
    """A Celery app that carries the process's Settings, its job store and its lazily built models.

    ``models`` is built on first use in each worker child process (after the prefork fork; see
    ``tasks.reset_after_fork``) and reused by every task that process runs.
    """

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__("moodbgm", broker=settings.redis_url, backend=settings.redis_url, **kwargs)
        self.settings = settings
        self._models: Models | None = None
        self._store: JobStore | None = None
        self._artifacts: ArtifactStore | None = None

    @property
    def models(self) -> Models:
        if self._models is None:
            self._models = Models(self.settings)
        return self._models

    @property
    def store(self) -> JobStore:
        if self._store is None:
            s = self.settings
            self._store = JobStore.from_url(s.redis_url, s.redis_prefix, s.job_retention_s)
        return self._store

    @property
    def artifacts(self) -> ArtifactStore:
        """Where the stages' files live (``Settings.storage``)."""
        if self._artifacts is None:
            self._artifacts = open_store(self.settings)
        return self._artifacts

    def reset_process_state(self) -> None:
        """Forget models and connections inherited from a parent process."""
        self._models = None
        self._store = None
        self._artifacts = None


def create_celery(settings: Settings) -> MoodbgmCelery:
    """The Celery app for API (sending) and workers (running); registers the stage tasks."""
    if settings.task_soft_time_limit_s >= settings.task_time_limit_s:
        raise ValueError("task_soft_time_limit_s must be below task_time_limit_s")
    if settings.broker_visibility_timeout_s <= settings.task_time_limit_s:
        raise ValueError(
            "broker_visibility_timeout_s must exceed task_time_limit_s, or a running task would be "
            "delivered to a second worker"
        )
    app = MoodbgmCelery(settings)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_expires=settings.job_retention_s,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_soft_time_limit=settings.task_soft_time_limit_s,
        task_time_limit=settings.task_time_limit_s,
        broker_transport_options={
            "visibility_timeout": settings.broker_visibility_timeout_s,
            # look for messages of lost workers every few seconds (a cheap ZRANGE), not every 100 s
            "unacked_restore_interval": min(10, max(1, settings.broker_visibility_timeout_s // 5)),
            "unacked_restore_throttle": 1,
        },
        result_backend_transport_options={"visibility_timeout": settings.broker_visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        redis_socket_connect_timeout=3,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
        task_queues=[Queue(q, routing_key=q) for q in QUEUES],
        task_default_queue=QUEUES[0],
        task_routes={s.task: {"queue": s.queue} for s in STAGES},
        task_track_started=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    from moodbgm.worker.tasks import register_tasks

    register_tasks(app)
    return app


def worker_nodename(host: str | None = None) -> str:
    """The Celery node name of a worker: ``celery@<host>``, Celery's own default, so that
    ``celery inspect ping -d celery@$HOSTNAME`` in a pod (one worker per container) addresses it."""
    return f"celery@{host or socket.gethostname()}"


_module_app: MoodbgmCelery | None = None


def __getattr__(name: str) -> Any:
    """``app``/``celery``: the process's Celery app for the ``celery`` command line, built once on access."""
    global _module_app
    if name in ("app", "celery"):
        if _module_app is None:
            _module_app = create_celery(Settings())
        return _module_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def enqueue_job(app: Celery, job_id: str) -> list[str]:
    """Send the job's chain of stage tasks (each to its stage's queue); returns their task ids in order."""
    steps = [app.signature(s.task, args=(job_id,), queue=s.queue, immutable=True) for s in STAGES]
    result = chain(*steps).apply_async()
    ids = []
    node = result
    while node is not None:
        ids.append(node.id)
        node = node.parent
    return ids[::-1]


def revoke(app: Celery, task_ids: list[str] | tuple[str, ...]) -> None:
    """Tell workers to drop these tasks if they receive them (a running stage stops at its next
    progress report, when it sees the job marked cancelled in the store)."""
    if task_ids:
        app.control.revoke(list(task_ids))
