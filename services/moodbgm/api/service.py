"""What the routes do, without HTTP: make jobs from uploads, read their state, cancel, delete, purge.

Variations: one upload with ``variations=N`` becomes N jobs that share the uploaded file (hard links,
so deleting one job never touches the others) and differ only in the music seed (``seed``,
``seed+1``, ... ``seed+N-1``). They are grouped in a batch of kind ``variations`` so a client (the web
form) can show the N soundtracks side by side and let the user pick one.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery

from moodbgm.api.editing import CONTENT_TYPES, EditingMixin
from moodbgm.api.problems import ProblemError
from moodbgm.api.schemas import BatchStatus, ErrorInfo, FileLink, JobLinks, JobStatus
from moodbgm.api.uploads import UPLOADS, ReceivedForm, check_media
from moodbgm.artifacts import open_store
from moodbgm.config import Settings
from moodbgm.errors import InputError
from moodbgm.jobs import JobDir, JobOptions, create_job, is_job_id, new_job_id
from moodbgm.jobstore import JobState, JobStore, cancel_job, fail_stale, is_remote, remove_job
from moodbgm.stages import ARTIFACTS as STAGE_FILES
from moodbgm.types import EMOTIONS
from moodbgm.worker.app import enqueue_job, revoke

log = logging.getLogger(__name__)

API = "/api/v1"
PRIVATE = frozenset({"media.json"})  # holds server paths
# downloadable artifacts -> content type: every file a stage writes (the video first, then the latest
# stage's files first) and "input", the original upload
ARTIFACTS: dict[str, str] = {
    **{
        f: CONTENT_TYPES[Path(f).suffix]
        for f in sorted(reversed(STAGE_FILES), key=lambda f: f != "output.mp4")
        if f not in PRIVATE
    },
    "input": "application/octet-stream",
}
INPUT_TYPES = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "mkv": "video/x-matroska",
    "webm": "video/webm",
    "avi": "video/x-msvideo",
    "flv": "video/x-flv",
    "ts": "video/mp2t",
    "mpg": "video/mpeg",
    "ogv": "video/ogg",
    "wmv": "video/x-ms-wmv",
    "3gp": "video/3gpp",
}


@dataclass(frozen=True)
class Submitted:
    batch_id: str | None
    jobs: tuple[str, ...]
    seeds: tuple[int, ...]
    names: tuple[str, ...]


class JobService(EditingMixin):
    def __init__(self, settings: Settings, store: JobStore, celery: Celery) -> None:
        self.settings = settings
        self.store = store
        self.celery = celery
        self.data_dir = settings.data_dir
        self.artifacts = open_store(settings)  # s3: jobs live in the object store, not in data_dir
        self.remote = is_remote(self.artifacts)

    # ---- submit
    def parse_options(self, fields: dict[str, str]) -> tuple[JobOptions, int]:
        """Job options (and the number of variations) from form fields; defaults from Settings."""
        s = self.settings
        try:
            seed = int(fields.get("seed") or JobOptions.from_settings(s).seed)
            variations = int(fields.get("variations") or 1)
        except ValueError:
            raise InputError("seed and variations must be whole numbers") from None
        if not 1 <= variations <= s.max_variations:
            raise InputError(f"variations must be between 1 and {s.max_variations}")
        emotion = (fields.get("emotion") or "").strip() or None
        if emotion == "auto":
            emotion = None
        if emotion is not None and emotion not in EMOTIONS:
            raise InputError(f"unknown emotion {emotion!r}; expected auto or one of {', '.join(EMOTIONS)}")
        options = JobOptions.from_settings(
            s,
            generator=fields.get("generator") or None,
            style=fields.get("style") or None,
            seed=seed,
            emotion=emotion,
        )
        return options, variations

    def submit(
        self, form: ReceivedForm, options: JobOptions, variations: int = 1, owner: str = ""
    ) -> Submitted:
        """Check every uploaded file, then make and enqueue its jobs. All or nothing: on any error no
        job directory, staging file or Redis state is left."""
        created: list[str] = []
        try:
            inputs = [(f.name, check_media(f, self.settings.max_duration_s)) for f in form.files]
            jobs, seeds, names = [], [], []
            for name, path in inputs:
                for k in range(variations):
                    seed = options.seed + k
                    job_id = new_job_id()
                    created.append(job_id)
                    self._create(job_id, path, options.replace(seed=seed), name)
                    jobs.append(job_id)
                    seeds.append(seed)
                    names.append(name)
            kind = "variations" if variations > 1 else "files"
            batch_id = new_job_id() if len(jobs) > 1 else None
            for job_id, name, seed in zip(jobs, names, seeds, strict=True):
                self.store.create(
                    job_id, options.replace(seed=seed).to_dict(), batch=batch_id, name=name, owner=owner
                )
            if batch_id is not None:
                self.store.create_batch(batch_id, kind, jobs, owner=owner)
            for job_id in jobs:
                self.store.update(job_id, tasks=enqueue_job(self.celery, job_id))
        except BaseException:
            for job_id in created:
                with contextlib.suppress(Exception):
                    remove_job(job_id, self.data_dir, self.store, self.artifacts)
                shutil.rmtree(self.data_dir / job_id, ignore_errors=True)
            raise
        finally:
            form.discard()
        log.info("accepted %d job(s): %s", len(jobs), ", ".join(jobs))
        return Submitted(batch_id, tuple(jobs), tuple(seeds), tuple(names))

    def _create(self, job_id: str, path: Path, options: JobOptions, name: str) -> None:
        if not self.remote:
            create_job(self.data_dir / job_id, path, options, name=name)
            return
        work = self.artifacts.workdir(job_id)  # the API's scratch: made here, published, removed
        try:
            job = create_job(work, path, options, name=name)
            self.artifacts.publish(job_id, "upload", [job.input_path().name, "job.json"])
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def single_batch(self, job_id: str, owner: str = "") -> str:
        """A batch holding one job (POST /batches with a single file)."""
        batch_id = new_job_id()
        self.store.create_batch(batch_id, "files", [job_id], owner=owner)
        self.store.update(job_id, batch=batch_id)
        return batch_id

    # ---- read
    def job(self, job_id: str) -> JobStatus | None:
        if not is_job_id(job_id):
            return None
        state = self.store.get(job_id)
        return None if state is None else self._status(state)

    def _status(self, state: JobState) -> JobStatus:
        base = f"{API}/jobs/{state.id}"
        return JobStatus(
            id=state.id,
            name=state.name,
            status=state.status,
            stage=state.stage,
            progress=round(100 * state.progress, 1),
            options=state.options,
            timings=state.timings,
            error=ErrorInfo.model_validate(state.error) if state.error else None,
            emotion_warning=state.emotion_warning,
            files=self._files(state.id),
            batch_id=state.batch,
            owner=state.owner,
            created=state.created,
            updated=state.updated,
            links=JobLinks(self=base, files=f"{base}/files/{{name}}"),
        )

    def _files(self, job_id: str) -> list[FileLink]:
        if self.remote:
            return self._remote_files(job_id)
        out = []
        for name, ctype in ARTIFACTS.items():
            found = self.artifact(job_id, name)
            if found is not None:
                path, ctype = found
                url = f"{API}/jobs/{job_id}/files/{name}"  # the routes sign it (api/signing.py)
                out.append(FileLink(name=name, url=url, content_type=ctype, size=path.stat().st_size))
        return out

    def artifact(self, job_id: str, name: str) -> tuple[Path, str] | None:
        """The path and content type of a known artifact of a job, if it exists now."""
        if not is_job_id(job_id) or name not in ARTIFACTS:
            return None
        job = JobDir(self.data_dir / job_id)
        if name == "input":
            try:
                path = job.input_path()
            except InputError:
                return None
            return path, INPUT_TYPES.get(path.suffix.lstrip("."), "application/octet-stream")
        path = job.path(name)
        return (path, ARTIFACTS[name]) if path.is_file() else None

    def _remote_files(self, job_id: str) -> list[FileLink]:
        sizes = self.artifacts.sizes(job_id)  # one listing, not a request per file
        out = []
        for name in ARTIFACTS:
            found = self._remote_artifact(job_id, name, list(sizes))
            if found is not None:
                key, ctype = found
                url = f"{API}/jobs/{job_id}/files/{name}"  # the routes sign it (api/signing.py)
                out.append(FileLink(name=name, url=url, content_type=ctype, size=sizes[key]))
        return out

    def _remote_artifact(
        self, job_id: str, name: str, present: list[str] | None = None
    ) -> tuple[str, str] | None:
        """The store key and content type of a known artifact of a job, if it is in the store now."""
        if not is_job_id(job_id) or name not in ARTIFACTS:
            return None
        present = self.artifacts.list(job_id) if present is None else present
        if name == "input":
            inputs = sorted(n for n in present if n.startswith("input.") and "/" not in n)
            if not inputs:
                return None
            return inputs[0], INPUT_TYPES.get(inputs[0].rsplit(".", 1)[-1], "application/octet-stream")
        return (name, ARTIFACTS[name]) if name in present else None

    def download(self, job_id: str, name: str) -> tuple[str, str] | None:
        """Remote store: the store key and content type of the artifact, if it is there now."""
        return self._remote_artifact(job_id, name)

    def batch(self, batch_id: str) -> BatchStatus | None:
        if not is_job_id(batch_id):
            return None
        b = self.store.get_batch(batch_id)
        if b is None:
            return None
        jobs = [self._status(s) for s in self.store.get_many(b.jobs) if s is not None]
        statuses = {j.status for j in jobs}
        if statuses & {"queued", "running"}:
            status = "running"
        elif not jobs or statuses == {"cancelled"}:
            status = "cancelled"
        else:
            status = "failed" if "failed" in statuses else "done"
        progress = sum(j.progress for j in jobs) / len(jobs) if jobs else 0.0
        return BatchStatus(
            id=b.id,
            kind=b.kind,
            status=status,
            progress=round(progress, 1),
            jobs=jobs,
            created=b.created,
            owner=b.owner,
            picked=b.picked,
        )

    def pick(self, batch_id: str, job_id: Any) -> BatchStatus | None:
        """Make ``job_id`` the picked variation (the output) of a batch of variations; None when there is
        no such batch. ``InputError`` when the job is not one of its variations, ``ProblemError`` 409
        unless the job is done."""
        b = self.store.get_batch(batch_id) if is_job_id(batch_id) else None
        if b is None:
            return None
        if b.kind != "variations":
            raise InputError(f"batch {batch_id} holds files, not variations: there is nothing to pick")
        if not isinstance(job_id, str) or job_id not in b.jobs:
            raise InputError(f"{job_id!r} is not a variation of batch {batch_id}; one of {', '.join(b.jobs)}")
        state = self.store.get(job_id)
        if state is None or state.status != "done":
            raise ProblemError(
                409, "not-done", "Job not done", f"variation {job_id} is not done; pick it once it is"
            )
        self.store.pick(batch_id, job_id)
        log.info("batch %s: variation %s picked", batch_id, job_id)
        return self.batch(batch_id)

    def list_jobs(
        self, owner: str | None, statuses: frozenset[str] | None, after: tuple[float, str] | None, limit: int
    ) -> list[JobStatus]:
        """Newest first; ``owner=None``: every key's jobs (admin)."""
        return [self._status(s) for s in self.store.list_jobs(owner, statuses, after, limit)]

    # ---- cancel / delete
    def cancel(self, job_id: str) -> JobStatus | None:
        if not is_job_id(job_id):
            return None
        state = self.store.get(job_id)
        if state is None:
            return None
        if not state.finished:
            cancel_job(job_id, self.data_dir, self.store)
            revoke(self.celery, state.tasks)
        return self.job(job_id)

    def delete(self, job_id: str) -> bool:
        """Cancel the job if it runs, then remove every file of it and its Redis state."""
        if not is_job_id(job_id):
            return False
        state = self.store.get(job_id)
        exists = (
            self.artifacts.exists(job_id, "job.json") if self.remote else (self.data_dir / job_id).exists()
        )
        if state is None and not exists:
            return False
        if state is not None and not state.finished:
            cancel_job(job_id, self.data_dir, self.store)
            revoke(self.celery, state.tasks)
        remove_job(job_id, self.data_dir, self.store, self.artifacts)
        return True

    # ---- no job stuck forever
    def fail_stale(self) -> list[str]:
        """Fail running jobs whose heartbeat is older than ``heartbeat_timeout_s`` (worker gone)."""
        return fail_stale(self.store, self.settings.heartbeat_timeout_s, self.data_dir, self.artifacts)

    # ---- retention
    def purge_expired(self, staging_max_age_s: float = 24 * 3600) -> int:
        """Remove job folders whose Redis state has expired (older than the retention) and stale
        staging folders of uploads that never finished. Returns how many folders were removed."""
        now = time.time()
        removed = 0
        if not self.data_dir.is_dir():
            return 0
        for d in self.data_dir.iterdir():
            if not (d.is_dir() and is_job_id(d.name)):
                continue
            if now - d.stat().st_mtime > self.settings.job_retention_s and self.store.get(d.name) is None:
                shutil.rmtree(d, ignore_errors=True)
                removed += 1
        uploads = self.data_dir / UPLOADS
        if uploads.is_dir():
            for d in uploads.iterdir():
                if now - d.stat().st_mtime > staging_max_age_s:
                    shutil.rmtree(d, ignore_errors=True)
                    removed += 1
        return removed
