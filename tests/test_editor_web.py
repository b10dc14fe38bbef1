"""The score editor in headless Chromium (Playwright): open a batch of two variations by its link, pick
the second as the output, see the composer's bar lines drawn as guides, drag a boundary onto a bar
line, move it with the keyboard, lock a section and re-plan the others, change an emotion, re-render,
and check that the new version's timeline is the edit, the video stream is bit-exact and the previous
version stays playable. Saves the README's screenshots (docs/img/editor*.png) when
MOODBGM_SCREENSHOTS=1. Real API and worker on Redis DB 14."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools.sample import make_sample
from helpers import api_and_worker, redis_url
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
    d = tmp_path_factory.mktemp("edweb")
    with api_and_worker(d, REDIS_URL, "edweb:", KEY) as (url, _):
        yield url, d / "jobs"
    shutil.rmtree(d, ignore_errors=True)


def _drag_to(page: sync_api.Page, handle: sync_api.Locator, x_to: float) -> None:
    handle.scroll_into_view_if_needed()
    box = handle.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x_to, y, steps=8)
    page.mouse.up()


# the guides drawn in the track, the first boundary's range and position, and the track's width
GUIDES = """() => {
  const track = document.getElementById('ed-track'), h = document.querySelector('.ed-handle');
  const w = track.clientWidth, lo = +h.getAttribute('aria-valuemin'), hi = +h.getAttribute('aria-valuemax');
  const now = +h.getAttribute('aria-valuenow');
  const all = [...track.querySelectorAll('.ed-guide')].map(
    (g) => ({t: +g.dataset.t, bar: g.classList.contains('ed-guide-bar')}));
  return {all, lo, hi, now, w};
}"""


def test_variations_bars_replan_drag_emotion_rerender(server: tuple[str, Path], tmp_path: Path) -> None:
    url, data_dir = server
    clip = make_sample(tmp_path / "talk.mp4", scale=0.3, seed=3).video
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
        with clip.open("rb") as f:
            body = c.post(
                "/api/v1/jobs", files={"file": ("talk.mp4", f, "video/mp4")}, data={"variations": "2"}
            ).json()
        batch_id, (first, second) = body["batch_id"], body["jobs"]
        t0 = time.monotonic()
        while c.get(f"/api/v1/batches/{batch_id}").json()["status"] != "done":
            assert time.monotonic() - t0 < 900
            time.sleep(0.5)
        ed_data = c.get(f"/api/v1/jobs/{second}/editor").json()
    duration = ed_data["duration"]
    bar_times = sorted({b for sec in ed_data["bars"] for b in sec["bars"] if b > 1e-3})
    assert len(bar_times) >= 3
    job = data_dir / second
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        page.evaluate(f"localStorage.setItem('moodbgm.apiKey', '{KEY}')")
        page.goto(url + f"/#batch={batch_id}")
        page.reload()
        # variations side by side, each with its player; pick the second as the output
        page.wait_for_selector("#variations-section:not([hidden])", timeout=60_000)
        assert page.locator("#variation-list li video").count() == 2
        assert all(
            v.get_attribute("src") and job_id in (v.get_attribute("src") or "")
            for v, job_id in zip(page.locator("#variation-list li video").all(), (first, second), strict=True)
        )
        shot = page.locator("#variations-section").screenshot()
        if SHOTS is not None:
            (SHOTS / "editor-variations.png").write_bytes(shot)
        page.get_by_role("button", name="Use variation 2 as the output").click()
        page.wait_for_selector(f'#editor[data-job="{second}"]', timeout=60_000)
        assert second in (page.locator("#player").get_attribute("src") or "")
        chosen = page.get_by_role("button", name="Use variation 2 as the output")
        assert chosen.get_attribute("aria-pressed") == "true"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
            assert c.get(f"/api/v1/batches/{batch_id}").json()["picked"] == second

        # the composer's bar lines are drawn as guides, and the plan is described
        times = page.locator(".ed-guide-bar").evaluate_all("ns => ns.map((n) => n.dataset.t)")
        drawn = sorted(float(t) for t in times)
        assert drawn == pytest.approx(bar_times, abs=0.001)
        assert "BPM" in page.locator("#ed-plan").inner_text()
        if page.locator(".ed-handle").count() == 0:  # one planned section: split it first
            page.get_by_role("button", name="Split section 1").click()

        # drag the first boundary to 3 px past a bar line: it snaps onto the bar line
        info = page.evaluate(GUIDES)
        px = info["w"] / duration
        others = [g["t"] for g in info["all"]]
        # a bar line inside the boundary's range, more than 14 px from every other guide and from the
        # boundary (the drag ends 3 px past it: only the bar line is within the 10 px snap)
        target = next(
            (
                g["t"]
                for g in info["all"]
                if g["bar"]
                and info["lo"] + 0.05 < g["t"] < info["hi"] - 0.05
                and abs(g["t"] - info["now"]) * px > 14
                and all(abs(o - g["t"]) * px > 14 for o in others if o != g["t"])
            ),
            None,
        )
        assert target is not None, info
        track = page.locator("#ed-track").bounding_box()
        assert track is not None
        handle = page.get_by_role("slider").first
        _drag_to(page, handle, track["x"] + target * track["width"] / duration + 3)
        handle = page.get_by_role("slider").first
        dragged = float(handle.get_attribute("aria-valuenow") or "nan")
        assert dragged == pytest.approx(target, abs=0.006)  # snapped to the bar line
        # the keyboard: one arrow press moves the focused boundary to the previous guide (or by 1 s)
        handle.focus()
        page.keyboard.press("ArrowLeft")
        handle = page.get_by_role("slider").first
        moved = float(handle.get_attribute("aria-valuenow") or "nan")
        assert moved < dragged

        # lock section 1 (joy) and re-plan: it stays exactly, the rest follows the speech again
        page.get_by_label("Emotion of section 1").select_option("joy")
        page.get_by_label("Lock section 1").check()
        page.get_by_role("button", name="Re-plan unlocked sections").click()
        page.wait_for_function("document.getElementById('ed-status').textContent.includes('Re-planned')")
        assert page.get_by_label("Lock section 1").is_checked()
        assert page.get_by_label("Emotion of section 1").input_value() == "joy"
        assert float(page.get_by_role("slider").first.get_attribute("aria-valuenow") or "nan") == moved
        page.get_by_label("Emotion of section 2").select_option("fear")
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
    assert read_json(job / "timeline.override.json")["sections"][0]["lock"] is True
    assert media.video_packet_hash(job / "output.mp4") == media.video_packet_hash(clip)
    assert (job / "versions/v1/output.mp4").is_file()
    assert not (data_dir / first / "versions").exists()  # the other variation is untouched
