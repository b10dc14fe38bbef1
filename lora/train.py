"""Train a LoRA for Riffusion on a ``dataset_tools`` data set (the shape of diffusers' LoRA example).

    python -m lora.train --pretrained_model_name_or_path riffusion/riffusion-model-v1 \\
        --train_data_dir data/spectrograms --output_dir runs/lora --max_train_steps 3000 \\
        --train_batch_size 4 --mixed_precision fp16 --checkpointing_steps 500 --validation_steps 500

LoRA adapters (peft ``LoraConfig``, rank ``--rank``, alpha ``--alpha``) go on the UNet's attention
projections (to_q, to_k, to_v, to_out.0); the VAE, text encoder and UNet base weights stay frozen.
The base model comes from a local folder or the Hugging Face cache, never downloaded. The result,
``OUTPUT/pytorch_lora_weights.safetensors``, is what ``MOODBGM_LORA_PATH`` points the Riffusion
backend at.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lora.checkpoints import (
    checkpoint_step,
    prune_checkpoints,
    register_hooks,
    resolve_resume,
    save_lora,
)
from lora.data import Preprocess, collate, load_train_dataset
from lora.validation import default_prompts, log_to_trackers, render_validation

logger = logging.getLogger(__name__)

TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lora.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument(
        "--pretrained_model_name_or_path",
        required=True,
        help="diffusers SD-1.x model: local folder or a Hugging Face id already in the cache",
    )
    p.add_argument(
        "--train_data_dir", type=Path, required=True, help="output of `python -m dataset_tools build`"
    )
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--image_column", default="image")
    p.add_argument("--caption_column", default="text")
    p.add_argument("--max_train_samples", type=int, default=None)
    p.add_argument("--cache_dir", type=Path, default=None, help="datasets cache (default: OUTPUT/.cache)")
    p.add_argument("--resolution", type=int, default=512, help="square training size (spectrograms: 512)")
    p.add_argument("--train_batch_size", type=int, default=4)
    p.add_argument("--num_train_epochs", type=int, default=100)
    p.add_argument("--max_train_steps", type=int, default=None, help="overrides --num_train_epochs")
    p.add_argument("--gradient_accumulation_steps", type=int, default=1)
    p.add_argument("--gradient_checkpointing", action="store_true")
    p.add_argument("--learning_rate", type=float, default=1e-4)
    p.add_argument(
        "--scale_lr", action="store_true", help="multiply the LR by batch x accumulation x processes"
    )
    p.add_argument(
        "--lr_scheduler",
        default="constant",
        help="linear, cosine, cosine_with_restarts, polynomial, constant, constant_with_warmup",
    )
    p.add_argument("--lr_warmup_steps", type=int, default=0)
    p.add_argument("--adam_beta1", type=float, default=0.9)
    p.add_argument("--adam_beta2", type=float, default=0.999)
    p.add_argument("--adam_weight_decay", type=float, default=1e-2)
    p.add_argument("--adam_epsilon", type=float, default=1e-8)
    p.add_argument("--max_grad_norm", type=float, default=1.0)
    p.add_argument("--noise_offset", type=float, default=0.0)
    p.add_argument("--rank", type=int, default=4, help="LoRA rank")
    p.add_argument("--alpha", type=int, default=None, help="LoRA alpha; scale alpha/rank (default: the rank)")
    p.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default="no")
    p.add_argument("--allow_tf32", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataloader_num_workers", type=int, default=0)
    p.add_argument("--checkpointing_steps", type=int, default=500)
    p.add_argument("--checkpoints_total_limit", type=int, default=None)
    p.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint-N folder")
    p.add_argument("--validation_steps", type=int, default=500, help="0: only at the end")
    p.add_argument("--validation_prompts", nargs="*", default=None,
                   help="default: the backend's prompt for each emotion (cinematic style)")  # fmt: skip
    p.add_argument("--validation_inference_steps", type=int, default=25)
    p.add_argument("--validation_griffin_lim_iters", type=int, default=32, help="phase recovery iterations")
    p.add_argument("--skip_validation", action="store_true")
    p.add_argument("--report_to", choices=("tensorboard", "none"), default="tensorboard")
    p.add_argument("--logging_dir", type=Path, default=None, help="default: OUTPUT/logs")
    args = p.parse_args(input_args)
    if args.rank < 1 or args.train_batch_size < 1 or args.gradient_accumulation_steps < 1:
        p.error("--rank, --train_batch_size and --gradient_accumulation_steps must be >= 1")
    if args.checkpointing_steps < 1 or args.validation_steps < 0:
        p.error("--checkpointing_steps must be >= 1 and --validation_steps >= 0")
    if args.checkpoints_total_limit is not None and args.checkpoints_total_limit < 1:
        p.error("--checkpoints_total_limit must be >= 1")
    if args.resolution % 8:
        p.error("--resolution must be a multiple of 8")
    args.alpha = args.rank if args.alpha is None else args.alpha
    if args.alpha < 1:
        p.error("--alpha must be >= 1")
    return args


def load_base(model: str) -> Any:
    """The base pipeline (fp32), local files only; ``ModelNotFoundError`` says how to get it."""
    from moodbgm.generate.riffusion.generator import load_pipeline

    return load_pipeline(model, torch.float32)


def training_loss(
    unet: Any, vae: Any, text_encoder: Any, noise_scheduler: Any, batch: dict[str, torch.Tensor],
    weight_dtype: torch.dtype, noise_offset: float = 0.0,
) -> torch.Tensor:  # fmt: skip
    """The denoising loss of one batch (epsilon or v-prediction, as the scheduler is configured)."""
    with torch.no_grad():
        latents = vae.encode(batch["pixel_values"].to(dtype=weight_dtype)).latent_dist.sample()
        latents = latents * vae.config.scaling_factor
        encoder_hidden_states = text_encoder(batch["input_ids"], return_dict=False)[0]
    noise = torch.randn_like(latents)
    if noise_offset:
        noise += noise_offset * torch.randn((latents.shape[0], latents.shape[1], 1, 1), device=latents.device)
    timesteps = torch.randint(
        0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), device=latents.device
    )
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    if noise_scheduler.config.prediction_type == "epsilon":
        target = noise
    elif noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise ValueError(f"unknown prediction type {noise_scheduler.config.prediction_type}")
    pred = unet(noisy, timesteps, encoder_hidden_states, return_dict=False)[0]
    return F.mse_loss(pred.float(), target.float(), reduction="mean")


def add_lora(unet: Any, rank: int, alpha: int) -> list[torch.nn.Parameter]:
    """Freeze the UNet and add the ``default`` LoRA adapter; returns the trainable parameters."""
    from peft import LoraConfig

    unet.requires_grad_(False)
    config = LoraConfig(
        r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=list(TARGET_MODULES)
    )
    unet.add_adapter(config)
    return [p for p in unet.parameters() if p.requires_grad]


def main(args: argparse.Namespace) -> Path:
    """Train; returns the path of ``pytorch_lora_weights.safetensors``."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, StableDiffusionPipeline
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import cast_training_params

    from moodbgm.generate.spectrogram import SpectrogramCodec

    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir),
                                            logging_dir=str(args.logging_dir or output_dir / "logs")),
    )  # fmt: skip
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    set_seed(args.seed)
    if args.allow_tf32 and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True

    base = load_base(args.pretrained_model_name_or_path)
    tokenizer, text_encoder, vae, unet = base.tokenizer, base.text_encoder, base.vae, base.unet
    noise_scheduler = DDPMScheduler.from_config(base.scheduler.config)
    vae.requires_grad_(False)
    text_encoder.requires_grad_(False)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
        accelerator.mixed_precision, torch.float32
    )
    add_lora(unet, args.rank, args.alpha)
    for model in (unet, vae, text_encoder):
        model.to(accelerator.device, **({"dtype": weight_dtype} if weight_dtype != torch.float32 else {}))
    if args.mixed_precision == "fp16":
        cast_training_params(unet, dtype=torch.float32)  # trainable LoRA weights stay fp32
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    params = [p for p in unet.parameters() if p.requires_grad]
    lr = args.learning_rate
    if args.scale_lr:
        lr *= args.gradient_accumulation_steps * args.train_batch_size * accelerator.num_processes
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(args.adam_beta1, args.adam_beta2),
                                  weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)  # fmt: skip

    dataset, spec_params = load_train_dataset(
        args.train_data_dir, args.image_column, args.caption_column,
        args.cache_dir or output_dir / ".cache", args.max_train_samples, args.seed,
    )  # fmt: skip
    dataset = dataset.with_transform(
        Preprocess(tokenizer, args.resolution, args.image_column, args.caption_column)
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.train_batch_size,
        shuffle=True,
        collate_fn=collate,
        num_workers=args.dataloader_num_workers,
    )
    steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    max_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
    epochs = math.ceil(max_steps / steps_per_epoch)
    lr_scheduler = get_scheduler(args.lr_scheduler, optimizer=optimizer,
                                 num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
                                 num_training_steps=max_steps * accelerator.num_processes)  # fmt: skip
    unet, optimizer, loader, lr_scheduler = accelerator.prepare(unet, optimizer, loader, lr_scheduler)
    register_hooks(accelerator, unet, upcast=args.mixed_precision == "fp16")
    if accelerator.is_main_process:
        config = {
            k: (str(v) if not isinstance(v, int | float | str | bool) else v) for k, v in vars(args).items()
        }
        config.pop("validation_prompts", None)
        accelerator.init_trackers("lora", config=config)

    global_step = first_epoch = 0
    resume = resolve_resume(output_dir, args.resume_from_checkpoint)
    if resume is not None:
        accelerator.print(f"resuming from {resume}")
        accelerator.load_state(str(resume))
        global_step = checkpoint_step(resume)
        first_epoch = global_step // steps_per_epoch
    resume_batches = (global_step % steps_per_epoch) * args.gradient_accumulation_steps

    codec = None
    if not args.skip_validation:
        codec = SpectrogramCodec(
            spec_params, device=accelerator.device, griffin_lim_iters=args.validation_griffin_lim_iters
        )
    prompts = args.validation_prompts or default_prompts()

    def validate(step: int) -> None:
        if codec is None or not accelerator.is_main_process:
            return
        pipe = StableDiffusionPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=accelerator.unwrap_model(unet),
            scheduler=DPMSolverMultistepScheduler.from_config(noise_scheduler.config),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )  # fmt: skip
        pipe.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]
        paths = render_validation(pipe, prompts, codec, output_dir / "validation" / f"step-{step}",
                                  args.resolution, args.validation_inference_steps, args.seed)  # fmt: skip
        log_to_trackers(accelerator, paths, prompts, step)

    logger.info("training: %d examples, %d steps (%d epochs), batch %d x %d accumulation, rank %d alpha %g",
                len(dataset), max_steps, epochs, args.train_batch_size, args.gradient_accumulation_steps,
                args.rank, args.alpha)  # fmt: skip
    bar = tqdm(range(max_steps), initial=global_step, desc="lora", unit="step",
               disable=not accelerator.is_local_main_process)  # fmt: skip
    for epoch in range(first_epoch, epochs if global_step < max_steps else first_epoch):
        unet.train()
        train_loss = 0.0
        active = loader
        if epoch == first_epoch and resume_batches:
            active = accelerator.skip_first_batches(loader, resume_batches)
        for batch in active:
            with accelerator.accumulate(unet):
                loss = training_loss(
                    unet, vae, text_encoder, noise_scheduler, batch, weight_dtype, args.noise_offset
                )
                avg = accelerator.gather(loss.repeat(args.train_batch_size)).mean()
                train_loss += avg.item() / args.gradient_accumulation_steps
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            global_step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.4f}")
            accelerator.log({"train_loss": train_loss, "lr": lr_scheduler.get_last_lr()[0]}, step=global_step)
            train_loss = 0.0
            if global_step % args.checkpointing_steps == 0 and accelerator.is_main_process:
                prune_checkpoints(output_dir, args.checkpoints_total_limit)
                accelerator.save_state(str(output_dir / f"checkpoint-{global_step}"))
                logger.info("saved checkpoint-%d", global_step)
            if args.validation_steps and global_step % args.validation_steps == 0:
                validate(global_step)
            if global_step >= max_steps:
                break
        if global_step >= max_steps:
            break
    bar.close()

    accelerator.wait_for_everyone()
    weights = output_dir / "pytorch_lora_weights.safetensors"
    if accelerator.is_main_process:
        weights = save_lora(accelerator.unwrap_model(unet), output_dir)
        if not args.validation_steps or global_step % args.validation_steps:
            validate(global_step)
        logger.info("LoRA weights: %s", weights)
    accelerator.end_training()
    return weights


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(main(parse_args()))
