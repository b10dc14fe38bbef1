"""The web form in headless Chromium (Debian's ``chromium`` driven by Playwright): upload a small clip,
follow the progress, then the player, the A/B switch, the emotion chart, the transcript and downloads.
The API needs a key: the form asks for it once and keeps it. Real API (uvicorn) and worker processes on
Redis DB 13."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.sample import make_sample
from helpers import api_and_worker, redis_url

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
REDIS_URL = redis_url(13)
KEY = "web-test-key-0123456789abcdef"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

if not Path(CHROMIUM).exists():
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    d = tmp_path_factory.mktemp("web")
    with api_and_worker(d, REDIS_URL, "web:", KEY) as (url, _):
        yield url
    shutil.rmtree(d, ignore_errors=True)


def test_upload_progress_player_chart(server: str, tmp_path: Path) -> None:
    clip = make_sample(tmp_path / "talk.mp4", scale=0.05, seed=1).video
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server + "/")
        assert page.get_by_label("Music generator").is_visible()
        page.get_by_label("Style").select_option("acoustic")
        page.get_by_label("Seed").fill("4")
        page.locator("#file").set_input_files(str(clip))
        assert "talk.mp4" in page.locator("#file-name").inner_text()
        # a wrong key is refused in plain words and forgotten
        page.get_by_label("API key").fill("not-the-key")
        page.get_by_role("button", name="Score my video").click()
        page.wait_for_function("document.getElementById('error').textContent.includes('API key')")
        assert page.get_by_label("API key").input_value() == ""
        page.get_by_label("API key").fill(KEY)
        page.get_by_role("button", name="Score my video").click()
        page.wait_for_selector("#result:not([hidden])", timeout=300_000)

        assert page.locator("#upload-progress").get_attribute("value") == "100"
        assert page.locator("#status").inner_text() == "Finished."
        player = page.locator("#player")
        assert "/files/output.mp4" in (player.get_attribute("src") or "")
        page.wait_for_function("document.getElementById('player').readyState >= 1", timeout=30_000)
        assert page.evaluate("document.getElementById('player').duration") == pytest.approx(
            4.0, abs=2.0
        )  # the clip's length, read from the served file
        # the chart: sections drawn in colour, described for screen readers
        page.wait_for_function(
            "document.getElementById('timeline-chart').getAttribute('aria-label').includes(' from ')"
        )
        painted = page.evaluate(
            """() => { const c = document.getElementById('timeline-chart');
                       const d = c.getContext('2d').getImageData(0, 0, c.width, c.height - 20).data;
                       let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
                       return n / (d.length / 4); }"""
        )
        assert painted > 0.5
        assert page.locator("#transcript p").count() >= 1
        downloads = page.locator("#downloads a").all_inner_texts()
        assert any(t.startswith("output.mp4") for t in downloads) and any(
            t.startswith("bgm.mid") for t in downloads
        )
        # A/B: the original soundtrack, then back
        page.get_by_role("button", name="Play original sound (A/B)").click()
        assert "/files/input" in (player.get_attribute("src") or "")
        assert page.locator("#ab-toggle").get_attribute("aria-pressed") == "true"
        page.locator("#ab-toggle").press("Enter")
        assert "/files/output.mp4" in (player.get_attribute("src") or "")
        # every file link is signed and expires; none carries the key
        assert "sig=" in (player.get_attribute("src") or "") and KEY not in page.content()
        # the key is kept: a new visit has it already
        page.reload()
        assert page.get_by_label("API key").input_value() == KEY
        assert errors == []
        browser.close()
