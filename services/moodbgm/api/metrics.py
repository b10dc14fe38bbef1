"""``/metrics``: Prometheus text, read from Redis at scrape time (so it covers every worker process).

- ``moodbgm_jobs{status}``                    gauge: jobs kept in the store, by status
- ``moodbgm_stage_duration_seconds{stage}``   histogram: how long stages took (observed by workers)
- ``moodbgm_queue_length{queue}``             gauge: tasks waiting per Celery queue (Redis LLEN)
- ``moodbgm_store_up``                        gauge: 1 when Redis answered this scrape
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

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
