"""What the score editor's routes do, without HTTP (``api/editor.py``): the editor's data, versioned
downloads and the export, the re-plan of an edit and the re-render of a new version (``versions.py``,
``replan.py``). ``JobService`` inherits it; it uses the service's data directory, job store and Celery app.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from celery import Celery, chain

from moodbgm import versions
from moodbgm.api.problems import ProblemError
from moodbgm.files import read_json
from moodbgm.jobs import JobDir, JobOptions, is_job_id
from moodbgm.jobstore import JobStore
from moodbgm.stages import BARS, BY_NAME
from moodbgm.types import EMOTIONS

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".wav": "audio/wav",
    ".m4a": "audio/mp4",
    ".mid": "audio/midi",
    ".png": "image/png",
    ".json": "application/json",
}


class EditingMixin:
    data_dir: Path
    store: JobStore
    celery: Celery

    def versioned(self, job_id: str, name: str) -> tuple[Path, str] | None:
        """``v<n>/<file>``: a file of one version of an edited score; ``export.zip``: the current one
        for video editors (stems, MIDI, mix, timeline, markers)."""
        if name == versions.EXPORT:
            job = JobDir(self.data_dir / job_id)
            if not (is_job_id(job_id) and job.path("timeline.json").is_file()):
                return None
            return versions.export_zip(job), "application/zip"
        head, _, file = name.partition("/")
        if not (is_job_id(job_id) and head[:1] == "v" and head[1:].isdigit() and file in versions.VERSIONED):
            return None
        path = versions.version_file(JobDir(self.data_dir / job_id), int(head[1:]), file)
        return None if path is None else (path, CONTENT_TYPES[path.suffix])

    def editor_data(self, job_id: str) -> dict[str, Any] | None:
        """What the timeline editor shows; None before the job has a timeline."""
        job = JobDir(self.data_dir / job_id)
        if not job.path("timeline.json").is_file():
            return None
        record = job.read()
        info = read_json(job.path("media.json"))
        transcript = read_json(job.path("transcript.json"))
        idx = versions.index(job)
        current = int(idx["current"])
        listed = []
        for n in range(1, current + 1):
            files = [f"v{n}/{f}" for f in versions.VERSIONED if versions.version_file(job, n, f) is not None]
            if files:
                listed.append({"n": n, "current": n == current, "files": files})
        options = JobOptions.from_dict(record.options)
        bars = job.path(BARS)
        return {
            "id": job_id,
            "status": record.status,
            "generator": options.generator,
            # the composer's tempo and bar plan (bars.json) of the current version; None when the
            # generator records none (Riffusion): the editor then draws no bar guides and says why
            "bars": read_json(bars)["sections"] if bars.is_file() else None,
            "duration": info["duration"],
            "cuts": list(info.get("cuts", [])),
            "min_section": options.min_section,
            "phrases": [
                {"start": p["start"], "end": p["end"], "text": p.get("text", "")}
                for p in transcript["phrases"]
            ],
            "sections": versions.current_sections(job),
            "emotions": list(EMOTIONS),
            "version": current,
            "versions": listed,
            "stages": {k: v.seconds for k, v in record.stages.items()},
            "export": versions.EXPORT if record.status == "done" else None,
        }

    def replan(self, job_id: str, data: Any) -> list[dict[str, Any]]:
        """An edit (``{"sections": [...]}``; the current sections when ``data`` is None) with its unlocked
        stretches planned again from the phrases' emotions (``replan.py``). Nothing is rendered: the
        page shows the proposal and re-renders it with ``PUT /timeline``. ``EditError`` for a bad edit,
        ``ProblemError`` 409 before the job has a timeline."""
        from moodbgm.replan import replan, timeline_options
        from moodbgm.stages import load_emotions
        from moodbgm.types import Transcript

        job = JobDir(self.data_dir / job_id)
        if not job.path("timeline.json").is_file():
            raise ProblemError(
                409, "not-done", "Job not done", f"job {job_id} has no timeline yet; re-plan it once it is"
            )
        options = JobOptions.from_dict(job.read().options)
        info = read_json(job.path("media.json"))
        duration = float(info["duration"])
        edit = {"sections": versions.current_sections(job)} if data is None else data
        sections = versions.validate_edit(edit, duration, options.min_section)
        phrases = Transcript.from_dict(read_json(job.path("transcript.json"))).phrases
        out = replan(
            sections, phrases, load_emotions(job), duration, info.get("cuts", []), timeline_options(options)
        )
        return [s.to_dict() for s in out]

    def rerender(self, job_id: str, data: Any) -> int:
        """Validate an edit, freeze the current version, enqueue the stages an edit re-runs. Returns the
        new version's number. ``EditError`` for a bad edit, ``ProblemError`` 409 unless the job is done."""
        state = self.store.get(job_id)
        job = JobDir(self.data_dir / job_id)
        if state is None or state.status != "done" or not job.path("output.mp4").is_file():
            raise ProblemError(
                409, "not-done", "Job not done", f"job {job_id} is not done; edit it once it is"
            )
        record = job.read()
        options = JobOptions.from_dict(record.options)
        duration = float(read_json(job.path("media.json"))["duration"])
        sections = versions.validate_edit(data, duration, options.min_section)
        with job.locked():
            version = versions.prepare_rerender(job, sections, duration, options.seed)
            job.update(status="queued", stage=versions.RERUN[0], error=None)
        self.store.update(job_id, status="queued", stage=versions.RERUN[0], error=None)
        steps = [
            self.celery.signature(BY_NAME[s].task, args=(job_id,), queue=BY_NAME[s].queue, immutable=True)
            for s in versions.RERUN
        ]
        result = chain(*steps).apply_async()
        ids, node = [], result
        while node is not None:
            ids.append(node.id)
            node = node.parent
        self.store.update(job_id, tasks=ids[::-1])
        log.info("job %s: version %d queued (%s)", job_id, version, ", ".join(versions.RERUN))
        return version
