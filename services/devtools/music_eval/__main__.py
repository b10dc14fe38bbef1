"""``python -m devtools.music_eval JOBDIR [...] [-o report.json] [--figures DIR]``, or with ``--bench``
``--samples A.mp4 B.mp4`` to run those samples in every style first (into ``--out-root``)."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from devtools.music_eval.evaluate import MusicReport, evaluate_job
from moodbgm.files import write_json
from moodbgm.generate.base import STYLES


def summary(name: str, r: MusicReport) -> str:
    d = r.duck
    duck = (
        f"duck {d.depth_db:5.1f} dB, pumps {d.pumps}, speech spread {d.under_speech_spread_db:4.1f} dB"
        if d is not None
        else "no mix"
    )
    jumps = max((abs(j) for j in r.jumps_lu if math.isfinite(j)), default=0.0)
    failed = [k for k, ok in r.checks().items() if not ok]
    return (
        f"{name:28s} cues {r.agreement:4.0%}  max jump {jumps:4.1f} LU  "
        f"end {'tonic' if r.cadence.is_tonic else 'NOT tonic'} +{r.cadence.release_s:.1f} s  {duck}  "
        f"{'PASS' if not failed else 'FAIL: ' + ', '.join(failed)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.music_eval", description=__doc__.splitlines()[0])
    p.add_argument("jobs", nargs="*", type=Path, help="finished job directories")
    p.add_argument("--bench", action="store_true", help="run --samples in --styles first")
    p.add_argument("--samples", nargs="+", type=Path, default=[Path("samples/demo.mp4")])
    p.add_argument("--styles", default=",".join(STYLES))
    p.add_argument("--out-root", type=Path, default=Path("out/music"))
    p.add_argument("-o", "--output", type=Path, help="write the reports as JSON here")
    p.add_argument("--figures", type=Path, help="write one PNG per job into this folder")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    jobs = list(args.jobs)
    if args.bench:
        from devtools.music_eval.bench import run_styles

        jobs += run_styles(args.samples, args.out_root, [s for s in args.styles.split(",") if s])
    if not jobs:
        p.error("no job directories (give some, or --bench)")
    results = {}
    for job in jobs:
        report = evaluate_job(job)
        results[job.name] = report
        print(summary(job.name, report))
        if args.figures is not None:
            from devtools.music_eval.figure import render

            render(report, args.figures / f"music-{job.name}.png", job.name)
    passed = sum(r.passed for r in results.values())
    print(f"{passed}/{len(results)} jobs pass")
    if args.output is not None:
        write_json(
            args.output,
            {
                "passed": passed,
                "jobs": {
                    k: {"dir": str(j), **r.to_dict()} for (k, r), j in zip(results.items(), jobs, strict=True)
                },
            },
        )
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
