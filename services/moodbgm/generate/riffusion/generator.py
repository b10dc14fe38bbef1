"""``RiffusionGenerator``: the timeline's music from Riffusion (+ LoRA), seeded by the composer.

The composer renders the whole timeline once; each clip's window of that music becomes its img2img
seed spectrogram, so tempo and harmony come from the composer and timbre from Riffusion. Each clip's
prompts are the shared caption (``moodbgm.generate.prompts``) of its emotions, the style and the
composer's tempo there, the wording a LoRA is trained on. Clips are planned by ``plan_clips``,
generated in batches (``render_clips``), decoded to audio with the spectrogram codec (Griffin-Lim on
the same device), equal-power crossfaded, resampled 44.1 -> 48 kHz and cut to the exact duration
(stereo: Riffusion is mono).

A LoRA (``lora_path``) is loaded with diffusers' ``load_lora_weights`` and, by default, fused into the
UNet's weights at ``lora_scale`` (``fuse_lora``) and its adapter layers unloaded: the UNet then costs
what the base model costs, and ``torch.compile`` sees plain modules.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy.signal import resample_poly
from tqdm import tqdm

from moodbgm import devices
from moodbgm.errors import ModelNotFoundError
from moodbgm.generate.base import GenerateOptions, MusicGenerator, Progress
from moodbgm.generate.riffusion.pipeline import ClipRequest, RiffusionPipeline
from moodbgm.generate.riffusion.planning import ClipPlan, SectionTempo, clip_prompts, plan_clips
from moodbgm.generate.spectrogram import (
    RIFFUSION_PARAMS,
    SpectrogramCodec,
    SpectrogramParams,
    image_from_mel,
    mel_from_image,
)
from moodbgm.types import SAMPLE_RATE, MusicBed, Timeline

logger = logging.getLogger(__name__)

SCHEDULERS = ("dpmsolver++", "ddim", "pndm", "euler", "lms")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
_PEAK = 0.89  # -1 dBFS
_SEED_SHARE = 0.1  # of the progress bar: the composer's seed music
_ADAPTER = "moodbgm"


def resolve_device(device: str) -> torch.device:
    """``devices.resolve_device`` as a torch device (a missing GPU is an ``InputError``)."""
    chosen = devices.resolve_device(device, "Riffusion")
    if device == "auto" and chosen == "cpu":
        logger.warning("Riffusion: no CUDA GPU, running on the CPU; expect minutes per clip at 50 steps")
    return torch.device(chosen)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected auto, {', '.join(_DTYPES)}")
    if device.type == "cpu" and dtype != "fp32":
        raise ValueError(f"dtype {dtype} is not supported on the CPU; use fp32 (or auto)")
    return _DTYPES[dtype]


def make_scheduler(name: str, config: Any) -> Any:
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerDiscreteScheduler,
        LMSDiscreteScheduler,
        PNDMScheduler,
    )

    classes = {
        "dpmsolver++": DPMSolverMultistepScheduler,
        "ddim": DDIMScheduler,
        "pndm": PNDMScheduler,
        "euler": EulerDiscreteScheduler,
        "lms": LMSDiscreteScheduler,
    }
    if name not in classes:
        raise ValueError(f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULERS)}")
    return classes[name].from_config(config)


def load_pipeline(model: str, dtype: torch.dtype) -> RiffusionPipeline:
    """Riffusion (any SD-1.x diffusers checkpoint) from a local folder or the HF cache; never downloads."""
    path = Path(model).expanduser()
    how = (
        f"On a machine with internet run `huggingface-cli download {model}` (it fills the Hugging Face "
        "cache; copy ~/.cache/huggingface here) or download it to a folder and set "
        "MOODBGM_RIFFUSION_MODEL=/path/to/folder."
    )
    looks_local = path.is_absolute() or model.startswith((".", "~")) or path.exists()
    if looks_local and not (path / "model_index.json").is_file():
        raise ModelNotFoundError(f"Riffusion model {model!r}: no diffusers model_index.json in {path}. {how}")
    try:
        return RiffusionPipeline.from_pretrained(
            str(path) if looks_local else model,
            dtype=dtype,
            local_files_only=True,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    except (OSError, ValueError) as e:
        raise ModelNotFoundError(f"Riffusion model {model!r} is not available locally ({e}). {how}") from e


@dataclass(frozen=True)
class LoraInfo:
    """The LoRA a generator was built with."""

    path: Path
    scale: float
    rank: int
    alpha: float
    fused: bool


def load_lora(pipe: RiffusionPipeline, path: Path, scale: float, fuse: bool = True) -> LoraInfo:
    """Load the LoRA weights of ``path`` (a folder with ``pytorch_lora_weights.safetensors``, or the
    file) into ``pipe`` at ``scale``; with ``fuse``, fold them into the UNet's weights and unload the
    adapter layers."""
    if not path.exists():
        raise ModelNotFoundError(
            f"LoRA weights not found: {path} (a folder with pytorch_lora_weights.safetensors)"
        )
    where = {"weight_name": path.name} if path.is_file() else {}
    try:
        pipe.load_lora_weights(str(path.parent if path.is_file() else path), adapter_name=_ADAPTER, **where)
    except (OSError, ValueError) as e:
        raise ModelNotFoundError(f"cannot load LoRA weights from {path}: {e}") from e
    config = pipe.unet.peft_config[_ADAPTER]
    info = LoraInfo(path, scale, int(config.r), float(config.lora_alpha), fuse)
    if fuse:
        pipe.fuse_lora(components=["unet"], lora_scale=scale, adapter_names=[_ADAPTER])
        pipe.unload_lora_weights()  # the fused weights stay; the adapter layers go
    else:
        pipe.set_adapters([_ADAPTER], adapter_weights=[scale])
    logger.info("Riffusion: LoRA %s (rank %d, alpha %g) %s at scale %.2f",
                path, info.rank, info.alpha, "fused" if fuse else "loaded", scale)  # fmt: skip
    return info


def width_multiple(vae_blocks: int, unet_blocks: int) -> int:
    """Image columns must be a multiple of this: the VAE's and the UNet's downsampling (SD-1.5: 64)."""
    return int(2 ** (vae_blocks - 1) * 2 ** (unet_blocks - 1))


def render_columns(options: RiffusionOptions, multiple: int) -> int:
    """Image columns of a rendered clip: a slot plus the crossfade, rounded up to ``multiple``."""
    p = options.params
    clip_s = p.seconds_for(options.clip_width)
    need = math.ceil((clip_s + options.crossfade_s) * p.sample_rate / p.hop_length - 1e-9)
    return int(math.ceil(need / multiple) * multiple)


@dataclass(frozen=True)
class Prepared:
    """A timeline's clips, ready for the diffusion (``RiffusionGenerator.prepare``)."""

    plan: tuple[ClipPlan, ...]
    seeds: tuple[Image.Image, ...]
    scales: np.ndarray  # each seed image's amplitude scale
    requests: tuple[ClipRequest, ...]

    def head(self, n: int) -> Prepared:
        """The first ``n`` clips."""
        return Prepared(self.plan[:n], self.seeds[:n], self.scales[:n], self.requests[:n])


def composer_tempos(
    composer: MusicGenerator, timeline: Timeline, duration: float, options: GenerateOptions
) -> tuple[SectionTempo, ...]:
    """The seed music's tempo per section, from a composer with ``compose`` (its plans' emotion,
    start, end and tempo); none, with a warning, for a seed generator without one."""
    compose = getattr(composer, "compose", None)
    if compose is None:
        logger.warning("Riffusion: the seed generator %r plans no tempo; prompts carry none",
                       getattr(composer, "name", type(composer).__name__))  # fmt: skip
        return ()
    return tuple(
        SectionTempo(p.emotion, p.start, p.end, p.tempo) for p in compose(timeline, duration, options).plans
    )


@dataclass(frozen=True)
class RiffusionOptions:
    """How the clips are rendered; validated once, here."""

    steps: int = 50
    batch_size: int = 8
    compile: bool = False
    scheduler: str = "dpmsolver++"
    strength: float = 0.65  # img2img denoising of the composer's seed spectrogram
    guidance: float = 7.0
    crossfade_s: float = 0.5
    params: SpectrogramParams = RIFFUSION_PARAMS
    clip_width: int = 512  # image columns of one slot (Riffusion: 512 = 5.12 s)
    lora_path: Path | None = None
    lora_scale: float = 1.0
    fuse_lora: bool = True  # fold the LoRA into the UNet weights at load (see the module doc)
    sdpa: bool = True  # attention through torch's scaled_dot_product_attention (else diffusers' math)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.clip_width < 8:
            raise ValueError("steps and batch_size must be >= 1, clip_width >= 8")
        if not 0 < self.strength <= 1 or self.guidance < 0 or self.crossfade_s < 0:
            raise ValueError("need 0 < strength <= 1, guidance >= 0, crossfade_s >= 0")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.scheduler!r}; expected one of {', '.join(SCHEDULERS)}")


class RiffusionGenerator:
    """``MusicGenerator`` backed by Riffusion img2img interpolation (see the module doc).

    Build it from a pipeline (tests, benchmarks) or with ``load`` from a local model folder or the
    HF cache. ``composer`` renders the seed music; the default ``ComposerGenerator`` when None.
    """

    name = "riffusion"

    def __init__(
        self,
        pipe: RiffusionPipeline,
        options: RiffusionOptions | None = None,
        composer: MusicGenerator | None = None,
    ) -> None:
        o = self.options = options or RiffusionOptions()
        self.composer = composer
        device = pipe.device
        pipe.scheduler = make_scheduler(o.scheduler, pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        self.lora = (
            None if o.lora_path is None else load_lora(pipe, Path(o.lora_path), o.lora_scale, o.fuse_lora)
        )
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

        attention = AttnProcessor2_0 if o.sdpa else AttnProcessor  # SDPA: flash / memory-efficient kernels
        pipe.unet.set_attn_processor(attention())
        pipe.vae.set_attn_processor(attention())
        if o.compile:
            if device.type == "cuda":
                pipe.unet.to(memory_format=torch.channels_last)
            pipe.unet = torch.compile(pipe.unet)
        self.pipe = pipe
        self.device = torch.device(device)
        self.codec = SpectrogramCodec(o.params, device=self.device)
        self._width_multiple = width_multiple(
            len(pipe.vae.config.block_out_channels), len(pipe.unet.config.block_out_channels)
        )

    @classmethod
    def load(
        cls,
        model: str = "riffusion/riffusion-model-v1",
        device: str = "auto",
        dtype: str = "auto",
        options: RiffusionOptions | None = None,
        composer: MusicGenerator | None = None,
    ) -> RiffusionGenerator:
        """The base model from a local folder or the HF cache (never downloads), on ``device``."""
        dev = resolve_device(device)
        pipe = load_pipeline(model, resolve_dtype(dtype, dev))
        return cls(pipe.to(dev), options, composer)

    @property
    def crossfade_s(self) -> float:
        return self.options.crossfade_s

    # ------------------------------------------------------------------ generation
    @property
    def clip_s(self) -> float:
        """Slot length: ``clip_width`` image columns (Riffusion: 512, 5.12 s)."""
        return self.codec.params.seconds_for(self.options.clip_width)

    def render_width(self) -> int:
        """Image columns of a rendered clip (``render_columns``; Riffusion/SD-1.5: 576)."""
        return render_columns(self.options, self._width_multiple)

    def requests(
        self, plan: Sequence[ClipPlan], options: GenerateOptions, tempos: Sequence[SectionTempo] = ()
    ) -> list[ClipRequest]:
        """The img2img request of each clip: prompts from ``clip_prompts``, the options' strength and
        guidance."""
        o = self.options
        return [
            ClipRequest(
                prompt_a=a,
                prompt_b=b,
                seed_a=c.seed_a,
                seed_b=c.seed_b,
                alpha=c.alpha,
                seed_alpha=c.seed_alpha,
                strength_a=o.strength,
                strength_b=o.strength,
                guidance_a=o.guidance,
                guidance_b=o.guidance,
            )
            for c, (a, b) in zip(plan, clip_prompts(plan, options.style, tempos), strict=True)
        ]

    def _composer(self) -> MusicGenerator:
        if self.composer is None:
            from moodbgm.generate.composer import ComposerGenerator

            logger.info("Riffusion: seeding img2img with the default composer")
            self.composer = ComposerGenerator()
        return self.composer

    def prepare(
        self, timeline: Timeline, duration: float, options: GenerateOptions, progress: Progress | None = None
    ) -> Prepared:
        """Everything before the diffusion: the clip plan, the composer's seed music as one seed image
        per clip, and the requests."""
        plan = plan_clips(timeline, duration, self.clip_s, self.crossfade_s, seed=options.seed)
        composer = self._composer()
        seed_bed = composer.generate(timeline, duration, options, progress)
        seeds, scales = self.seed_images(plan, self.codec_input(seed_bed))
        tempos = composer_tempos(composer, timeline, duration, options)
        return Prepared(tuple(plan), tuple(seeds), scales, tuple(self.requests(plan, options, tempos)))

    def render_clips(self, prepared: Prepared, seed: int = 0, progress: Progress | None = None) -> np.ndarray:
        """The clips' audio ``(clips, samples)`` at the codec's rate: batches of img2img from the seed
        images, then image -> mel -> audio (Griffin-Lim) on the generator's device."""
        p = self.codec.params
        n = len(prepared.plan)
        clips = np.zeros((n, self.render_width() * p.hop_length), dtype=np.float32)
        n_batches = math.ceil(n / self.options.batch_size)
        for bi in tqdm(range(n_batches), desc="riffusion", unit="batch", disable=n_batches < 2):
            sl = slice(bi * self.options.batch_size, (bi + 1) * self.options.batch_size)
            latents = self.pipe.encode_images(list(prepared.seeds[sl]))
            images = self.pipe.interpolate(
                prepared.requests[sl], latents, num_inference_steps=self.options.steps
            )
            batch_mels = np.stack(
                [
                    mel_from_image(img * 255.0, p, s)
                    for img, s in zip(images, prepared.scales[sl], strict=True)
                ]
            )
            clips[sl] = self.codec.audio_from_mel(batch_mels, seed=seed)
            if progress is not None:
                progress((bi + 1) / n_batches)
        return clips

    def generate(
        self,
        timeline: Timeline,
        duration: float,
        options: GenerateOptions,
        progress: Progress | None = None,
    ) -> MusicBed:
        report = progress or (lambda _f: None)
        prepared = self.prepare(timeline, duration, options, lambda f: report(f * _SEED_SHARE))
        clips = self.render_clips(
            prepared, options.seed, lambda f: report(_SEED_SHARE + (1 - _SEED_SHARE) * f)
        )
        p = self.codec.params
        bed = assemble(prepared.plan, clips, p.sample_rate, duration)
        return MusicBed(to_bed(bed, p.sample_rate, duration))

    def seed_images(
        self, plan: Sequence[ClipPlan], seed_audio: np.ndarray
    ) -> tuple[list[Image.Image], np.ndarray]:
        """Each clip's render window of the seed music (mono, codec rate) as a spectrogram image.

        Returns the images and the amplitude each was scaled by (its peak, floored at -60 dB of the
        loudest clip), which rescales the generated clip so the bed keeps the seed's dynamics.
        """
        p = self.codec.params
        n_render = self.render_width() * p.hop_length
        mels = []
        for c in plan:
            i0 = round(c.render_start * p.sample_rate)
            window = np.zeros(n_render, dtype=np.float32)
            a, b = max(i0, 0), min(i0 + n_render, seed_audio.shape[0])
            if b > a:
                window[a - i0 : b - i0] = seed_audio[a:b]
            mels.append(self.codec.mel_from_audio(window, p.sample_rate))
        peaks = np.array([float(m.max()) for m in mels])
        scales = np.maximum(peaks, max(float(peaks.max()) * 1e-3, 1e-8))
        return [image_from_mel(m, p, max_value=s) for m, s in zip(mels, scales, strict=True)], scales

    def codec_input(self, bed: MusicBed) -> np.ndarray:
        """A music bed as mono float32 at the codec's sample rate."""
        mono = bed.audio.mean(axis=1)
        sr = self.codec.params.sample_rate
        g = math.gcd(bed.sample_rate, sr)
        return resample_poly(mono, sr // g, bed.sample_rate // g).astype(np.float32)


def assemble(plan: Sequence[ClipPlan], clips: np.ndarray, sample_rate: int, duration: float) -> np.ndarray:
    """Place each clip at its render start with equal-power crossfades around slot edges (mono)."""
    n_out = math.ceil(duration * sample_rate)
    out = np.zeros(n_out, dtype=np.float64)
    for k, c in enumerate(plan):
        i0 = round(c.render_start * sample_rate)
        t = (i0 + np.arange(clips.shape[1])) / sample_rate
        gain = np.ones(clips.shape[1])
        if c.crossfade_s > 0:
            if k > 0:
                u = np.clip((t - c.render_start) / c.crossfade_s, 0.0, 1.0)
                gain *= np.sin(0.5 * np.pi * u)
            if k < len(plan) - 1:
                u = np.clip((t - (c.end - c.crossfade_s / 2)) / c.crossfade_s, 0.0, 1.0)
                gain *= np.cos(0.5 * np.pi * u)
        else:
            gain *= (t >= c.start) & (t < c.end)
        if k < len(plan) - 1:
            gain *= t < c.render_end
        a, b = max(i0, 0), min(i0 + clips.shape[1], n_out)
        if b > a:
            out[a:b] += (clips[k] * gain)[a - i0 : b - i0]
    return out.astype(np.float32)


def to_bed(mono: np.ndarray, sample_rate: int, duration: float) -> np.ndarray:
    """Mono audio -> stereo 48 kHz float32 of exactly ``round(duration * 48000)`` frames, peak -1 dBFS."""
    g = math.gcd(sample_rate, SAMPLE_RATE)
    x = resample_poly(mono.astype(np.float64), SAMPLE_RATE // g, sample_rate // g)
    n = round(duration * SAMPLE_RATE)
    x = np.pad(x[:n], (0, max(0, n - x.shape[0])))
    peak = float(np.abs(x).max()) if n else 0.0
    if peak > 0:
        x *= _PEAK / peak
    else:
        logger.warning("Riffusion: the generated bed is silent")
    return np.repeat(x.astype(np.float32)[:, None], 2, axis=1)
