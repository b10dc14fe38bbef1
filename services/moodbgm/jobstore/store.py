"""Job state in Redis, shared by the API (reads, creates, cancels) and the workers (progress, results).

Keys (``prefix`` defaults to ``moodbgm:``; all in the Redis DB of ``Settings.redis_url``):

- ``{prefix}job:{id}``            hash: name, status, stage, progress (0..1), error (JSON: kind, stage,
                                  message), options (JSON), batch, tasks (JSON list of Celery task ids),
                                  artifacts (JSON list), created, updated, heartbeat (the running stage's
                                  last sign of life, epoch seconds; empty when none runs), and
                                  ``t:{stage}`` = seconds that stage took.
- ``{prefix}batch:{id}``          hash: kind ("files" or "variations"), jobs (JSON list), created,
                                  picked (the variation chosen as the output, once one is).
- ``{prefix}jobs``                sorted set of job ids by creation time (for /metrics and the list).
- ``{prefix}owner:{key_id}:jobs`` sorted set of one API key's job ids by creation time (the list).
- ``{prefix}stage_seconds:{stage}`` hash: histogram buckets ``le:{bound}``, ``sum``, ``count``.

Retention: every job and batch key expires ``retention_s`` after its last update (the TTL is renewed on
each write); the API's sweeper then removes the job's directory. Stage histograms never expire.
Updates to a job that no longer exists are dropped (a Lua check-and-set), so a worker finishing a stage
of a deleted job cannot bring its state back.
"""

from __future__ import annotations

import json
import numbers
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from moodbgm.jobs import TERMINAL

STAGE_BUCKETS: tuple[float, ...] = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

# HSET the given field/value pairs and renew the TTL, only if the hash exists. Returns 1 or 0.
_UPDATE_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""


@dataclass(frozen=True)
class JobState:
    id: str
    status: str
    stage: str | None
    progress: float  # 0..1
    created: float
    updated: float
    options: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    error: dict[str, str] | None = None
    artifacts: tuple[str, ...] = ()
    batch: str | None = None
    tasks: tuple[str, ...] = ()
    name: str = ""
    heartbeat: float | None = None  # set while a stage runs (renewed every few seconds)
    owner: str = ""  # id of the API key that made it ("" before owners existed)
    emotion_warning: str | None = None  # the emotion stage's note (job.json's emotion_warning)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class BatchState:
    id: str
    kind: str
    jobs: tuple[str, ...]
    created: float
    owner: str = ""
    picked: str | None = None  # variations: the job the user picked as the output


def _before(after: tuple[float, str] | None, score: float, job_id: str) -> bool:
    """Whether a job is at or before the cursor ``after`` (ties on time ordered by id, descending)."""
    return after is not None and score == after[0] and job_id >= after[1]


def _decode(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


class JobStore:
    """Job and batch state over a redis-py client. Cheap to build; holds no state but the client."""

    def __init__(
        self, client: redis.Redis, prefix: str = "moodbgm:", retention_s: int = 7 * 24 * 3600
    ) -> None:
        if retention_s <= 0:
            raise ValueError("retention_s must be > 0")
        self.redis = client
        self.prefix = prefix
        self.retention_s = retention_s
        self._update = client.register_script(_UPDATE_IF_EXISTS)

    @classmethod
    def from_url(cls, url: str, prefix: str = "moodbgm:", retention_s: int = 7 * 24 * 3600) -> JobStore:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
        )
        return cls(client, prefix, retention_s)

    # ---- keys
    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def batch_key(self, batch_id: str) -> str:
        return f"{self.prefix}batch:{batch_id}"

    @property
    def index_key(self) -> str:
        return f"{self.prefix}jobs"

    def owner_index_key(self, owner: str) -> str:
        return f"{self.prefix}owner:{owner}:jobs"

    def ping(self) -> bool:
        return bool(self.redis.ping())

    # ---- jobs
    def create(
        self,
        job_id: str,
        options: Mapping[str, Any],
        batch: str | None = None,
        name: str = "",
        owner: str = "",
    ) -> JobState:
        now = time.time()
        fields = {
            "id": job_id,
            "name": name,
            "status": "queued",
            "stage": "",
            "progress": 0.0,
            "options": json.dumps(dict(options)),
            "batch": batch or "",
            "tasks": "[]",
            "artifacts": "[]",
            "error": "",
            "heartbeat": "",
            "created": now,
            "updated": now,
            "owner": owner,
        }
        pipe = self.redis.pipeline()
        pipe.hset(self.job_key(job_id), mapping=fields)  # type: ignore[arg-type]
        pipe.expire(self.job_key(job_id), self.retention_s)
        pipe.zadd(self.index_key, {job_id: now})
        if owner:
            pipe.zadd(self.owner_index_key(owner), {job_id: now})
            pipe.expire(self.owner_index_key(owner), self.retention_s)
        pipe.execute()
        state = self.get(job_id)
        assert state is not None
        return state

    def get(self, job_id: str) -> JobState | None:
        raw = _decode(self.redis.hgetall(self.job_key(job_id)))  # type: ignore[arg-type]
        return self._state(raw) if raw else None

    def get_many(self, job_ids: Iterable[str]) -> list[JobState | None]:
        pipe = self.redis.pipeline()
        for job_id in job_ids:
            pipe.hgetall(self.job_key(job_id))
        return [self._state(_decode(raw)) if raw else None for raw in pipe.execute()]

    @staticmethod
    def _state(raw: dict[str, str]) -> JobState:
        return JobState(
            id=raw["id"],
            status=raw["status"],
            stage=raw.get("stage") or None,
            progress=float(raw.get("progress") or 0.0),
            created=float(raw["created"]),
            updated=float(raw.get("updated") or raw["created"]),
            options=json.loads(raw.get("options") or "{}"),
            timings={k[2:]: float(v) for k, v in raw.items() if k.startswith("t:")},
            error=json.loads(raw["error"]) if raw.get("error") else None,
            artifacts=tuple(json.loads(raw.get("artifacts") or "[]")),
            batch=raw.get("batch") or None,
            tasks=tuple(json.loads(raw.get("tasks") or "[]")),
            name=raw.get("name", ""),
            heartbeat=float(raw["heartbeat"]) if raw.get("heartbeat") else None,
            owner=raw.get("owner", ""),
            emotion_warning=raw.get("emotion_warning") or None,
        )

    def update(self, job_id: str, **fields: Any) -> bool:
        """Set fields of an existing job (renewing its TTL). False when the job is gone."""
        flat: list[Any] = []
        for name, value in {**fields, "updated": time.time()}.items():
            if name in ("error", "options", "tasks", "artifacts"):
                value = (
                    "" if value is None else json.dumps(list(value) if isinstance(value, tuple) else value)
                )
            elif value is None:
                value = ""
            elif isinstance(value, numbers.Real) and not isinstance(value, int):
                value = float(value)  # numpy scalars too (Redis would store their repr)
            flat += [name, value]
        return bool(self._update(keys=[self.job_key(job_id)], args=[self.retention_s, *flat]))

    def set_progress(self, job_id: str, stage: str, progress: float) -> bool:
        return self.update(job_id, status="running", stage=stage, progress=round(float(progress), 4))

    def heartbeat(self, job_id: str, at: float | None = None) -> bool:
        """A running stage's sign of life (read it as ``JobState.heartbeat``)."""
        return self.update(job_id, heartbeat=time.time() if at is None else at)

    def stale(self, timeout_s: float, now: float | None = None) -> list[JobState]:
        """Running jobs whose stage's heartbeat is older than ``timeout_s`` (their worker is gone)."""
        now = time.time() if now is None else now
        ids = [m.decode() for m in self.redis.zrange(self.index_key, 0, -1)]  # type: ignore[union-attr]
        out = []
        for state in self.get_many(ids):
            if (
                state is not None
                and state.status == "running"
                and state.heartbeat is not None
                and now - state.heartbeat > timeout_s
            ):
                out.append(state)
        return out

    def count_delivery(self, job_id: str, stage: str, task_id: str, attempt: int) -> int:
        """How often this task (job, stage, Celery task id, retry number) has been delivered, this time
        included. A retry after a transient error is a new attempt, and a re-render (the score editor) a
        new task; a redelivery after a killed worker is neither."""
        key = f"{self.prefix}deliveries:{job_id}:{stage}:{task_id}:{attempt}"
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, self.retention_s)
        count, _ = pipe.execute()
        return int(count)

    def record_stage(self, job_id: str, stage: str, seconds: float) -> bool:
        """The time a stage took (this job's timings, and the shared histogram for /metrics)."""
        self.observe_stage(stage, seconds)
        return self.update(job_id, **{f"t:{stage}": round(seconds, 3)})

    def delete(self, job_id: str) -> None:
        owner = self.redis.hget(self.job_key(job_id), "owner")
        pipe = self.redis.pipeline()
        pipe.delete(self.job_key(job_id))
        pipe.zrem(self.index_key, job_id)
        if owner:
            pipe.zrem(self.owner_index_key(owner.decode()), job_id)  # type: ignore[union-attr]
        pipe.execute()

    def list_jobs(
        self, owner: str | None, statuses: frozenset[str] | None, after: tuple[float, str] | None, limit: int
    ) -> list[JobState]:
        """Jobs newest first, of one owner (``None``: everyone's), optionally of some statuses, after the
        ``(created, id)`` of the last job of the previous page. Index entries of expired jobs are dropped."""
        key = self.index_key if owner is None else self.owner_index_key(owner)
        top: str = "+inf" if after is None else repr(after[0])
        out: list[JobState] = []
        chunk = max(limit * 2, 50)
        offset = 0
        while len(out) < limit:
            page: list[tuple[bytes, float]] = self.redis.zrevrangebyscore(  # type: ignore[assignment]
                key, top, "-inf", start=offset, num=chunk, withscores=True
            )
            if not page:
                break
            offset += len(page)
            ids = [m.decode() for m, score in page if not _before(after, score, m.decode())]
            gone = []
            for job_id, state in zip(ids, self.get_many(ids), strict=True):
                if state is None:
                    gone.append(job_id)
                elif (statuses is None or state.status in statuses) and len(out) < limit:
                    out.append(state)
            if gone:
                self.redis.zrem(key, *gone)
                offset -= len(gone)
        return out

    # ---- batches
    def create_batch(self, batch_id: str, kind: str, jobs: Iterable[str], owner: str = "") -> BatchState:
        if kind not in ("files", "variations"):
            raise ValueError(f"unknown batch kind {kind!r}")
        jobs = tuple(jobs)
        now = time.time()
        key = self.batch_key(batch_id)
        pipe = self.redis.pipeline()
        fields = {"id": batch_id, "kind": kind, "jobs": json.dumps(jobs), "created": now, "owner": owner}
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
        pipe.expire(key, self.retention_s)
        pipe.execute()
        return BatchState(batch_id, kind, jobs, now, owner)

    def get_batch(self, batch_id: str) -> BatchState | None:
        raw = _decode(self.redis.hgetall(self.batch_key(batch_id)))  # type: ignore[arg-type]
        if not raw:
            return None
        jobs = tuple(json.loads(raw["jobs"]))
        picked = raw.get("picked") or None
        return BatchState(raw["id"], raw["kind"], jobs, float(raw["created"]), raw.get("owner", ""), picked)

    def pick(self, batch_id: str, job_id: str) -> None:
        """Record ``job_id`` as the batch's picked variation (the caller checks that it belongs)."""
        key = self.batch_key(batch_id)
        pipe = self.redis.pipeline()
        pipe.hset(key, "picked", job_id)
        pipe.expire(key, self.retention_s)
        pipe.execute()

    def touch_batch(self, batch_id: str) -> None:
        self.redis.expire(self.batch_key(batch_id), self.retention_s)

    # ---- metrics
    def counts_by_status(self) -> dict[str, int]:
        """Jobs by status; drops index entries whose job has expired."""
        ids = [m.decode() for m in self.redis.zrange(self.index_key, 0, -1)]  # type: ignore[union-attr]
        pipe = self.redis.pipeline()
        for job_id in ids:
            pipe.hget(self.job_key(job_id), "status")
        counts: dict[str, int] = {}
        gone = []
        for job_id, status in zip(ids, pipe.execute(), strict=True):
            if status is None:
                gone.append(job_id)
            else:
                counts[status.decode()] = counts.get(status.decode(), 0) + 1
        if gone:
            self.redis.zrem(self.index_key, *gone)
        return counts

    def observe_stage(self, stage: str, seconds: float) -> None:
        key = f"{self.prefix}stage_seconds:{stage}"
        pipe = self.redis.pipeline()
        for bound in STAGE_BUCKETS:
            if seconds <= bound:
                pipe.hincrby(key, f"le:{bound:g}", 1)
        pipe.hincrbyfloat(key, "sum", seconds)
        pipe.hincrby(key, "count", 1)
        pipe.execute()

    def stage_histograms(self, stages: Iterable[str]) -> dict[str, tuple[list[tuple[str, int]], float]]:
        """Per stage: cumulative buckets ``[(le, count), ..., ("+Inf", count)]`` and the sum."""
        stages = list(stages)
        pipe = self.redis.pipeline()
        for stage in stages:
            pipe.hgetall(f"{self.prefix}stage_seconds:{stage}")
        out = {}
        for stage, raw in zip(stages, pipe.execute(), strict=True):
            d = _decode(raw)
            if not d:
                continue
            buckets = [(f"{b:g}", int(d.get(f"le:{b:g}", 0))) for b in STAGE_BUCKETS]
            buckets.append(("+Inf", int(d.get("count", 0))))
            out[stage] = (buckets, float(d.get("sum", 0.0)))
        return out

    def queue_lengths(self, queues: Iterable[str]) -> dict[str, int]:
        """Messages waiting in each Celery queue (the broker's Redis list of that name)."""
        queues = list(queues)
        pipe = self.redis.pipeline()
        for q in queues:
            pipe.llen(q)
        return {q: int(n) for q, n in zip(queues, pipe.execute(), strict=True)}
