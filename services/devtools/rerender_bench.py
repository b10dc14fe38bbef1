"""Time an editor re-render against the first run of a job (the lifecycle the workers run, in one process).

    python -m devtools.rerender_bench samples/demo.mp4 /tmp/bench-job

Runs every stage (``--warm``: after a run on a scratch job, so that the models are loaded as in a
long-running worker), then applies an edit the way ``PUT /jobs/{id}/timeline`` does (the first boundary
moved by 2 s, or the single section split in two, and the second section's emotion changed) and runs
again: only timeline, generate, mix, mux and report re-run. Prints the stage seconds of both runs (from
job.json) and the process CPU seconds (user+sys) of each.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time
from pathlib import Path

from moodbgm import pipeline, versions
from moodbgm.config import Settings
from moodbgm.files import read_json
from moodbgm.jobs import JobDir, JobOptions, create_job
from moodbgm.models import Models


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)  # ffmpeg
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("video", type=Path)
    ap.add_argument("job", type=Path)
    ap.add_argument(
        "--warm",
        action="store_true",
        help="load the models with a run on a scratch job first, as a long-running worker has them",
    )
    args = ap.parse_args()
    shutil.rmtree(args.job, ignore_errors=True)
    settings = Settings()
    models = Models(settings, stt_reserve_cores=pipeline.BESIDE_STT)  # as `moodbgm run` builds them
    if args.warm:
        scratch = args.job.with_name(args.job.name + ".warm")
        shutil.rmtree(scratch, ignore_errors=True)
        pipeline.run_job(create_job(scratch, args.video, JobOptions.from_settings(settings)), models)
        shutil.rmtree(scratch)
    job = create_job(args.job, args.video, JobOptions.from_settings(settings))
    cpu0, t0 = _cpu(), time.perf_counter()
    pipeline.run_job(job, models)
    cpu1, t1 = _cpu(), time.perf_counter()
    first = {k: v.seconds or 0.0 for k, v in job.read().stages.items()}
    duration = float(read_json(job.path("media.json"))["duration"])
    sections = [dict(s) for s in read_json(job.path("timeline.json"))["sections"]]
    if len(sections) == 1:
        half = duration / 2
        sections = [{**sections[0], "end": half}, {**sections[0], "start": half}]
    else:
        move = min(2.0, (sections[1]["end"] - sections[1]["start"]) - 5.0)
        sections[0]["end"] += move
        sections[1]["start"] += move
    sections[1]["emotion"] = "fear" if sections[1]["emotion"] != "fear" else "joy"
    edit = versions.validate_edit({"sections": sections}, duration, 5.0)
    versions.prepare_rerender(JobDir(args.job), edit, duration, 0)
    cpu2, t2 = _cpu(), time.perf_counter()
    pipeline.run_job(job, models)
    cpu3, t3 = _cpu(), time.perf_counter()
    again = {k: v.seconds or 0.0 for k, v in job.read().stages.items()}
    rerun = sum(again[s] for s in versions.RERUN)
    print(f"video {duration:.1f} s")
    print("first run stages:", first, f"total {sum(first.values()):.2f} s")
    print("re-render stages:", {s: again[s] for s in versions.RERUN}, f"total {rerun:.2f} s")
    print(f"ratio {rerun / sum(first.values()):.3f}")
    loaded = "already loaded" if args.warm else "loaded in the first run"
    print(f"wall: first {t1 - t0:.2f} s, re-render {t3 - t2:.2f} s (models {loaded})")
    print(f"wall ratio {(t3 - t2) / (t1 - t0):.3f}")
    print(f"cpu (user+sys, incl. ffmpeg): first {cpu1 - cpu0:.1f} s, re-render {cpu3 - cpu2:.1f} s")


if __name__ == "__main__":
    main()
