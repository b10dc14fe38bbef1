"""The command line: exit codes and messages (DESIGN.md), through the installed entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from moodbgm import __version__


def moodbgm(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moodbgm.cli", *args], capture_output=True, text=True, input=stdin, timeout=600
    )


def test_version() -> None:
    r = moodbgm("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"moodbgm {__version__}"


def test_usage_error_is_exit_2() -> None:
    r = moodbgm("run")
    assert r.returncode == 2 and "required" in r.stderr
    r = moodbgm("frobnicate")
    assert r.returncode == 2


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("random.mp4", "not a media file"),
        ("empty.mp4", "empty file"),
        ("truncated.mp4", "truncated"),
        ("audio_only.m4a", "no video stream"),
    ],
)
def test_run_rejects_bad_input(media_dir: Path, tmp_path: Path, name: str, words: str) -> None:
    out = tmp_path / "job"
    r = moodbgm("-q", "run", str(media_dir / name), "-o", str(out))
    assert r.returncode == 2, r.stderr
    assert words in r.stderr and name in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists(), "bad input makes no job directory"


def test_run_missing_file(tmp_path: Path) -> None:
    r = moodbgm("run", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "no such file" in r.stderr


def test_run_rejects_bad_options(media_dir: Path, tmp_path: Path) -> None:
    r = moodbgm("run", str(media_dir / "av.mp4"), "-o", str(tmp_path / "o"), "--style", "polka")
    assert r.returncode == 2 and "unknown style 'polka'" in r.stderr
    r = moodbgm("run", str(media_dir / "av.mp4"), "-o", str(tmp_path / "o"), "--seed", "-3")
    assert r.returncode == 2 and "seed" in r.stderr


@pytest.mark.parametrize("name", ["random.mp4", "truncated_faststart.mp4"])
def test_transcribe_rejects_bad_input(media_dir: Path, name: str) -> None:
    r = moodbgm("transcribe", str(media_dir / name))
    assert r.returncode == 2, r.stderr
    assert name in r.stderr and "Traceback" not in r.stderr


def test_timeline_needs_a_job_directory(tmp_path: Path) -> None:
    r = moodbgm("timeline", str(tmp_path))
    assert r.returncode == 2 and "not a job directory" in r.stderr


def test_missing_riffusion_weights_fail_fast(media_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "job"
    r = moodbgm("-q", "run", str(media_dir / "av.mp4"), "-o", str(out), "--generator", "riffusion")
    assert r.returncode == 2, r.stderr
    assert "riffusion/riffusion-model-v1" in r.stderr and "MOODBGM_RIFFUSION_MODEL" in r.stderr
    assert not out.exists(), "the error comes before any work"


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from devtools.sample import make_sample

    return make_sample(tmp_path_factory.mktemp("spoken") / "clip.mp4", scale=0.15).video


@pytest.mark.slow
def test_transcribe_prints_timed_phrases(spoken: Path, tmp_path: Path) -> None:
    import json
    import re

    r = moodbgm("-q", "transcribe", str(spoken), "--stt-model", "tiny.en")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) >= 2
    pattern = re.compile(r"^\[(\d+\.\d\d) - (\d+\.\d\d)\] \S.*$")
    times = [tuple(map(float, pattern.match(line).groups())) for line in lines]  # type: ignore[union-attr]
    assert all(a < b for a, b in times) and times == sorted(times)
    assert "morning" in r.stdout.lower()
    out = tmp_path / "t.json"
    r = moodbgm("-q", "transcribe", str(spoken), "--stt-model", "tiny.en", "--json", "-o", str(out))
    assert r.returncode == 0 and r.stdout.strip() == str(out)
    data = json.loads(out.read_text())
    assert data["language"] == "en" and data["phrases"][0]["words"]


def test_classify_reads_lines_and_writes_json_lines() -> None:
    import json

    r = moodbgm("classify", stdin="We won the championship, I am so happy!\n\nI miss her so much.\n")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["label"] for row in rows] == ["joy", "sadness"]  # the blank line is skipped
    for row in rows:
        assert set(row) == {"label", "confidence", "scores"}
        assert abs(sum(row["scores"].values()) - 1) < 1e-6 and row["confidence"] == max(
            row["scores"].values()
        )
