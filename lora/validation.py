"""Periodic validation: render fixed prompts to spectrogram PNGs and, through the codec, to audio.

Outputs go to ``OUTPUT/validation/step-N/{i:02d}.png|.wav`` and, when TensorBoard is on, to its
image and audio panels. Images of another size than the codec's (tiny test models) are resized to
``num_frequencies`` rows first, keeping the aspect ratio.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from moodbgm.files import write_wav
from moodbgm.generate.base import STYLES
from moodbgm.generate.spectrogram import (
    DEFAULT_MAX_VALUE,
    SpectrogramCodec,
    image_from_mel,
    mel_from_image,
    save_png,
)
from moodbgm.types import EMOTIONS

logger = logging.getLogger(__name__)


def default_prompts(style: str = STYLES[0], seconds: float = 10.0) -> list[str]:
    """One prompt per emotion, worded as the Riffusion backend words a ``seconds`` section of it:
    the shared caption with the composer's tempo (``clip_prompts``, ``composer_tempos``)."""
    from moodbgm.generate.base import GenerateOptions
    from moodbgm.generate.composer import ComposerGenerator
    from moodbgm.generate.riffusion.generator import composer_tempos
    from moodbgm.generate.riffusion.planning import clip_prompts, plan_clips
    from moodbgm.types import Section, Timeline

    composer = ComposerGenerator()  # only plans (compose); renders nothing
    prompts = []
    for emotion in EMOTIONS:
        timeline = Timeline(seconds, (Section(0.0, seconds, emotion),))
        tempos = composer_tempos(composer, timeline, seconds, GenerateOptions(style=style))
        prompts.append(clip_prompts(plan_clips(timeline, seconds)[:1], style, tempos)[0][0])
    return prompts


def to_codec_image(image: Image.Image, codec: SpectrogramCodec) -> Image.Image:
    """A generated image as a spectrogram image of the codec's height, carrying its params."""
    rows = codec.params.num_frequencies
    if image.height != rows:
        width = max(1, round(image.width * rows / image.height))
        image = image.convert("RGB").resize((width, rows), Image.Resampling.BICUBIC)
    mel = mel_from_image(image, codec.params, DEFAULT_MAX_VALUE)
    return image_from_mel(mel, codec.params, max_value=DEFAULT_MAX_VALUE)


def render_validation(
    pipe: Any,
    prompts: Sequence[str],
    codec: SpectrogramCodec,
    out_dir: Path,
    resolution: int,
    steps: int,
    seed: int,
) -> list[tuple[Path, Path]]:
    """Generate one image per prompt (seeded), save PNG + WAV for each; returns the paths."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    device_type = pipe.device.type
    with torch.no_grad(), torch.autocast(device_type, enabled=device_type == "cuda"):
        images = pipe(
            list(prompts), num_inference_steps=steps, generator=generator, height=resolution, width=resolution
        ).images
    paths: list[tuple[Path, Path]] = []
    for i, image in enumerate(images):
        spec = to_codec_image(image, codec)
        png = save_png(spec, out_dir / f"{i:02d}.png")
        audio = codec.image_to_audio(spec, seed=seed)
        peak = float(np.abs(audio).max())
        if peak > 0:
            audio = audio * (0.89 / peak)
        wav = write_wav(out_dir / f"{i:02d}.wav", audio, codec.params.sample_rate)
        paths.append((png, wav))
    logger.info("validation: %d prompts rendered to %s", len(paths), out_dir)
    return paths


def log_to_trackers(
    accelerator: Any, paths: Sequence[tuple[Path, Path]], prompts: Sequence[str], step: int
) -> None:
    """Images and audio to TensorBoard (the only tracker with media panels we configure)."""
    import soundfile as sf

    for tracker in accelerator.trackers:
        if tracker.name != "tensorboard":
            continue
        images = np.stack([np.asarray(Image.open(png).convert("RGB")) for png, _ in paths])
        tracker.writer.add_images("validation", images, step, dataformats="NHWC")
        for i, ((_, wav), prompt) in enumerate(zip(paths, prompts, strict=True)):
            audio, sr = sf.read(str(wav), dtype="float32")
            tracker.writer.add_audio(
                f"validation/{i:02d}", torch.from_numpy(audio)[None], step, sample_rate=sr
            )
            tracker.writer.add_text(f"validation/{i:02d}/prompt", prompt, step)
