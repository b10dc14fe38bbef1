"""Atomic file output: write to a temp name beside the target, then rename.

A crash never leaves a half-written file under a final name (docs/ARCHITECTURE.md, job directory).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path in ``final``'s folder (same suffix); rename it onto ``final`` on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".part{final.suffix}", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o644)  # mkstemp makes 0600; job files are shared by the API and the workers
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return Path(path)


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_wav(path: str | os.PathLike[str], audio: np.ndarray, sample_rate: int) -> Path:
    """Float audio ``(n,)`` or ``(n, channels)`` to a 32-bit float WAV, atomically."""
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.asarray(audio, dtype=np.float32), sample_rate, subtype="FLOAT", format="WAV")
    return Path(path)


def write_silence(
    path: str | os.PathLike[str], frames: int, sample_rate: int, channels: int, block: int = 1 << 20
) -> Path:
    """A float WAV of ``frames`` zero samples, written in blocks (flat memory) and atomically."""
    with atomic_path(path) as tmp, sf.SoundFile(str(tmp), "w", sample_rate, channels, subtype="FLOAT") as f:
        for start in range(0, frames, block):
            f.write(np.zeros((min(block, frames - start), channels), dtype=np.float32))
    return Path(path)


def read_wav(path: str | os.PathLike[str], always_2d: bool = False) -> tuple[np.ndarray, int]:
    """A WAV file as float32 ``(n,)`` / ``(n, channels)`` and its sample rate."""
    audio, sr = sf.read(str(path), dtype="float32", always_2d=always_2d)
    return audio, int(sr)


def wav_blocks(path: str | os.PathLike[str], block: int, mono: bool = False) -> Iterator[np.ndarray]:
    """A WAV file in float32 blocks of ``block`` frames (the last one shorter), in flat memory:
    ``(n, channels)``, or ``(n,)`` (the mean of the channels) when ``mono``."""
    if block <= 0:
        raise ValueError(f"block must be > 0, got {block}")
    with sf.SoundFile(str(path)) as f:
        for b in f.blocks(blocksize=block, dtype="float32", always_2d=True):
            yield b.mean(axis=1) if mono else b
