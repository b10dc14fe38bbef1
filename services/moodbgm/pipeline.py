"""Runs the stages over a job directory: the ONE job lifecycle, for the CLI and the workers alike.

``start_job`` -> ``run_stage`` per stage (record running, heartbeat, progress, cancel checks, then done
with its key) -> ``finish_job``; any error goes through ``fail_job``, which writes the one error shape
``{"kind", "stage", "message"}`` (kinds: input, internal, timeout, cancelled) and removes partial files.
The CLI (``run_job``) loops over the stages in one process; a worker runs one stage per Celery task and
passes ``JobEvents`` that mirror the record into the job store (Redis holds service state, the job
directory the artifacts and ``job.json``).

Each stage records a key: the hash of its options and of its inputs' keys. A stage whose outputs
exist and whose key is unchanged is skipped, so re-running a job after a crash (or a redelivered Celery
task) redoes only what is missing or what changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from moodbgm import __version__
from moodbgm.errors import CancelledError, InputError, JobGoneError, StageTimeoutError
from moodbgm.jobs import TERMINAL, JobDir, JobError, JobOptions, JobRecord
from moodbgm.models import Models
from moodbgm.stagegraph import run_graph
from moodbgm.stages import (
    BY_NAME,
    INPUT,
    QUEUES,
    STAGES,
    TAKE,
    TIMELINE_OVERRIDE,
    Stage,
    load_emotions,
    upstream,
)

__all__ = [
    "BY_NAME",
    "QUEUES",
    "STAGES",
    "TIMELINE_OVERRIDE",
    "JobEvents",
    "Stage",
    "fail_job",
    "finish_job",
    "load_emotions",
    "run_job",
    "run_stage",
    "start_job",
]

log = logging.getLogger(__name__)

StageProgress = Callable[[str, float], None]
"""Called with (stage, fraction of that stage done)."""
HEARTBEAT_S = 5.0  # a running stage renews its heartbeat at least this often
PROGRESS_INTERVAL_S = 0.5  # at most this often progress is passed on (and cancellation checked)


class JobEvents:
    """What a runner of the lifecycle adds around it. The base does nothing; the CLI draws a bar from
    ``progress``, a worker mirrors everything into the job store."""

    timeout_errors: tuple[type[BaseException], ...] = (StageTimeoutError,)
    time_limit_s: float | None = None
    retryable: tuple[type[BaseException], ...] = ()  # errors the runner retries: not recorded as failures

    def check(self) -> None:
        """Raise ``CancelledError`` / ``JobGoneError`` when the job must stop (besides ``.cancel``)."""

    def started(self, job: JobDir, stage: str) -> None: ...

    def progress(self, job: JobDir, stage: str, fraction: float) -> None: ...

    def heartbeat(self, job: JobDir, stage: str, at: float) -> None: ...

    def finished(self, job: JobDir, stage: str, seconds: float | None) -> None:
        """``seconds`` is None when the stage was already current (nothing run)."""

    def failed(self, job: JobDir, error: JobError) -> None: ...


class ProgressEvents(JobEvents):
    """Passes stage progress to a ``StageProgress`` callback (the CLI's bar, tests)."""

    def __init__(self, progress: StageProgress | None) -> None:
        self._progress = progress

    def progress(self, job: JobDir, stage: str, fraction: float) -> None:
        if self._progress is not None:
            self._progress(stage, fraction)


# ---------------------------------------------------------------- keys
@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A digest of the moodbgm package as installed: its code and the model data it ships (the emotion
    heads, ...). Part of every stage's key, so a job directory made by other code (another release, a
    retrained head) is made again instead of being reused; the same installation gives the same keys
    in the API, every worker and the CLI."""
    return tree_digest(Path(__file__).resolve().parent)


def tree_digest(root: Path) -> str:
    """SHA-256 (16 hex digits) of the names and bytes of the files under ``root`` (bytecode caches
    aside)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def stage_key(job: JobDir, stage: Stage, options: JobOptions, models: Models, record: JobRecord) -> str:
    parts: dict[str, Any] = {"stage": stage.name, "options": stage.key_options(options, models.settings)}
    parts["code"] = code_fingerprint()
    parts["upstream"] = {u: getattr(record.stages.get(u), "key", None) for u in upstream(stage)}
    if INPUT in stage.inputs:
        st = job.input_path().stat()
        parts["input"] = [job.input_path().name, st.st_size, st.st_mtime_ns]
    for name in (*stage.inputs, *stage.optional):  # files the user supplies: keyed by content
        if name == TIMELINE_OVERRIDE:
            override = job.path(name)
            parts["override"] = override.read_text() if override.exists() else None
        elif name == TAKE:  # a new take (its audio, take.wav, is the previous version: named by it)
            take = job.path(name)
            parts["take"] = take.read_text() if take.exists() else None
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def is_done(job: JobDir, stage: Stage, key: str, record: JobRecord) -> bool:
    done = record.stages.get(stage.name)
    return (
        done is not None
        and done.status == "done"
        and done.key == key
        and all(job.path(f).exists() for f in stage.outputs)
    )


def overall_progress(stage: str, fraction: float) -> float:
    total = sum(s.weight for s in STAGES)
    before = 0.0
    for s in STAGES:
        if s.name == stage:
            return round((before + s.weight * fraction) / total, 4)
        before += s.weight
    raise KeyError(stage)


# ---------------------------------------------------------------- the lifecycle
def check_cancel(job: JobDir, events: JobEvents) -> None:
    """The one cancellation check: the job's ``.cancel`` marker (or a cancelled record), then the
    runner's own (a worker: the job deleted from the store)."""
    events.check()
    if job.cancel_requested() or job.read().status == "cancelled":
        raise CancelledError(f"job {job.id} was cancelled")


def start_job(job: JobDir) -> JobRecord:
    """A job begins (its first stage, or a re-run): running, no error, the versions that ran it."""
    return job.update(status="running", error=None, versions=versions())


def finish_job(job: JobDir) -> JobRecord:
    """After the last stage: done, partial files removed."""
    job.clean_partials()
    return job.update(status="done", stage=None, progress=1.0, error=None)


def describe_error(stage: str | None, exc: BaseException, events: JobEvents | None = None) -> JobError:
    """An error in plain words, in the one shape."""
    ev = events or JobEvents()
    where = stage or "job"
    if isinstance(exc, CancelledError):
        return JobError("cancelled", stage, str(exc) or "the job was cancelled")
    if isinstance(exc, InputError):
        return JobError("input", stage, str(exc))
    if isinstance(exc, ev.timeout_errors):
        limit_s = getattr(exc, "limit_s", None) or ev.time_limit_s
        limit = f" ({limit_s:g} s)" if limit_s else ""
        return JobError("timeout", stage, f"the {where} stage took too long{limit}")
    return JobError("internal", stage, f"internal error in the {where} stage: {type(exc).__name__}: {exc}")


def fail_job(job: JobDir, stage: str | None, exc: BaseException, events: JobEvents | None = None) -> JobError:
    """Record a failure (or a cancellation) in job.json, the stage's record and ``events``; remove the
    partial files. A cancelled job stays cancelled whatever error follows."""
    error = describe_error(stage, exc, events)
    job.clean_partials()
    with job.locked():
        if not job.exists():
            return error
        record = job.read()
        if (record.status == "cancelled" or job.cancel_requested()) and error.kind != "cancelled":
            error = JobError("cancelled", stage, f"job {job.id} was cancelled")
        status = "cancelled" if error.kind == "cancelled" else "failed"
        stages = dict(record.stages)
        if stage is not None and stage in stages and stages[stage].status == "running":
            stages[stage] = dataclasses.replace(stages[stage], status=status)
        job.write(record.replace(status=status, stage=stage, error=error, stages=stages))
    if events is not None:
        events.failed(job, error)
    log.warning("job %s %s in %s: %s", job.id, status, stage, error.message)
    return error


def cancel_job(job: JobDir) -> None:
    """Ask a job to stop (its runner sees it at the next progress report) and mark it cancelled."""
    if not job.root.is_dir():
        return
    job.request_cancel()
    with contextlib.suppress(InputError, FileNotFoundError), job.locked():
        record = job.read()
        if record.status not in TERMINAL:
            error = JobError("cancelled", record.stage, f"job {job.id} was cancelled")
            job.write(record.replace(status="cancelled", error=error))


@contextlib.contextmanager
def _heartbeat(job: JobDir, stage: str, events: JobEvents, every_s: float) -> Iterator[None]:
    """Renew the stage's heartbeat (job.json and ``events``) from a small thread while it runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            now = time.time()
            try:
                job.update_stage(stage, heartbeat=now)
                events.heartbeat(job, stage, now)
            except Exception as e:  # the job was removed under us; the stage will notice
                log.debug("heartbeat of job %s stopped: %s", job.id, e)
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{job.id}-{stage}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def _time_limit(limit_s: float | None) -> Iterator[None]:
    """Raise ``StageTimeoutError`` in the main thread after ``limit_s`` (the CLI; Celery has its own)."""
    if not limit_s or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise StageTimeoutError(limit_s)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, limit_s)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_stage(
    job: JobDir,
    name: str,
    models: Models,
    progress: StageProgress | None = None,
    events: JobEvents | None = None,
    heartbeat_s: float = HEARTBEAT_S,
    time_limit_s: float | None = None,
) -> bool:
    """Run one stage unless its outputs are current. Returns True when it did work.

    A failure is recorded (``fail_job``) before it is raised again. ``time_limit_s`` (main thread
    only: the CLI) raises ``StageTimeoutError`` in a stage running longer; Celery enforces its own.
    """
    stage = BY_NAME[name]
    ev = events or ProgressEvents(progress)
    check_cancel(job, ev)
    record = job.read()
    options = JobOptions.from_dict(record.options)
    key = stage_key(job, stage, options, models, record)
    if is_done(job, stage, key, record):
        log.info("job %s: %s is up to date", job.id, name)
        ev.finished(job, name, None)
        return False
    now = time.time()
    job.update_stage(
        name, status="running", started=now, heartbeat=now, key=None, finished=None, seconds=None
    )
    job.update(status="running", stage=name, progress=overall_progress(name, 0.0))
    ev.started(job, name)
    t0 = time.perf_counter()
    last = [0.0]

    def report(fraction: float) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        now = time.monotonic()
        if now - last[0] < PROGRESS_INTERVAL_S and 0.0 < fraction < 1.0:
            return
        last[0] = now
        check_cancel(job, ev)
        if time_limit_s and time.perf_counter() - t0 > time_limit_s:  # threads: no SIGALRM, checked here
            raise StageTimeoutError(time_limit_s)
        ev.progress(job, name, fraction)

    try:
        with _heartbeat(job, name, ev, heartbeat_s), _time_limit(time_limit_s):
            report(0.0)
            stage.runner(job, options, models, report)
            report(1.0)
    except JobGoneError:
        raise
    except ev.retryable:
        job.clean_partials()
        raise
    except Exception as e:
        fail_job(job, name, e, ev)
        raise
    seconds = round(time.perf_counter() - t0, 3)
    with job.locked():
        record = job.update_stage(name, status="done", key=key, finished=time.time(), seconds=seconds)
        job.write(record.replace(progress=overall_progress(name, 1.0)))
    ev.finished(job, name, seconds)
    return True


WAITS_FOR: dict[str, tuple[str, ...]] = {"report": ("generate",)}
"""Scheduling only, in ``run_job``: stages that start after others whose outputs they do not read. The
chart (pure Python, at low priority) waits for the music: beside the synths it held the GIL their
event loops need (composing took 0.95 s instead of 0.75 on a 2-core AMD EPYC); beside the mix it
fills the one-core passes.
"""

BESIDE_STT = 1
"""Cores ``run_job`` keeps busy beside transcription: the voice separation runs in a child process on
one. Build the ``Models`` for ``run_job`` with ``stt_reserve_cores=BESIDE_STT``."""


def run_job(
    job: JobDir,
    models: Models,
    progress: StageProgress | None = None,
    events: JobEvents | None = None,
    time_limit_s: float | None = None,
) -> JobDir:
    """All stages in order in this process (the CLI); marks the record done, failed or cancelled."""
    ev = events or ProgressEvents(progress)
    start_job(job)
    record = job.read()
    todo = [s for s in STAGES if record.stages.get(s.name) is None or record.stages[s.name].status != "done"]
    models.preload(*(s.model for s in todo if s.model))
    try:
        # independent stages overlap (separation beside transcription, the chart beside the mix)
        run_graph(
            [s.name for s in STAGES],
            {s.name: (*upstream(s), *WAITS_FOR.get(s.name, ())) for s in STAGES},
            lambda name: run_stage(job, name, models, events=ev, time_limit_s=time_limit_s),
        )
    except BaseException as e:
        if job.exists() and job.read().status == "running":  # not recorded by run_stage (e.g. ^C)
            stage = job.read().stage
            fail_job(job, stage, e if isinstance(e, Exception) else CancelledError("interrupted"), ev)
        raise
    finish_job(job)
    return job


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"moodbgm": __version__}
    for pkg in ("faster-whisper", "ctranslate2", "torch", "numpy", "diffusers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out
