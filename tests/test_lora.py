"""lora: arguments, checkpoint bookkeeping, data transforms, and a minimal end-to-end run (smoke)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lora.checkpoints import (
    KOHYA_WEIGHT_NAME,
    WEIGHT_NAME,
    list_checkpoints,
    prune_checkpoints,
    resolve_resume,
)
from lora.data import Preprocess, collate, image_to_tensor
from lora.train import parse_args
from lora.validation import default_prompts
from PIL import Image

from moodbgm.generate.prompts import caption
from moodbgm.generate.spectrogram import SpectrogramParams, load_png
from moodbgm.types import EMOTIONS


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _args(*extra: str) -> list[str]:
    return ["--pretrained_model_name_or_path", "m", "--train_data_dir", "d", "--output_dir", "o", *extra]


def test_parse_args_defaults_and_validation(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_args(_args("--rank", "8"))
    assert args.alpha == 8 and args.resolution == 512 and args.mixed_precision == "no"
    assert parse_args(_args("--rank", "8", "--alpha", "16")).alpha == 16
    for bad in (["--resolution", "500"], ["--rank", "0"], ["--checkpoints_total_limit", "0"]):
        with pytest.raises(SystemExit) as e:
            parse_args(_args(*bad))
        assert e.value.code == 2
    with pytest.raises(SystemExit):
        parse_args(["--train_data_dir", "d", "--output_dir", "o"])  # base model is required
    assert "pretrained_model_name_or_path" in capsys.readouterr().err


def test_checkpoint_listing_pruning_and_resume(tmp_path: Path) -> None:
    assert resolve_resume(tmp_path, "latest") is None  # nothing yet: a fresh run
    for n in (10, 2, 30):
        (tmp_path / f"checkpoint-{n}").mkdir()
    (tmp_path / "checkpoint-x").mkdir()
    (tmp_path / "logs").mkdir()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-10", "checkpoint-30"]
    assert resolve_resume(tmp_path, "latest") == tmp_path / "checkpoint-30"
    assert resolve_resume(tmp_path, "checkpoint-10") == tmp_path / "checkpoint-10"
    assert resolve_resume(tmp_path, None) is None
    with pytest.raises(FileNotFoundError):
        resolve_resume(tmp_path, "checkpoint-7")
    removed = prune_checkpoints(tmp_path, 2)  # room for one more: keep only the newest
    assert [p.name for p in removed] == ["checkpoint-2", "checkpoint-10"]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-30"]
    assert prune_checkpoints(tmp_path, None) == []


def test_image_transform_keeps_orientation() -> None:
    pixels = np.full((512, 512, 3), 255, np.uint8)
    pixels[:256, :256] = 0  # dark top-left quadrant: high frequencies, start of the crop
    t = image_to_tensor(Image.fromarray(pixels), 64)
    assert t.shape == (3, 64, 64) and t.min() == -1.0 and t.max() == 1.0
    assert t[:, :30, :30].max() == -1.0 and t[:, 34:, 34:].min() == 1.0  # no flips

    class Tok:
        model_max_length = 8

        def __call__(self, texts: list[str], **kw: object) -> object:
            class Out:
                input_ids = torch.tensor([[len(t)] * 8 for t in texts])

            return Out()

    batch = Preprocess(Tok(), 64)({"image": [Image.fromarray(pixels)] * 2, "text": ["ab", "abc"]})
    stacked = collate([{"pixel_values": p, "input_ids": i} for p, i in zip(*batch.values(), strict=True)])
    assert stacked["pixel_values"].shape == (2, 3, 64, 64) and stacked["input_ids"][:, 0].tolist() == [2, 3]
    with pytest.raises(ValueError, match="multiple of 8"):
        Preprocess(Tok(), 60)


def test_validation_prompts_are_the_backends() -> None:
    prompts = default_prompts("lofi")
    assert len(prompts) == len(EMOTIONS)
    for e, p in zip(EMOTIONS, prompts, strict=True):
        assert p.startswith(caption(e, "lofi") + ", ") and p.endswith(" bpm")
        assert p == caption(e, "lofi", float(p.split(", ")[-1].removesuffix(" bpm")))


def test_missing_base_model_is_a_clear_error(tmp_path: Path) -> None:
    from lora.train import load_base

    from moodbgm.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match=r"model_index\.json"):
        load_base(str(tmp_path / "nowhere"))


# --------------------------------------------------------------------------- end to end (minimal smoke)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    from lora.smoke import run_smoke

    workdir = tmp_path_factory.mktemp("smoke")
    return workdir, run_smoke(workdir, steps=4, styles=("cinematic",), crops=1)


@pytest.mark.slow
def test_smoke_trains_checkpoints_resumes_and_changes_riffusion(smoke: tuple[Path, object]) -> None:
    workdir, result = smoke
    run = workdir / "run"
    assert result.dataset_images == 7  # type: ignore[attr-defined]
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-2", "checkpoint-4"]
    for ckpt in list_checkpoints(run):
        assert (ckpt / WEIGHT_NAME).is_file() and (ckpt / "optimizer.bin").is_file()
        assert (ckpt / KOHYA_WEIGHT_NAME).is_file()  # the same weights with .alpha keys
        assert not (ckpt / "model.safetensors").exists()  # the UNet is stored as LoRA weights only
    assert result.weights == run / WEIGHT_NAME and result.lora_alpha == 8.0  # type: ignore[attr-defined]
    assert result.output_change > 1e-4  # type: ignore[attr-defined]
    # validation renders: spectrogram PNG with params + audible WAV, per step that validated
    png = run / "validation" / "step-4" / "00.png"
    _, params, _ = load_png(png)
    assert params == SpectrogramParams()
    audio, sr = sf.read(run / "validation" / "step-4" / "00.wav")
    assert sr == 44_100 and audio.shape[0] == 512 * 441 and np.abs(audio).max() > 0.1
    assert list((run / "logs").rglob("events.out.tfevents.*"))  # TensorBoard


@pytest.mark.slow
def test_saved_lora_equals_trained_adapter_in_riffusion_pipeline(smoke: tuple[Path, object]) -> None:
    """The backend's ``load_lora_weights`` reproduces the adapter as trained (rank 4, alpha 8)."""
    from lora.checkpoints import load_lora_into_unet
    from lora.train import add_lora, load_base

    workdir, _ = smoke
    base = str(workdir / "base")
    trained = load_base(base).unet
    add_lora(trained, rank=4, alpha=8)
    load_lora_into_unet(trained, workdir / "run")
    pipe = load_base(base)
    plain = load_base(base).unet
    pipe.load_lora_weights(str(workdir / "run"), adapter_name="moodbgm")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 16, 16, generator=g)
    cond = torch.randn(1, 77, 32, generator=g)
    with torch.no_grad():
        a = trained(x, 500, cond).sample
        b = pipe.unet(x, 500, cond).sample
        c = plain(x, 500, cond).sample
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert (a - c).abs().max() > 1e-4
    from safetensors import safe_open

    with safe_open(str(workdir / "run" / WEIGHT_NAME), "pt") as f:
        meta = json.loads(f.metadata()["lora_adapter_metadata"])
    assert meta["unet.lora_alpha"] == 8 and meta["unet.r"] == 4


# --------------------------------------------------------------------------- GPU benchmark script


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_bench_gpu_needs_cuda_unless_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    from devtools.bench_lora_gpu import main

    assert main([]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_gpu_tiny_reports_metrics(tmp_path: Path) -> None:
    from devtools.bench_lora_gpu import main

    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "--tiny",
                "--steps",
                "2",
                "--warmup",
                "0",
                "--batch",
                "2",
                "--resolution",
                "32",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    metrics = json.loads(out.read_text())
    assert metrics["batch"] == 2 and metrics["it_per_s"] > 0 and metrics["trainable_params"] > 0
    assert np.isfinite(metrics["final_loss"])


# --------------------------------------------------------------------------- the training step


def test_training_step_trains_only_lora_and_checkpointing_keeps_gradients(tmp_path: Path) -> None:
    from diffusers import DDPMScheduler
    from lora.train import add_lora, training_loss

    from moodbgm.generate.riffusion.components import build_pipeline

    pipe = build_pipeline("tiny", tmp_path / "tok", seed=0)
    unet = pipe.unet
    trainable = add_lora(unet, rank=4, alpha=4)
    names = [n for n, p in unet.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names} <= {"to_q", "to_k", "to_v", "0"}
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    ids = pipe.tokenizer(["sad music"], max_length=77, padding="max_length", return_tensors="pt").input_ids
    batch = {"pixel_values": torch.rand(1, 3, 32, 32) * 2 - 1, "input_ids": ids}

    def grads(checkpointing: bool) -> list[torch.Tensor]:
        unet.zero_grad()
        if checkpointing:
            unet.enable_gradient_checkpointing()
        else:
            unet.disable_gradient_checkpointing()
        unet.train()
        torch.manual_seed(0)
        training_loss(unet, pipe.vae, pipe.text_encoder, scheduler, batch, torch.float32).backward()
        return [p.grad.clone() for p in trainable]  # type: ignore[union-attr]

    plain, ckpt = grads(False), grads(True)
    assert any(g.abs().sum() > 0 for g in plain)
    for a, b in zip(plain, ckpt, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert all(p.grad is None for n, p in unet.named_parameters() if not p.requires_grad)
