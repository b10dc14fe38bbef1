"""The training data: a ``dataset_tools`` build (imagefolder + ``dataset.json``) as batches of tensors.

Spectrograms are not photographs: no random flips (a flipped image plays backwards, or upside down in
frequency) and no random crops (the image spans the mel range exactly); an image is only resized when
the training resolution differs from its size (tiny test models).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from dataset_tools.build import load_manifest
from PIL import Image

from moodbgm.generate.spectrogram import SpectrogramParams

logger = logging.getLogger(__name__)


def load_train_dataset(
    data_dir: Path,
    image_column: str = "image",
    caption_column: str = "text",
    cache_dir: Path | None = None,
    max_samples: int | None = None,
    seed: int = 0,
) -> tuple[Any, SpectrogramParams]:
    """The ``train`` split of a built data set and the spectrogram params its manifest records."""
    import datasets

    params, manifest = load_manifest(data_dir)
    if params != SpectrogramParams():
        logger.warning("data set %s uses non-default spectrogram params (Riffusion reads the defaults): %s",
                       data_dir, params)  # fmt: skip
    ds = datasets.load_dataset(
        "imagefolder", data_dir=str(data_dir), split="train", cache_dir=str(cache_dir) if cache_dir else None
    )
    for column in (image_column, caption_column):
        if column not in ds.column_names:
            raise ValueError(f"{data_dir}: no column {column!r}; columns: {', '.join(ds.column_names)}")
    if len(ds) == 0:
        raise ValueError(f"{data_dir}: the data set is empty")
    if max_samples is not None:
        ds = ds.shuffle(seed=seed).select(range(min(max_samples, len(ds))))
    logger.info("training data: %d images from %s (%d tracks)", len(ds), data_dir, manifest.get("tracks", 0))
    return ds, params


def image_to_tensor(image: Image.Image, resolution: int) -> torch.Tensor:
    """RGB image -> ``(3, resolution, resolution)`` float tensor in [-1, 1] (bicubic resize if needed)."""
    image = image.convert("RGB")
    if image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.Resampling.BICUBIC)
    pixels = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


class Preprocess:
    """``datasets`` transform: images -> ``pixel_values``, captions -> ``input_ids``."""

    def __init__(
        self, tokenizer: Any, resolution: int, image_column: str = "image", caption_column: str = "text"
    ):
        if resolution < 8 or resolution % 8:
            raise ValueError(f"resolution must be a multiple of 8, got {resolution}")
        self.tokenizer = tokenizer
        self.resolution = resolution
        self.image_column, self.caption_column = image_column, caption_column

    def tokenize(self, captions: list[str]) -> torch.Tensor:
        return self.tokenizer(
            captions, max_length=self.tokenizer.model_max_length, padding="max_length", truncation=True,
            return_tensors="pt",
        ).input_ids  # fmt: skip

    def __call__(self, examples: dict[str, list[Any]]) -> dict[str, list[Any]]:
        captions = [str(c) for c in examples[self.caption_column]]
        return {
            "pixel_values": [image_to_tensor(im, self.resolution) for im in examples[self.image_column]],
            "input_ids": list(self.tokenize(captions)),
        }


def collate(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([e["pixel_values"] for e in examples]).contiguous().float(),
        "input_ids": torch.stack([e["input_ids"] for e in examples]),
    }
