"""Riffusion-style img2img with interpolation, batched, on diffusers' Stable Diffusion components.

``RiffusionPipeline`` is a ``StableDiffusionImg2ImgPipeline`` (so ``from_pretrained``,
``load_lora_weights`` and the plain ``__call__`` all work) with one more method, ``interpolate``:
each clip of a batch lerps its text embedding between prompts A and B, slerps its initial noise
between the noise of seeds A and B, and lerps denoising strength and guidance scale, by its own
alphas. At alpha 0 (1) a clip is exactly the plain img2img generation of prompt A (B) with seed A (B)
from the same init latents.

Init images are VAE-encoded with the posterior mode (deterministic), noise is drawn on the CPU from
``torch.Generator().manual_seed(seed)`` (same numbers on every device). Clips whose strengths give
the same number of denoising steps run in one batch; deterministic schedulers only (the scheduler
step gets no per-clip generator).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import (
    StableDiffusionImg2ImgPipeline,
)
from PIL import Image


@dataclass(frozen=True)
class ClipRequest:
    """One clip: endpoints A and B and where between them it sits.

    ``alpha`` moves prompt, strength and guidance from A to B; ``seed_alpha`` moves the noise
    from seed A's to seed B's (slerp).
    """

    prompt_a: str
    prompt_b: str
    seed_a: int
    seed_b: int
    alpha: float = 0.0
    seed_alpha: float = 0.0
    strength_a: float = 0.75
    strength_b: float = 0.75
    guidance_a: float = 7.0
    guidance_b: float = 7.0

    def __post_init__(self) -> None:
        for name in ("alpha", "seed_alpha"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        for v in (self.strength_a, self.strength_b):
            if not 0.0 < v <= 1.0:
                raise ValueError(f"strength must be in (0, 1], got {v}")
        if self.seed_a < 0 or self.seed_b < 0:
            raise ValueError("seeds must be >= 0")

    @property
    def strength(self) -> float:
        return (1.0 - self.alpha) * self.strength_a + self.alpha * self.strength_b

    @property
    def guidance(self) -> float:
        return (1.0 - self.alpha) * self.guidance_a + self.alpha * self.guidance_b


def slerp(t: float, v0: torch.Tensor, v1: torch.Tensor, dot_threshold: float = 0.9995) -> torch.Tensor:
    """Spherical interpolation between two noise tensors (lerp when nearly parallel); exact at 0 and 1."""
    if t == 0.0:
        return v0.clone()
    if t == 1.0:
        return v1.clone()
    a, b = v0.double(), v1.double()
    dot = float((a * b).sum() / (a.norm() * b.norm()))
    if abs(dot) > dot_threshold:
        out = (1.0 - t) * a + t * b
    else:
        theta = math.acos(dot)
        out = (math.sin((1.0 - t) * theta) * a + math.sin(t * theta) * b) / math.sin(theta)
    return out.to(v0.dtype)


def noise_for_seed(seed: int, shape: Sequence[int]) -> torch.Tensor:
    """The initial noise of a seed: float32 on the CPU, the numbers diffusers' ``randn_tensor`` gives."""
    return torch.randn(tuple(shape), generator=torch.Generator(device="cpu").manual_seed(seed))


class RiffusionPipeline(StableDiffusionImg2ImgPipeline):
    """``StableDiffusionImg2ImgPipeline`` plus batched prompt/seed interpolation (``interpolate``)."""

    @torch.no_grad()
    def embed_prompts(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Text embeddings ``(1, tokens, dim)`` per distinct prompt."""
        device = self._execution_device
        out: dict[str, torch.Tensor] = {}
        for p in dict.fromkeys(prompts):
            out[p] = self.encode_prompt(p, device, 1, False)[0]
        return out

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image] | torch.Tensor | np.ndarray) -> torch.Tensor:
        """Init images (PIL, or pixels in [0, 1]) -> scaled latents, deterministic (posterior mode)."""
        pixels = self.image_processor.preprocess(images)
        pixels = pixels.to(device=self._execution_device, dtype=self.vae.dtype)
        latents = self.vae.encode(pixels).latent_dist.mode()
        return latents * self.vae.config.scaling_factor

    def _steps_for(self, strength: float, num_inference_steps: int) -> int:
        return min(int(num_inference_steps * strength), num_inference_steps)

    @torch.no_grad()
    def interpolate(
        self,
        requests: Sequence[ClipRequest],
        init_latents: torch.Tensor,
        num_inference_steps: int = 50,
        negative_prompt: str = "",
        eta: float = 0.0,
    ) -> np.ndarray:
        """Denoise ``init_latents`` (``(B, C, h, w)``, from ``encode_images``) per ``requests``.

        Returns float images ``(B, H, W, 3)`` in [0, 1].
        """
        if len(requests) != init_latents.shape[0]:
            raise ValueError(f"{len(requests)} requests for {init_latents.shape[0]} init latents")
        if num_inference_steps < 1:
            raise ValueError("num_inference_steps must be >= 1")
        device = self._execution_device
        dtype = self.unet.dtype
        init_latents = init_latents.to(device=device, dtype=dtype)
        embeds = self.embed_prompts([p for r in requests for p in (r.prompt_a, r.prompt_b)])
        uncond = self.encode_prompt(negative_prompt, device, 1, False)[0]
        cond = torch.cat(
            [(1.0 - r.alpha) * embeds[r.prompt_a] + r.alpha * embeds[r.prompt_b] for r in requests]
        )
        shape = (1, *init_latents.shape[1:])
        noise = torch.cat(
            [
                slerp(r.seed_alpha, noise_for_seed(r.seed_a, shape), noise_for_seed(r.seed_b, shape))
                for r in requests
            ]
        ).to(device=device, dtype=dtype)

        out = torch.empty_like(init_latents)
        groups: dict[int, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(self._steps_for(r.strength, num_inference_steps), []).append(i)
        for n_steps, idx in groups.items():
            sel = torch.tensor(idx, device=device)
            if n_steps == 0:
                out[sel] = init_latents[sel]
                continue
            guidance = torch.tensor([requests[i].guidance for i in idx], device=device, dtype=dtype)
            out[sel] = self._denoise(
                init_latents[sel], noise[sel], torch.cat([uncond.expand(len(idx), -1, -1), cond[sel]]),
                guidance.view(-1, 1, 1, 1), num_inference_steps, n_steps, eta,
            )  # fmt: skip
        images = self.vae.decode(out / self.vae.config.scaling_factor, return_dict=False)[0]
        return (images.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()

    def _denoise(
        self,
        latents: torch.Tensor,
        noise: torch.Tensor,
        embeddings: torch.Tensor,
        guidance: torch.Tensor,
        num_inference_steps: int,
        n_steps: int,
        eta: float,
    ) -> torch.Tensor:
        """img2img from ``latents``: noise to the timestep of ``n_steps`` and denoise with CFG."""
        scheduler = self.scheduler
        scheduler.set_timesteps(num_inference_steps, device=latents.device)
        t_start = num_inference_steps - n_steps
        order = getattr(scheduler, "order", 1)
        timesteps = scheduler.timesteps[t_start * order :]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(t_start * order)
        x = scheduler.add_noise(latents, noise, timesteps[:1].repeat(latents.shape[0]))
        extra = {"eta": eta} if "eta" in inspect.signature(scheduler.step).parameters else {}
        for t in self.progress_bar(timesteps):
            model_in = scheduler.scale_model_input(torch.cat([x, x]), t)
            pred = self.unet(model_in, t, encoder_hidden_states=embeddings, return_dict=False)[0]
            uncond, text = pred.chunk(2)
            x = scheduler.step(uncond + guidance * (text - uncond), t, x, **extra, return_dict=False)[0]
        return x
