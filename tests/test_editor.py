"""The score editor's backend: edits validated with the section and the rule, the splice of a new take
(bit-identical outside the crossfades), and, with a real API and worker on Redis DB 12, an edit that
re-runs only timeline..report into a new version (the previous one kept, the video stream bit-exact)
and a new take that changes only its section of the music."""

from __future__ import annotations

import io
import itertools
import json
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from devtools.sample import make_sample
from helpers import api_and_worker, redis_url
from moodbgm import media
from moodbgm.client import ApiError, Client
from moodbgm.files import read_json, read_wav, write_json
from moodbgm.jobs import JobDir
from moodbgm.versions import (
    XFADE_S,
    EditError,
    SectionEdit,
    export_zip,
    splice,
    take_seed,
    takes_changed,
    validate_edit,
)

REDIS_URL = redis_url(12)
KEY = "editor-test-key-0123456789abcdef"


# ---------------------------------------------------------------- pure parts
def _edit(*spans: tuple[float, float, str]) -> dict[str, Any]:
    return {"sections": [{"start": a, "end": b, "emotion": e} for a, b, e in spans]}


def test_a_good_edit_is_closed_exactly_and_keeps_intensity_lock_take() -> None:
    data = _edit((0, 10.02, "neutral"), (10.0, 30.0, "fear"))
    data["sections"][1].update(intensity=0.3, lock=True, take=2)
    out = validate_edit(data, 30.03, 5.0)
    assert [(s.start, s.end) for s in out] == [(0.0, 10.02), (10.02, 30.03)]
    assert out[1] == SectionEdit(10.02, 30.03, "fear", 0.3, True, 2)


@pytest.mark.parametrize(
    ("data", "section", "rule"),
    [
        (_edit((0, 10, "neutral"), (10, 30, "grumpy")), 1, "emotion"),
        (_edit((0, 10, "neutral"), (11, 30, "joy")), 1, "tile"),
        (_edit((1, 10, "neutral"), (10, 30, "joy")), 0, "tile"),
        (_edit((0, 10, "neutral"), (10, 25, "joy")), 1, "tile"),
        (_edit((0, 10, "neutral"), (10, 12, "joy"), (12, 30, "neutral")), 1, "min_length"),
        ({"sections": []}, None, "shape"),
        ({"sections": [{"start": 0, "end": 30}]}, 0, "shape"),
        ({"sections": [{"start": 0, "end": "x", "emotion": "joy"}]}, 0, "number"),
        ({"sections": [{"start": 0, "end": 30, "emotion": "joy", "intensity": 2}]}, 0, "intensity"),
        ({"sections": [{"start": 0, "end": 30, "emotion": "joy", "take": -1}]}, 0, "take"),
        ({"sections": [{"start": 0, "end": 30, "emotion": "joy", "lock": "yes"}]}, 0, "lock"),
    ],
)
def test_a_bad_edit_names_the_section_and_the_rule(data: Any, section: int | None, rule: str) -> None:
    with pytest.raises(EditError) as e:
        validate_edit(data, 30.0, 5.0)
    assert (e.value.section, e.value.rule) == (section, rule)


def test_only_a_changed_take_is_a_new_take() -> None:
    old = [{"start": 0.0, "end": 10.0, "emotion": "neutral"}, {"start": 10.0, "end": 30.0, "emotion": "joy"}]
    same = validate_edit({"sections": old}, 30.0, 5.0)
    assert takes_changed(old, same) is None  # nothing changed: a plain re-render
    retake = validate_edit({"sections": [old[0], {**old[1], "take": 1}]}, 30.0, 5.0)
    assert takes_changed(old, retake) == [1]
    moved = validate_edit(_edit((0, 12, "neutral"), (12, 30, "joy")), 30.0, 5.0)
    assert takes_changed(old, [*moved[:1], SectionEdit(12, 30, "joy", take=1)]) is None
    assert take_seed(0, retake) != take_seed(0, same)
    assert take_seed(0, retake) == take_seed(
        0, validate_edit({"sections": [old[0], {**old[1], "take": 1}]}, 30, 5)
    )


def test_splice_is_bit_identical_outside_the_crossfades() -> None:
    sr = 8000
    rng = np.random.default_rng(0)
    old = rng.standard_normal((sr * 10, 2)).astype(np.float32)
    new = rng.standard_normal((sr * 10, 2)).astype(np.float32)
    out = splice(old, new, sr, [(3.0, 5.0)], 0.25)
    a, b, x = 3 * sr, 5 * sr, sr // 4
    assert np.array_equal(out[: a - x], old[: a - x]) and np.array_equal(out[b + x :], old[b + x :])
    assert np.array_equal(out[a:b], new[a:b])
    # equal power: in the fades, the gains' squares sum to 1 (checked on constant signals)
    ones = np.ones((sr * 10, 1), np.float32)
    fade = splice(ones, -ones, sr, [(3.0, 5.0)], 0.25)[a - x : a, 0]
    assert np.all(np.diff(fade) <= 0) and fade[0] > 0.9 and fade[-1] < -0.9


def test_export_holds_the_stems_timeline_and_markers(tmp_path: Path) -> None:
    job = JobDir(tmp_path)
    timeline = {
        "duration": 12.0,
        "sections": [
            {"start": 0.0, "end": 5.0, "emotion": "joy"},
            {"start": 5.0, "end": 12.0, "emotion": "fear"},
        ],
    }
    write_json(job.path("timeline.json"), timeline)
    for name in ("bgm.wav", "voice.wav", "mix.wav", "bgm.mid"):
        job.path(name).write_bytes(name.encode())
    with zipfile.ZipFile(export_zip(job)) as z:
        assert sorted(z.namelist()) == sorted(
            ["bgm.mid", "bgm.wav", "voice.wav", "mix.wav", "timeline.json", "markers.edl"]
        )
        assert z.read("bgm.wav") == b"bgm.wav"
        edl = z.read("markers.edl").decode()
    assert "* LOC: 00:00:00:00 YELLOW  section 1 joy" in edl
    assert "* LOC: 00:00:05:00 YELLOW  section 2 fear" in edl
    assert "00:00:12:00" in edl


# ---------------------------------------------------------------- API + worker
pytest_slow = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    d = tmp_path_factory.mktemp("editor")
    with api_and_worker(d, REDIS_URL, "editor:", KEY) as (url, _):
        yield url, d / "jobs"
    shutil.rmtree(d, ignore_errors=True)


def _wait_done(c: httpx.Client, job_id: str, timeout: float = 600) -> dict[str, Any]:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        job: dict[str, Any] = c.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            assert job["status"] == "done", job
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} not done in {timeout} s")


@pytest_slow
def test_edit_rerenders_a_new_version_and_a_new_take_changes_only_its_section(
    server: tuple[str, Path], tmp_path: Path
) -> None:
    url, data_dir = server
    clip = make_sample(tmp_path / "talk.mp4", scale=0.3, seed=2).video
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
        with clip.open("rb") as f:
            job_id = c.post("/api/v1/jobs", files={"file": ("talk.mp4", f, "video/mp4")}).json()["id"]
        # before the job is done there is nothing to edit
        _wait_done(c, job_id)
        job = data_dir / job_id
        first = {k: v["seconds"] for k, v in read_json(job / "job.json")["stages"].items()}
        ed = c.get(f"/api/v1/jobs/{job_id}/editor").json()
        duration = ed["duration"]
        assert ed["version"] == 1 and ed["sections"][0]["start"] == 0.0

        # a bad edit: 422 problem naming the section and the rule; nothing queued
        bad = {
            "sections": [
                {"start": 0, "end": duration / 2, "emotion": "joy"},
                {"start": duration / 2 + 1, "end": duration, "emotion": "neutral"},
            ]
        }
        r = c.put(f"/api/v1/jobs/{job_id}/timeline", json=bad)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
        assert (r.json()["section"], r.json()["rule"]) == (1, "tile")
        assert c.get(f"/api/v1/jobs/{job_id}").json()["status"] == "done"
        # another key's job is not there
        assert c.put(f"/api/v1/jobs/{'0' * 32}/timeline", json=bad).status_code == 404

        # the edit: two sections, the boundary at 40 %, the second one tense
        cut = round(duration * 0.4, 2)
        edit = {
            "sections": [
                {"start": 0, "end": cut, "emotion": "neutral", "intensity": 0.6},
                {"start": cut, "end": duration, "emotion": "fear", "lock": True},
            ]
        }
        r = c.put(f"/api/v1/jobs/{job_id}/timeline", json=edit, headers={"Idempotency-Key": "edit-2"})
        assert r.status_code == 202 and r.headers["location"] == f"/api/v1/jobs/{job_id}", r.text
        assert r.json()["version"] == 2
        with Client(url, KEY) as api:  # the typed client: the same key repeats, no third version
            assert api.edit_timeline(job_id, edit["sections"], idempotency_key="edit-2") == 2
        _wait_done(c, job_id)
        rec = read_json(job / "job.json")
        again = {k: v["seconds"] for k, v in rec["stages"].items()}
        for s in ("media", "separate", "stt", "emotion"):  # not re-run
            assert again[s] == first[s]
        tl = read_json(job / "timeline.json")
        assert [(s["start"], s["end"], s["emotion"]) for s in tl["sections"]] == [
            (0.0, cut, "neutral"),
            (cut, duration, "fear"),
        ]
        assert media.video_packet_hash(job / "output.mp4") == media.video_packet_hash(clip)
        ed = c.get(f"/api/v1/jobs/{job_id}/editor").json()
        assert ed["version"] == 2 and [v["n"] for v in ed["versions"]] == [1, 2]
        # the composer's tempo and bar plan of this version: the bar guides
        assert [b["emotion"] for b in ed["bars"]] == ["neutral", "fear"]
        assert ed["bars"][1]["start"] == pytest.approx(cut, abs=2.5)  # the change lands on a bar line
        assert all(b["tempo"] > 0 and b["bars"][0] == b["start"] for b in ed["bars"])

        # re-plan around the locked section (no body: the current sections): it stays exactly, the
        # rest is planned again from the phrases and tiles the video; nothing is rendered
        r = c.post(f"/api/v1/jobs/{job_id}/timeline/replan")
        assert r.status_code == 200, r.text
        got = r.json()["sections"]
        with Client(url, KEY) as api:
            assert api.replan(job_id) == got and api.replan(job_id, got) == got
            assert api.editor(job_id)["version"] == 2
            with pytest.raises(ApiError) as err:
                api.edit_timeline(job_id, bad["sections"])
            assert err.value.status == 422
            assert (err.value.problem["section"], err.value.problem["rule"]) == (1, "tile")
        locked = {"start": cut, "end": duration, "emotion": "fear", "intensity": 0.5, "lock": True, "take": 0}
        assert got[-1] == locked and not any(s["lock"] for s in got[:-1])
        assert got[0]["start"] == 0.0 and all(a["end"] == b["start"] for a, b in itertools.pairwise(got))
        assert got[-2]["end"] == cut and c.get(f"/api/v1/jobs/{job_id}/editor").json()["version"] == 2
        r = c.post(f"/api/v1/jobs/{job_id}/timeline/replan", json=bad)
        assert r.status_code == 422 and (r.json()["section"], r.json()["rule"]) == (1, "tile")
        v1 = ed["versions"][0]["files"]
        got = httpx.get(url + v1["v1/timeline.json"]).json()  # the signed link, no key
        assert got["sections"] != tl["sections"]
        assert httpx.get(url + v1["v1/output.mp4"]).content == (job / "versions/v1/output.mp4").read_bytes()
        with zipfile.ZipFile(io.BytesIO(httpx.get(url + ed["export"]).content)) as z:
            assert {"bgm.wav", "voice.wav", "mix.wav", "timeline.json", "markers.edl"} <= set(z.namelist())
            assert json.loads(z.read("timeline.json"))["sections"] == tl["sections"]
        rerender = sum(again[s] for s in ("timeline", "generate", "mix", "mux", "report"))
        print(f"first run {sum(first.values()):.2f} s, re-render {rerender:.2f} s ({first} / {again})")

        # a new take of section 1: the music outside it (and its crossfades) is bit-identical
        edit["sections"][1]["take"] = 1
        assert c.put(f"/api/v1/jobs/{job_id}/timeline", json=edit).status_code == 202
        _wait_done(c, job_id)
        old, sr = read_wav(job / "versions/v2/bgm.wav")
        new, sr2 = read_wav(job / "bgm.wav")
        assert sr == sr2 and old.shape == new.shape
        edge = round((cut - XFADE_S) * sr)
        assert np.array_equal(old[:edge], new[:edge])
        inside = slice(round(cut * sr), len(new))
        assert not np.array_equal(old[inside], new[inside])
        assert np.sqrt(np.mean((old[inside] - new[inside]) ** 2)) > 1e-3
        assert media.video_packet_hash(job / "output.mp4") == media.video_packet_hash(clip)
        assert read_json(job / "versions.json")["current"] == 3
