"""The GPU benchmark script's CPU smoke test (``--tiny``)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "services" / "scripts" / "bench_gpu.py"


def test_bench_gpu_tiny_smoke(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert bench.main(["--tiny", "--repeats", "1", "--out", str(tmp_path / "gpu.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["model"] == "tiny" and [r["batch"] for r in report["results"]] == [1, 2]
    for row in report["results"]:
        assert row["clips_per_s"] > 0 and row["total_s"] >= row["decode_s"] > 0
