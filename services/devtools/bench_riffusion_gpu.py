"""Riffusion throughput on a GPU, without downloads: SD-1.5-sized components with random weights.

Measures clips/s for several batch sizes at 50 steps x 0.75 strength (so 37 denoising steps with
classifier-free guidance), each clip a 512x512 spectrogram interpolated between two prompts and
two seeds, *including* VAE encode/decode and image -> audio (mel inversion + Griffin-Lim on the
GPU), plus peak GPU memory. Random weights cost exactly what trained ones do.

    python services/devtools/bench_riffusion_gpu.py --out bench-results/gpu.json            # CUDA machine
    python services/devtools/bench_riffusion_gpu.py --tiny --out /tmp/gpu-smoke.json        # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moodbgm.generate.riffusion.components import build_pipeline
from moodbgm.generate.riffusion.generator import make_scheduler
from moodbgm.generate.riffusion.pipeline import ClipRequest
from moodbgm.generate.spectrogram import SpectrogramCodec, SpectrogramParams, image_from_mel, mel_from_image

logger = logging.getLogger("bench_gpu")

TINY_PARAMS = SpectrogramParams(
    sample_rate=8000, step_size_ms=40, window_duration_ms=80, padded_duration_ms=160,
    num_frequencies=16, max_frequency=3500,
)  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args: argparse.Namespace) -> dict[str, Any]:
    tiny = args.tiny
    device = torch.device("cuda" if torch.cuda.is_available() and not tiny else "cpu")
    if device.type == "cpu" and not tiny:
        raise SystemExit("no CUDA GPU: run with --tiny for a CPU smoke test")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    if device.type == "cpu":
        dtype = torch.float32
    params = TINY_PARAMS if tiny else SpectrogramParams()
    width = 32 if tiny else 512
    steps = args.steps if args.steps else (2 if tiny else 50)
    batches = [int(b) for b in args.batches.split(",")] if args.batches else ([1, 2] if tiny else [1, 4, 16])

    with tempfile.TemporaryDirectory() as tok:
        pipe = build_pipeline("tiny" if tiny else "sd15", Path(tok), dtype=torch.float32)
    pipe = pipe.to(device=device, dtype=dtype)
    pipe.scheduler = make_scheduler("dpmsolver++", pipe.scheduler.config)
    from diffusers.models.attention_processor import AttnProcessor2_0

    pipe.unet.set_attn_processor(AttnProcessor2_0())
    pipe.vae.set_attn_processor(AttnProcessor2_0())
    if args.compile:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.unet = torch.compile(pipe.unet)
    codec = SpectrogramCodec(params, device=device)

    rng = np.random.default_rng(0)

    def one_batch(n: int) -> dict[str, float]:
        seeds = [image_from_mel(rng.random((params.num_frequencies, width)) ** 4, params) for _ in range(n)]
        reqs = [
            ClipRequest(
                "joyful, uplifting music",
                "sad, slow music",
                2 * i,
                2 * i + 1,
                i / max(n, 1),
                0.5,
                args.strength,
                args.strength,
            )
            for i in range(n)
        ]
        _sync(device)
        t0 = time.perf_counter()
        latents = pipe.encode_images(seeds)
        images = pipe.interpolate(reqs, latents, num_inference_steps=steps)
        _sync(device)
        t1 = time.perf_counter()
        mels = np.stack([mel_from_image(im * 255.0, params, 1.0) for im in images])
        audio = codec.audio_from_mel(mels)
        _sync(device)
        t2 = time.perf_counter()
        assert audio.shape == (n, width * params.hop_length) and np.isfinite(audio).all()
        return {"diffusion_s": t1 - t0, "decode_s": t2 - t1, "total_s": t2 - t0}

    results = []
    for n in batches:
        logger.info("batch %d: warm-up", n)
        one_batch(n)  # warm-up: kernels, cuDNN autotune, torch.compile
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        timings = [one_batch(n) for _ in range(args.repeats)]
        best = min(timings, key=lambda t: t["total_s"])
        row = {
            "batch": n,
            **{k: round(v, 4) for k, v in best.items()},
            "clips_per_s": round(n / best["total_s"], 4),
            "audio_s_per_s": round(n * params.seconds_for(width) / best["total_s"], 3),
            "peak_gpu_mem_gib": (
                round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None
            ),
        }
        logger.info("%s", row)
        results.append(row)
    import diffusers

    return {
        "model": "tiny" if tiny else "sd15 (random weights)",
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "steps": steps,
        "strength": args.strength,
        "denoising_steps": int(steps * args.strength),
        "image": [params.num_frequencies, width],
        "compile": bool(args.compile),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--tiny", action="store_true", help="tiny components on the CPU (smoke test)")
    ap.add_argument("--batches", default="", help="comma-separated batch sizes (default 1,4,16)")
    ap.add_argument("--steps", type=int, default=0, help="inference steps (default 50; tiny: 2)")
    ap.add_argument("--strength", type=float, default=0.75)
    ap.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default="fp16")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="torch.compile the UNet")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
