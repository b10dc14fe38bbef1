"""One device choice for every model: a GPU that was asked for and is missing is an input error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from moodbgm.devices import cuda_device_count, resolve_device
from moodbgm.errors import InputError
from moodbgm.files import wav_blocks, write_wav


def test_resolve_device() -> None:
    assert resolve_device("auto", cuda_count=0) == "cpu"
    assert resolve_device("auto", cuda_count=2) == "cuda"
    assert resolve_device("cpu", cuda_count=2) == "cpu"
    assert resolve_device("cuda:1", cuda_count=2) == "cuda:1"
    for bad in ("cuda", "cuda:0"):
        with pytest.raises(InputError, match="no CUDA GPU"):
            resolve_device(bad, "Riffusion", cuda_count=0)
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu")


@pytest.mark.skipif(cuda_device_count() > 0, reason="needs a machine without a GPU")
def test_every_model_refuses_a_missing_gpu_as_an_input_error() -> None:
    from moodbgm.emotion import build_classifier
    from moodbgm.generate.riffusion.generator import resolve_device as riffusion_device

    with pytest.raises(InputError):
        riffusion_device("cuda")  # was a ValueError (exit 1, "internal error")
    with pytest.raises(InputError):
        build_classifier("embedded", None, device="cuda")


def test_wav_blocks(tmp_path: Path) -> None:
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, (1000, 2)).astype(np.float32)
    write_wav(tmp_path / "a.wav", audio, 8000)
    blocks = list(wav_blocks(tmp_path / "a.wav", 300))
    assert [len(b) for b in blocks] == [300, 300, 300, 100]
    np.testing.assert_array_equal(np.concatenate(blocks), audio)
    mono = np.concatenate(list(wav_blocks(tmp_path / "a.wav", 300, mono=True)))
    np.testing.assert_allclose(mono, audio.mean(axis=1), atol=1e-7)
    with pytest.raises(ValueError):
        next(wav_blocks(tmp_path / "a.wav", 0))
