"""``moodbgm worker``: a Celery worker (prefork pool) in the foreground.

In a container this process is PID 1 (``exec moodbgm worker``): SIGTERM starts Celery's warm shutdown
(running stages finish, nothing new is taken); unacknowledged tasks go back to the queue.

The node name is ``celery@<hostname>`` (``app.worker_nodename``): the Kubernetes probes and the images'
HEALTHCHECK ping exactly that name. Run one worker per host (a pod, a container, or ``make up``'s single
worker on every queue); a second one on the same host with the same name makes Celery warn.
"""

from __future__ import annotations

import logging

from moodbgm.config import Settings
from moodbgm.errors import InputError
from moodbgm.stages import QUEUES
from moodbgm.worker.app import create_celery, worker_nodename

log = logging.getLogger(__name__)


def parse_queues(queues: str) -> list[str]:
    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = [q for q in names if q not in QUEUES]
    if not names or unknown:
        raise InputError(
            f"unknown queue(s) {', '.join(unknown) or '(none given)'}; expected {', '.join(QUEUES)}"
        )
    return names


def run_worker(settings: Settings, queues: str, concurrency: int) -> int:
    """Start a worker consuming ``queues`` (comma-separated) with ``concurrency`` processes; blocks."""
    names = parse_queues(queues)
    if concurrency < 1:
        raise InputError("concurrency must be >= 1")
    if settings.storage == "local":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    else:
        settings.scratch_dir.mkdir(parents=True, exist_ok=True)
    app = create_celery(settings)
    worker = app.Worker(
        queues=names,
        concurrency=concurrency,
        pool_cls="prefork",
        loglevel=settings.log_level,
        # addressable by the probes (`celery inspect ping -d celery@$HOSTNAME`); one worker per host
        hostname=worker_nodename(),
    )
    where = str(settings.data_dir)
    if settings.storage != "local":
        where = f"s3://{settings.s3_bucket} (scratch {settings.scratch_dir})"
    log.info("worker on queues %s, %d process(es), data in %s", ",".join(names), concurrency, where)
    worker.start()
    return int(worker.exitcode or 0)
