"""The Riffusion GPU benchmark: its ``--tiny`` CPU mode goes through the generator's own call path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devtools import bench_riffusion_gpu as bench
from moodbgm.config import Settings
from moodbgm.generate.riffusion.components import CONFIGS
from moodbgm.generate.riffusion.generator import (
    RiffusionGenerator,
    RiffusionOptions,
    render_columns,
    width_multiple,
)
from moodbgm.generate.riffusion.pipeline import RiffusionPipeline

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_full_size_options_are_the_generators() -> None:
    """Without --tiny the benchmark renders what the worker renders: 576 columns, 0.65, 50 steps, LoRA."""
    args = bench.parse_args(["--out", "x.json"])
    settings = Settings()
    options = bench.bench_options(args, 16, Path("lora"), settings)
    defaults = RiffusionOptions()
    assert options.steps == settings.riffusion_steps == 50
    assert options.strength == settings.riffusion_strength == 0.65
    assert options.params == defaults.params and options.clip_width == defaults.clip_width == 512
    assert options.scheduler == settings.riffusion_scheduler and options.lora_scale == settings.lora_scale
    assert options.sdpa and options.fuse_lora and options.crossfade_s == defaults.crossfade_s
    assert options.lora_path == Path("lora") and args.repeats >= 5 and args.dtype == "fp16"
    sd15 = CONFIGS["sd15"]
    multiple = width_multiple(len(sd15["vae"]["block_out_channels"]), len(sd15["unet"]["block_out_channels"]))
    assert render_columns(options, multiple) == 576
    with pytest.raises(SystemExit):
        bench.parse_args(["--out", "x.json", "--repeats", "2"])


@pytest.mark.slow  # about 1.5 min on a shared 2-core machine
def test_tiny_mode_runs_the_generators_call_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, list[Any]] = {"render_clips": [], "interpolate": [], "generate": []}
    gens: list[RiffusionGenerator] = []

    def spy(cls: type, name: str) -> None:
        original = getattr(cls, name)

        def wrapper(self: Any, *a: Any, **kw: Any) -> Any:
            if isinstance(self, RiffusionGenerator) and self not in gens:
                gens.append(self)
            calls[name].append((a, kw))
            return original(self, *a, **kw)

        monkeypatch.setattr(cls, name, wrapper)

    spy(RiffusionGenerator, "render_clips")
    spy(RiffusionGenerator, "generate")
    spy(RiffusionPipeline, "interpolate")
    out = tmp_path / "gpu.json"
    assert bench.main(["--tiny", "--out", str(out)]) == 0
    report = json.loads(out.read_text())

    assert len(gens) == 1
    gen = gens[0]
    # the timed unit is the generator's render_clips (warm-up + 5 repeats per batch size) and generate
    # runs once end to end; both reach the pipeline's interpolate with the generator's options
    assert len(calls["render_clips"]) == 2 * (1 + 5) + 1 and len(calls["generate"]) == 1
    assert [len(a[0].plan) for a, _ in calls["render_clips"][:6]] == [1] * 6
    assert [len(a[0].plan) for a, _ in calls["render_clips"][6:12]] == [2] * 6
    for (requests, latents), kw in calls["interpolate"]:
        assert kw["num_inference_steps"] == gen.options.steps == report["steps"] == 2
        assert all(r.strength == Settings().riffusion_strength == report["strength"] for r in requests)
        assert latents.shape[-1] * 2 == gen.render_width() == report["image"][1]  # tiny VAE: 2x down
    prompts = {r.prompt_a for (requests, _), _ in calls["interpolate"] for r in requests}
    assert any("joyful" in p and "cinematic music" in p and p.endswith(" bpm") for p in prompts)
    # the LoRA is on, fused at load, as the worker loads it
    assert gen.lora is not None and gen.lora.fused and report["lora"]["fused"] is True
    assert report["lora"]["rank"] == 4 and report["dtype"] == "float32" and report["attention"] == "sdpa"

    assert [r["batch"] for r in report["results"]] == [1, 2] and report["repeats"] == 5
    for row in report["results"]:
        assert row["min_s"] <= row["median_s"] <= row["max_s"]
        assert row["clips_per_s"] == pytest.approx(row["batch"] / row["median_s"], rel=1e-3)
        assert row["music_s_per_s"] == pytest.approx(row["clips_per_s"] * 5.12, rel=1e-3)
        assert row["peak_mem_gib"] > 0
    assert report["generate_end_to_end"]["clips"] == 2 and report["generate_end_to_end"]["seconds"] > 0
    assert np.isclose(report["clip_s"], 5.12)
