"""The score editor in headless Chromium (Playwright): open a finished job by its link, drag a boundary,
move one with the keyboard, change a section's emotion, re-render, and check that the new version's
timeline is the edit, the video stream is bit-exact and the previous version stays playable. Saves the
README's screenshots (docs/img/editor*.png). Real API and worker on Redis DB 14."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from devtools.local import LocalProcess, free_port, start_api, start_worker
from devtools.sample import make_sample
from helpers import redis_url
from moodbgm import media
from moodbgm.files import read_json

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
REDIS_URL = redis_url(14)
KEY = "editor-web-key-0123456789abcdef"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-component-update"]
# README screenshots are refreshed only when asked (MOODBGM_SCREENSHOTS=1): test runs leave the tree clean
IMG = Path(__file__).resolve().parents[1] / "docs" / "img"
SHOTS = IMG if os.environ.get("MOODBGM_SCREENSHOTS") else None

if not Path(CHROMIUM).exists():
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    redis.Redis.from_url(REDIS_URL).flushdb()
    d = tmp_path_factory.mktemp("edweb")
    env = {
        "MOODBGM_DATA_DIR": str(d / "jobs"),
        "MOODBGM_REDIS_URL": REDIS_URL,
        "MOODBGM_REDIS_PREFIX": "edweb:",
        "MOODBGM_STT_MODEL": "tiny.en",
        "MOODBGM_API_KEYS": f'["{KEY}"]',
    }
    port = free_port()
    procs: list[LocalProcess] = [start_worker(env, d / "worker.log")]
    try:
        procs.append(start_api(env, d / "api.log", port))
        yield f"http://127.0.0.1:{port}", d / "jobs"
    finally:
        for p in procs:
            p.stop()
        redis.Redis.from_url(REDIS_URL).flushdb()
        shutil.rmtree(d, ignore_errors=True)


def test_drag_change_emotion_rerender(server: tuple[str, Path], tmp_path: Path) -> None:
    url, data_dir = server
    clip = make_sample(tmp_path / "talk.mp4", scale=0.3, seed=3).video
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
        with clip.open("rb") as f:
            job_id = c.post("/api/v1/jobs", files={"file": ("talk.mp4", f, "video/mp4")}).json()["id"]
        t0 = time.monotonic()
        while c.get(f"/api/v1/jobs/{job_id}").json()["status"] != "done":
            assert time.monotonic() - t0 < 600
            time.sleep(0.5)
    job = data_dir / job_id
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        page.evaluate(f"localStorage.setItem('moodbgm.apiKey', '{KEY}')")
        page.goto(url + f"/#job={job_id}")
        page.reload()
        page.wait_for_selector("#editor:not([hidden])", timeout=60_000)
        if page.locator(".ed-handle").count() == 0:  # one planned section: split it first
            page.get_by_role("button", name="Split section 1").click()
        handle = page.get_by_role("slider").first
        before = float(handle.get_attribute("aria-valuenow") or "nan")
        handle.scroll_into_view_if_needed()
        box = handle.bounding_box()
        assert box is not None
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 60, y, steps=6)
        page.mouse.up()
        handle = page.get_by_role("slider").first
        dragged = float(handle.get_attribute("aria-valuenow") or "nan")
        assert dragged != before
        # the keyboard: one arrow press moves the focused boundary to the previous guide or by 1 s
        handle.focus()
        page.keyboard.press("ArrowLeft")
        handle = page.get_by_role("slider").first
        moved = float(handle.get_attribute("aria-valuenow") or "nan")
        assert moved < dragged
        page.get_by_label("Emotion of section 2").select_option("fear")
        page.get_by_label("Emotion of section 1").select_option("joy")
        shot = page.locator("#editor").screenshot()  # rendered every run; saved only when asked
        if SHOTS is not None:
            (SHOTS / "editor.png").write_bytes(shot)
        page.get_by_role("button", name="Re-render").click()
        page.wait_for_function(
            "document.getElementById('ed-status').textContent.includes('is ready')", timeout=300_000
        )
        assert "v=" in (page.locator("#player").get_attribute("src") or "")
        shot = page.locator("#editor").screenshot()
        if SHOTS is not None:
            (SHOTS / "editor-versions.png").write_bytes(shot)
        # A/B with the previous version: play version 1
        page.get_by_role("button", name="Play version 1").click()
        assert "v1/output.mp4" in (page.locator("#player").get_attribute("src") or "")
        assert not errors, errors
        browser.close()
    sections = read_json(job / "timeline.json")["sections"]
    assert sections[0]["end"] == pytest.approx(moved, abs=0.006)
    assert [s["emotion"] for s in sections[:2]] == ["joy", "fear"]
    assert media.video_packet_hash(job / "output.mp4") == media.video_packet_hash(clip)
    assert (job / "versions/v1/output.mp4").is_file()
