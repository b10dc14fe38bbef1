"""Riffusion throughput through the generator's own call path, without downloads.

Builds a ``RiffusionGenerator`` the way the worker does (the configured ``Settings``: 50 steps,
strength 0.65, DPM-Solver++, LoRA scale; clips of 512 columns rendered 576 wide with the crossfade,
SDPA) on
SD-1.5-sized components with random weights, with a LoRA on (rank 4 on to_q/to_k/to_v/to_out.0,
written by the trainer's ``save_lora`` and fused at load as in production). Random weights cost
exactly what trained ones do.

``RiffusionGenerator.prepare`` makes the seed images (the composer renders a joy -> sadness timeline
with FluidSynth, untimed), then each batch size is timed on ``RiffusionGenerator.render_clips``, the
method ``generate`` calls: VAE encode, interpolated img2img, VAE decode, image -> mel -> audio
(Griffin-Lim on the same device). One warm-up, then the median of ``--repeats`` (>= 5) runs; clips/s,
seconds of music per second (slots of 5.12 s), the time a 10-minute video's music would take, and
peak memory (GPU allocator; CPU: the process's peak RSS). One end-to-end ``generate`` of the largest
batch (composer + diffusion + assembly) is timed too.

    python services/devtools/bench_riffusion_gpu.py --out bench-results/gpu.json           # CUDA, fp16
    python services/devtools/bench_riffusion_gpu.py --dtype bf16 --compile --out ...
    python services/devtools/bench_riffusion_gpu.py --tiny --out /tmp/gpu-smoke.json       # CPU smoke test

``--tiny`` runs the same code on tiny components and small spectrograms on the CPU (2 steps) to test
the script; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from moodbgm.config import Settings
from moodbgm.generate.base import GenerateOptions
from moodbgm.generate.riffusion.components import CONFIGS, build_pipeline
from moodbgm.generate.riffusion.generator import Prepared, RiffusionGenerator, RiffusionOptions
from moodbgm.generate.spectrogram import SpectrogramParams
from moodbgm.types import Section, Timeline

logger = logging.getLogger("bench_riffusion_gpu")

TINY_PARAMS = SpectrogramParams(
    sample_rate=8000, step_size_ms=40, window_duration_ms=80, padded_duration_ms=160,
    num_frequencies=16, max_frequency=3500,
)  # fmt: skip
TINY_CLIP_WIDTH = 128  # 40 ms columns: 5.12 s, like Riffusion's 512 columns of 10 ms
MIN_REPEATS = 5
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--tiny", action="store_true", help="tiny components on the CPU (smoke test)")
    ap.add_argument("--batches", default="", help="comma-separated batch sizes (default 1,4,8,16; tiny: 1,2)")
    ap.add_argument("--steps", type=int, default=0, help="inference steps (default: configured, 50; tiny: 2)")
    ap.add_argument(
        "--strength", type=float, default=None, help="img2img strength (default: configured, 0.65)"
    )
    ap.add_argument("--dtype", choices=tuple(_DTYPES), default="fp16", help="GPU dtype (CPU: fp32)")
    ap.add_argument("--attention", choices=("sdpa", "math"), default="sdpa",
                    help="SDPA kernels (the generator's default) or diffusers' plain attention")  # fmt: skip
    ap.add_argument("--compile", action="store_true", help="torch.compile the UNet")
    ap.add_argument("--no-lora", action="store_true", help="the base model only")
    ap.add_argument(
        "--repeats", type=int, default=MIN_REPEATS, help=f"timed runs per batch (>= {MIN_REPEATS})"
    )
    args = ap.parse_args(argv)
    if args.repeats < MIN_REPEATS:
        ap.error(f"--repeats must be >= {MIN_REPEATS} (a median of fewer is noise)")
    return args


def bench_options(
    args: argparse.Namespace, batch_size: int, lora_path: Path | None, settings: Settings
) -> RiffusionOptions:
    """The options the worker builds from ``settings`` (``Models``), with the benchmark's overrides."""
    steps = args.steps or (2 if args.tiny else settings.riffusion_steps)
    strength = settings.riffusion_strength if args.strength is None else args.strength
    size = {"params": TINY_PARAMS, "clip_width": TINY_CLIP_WIDTH} if args.tiny else {}
    return RiffusionOptions(
        steps=steps, batch_size=batch_size, compile=bool(args.compile),
        scheduler=settings.riffusion_scheduler, strength=strength, sdpa=args.attention == "sdpa",
        lora_path=lora_path, lora_scale=settings.lora_scale, **size,  # type: ignore[arg-type]
    )  # fmt: skip


def write_lora(size: str, directory: Path) -> Path:
    """Random LoRA weights (rank 4, alpha 4, the trainer's targets) saved by the trainer's ``save_lora``."""
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from lora.checkpoints import save_lora
    from lora.train import add_lora

    unet = UNet2DConditionModel(**CONFIGS[size]["unet"])
    add_lora(unet, rank=4, alpha=4)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:  # peft starts B at zero: a LoRA that changes nothing
                p.normal_(0.0, 0.01)
    save_lora(unet, directory / "lora")
    return directory / "lora"


def bench_timeline(n_clips: int, clip_s: float) -> tuple[Timeline, float]:
    """``n_clips`` slots: joy, then sadness from the middle (prompt interpolation near the change)."""
    duration = n_clips * clip_s
    k = n_clips // 2
    if k == 0:
        return Timeline(duration, (Section(0.0, duration, "joy"),)), duration
    return Timeline(
        duration, (Section(0.0, k * clip_s, "joy"), Section(k * clip_s, duration, "sadness"))
    ), duration


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def build_generator(args: argparse.Namespace, batch_size: int, workdir: Path) -> RiffusionGenerator:
    from moodbgm.generate.composer import ComposerGenerator

    device = torch.device("cpu" if args.tiny else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: run with --tiny for a CPU smoke test")
    dtype = torch.float32 if device.type == "cpu" else _DTYPES[args.dtype]
    size = "tiny" if args.tiny else "sd15"
    lora = None if args.no_lora else write_lora(size, workdir)
    pipe = build_pipeline(size, workdir / "tokenizer", seed=0)  # type: ignore[arg-type]
    pipe = pipe.to(device=device, dtype=dtype)
    options = bench_options(args, batch_size, lora, Settings())
    return RiffusionGenerator(pipe, options, composer=ComposerGenerator())


def run(args: argparse.Namespace) -> dict[str, Any]:
    batches = (
        [int(b) for b in args.batches.split(",")]
        if args.batches
        else ([1, 2] if args.tiny else [1, 4, 8, 16])
    )
    with tempfile.TemporaryDirectory() as tmp:
        gen = build_generator(args, max(batches), Path(tmp))
    device = gen.device
    options = GenerateOptions(style="cinematic", seed=0)
    timeline, duration = bench_timeline(max(batches), gen.clip_s)
    prepared = gen.prepare(timeline, duration, options)
    if len(prepared.plan) != max(batches):
        raise AssertionError(f"planned {len(prepared.plan)} clips for {max(batches)}")

    def once(clips: Prepared) -> float:
        _sync(device)
        t0 = time.perf_counter()
        audio = gen.render_clips(clips, options.seed)
        _sync(device)
        elapsed = time.perf_counter() - t0
        assert audio.shape == (len(clips.plan), gen.render_width() * gen.codec.params.hop_length)
        return elapsed

    rows = []
    for n in batches:
        clips = prepared.head(n)
        logger.info("batch %d: warm-up", n)
        once(clips)  # kernels, cuDNN autotune, torch.compile
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = [once(clips) for _ in range(args.repeats)]
        median = statistics.median(times)
        clips_per_s = n / median
        row = {
            "batch": n,
            "median_s": round(median, 4),
            "min_s": round(min(times), 4),
            "max_s": round(max(times), 4),
            "clips_per_s": round(clips_per_s, 4),
            "music_s_per_s": round(clips_per_s * gen.clip_s, 3),
            "ten_minute_video_s": round(600.0 / gen.clip_s / clips_per_s, 1),
            "peak_mem_gib": round(_peak_gib(device), 3),
        }
        logger.info("%s", row)
        rows.append(row)

    _sync(device)
    t0 = time.perf_counter()
    bed = gen.generate(timeline, duration, options)
    _sync(device)
    end_to_end = time.perf_counter() - t0
    assert abs(bed.duration - duration) < 1e-3
    import diffusers

    o = gen.options
    return {
        "model": "tiny (random weights)" if args.tiny else "sd15 (random weights)",
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "dtype": str(gen.pipe.unet.dtype).removeprefix("torch."),
        "attention": args.attention,
        "compile": bool(args.compile),
        "lora": None if gen.lora is None else {**asdict(gen.lora), "path": str(gen.lora.path.name)},
        "steps": o.steps,
        "strength": o.strength,
        "scheduler": o.scheduler,
        "denoising_steps": int(o.steps * o.strength),
        "image": [o.params.num_frequencies, gen.render_width()],
        "clip_s": gen.clip_s,
        "repeats": args.repeats,
        "results": rows,
        "generate_end_to_end": {
            "clips": max(batches),
            "music_s": round(duration, 2),
            "seconds": round(end_to_end, 3),
        },
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
