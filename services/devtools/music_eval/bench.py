"""Score samples in every style (``make bench-music``): one full run per sample, then the other styles
re-use its transcript, emotions and timeline. The music is always made afresh (generate, mix, mux and
report run again): a stage's key holds its options, not the code, so a kept ``bgm.wav`` could be an
older composer's."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

from moodbgm.generate.base import STYLES

log = logging.getLogger(__name__)
REDONE = ("bgm.wav", "bgm.mid", "mix.wav", "mix.json", "output.mp4", "timeline.png")


def run_styles(samples: Sequence[Path], out_root: Path, styles: Sequence[str] = STYLES) -> list[Path]:
    """Job directories ``out_root/<sample>-<style>``, run (or brought up to date) with the pipeline."""
    from moodbgm.config import Settings
    from moodbgm.jobs import JobOptions, create_job
    from moodbgm.models import Models
    from moodbgm.pipeline import run_job

    settings = Settings()
    models = Models(settings)
    jobs = []
    for sample in samples:
        first: Path | None = None
        for style in styles:
            root = out_root / f"{sample.stem}-{style}"
            if first is not None and not (root / "job.json").exists():
                shutil.copytree(first, root, ignore=shutil.ignore_patterns(*REDONE, ".*"))
            for name in REDONE:
                (root / name).unlink(missing_ok=True)
            options = JobOptions.from_settings(settings, style=style)
            log.info("%s: %s", root, style)
            run_job(create_job(root, sample, options), models)
            first = first or root
            jobs.append(root)
    return jobs
