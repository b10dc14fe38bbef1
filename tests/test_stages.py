"""The Stage table tells the truth: each runner reads exactly its declared inputs and writes exactly
its declared outputs (real runners, real models, a small real video).

Reads are seen through access times: before a stage every file's atime is set to 0 (below its mtime),
so the first read of it by anything (Python, libsndfile, an ffmpeg subprocess) moves the atime.
"""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path

import numpy as np
import pytest

from moodbgm.config import Settings
from moodbgm.generate.base import MusicGenerator
from moodbgm.jobs import JobDir, JobOptions, create_job
from moodbgm.models import Models
from moodbgm.pipeline import run_stage
from moodbgm.stages import ARTIFACTS, BY_NAME, QUEUES, STAGES, TIMELINE_OVERRIDE, Stage, stages_for, upstream
from moodbgm.types import MusicBed, Section, Timeline

IGNORED = {"job.json"}  # the lifecycle's record, not a stage's


def _files(job: JobDir) -> dict[str, os.stat_result]:
    return {p.name: p.stat() for p in job.root.iterdir() if p.is_file() and p.name not in IGNORED}


def _traced(job: JobDir, name: str, models: Models) -> tuple[set[str], set[str]]:
    """Run one stage; the names of the files it read and of those it wrote (or removed)."""
    for p in job.root.iterdir():
        if p.is_file():
            os.utime(p, ns=(0, p.stat().st_mtime_ns))
    before = _files(job)
    assert run_stage(job, name, models) is True
    after = _files(job)
    read = {n for n, st in after.items() if n in before and st.st_atime_ns > 0}
    written = {n for n in set(before) | set(after) if n not in before or n not in after}
    written |= {n for n in after if n in before and after[n].st_mtime_ns != before[n].st_mtime_ns}
    return read, written


def _match(names: set[str], declared: tuple[str, ...]) -> set[str]:
    return {n for n in names if any(fnmatch.fnmatch(n, d) for d in declared)}


def _check(stage: Stage, read: set[str], written: set[str]) -> None:
    allowed_read = (*stage.inputs, *stage.optional)
    assert _match(read, allowed_read) == read, (
        f"{stage.name} read undeclared {read - _match(read, allowed_read)}"
    )
    for d in stage.inputs:
        assert any(fnmatch.fnmatch(n, d) for n in read), f"{stage.name} never read its input {d}"
    allowed_write = (*stage.outputs, *stage.optional)
    assert written <= set(allowed_write), f"{stage.name} wrote undeclared {written - set(allowed_write)}"
    assert set(stage.outputs) <= written, f"{stage.name} did not write {set(stage.outputs) - written}"


@pytest.fixture(scope="module")
def models() -> Models:
    return Models(Settings(stt_model="tiny.en"))


def test_each_runner_reads_and_writes_what_its_stage_declares(
    media_dir: Path, tmp_path: Path, models: Models, one_torch_thread: None
) -> None:
    job = create_job(tmp_path / "j", media_dir / "av.mp4", JobOptions())
    for stage in STAGES:
        read, written = _traced(job, stage.name, models)
        _check(stage, read, written)
    assert job.path("bgm.mid").exists()  # the composer's optional outputs: the score and its bar plan
    bars = json.loads(job.path("bars.json").read_text())
    assert bars["generator"] == "composer" and bars["sections"][0]["start"] == 0.0
    for sec in bars["sections"]:
        assert sec["tempo"] > 0 and sec["meter"] == f"{sec['beats_per_bar']}/4"
        assert sec["bars"][0] == sec["start"] and sec["bars"] == sorted(sec["bars"])
        assert all(sec["start"] <= b < sec["end"] for b in sec["bars"])
    # the optional input: an edited timeline replaces planning (and is read, the transcript is not)
    sections = [{"start": 0.0, "end": 6.0, "emotion": "joy"}]
    job.path(TIMELINE_OVERRIDE).write_text(json.dumps({"duration": 6.0, "sections": sections}))
    read, written = _traced(job, "timeline", models)
    assert TIMELINE_OVERRIDE in read and "transcript.json" not in read
    assert written == {"timeline.json"}


def test_table_is_consistent() -> None:
    assert [s.name for s in STAGES] == list(BY_NAME)
    assert set(QUEUES) == {s.queue for s in STAGES}
    produced: set[str] = {"input.*", TIMELINE_OVERRIDE}
    for s in STAGES:  # every input is made by an earlier stage (or supplied by the user)
        assert set(s.inputs) <= produced, s.name
        produced |= set(s.outputs) | set(s.optional)
        assert all(u in BY_NAME for u in upstream(s))
    assert len(ARTIFACTS) == len(set(ARTIFACTS))
    # report reads audio.wav, not the separated voice
    chart = ["media", "stt", "emotion", "timeline", "report"]
    assert [s.name for s in stages_for(("timeline.png",))] == chart
    fields = set(JobOptions.__dataclass_fields__)
    assert {f for s in STAGES for f in s.options} <= fields
    assert {f for s in STAGES for f in s.settings} <= set(Settings.model_fields)
    # every JobOption changes some stage's key (an option nothing reads would be dead)
    assert fields == {f for s in STAGES for f in s.options}


def test_no_runtime_module_imports_devtools() -> None:
    root = Path(__file__).resolve().parents[1] / "services" / "moodbgm"
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if any(
            line.strip().startswith(("import devtools", "from devtools")) or 'import_module("devtools' in line
            for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []


class _PlanlessGenerator:
    """A generator with no tempo plan (as Riffusion): quiet noise, no MIDI, no bars."""

    name = "riffusion"

    def generate(
        self, timeline: Timeline, duration: float, options: object, progress: object = None
    ) -> MusicBed:
        n = round(duration * 48_000)
        return MusicBed(np.random.default_rng(0).normal(0, 0.01, (n, 2)).astype(np.float32), 48_000)


class _PlanlessModels(Models):
    def generator(self, name: str) -> MusicGenerator:
        return _PlanlessGenerator()


def test_a_generator_without_a_plan_leaves_no_stale_bar_plan(media_dir: Path, tmp_path: Path) -> None:
    job = create_job(tmp_path / "j", media_dir / "av.mp4", JobOptions())
    job.path("timeline.json").write_text(json.dumps(Timeline(2.0, (Section(0, 2, "joy"),)).to_dict()))
    job.path("bars.json").write_text('{"generator": "composer", "sections": []}')  # a previous version's
    job.path("bgm.mid").write_bytes(b"MThd")
    BY_NAME["generate"].runner(job, JobOptions(), _PlanlessModels(Settings()), lambda f: None)
    assert job.path("bgm.wav").is_file()
    assert not job.path("bars.json").exists() and not job.path("bgm.mid").exists()


def test_stage_keys_follow_the_installed_code(
    media_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Results made by other code (another release, a retrained emotion head) are not reused."""
    import shutil

    from moodbgm import pipeline

    options = JobOptions()
    job = create_job(tmp_path / "job", media_dir / "av.mp4", options)
    models = Models(Settings())
    keys = {s.name: pipeline.stage_key(job, s, options, models, job.read()) for s in STAGES}
    monkeypatch.setattr(pipeline, "code_fingerprint", lambda: "0123456789abcdef")
    for s in STAGES:
        assert pipeline.stage_key(job, s, options, models, job.read()) != keys[s.name], s.name

    package = tmp_path / "package"
    shutil.copytree(Path(pipeline.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    before = pipeline.tree_digest(package)
    (package / "__pycache__").mkdir(exist_ok=True)
    (package / "__pycache__" / "x.pyc").write_bytes(b"bytecode")
    assert pipeline.tree_digest(package) == before
    head = package / "data" / "emotion_head.npz"
    head.write_bytes(head.read_bytes() + b"\0")
    assert pipeline.tree_digest(package) != before
