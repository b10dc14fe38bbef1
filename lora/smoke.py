"""End-to-end LoRA smoke run on the CPU, no downloads (``make lora-smoke``).

1. ``dataset_tools.synth``: the composer renders a labelled corpus; ``build`` makes the data set.
2. A tiny Stable Diffusion pipeline with random weights (the Riffusion backend's builder) is saved
   as the base model.
3. ``lora.train`` runs ``steps`` steps with checkpoints every 2 steps (limit 2), then resumes from the
   latest checkpoint for 2 more steps.
4. The checkpoints are checked: the limit held, each has LoRA weights, and the resumed run continued
   from the last one.
5. The LoRA loads into ``RiffusionGenerator`` and changes its output against the base model.

The last line printed is the final checkpoint's path.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lora.checkpoints import WEIGHT_NAME, checkpoint_step, list_checkpoints

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmokeResult:
    dataset_images: int
    checkpoints: tuple[Path, ...]
    weights: Path
    lora_alpha: float
    output_change: float  # RMS of (with LoRA - without) / RMS without
    steps: int


def _generate(base: Path, lora: Path | None, duration: float) -> tuple[np.ndarray, float | None]:
    """Riffusion output for a two-emotion timeline, and the loaded LoRA's alpha (None without)."""
    from lora.train import load_base
    from moodbgm.generate.base import GenerateOptions
    from moodbgm.generate.riffusion.generator import RiffusionGenerator, RiffusionOptions
    from moodbgm.generate.spectrogram import SpectrogramParams
    from moodbgm.types import Section, Timeline

    # small images (64 mel rows, 0.64 s clips) keep the tiny model fast on a CPU
    options = RiffusionOptions(
        lora_path=lora, steps=2, batch_size=8, params=SpectrogramParams(num_frequencies=64), clip_width=64
    )
    gen = RiffusionGenerator(load_base(str(base)), options)
    gen.codec.griffin_lim_iters = 4
    half = duration / 2
    timeline = Timeline(duration, (Section(0.0, half, "joy"), Section(half, duration, "sadness")))
    audio = gen.generate(timeline, duration, GenerateOptions(style="cinematic", seed=1)).audio
    return audio, None if gen.lora is None else gen.lora.alpha


def run_smoke(
    workdir: Path,
    steps: int = 6,
    styles: tuple[str, ...] | None = None,
    crops: int = 2,
    learning_rate: float = 1e-3,
    duration: float = 1.5,
) -> SmokeResult:
    from dataset_tools.build import BuildOptions, build_dataset
    from dataset_tools.sources import read_metadata
    from dataset_tools.synth import synthesize

    from lora import train
    from moodbgm.generate.base import STYLES
    from moodbgm.generate.riffusion.components import build_pipeline

    if steps < 4 or steps % 2:
        raise ValueError("steps must be even and >= 4 (checkpoints every 2 steps)")
    workdir = Path(workdir)
    synth = synthesize(workdir / "corpus", per_emotion=1, duration=6.0, styles=styles or STYLES)
    tracks, _ = read_metadata(synth.metadata)
    built = build_dataset(tracks, workdir / "dataset", BuildOptions(crops_per_track=crops))
    base = workdir / "base"
    if not (base / "model_index.json").is_file():
        build_pipeline("tiny", workdir / "tokenizer", seed=0).save_pretrained(str(base))

    out = workdir / "run"
    common = [
        "--pretrained_model_name_or_path", str(base), "--train_data_dir", str(workdir / "dataset"),
        "--output_dir", str(out), "--resolution", "32", "--train_batch_size", "2",
        "--learning_rate", str(learning_rate), "--rank", "4", "--alpha", "8",
        "--checkpointing_steps", "2", "--checkpoints_total_limit", "2",
        "--validation_steps", "0", "--validation_inference_steps", "2", "--validation_griffin_lim_iters", "2",
        "--validation_prompts", "joyful music", "--resume_from_checkpoint", "latest",
    ]  # fmt: skip
    train.main(train.parse_args([*common, "--max_train_steps", str(steps - 2)]))
    first = [checkpoint_step(p) for p in list_checkpoints(out)]
    if first != list(range(2, steps - 1, 2))[-2:]:
        raise AssertionError(f"checkpoint limit 2 not held after {steps - 2} steps: {first}")
    weights = train.main(train.parse_args([*common, "--max_train_steps", str(steps)]))
    found = list_checkpoints(out)
    if [checkpoint_step(p) for p in found] != [steps - 2, steps]:
        raise AssertionError(f"resume did not continue: checkpoints {[p.name for p in found]}")
    if missing := [p for p in found if not (p / WEIGHT_NAME).is_file()]:
        raise AssertionError(f"checkpoints without LoRA weights: {missing}")

    plain, _ = _generate(base, None, duration)
    tuned, alpha = _generate(base, out, duration)
    if alpha is None:
        raise AssertionError("the Riffusion generator did not load the LoRA adapter")
    change = float(np.sqrt(np.mean((tuned - plain) ** 2)) / max(np.sqrt(np.mean(plain**2)), 1e-12))
    if not change > 1e-4:
        raise AssertionError(f"the LoRA does not change the output (relative change {change:.2e})")

    return SmokeResult(built.images, tuple(found), weights, alpha, change, steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora.smoke", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temporary folder")
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="lora-smoke-"))
    result = run_smoke(workdir, steps=args.steps)
    print(f"data set: {result.dataset_images} images in {workdir / 'dataset'}")
    print(f"checkpoints: {', '.join(p.name for p in result.checkpoints)} (limit 2 held, resume continued)")
    print(f"LoRA weights: {result.weights} (alpha {result.lora_alpha:g})")
    print(f"Riffusion output change with the LoRA: {result.output_change:.3%} RMS")
    print(result.checkpoints[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
