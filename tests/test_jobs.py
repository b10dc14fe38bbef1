"""Job directories and stage bookkeeping (idempotent, atomic, keyed by options and inputs)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from moodbgm.config import Settings
from moodbgm.errors import CancelledError, InputError
from moodbgm.files import read_json
from moodbgm.jobs import JobDir, JobOptions, create_job
from moodbgm.models import Models
from moodbgm.pipeline import STAGES, overall_progress, run_stage


def test_options_validated() -> None:
    assert JobOptions().generator == "composer"
    for bad in ({"generator": "jukebox"}, {"style": "polka"}, {"seed": -1}, {"emotion": "bored"}):
        with pytest.raises(ValueError):
            JobOptions.from_dict(bad)
    o = JobOptions(style="lofi", seed=4, emotion="joy")
    assert JobOptions.from_dict(o.to_dict()) == o


def test_create_job_places_input(media_dir: Path, tmp_path: Path) -> None:
    job = create_job(tmp_path / "j", media_dir / "av.mp4", JobOptions(seed=3))
    assert job.input_path().name == "input.mp4"
    assert job.input_path().read_bytes() == (media_dir / "av.mp4").read_bytes()
    rec = job.read()
    assert rec.status == "queued" and rec.options["seed"] == 3
    with pytest.raises(InputError):
        create_job(tmp_path / "k", tmp_path / "missing.mp4", JobOptions())
    with pytest.raises(InputError, match="not a job directory"):
        JobDir(tmp_path / "nothing").read()


def test_stage_is_skipped_when_current_and_redone_when_input_changes(media_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src.mp4"
    shutil.copy(media_dir / "av.mp4", src)
    job = create_job(tmp_path / "j", src, JobOptions())
    models = Models(Settings())
    seen: list[tuple[str, float]] = []
    assert run_stage(job, "media", models, lambda s, f: seen.append((s, f))) is True
    assert seen[0] == ("media", 0.0) and seen[-1] == ("media", 1.0)
    info = read_json(job.path("media.json"))
    assert info["cuts"] == pytest.approx([2.0, 4.0], abs=0.05)
    assert job.path("audio.wav").exists()
    mtime = job.path("audio.wav").stat().st_mtime_ns
    assert run_stage(job, "media", models) is False  # up to date: nothing redone
    assert job.path("audio.wav").stat().st_mtime_ns == mtime
    job.path("audio.wav").unlink()  # a lost output is redone
    assert run_stage(job, "media", models) is True
    shutil.copy(media_dir / "video_only.mp4", src)  # a new input invalidates the stage
    os.utime(src, ns=(1, 1))
    create_job(job.root, src, JobOptions())
    assert run_stage(job, "media", models) is True
    assert read_json(job.path("media.json"))["audio"] is None
    assert not [p for p in job.root.iterdir() if ".part" in p.name]


def test_cancelled_job_does_not_run(media_dir: Path, tmp_path: Path) -> None:
    job = create_job(tmp_path / "j", media_dir / "av.mp4", JobOptions())
    job.update(status="cancelled")
    with pytest.raises(CancelledError):
        run_stage(job, "media", Models(Settings()))
    assert not job.path("media.json").exists()


def test_overall_progress_is_monotonic() -> None:
    points = [overall_progress(s.name, f) for s in STAGES for f in (0.0, 0.5, 1.0)]
    assert points == sorted(points) and points[0] == 0.0 and points[-1] == 1.0


def test_options_from_settings() -> None:
    from moodbgm.mix import MixOptions

    assert JobOptions.from_settings(Settings()) == JobOptions()  # Settings repeat no default
    s = Settings(style="lofi", seed=7, duck_db=8.0, music_level_db=-10.0, true_peak_db=-2.0)
    o = JobOptions.from_settings(s, seed=9, emotion=None)
    assert (o.style, o.seed, o.emotion) == ("lofi", 9, None)  # overrides win; None keeps the default
    mix = o.mix_options()  # the once-dead settings reach the mix
    assert isinstance(mix, MixOptions)
    assert (mix.duck_db, mix.music_level_db, mix.true_peak_db) == (8.0, -10.0, -2.0)
    assert JobOptions.from_settings(Settings(emotion_min_confidence=0.6)).min_confidence == 0.6
    with pytest.raises(InputError, match="duck_db"):  # checked once, by MixOptions, as the user's error
        JobOptions.from_settings(Settings(duck_db=99.0))
    with pytest.raises(InputError, match="true_peak_db"):
        JobOptions.from_settings(Settings(), true_peak_db=3.0)
    with pytest.raises(TypeError):
        JobOptions.from_settings(Settings(), loudness=1)


def test_record_round_trip_and_job_ids(media_dir: Path, tmp_path: Path) -> None:
    from moodbgm.jobs import JobError, JobRecord, check_job_id, is_job_id, new_job_id

    job = create_job(tmp_path / "j", media_dir / "av.mp4", JobOptions(), name="clip.mp4")
    job.update_stage("media", status="running")
    job.update(status="failed", stage="media", error=JobError("input", "media", "bad"))
    rec = job.read()
    assert JobRecord.from_dict(read_json(job.record_path)) == rec
    assert rec.name == "clip.mp4" and rec.error == JobError("input", "media", "bad")
    assert rec.stages["media"].heartbeat > 0
    assert is_job_id(new_job_id()) and not is_job_id("../etc") and not is_job_id("A" * 32)
    with pytest.raises(InputError):
        check_job_id("abc")
    with pytest.raises(ValueError):
        JobError("oops", None, "x")


def test_reads_a_record_of_the_previous_version(tmp_path: Path) -> None:
    from moodbgm.files import write_json
    from moodbgm.jobs import JobError

    job = JobDir(tmp_path / "old")
    job.root.mkdir()
    write_json(job.record_path, {
        "id": "old", "created": 1.0, "updated": 2.0, "status": "failed", "stage": "mix", "progress": 0.5,
        "options": {"seed": 2}, "error": {"kind": "input", "message": "bad"},
        "stages": {"media": {"key": "abc", "seconds": 1.5, "finished": 3.0}},
    })  # fmt: skip
    rec = job.read()
    assert rec.error == JobError("input", None, "bad")
    assert rec.stages["media"].status == "done" and rec.stages["media"].key == "abc"
