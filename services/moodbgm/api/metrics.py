"""``/metrics``: Prometheus text, read from Redis at scrape time (so it covers every worker process).

- ``moodbgm_jobs{status}``                    gauge: jobs kept in the store, by status
- ``moodbgm_stage_duration_seconds{stage}``   histogram: how long stages took (observed by workers)
- ``moodbgm_queue_length{queue}``             gauge: tasks waiting per Celery queue (Redis LLEN)
- ``moodbgm_store_up``                        gauge: 1 when Redis answered this scrape

Served at ``/metrics`` on the API port to admin keys, and, with ``MOODBGM_METRICS_PORT``, without a key
on that separate port (``MetricsServer``: for a Prometheus scrape inside the cluster, never the Ingress).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import redis
import uvicorn
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from moodbgm.jobs import STATUSES
from moodbgm.jobstore import JobStore
from moodbgm.stages import QUEUES, STAGES

log = logging.getLogger(__name__)


class StoreCollector(Collector):
    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("moodbgm_store_up", "1 when the job store (Redis) answered")
        try:
            counts = self.store.counts_by_status()
            hists = self.store.stage_histograms(s.name for s in STAGES)
            queues = self.store.queue_lengths(QUEUES)
        except redis.exceptions.RedisError as e:
            log.warning("metrics: Redis not reachable: %s", e)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        jobs = GaugeMetricFamily("moodbgm_jobs", "jobs in the store by status", labels=["status"])
        for status in STATUSES:
            jobs.add_metric([status], float(counts.get(status, 0)))
        yield jobs
        h = HistogramMetricFamily(
            "moodbgm_stage_duration_seconds", "seconds a pipeline stage took", labels=["stage"]
        )
        for stage, (buckets, total) in hists.items():
            h.add_metric([stage], [(le, float(n)) for le, n in buckets], total)
        yield h
        q = GaugeMetricFamily("moodbgm_queue_length", "tasks waiting in a Celery queue", labels=["queue"])
        for name, n in queues.items():
            q.add_metric([name], float(n))
        yield q


def make_registry(store: JobStore) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsServer:
    """``/metrics`` alone on its own port, served by uvicorn in a thread (so it installs no signal
    handlers: the API's server keeps SIGTERM). ``start`` returns once it listens."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        async def scrape(request: Request) -> Response:
            return Response(render(registry), media_type=CONTENT_TYPE)

        app = Starlette(routes=[Route("/metrics", scrape)])
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="metrics-server", daemon=True)
        self.where = f"{host}:{port}"

    def start(self, timeout_s: float = 10.0) -> MetricsServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the metrics server did not start on {self.where} (port in use?)")
            time.sleep(0.02)
        log.info("metrics on http://%s/metrics", self.where)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5.0)
