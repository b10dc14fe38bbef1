"""LoRA training throughput on a GPU without downloads: SD-1.5-sized components with random weights.

Runs the training step of ``lora.train`` (same ``training_loss``, same Accelerator set-up, LoRA on
to_q/to_k/to_v/to_out.0) on random 512x512 spectrogram-sized batches and reports steps/s, samples/s
and peak GPU memory. Random weights cost exactly what trained ones do.

    python -m devtools.bench_lora_gpu                                  # CUDA: batch 4, 512x512, fp16
    python -m devtools.bench_lora_gpu --gradient-checkpointing --out bench-results/lora-gpu.json
    python -m devtools.bench_lora_gpu --tiny --steps 2 --resolution 32 # CPU smoke test of the script
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

import torch
from lora.train import add_lora, training_loss
from lora.validation import default_prompts

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m devtools.bench_lora_gpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--precision", choices=("fp16", "bf16", "no"), default="fp16")
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--tiny", action="store_true", help="tiny model (CPU allowed): tests the script itself")
    p.add_argument("--out", type=Path, default=None, help="also write the metrics as JSON")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from accelerate import Accelerator
    from diffusers import DDPMScheduler

    from moodbgm.generate.riffusion.components import build_pipeline

    precision = args.precision if torch.cuda.is_available() else "no"
    accelerator = Accelerator(mixed_precision=precision)
    with tempfile.TemporaryDirectory() as tmp:
        pipe = build_pipeline("tiny" if args.tiny else "sd15", Path(tmp) / "tokenizer", seed=0)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    vae.requires_grad_(False)
    text_encoder.requires_grad_(False)
    params = add_lora(unet, args.rank, args.rank)
    for model in (unet, vae, text_encoder):
        model.to(accelerator.device, dtype=weight_dtype)
    if precision == "fp16":
        from diffusers.training_utils import cast_training_params

        cast_training_params(unet, dtype=torch.float32)
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    prompts = (default_prompts() * args.batch)[: args.batch]
    ids = tokenizer(prompts, max_length=tokenizer.model_max_length, padding="max_length", truncation=True,
                    return_tensors="pt").input_ids.to(accelerator.device)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    pixels = (torch.rand(args.batch, 3, args.resolution, args.resolution, generator=g) * 2 - 1).to(
        accelerator.device
    )
    batch = {"pixel_values": pixels, "input_ids": ids}

    def step() -> float:
        loss = training_loss(unet, vae, text_encoder, scheduler, batch, weight_dtype)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        return float(loss.detach())

    cuda = accelerator.device.type == "cuda"
    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    losses = [step() for _ in range(args.steps)]
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {
        "model": "tiny" if args.tiny else "sd15",
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "precision": precision,
        "batch": args.batch,
        "resolution": args.resolution,
        "rank": args.rank,
        "gradient_checkpointing": args.gradient_checkpointing,
        "trainable_params": sum(p.numel() for p in params),
        "steps": args.steps,
        "it_per_s": args.steps / seconds,
        "samples_per_s": args.steps * args.batch / seconds,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "final_loss": losses[-1] if losses else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.batch < 1 or args.steps < 1 or args.warmup < 0 or args.resolution % 8:
        print(
            "error: need --batch >= 1, --steps >= 1, --warmup >= 0, --resolution a multiple of 8",
            file=sys.stderr,
        )
        return 2
    if not args.tiny and not torch.cuda.is_available():
        print(
            "error: no CUDA GPU: run on a GPU machine, or pass --tiny for a CPU check of the script",
            file=sys.stderr,
        )
        return 2
    metrics = run(args)
    text = json.dumps(metrics, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
