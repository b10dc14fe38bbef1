"""``python -m devtools.bench``: run every area's benchmark in its own process, write one JSON file.

Each area module in this package exposes ``run(sample: Path, workdir: Path) -> dict``. The harness
adds the wall time and the peak RSS of the child process that ran it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from moodbgm.files import write_json

AREAS = ("stt", "emotion", "timeline", "composer", "remix", "pipeline", "serve")
log = logging.getLogger("devtools.bench")


def _child(area: str, sample: Path, workdir: Path, out: Path) -> None:
    module = importlib.import_module(f"devtools.bench.{area}")
    t0 = time.perf_counter()
    result = module.run(sample, workdir)
    result["wall_s"] = round(time.perf_counter() - t0, 3)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out.write_text(json.dumps(result))


def _run_area(area: str, sample: Path, workdir: Path) -> dict[str, Any]:
    out = workdir / f"{area}.result.json"
    cmd = [sys.executable, "-m", "devtools.bench", "--child", area, "--sample", str(sample), "-o", str(out)]
    proc = subprocess.run(cmd, cwd=Path.cwd(), check=False)
    if proc.returncode != 0 or not out.exists():
        return {"error": f"exit code {proc.returncode}"}
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.bench")
    p.add_argument("--sample", type=Path, default=Path("samples/demo.mp4"))
    p.add_argument("-o", "--output", type=Path, default=Path("bench-results/bench.json"))
    p.add_argument("--only", nargs="*", choices=AREAS, help="areas to run (default: all)")
    p.add_argument("--child", choices=AREAS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.child:
        with tempfile.TemporaryDirectory(prefix=f"bench-{args.child}-") as tmp:
            _child(args.child, args.sample.resolve(), Path(tmp), args.output)
        return 0
    results: dict[str, Any] = {
        "machine": {
            "cpu_count": _cpus(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "sample": str(args.sample),
        "areas": {},
    }
    with tempfile.TemporaryDirectory(prefix="moodbgm-bench-") as tmp:
        for area in args.only or AREAS:
            log.info("benchmark: %s", area)
            results["areas"][area] = _run_area(area, args.sample.resolve(), Path(tmp))
            log.info("%s: %s", area, json.dumps(results["areas"][area]))
    write_json(args.output, results)
    print(args.output)
    return 0 if all("error" not in r for r in results["areas"].values()) else 1


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
