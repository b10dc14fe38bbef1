"""LoRA weights on disk: the final ``pytorch_lora_weights.safetensors`` and ``checkpoint-N`` folders.

Each save writes two files with the same weights:

- ``pytorch_lora_weights.safetensors``: diffusers' format (``load_lora_weights``); the peft
  ``LoraConfig`` (rank, alpha, targets) is in its safetensors metadata.
- ``pytorch_lora_weights_kohya.safetensors``: the kohya/A1111 layout (``lora_unet_*.lora_down.weight``,
  ``.lora_up.weight``) with an ``.alpha`` key per module and ``ss_network_dim``/``ss_network_alpha``
  metadata, for tools that ignore diffusers' metadata; diffusers loads it too (its kohya converter),
  to the same weights. (diffusers refuses ``.alpha`` keys inside its own format, hence two files.)

A checkpoint is what ``Accelerator.save_state`` writes (optimizer, LR scheduler, RNG states), except
that the UNet is stored as its LoRA weights only, in the same diffusers format as the final output
(the save/load hooks below), so a checkpoint folder also loads in the Riffusion backend directly.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

WEIGHT_NAME = "pytorch_lora_weights.safetensors"
KOHYA_WEIGHT_NAME = "pytorch_lora_weights_kohya.safetensors"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(output_dir: Path) -> list[Path]:
    """``checkpoint-N`` folders of ``output_dir``, oldest (smallest N) first."""
    if not Path(output_dir).is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in Path(output_dir).iterdir()
        if p.is_dir() and (m := _CHECKPOINT.match(p.name))
    ]
    return [p for _, p in sorted(found)]


def checkpoint_step(path: Path) -> int:
    m = _CHECKPOINT.match(Path(path).name)
    if m is None:
        raise ValueError(f"{path} is not a checkpoint-N folder")
    return int(m.group(1))


def resolve_resume(output_dir: Path, resume: str | None) -> Path | None:
    """``--resume_from_checkpoint``: ``latest`` (None when there is none yet) or a checkpoint path/name."""
    if not resume:
        return None
    if resume == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            logger.info("no checkpoint in %s; starting a new run", output_dir)
            return None
        return found[-1]
    path = Path(resume)
    path = path if path.is_dir() else Path(output_dir) / resume
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {resume!r} not found (looked in {output_dir})")
    checkpoint_step(path)
    return path


def prune_checkpoints(output_dir: Path, total_limit: int | None) -> list[Path]:
    """Before saving one more: remove the oldest so at most ``total_limit`` remain after the save."""
    if total_limit is None:
        return []
    found = list_checkpoints(output_dir)
    excess = len(found) - total_limit + 1
    removed = found[: max(0, excess)]
    for p in removed:
        logger.info("removing checkpoint %s (limit %d)", p, total_limit)
        shutil.rmtree(p)
    return removed


def lora_state_dict(unet: Any) -> dict[str, torch.Tensor]:
    """The UNet's LoRA weights in diffusers' key format (what ``save_lora_weights`` expects)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    return convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))


def kohya_state_dict(state: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """diffusers-format UNet LoRA weights (``save_lora_weights`` keys, with or without ``unet.``) ->
    the kohya layout with one ``.alpha`` key per module (see the module doc)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        base, sep, kind = key.removeprefix("unet.").rpartition(".lora.")
        if not sep or kind not in ("down.weight", "up.weight"):
            raise ValueError(f"unexpected LoRA key {key!r}")
        module = "lora_unet_" + base.replace(".", "_")
        out[f"{module}.lora_{kind}"] = value.contiguous()
        out[f"{module}.alpha"] = torch.tensor(float(alpha))
    if not out:
        raise ValueError("no LoRA weights to save")
    return out


def save_lora(unet: Any, directory: Path) -> Path:
    """Write both weight files (see the module doc); returns the diffusers one."""
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    config = unet.peft_config["default"]
    state = lora_state_dict(unet)
    StableDiffusionPipeline.save_lora_weights(
        str(directory), unet_lora_layers=state, safe_serialization=True,
        unet_lora_adapter_metadata=config.to_dict(),
    )  # fmt: skip
    kohya = kohya_state_dict(state, config.lora_alpha)
    metadata = {"ss_network_dim": str(config.r), "ss_network_alpha": f"{float(config.lora_alpha):g}"}
    save_file(kohya, str(Path(directory) / KOHYA_WEIGHT_NAME), metadata=metadata)
    return Path(directory) / WEIGHT_NAME


def load_lora_into_unet(unet: Any, directory: Path) -> None:
    """Set the UNet's ``default`` adapter from a folder written by ``save_lora``."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_unet_state_dict_to_peft
    from peft import set_peft_model_state_dict

    out = StableDiffusionPipeline.lora_state_dict(str(directory))
    state = out[0] if isinstance(out, tuple) else out
    unet_state = {k.removeprefix("unet."): v for k, v in state.items() if k.startswith("unet.")}
    if not unet_state:
        raise ValueError(f"{directory}: no UNet LoRA weights")
    result = set_peft_model_state_dict(
        unet, convert_unet_state_dict_to_peft(unet_state), adapter_name="default"
    )
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(
            f"{directory}: LoRA weights do not fit this UNet (unexpected keys {unexpected[:3]}...)"
        )


def register_hooks(accelerator: Any, unet: Any, upcast: bool) -> None:
    """Make ``save_state``/``load_state`` store the UNet as LoRA weights only (see the module doc)."""
    unet_type = type(accelerator.unwrap_model(unet))

    def save_hook(models: list[Any], weights: list[Any], output_dir: str) -> None:
        if not accelerator.is_main_process:
            return
        for model in models:
            if not isinstance(model, unet_type):
                raise ValueError(f"unexpected model to save: {type(model).__name__}")
            save_lora(model, Path(output_dir))
            weights.pop()  # accelerate must not save the full UNet as well

    def load_hook(models: list[Any], input_dir: str) -> None:
        while models:
            model = models.pop()
            if not isinstance(model, unet_type):
                raise ValueError(f"unexpected model to load: {type(model).__name__}")
            load_lora_into_unet(model, Path(input_dir))
            if upcast:
                from diffusers.training_utils import cast_training_params

                cast_training_params(model, dtype=torch.float32)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)
