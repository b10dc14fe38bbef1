"""Full ``moodbgm run``: real-time factor and peak RSS on the 60 s sample and on a 10-minute video.

Goals on the 2-core CPU: RTF <= 0.35 at 60 s; peak RSS at 10 min <= 1.5x the 60 s peak. Each run
happens in its own process so its peak RSS is its own.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from moodbgm import media


def run(sample: Path, workdir: Path) -> dict[str, Any]:
    long_video = media.loop_video(
        sample, workdir / "ten_minutes.mp4", times=max(1, round(600 / _dur(sample)))
    )
    out: dict[str, Any] = {}
    for label, video in (("sample", sample), ("ten_minutes", long_video)):
        result = workdir / f"{label}.json"
        cmd = [sys.executable, "-m", "devtools.bench.pipeline", str(video), str(workdir / label), str(result)]
        subprocess.run(cmd, check=True)
        out[label] = json.loads(result.read_text())
    out["rss_ratio_10min_vs_sample"] = round(
        out["ten_minutes"]["peak_rss_mb"] / out["sample"]["peak_rss_mb"], 3
    )
    out["goals"] = {
        "rtf_sample<=0.35": out["sample"]["rtf"] <= 0.35,
        "rss_ratio<=1.5": out["rss_ratio_10min_vs_sample"] <= 1.5,
    }
    return out


def _dur(video: Path) -> float:
    return media.probe(video).duration


def _one(video: Path, outdir: Path, result: Path) -> None:
    from moodbgm.files import read_json
    from moodbgm.jobs import JobOptions, create_job
    from moodbgm.models import Models
    from moodbgm.pipeline import run_job

    job = create_job(outdir, video, JobOptions())
    t0 = time.perf_counter()
    run_job(job, Models())
    wall = time.perf_counter() - t0
    duration = _dur(video)
    stages = {k: v["seconds"] for k, v in read_json(job.record_path)["stages"].items()}
    result.write_text(
        json.dumps(
            {
                "media_s": round(duration, 2),
                "wall_s": round(wall, 2),
                "rtf": round(wall / duration, 4),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "stages_s": stages,
            }
        )
    )


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _one(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
