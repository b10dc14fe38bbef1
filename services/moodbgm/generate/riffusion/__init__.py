"""Riffusion backend: spectrogram img2img with interpolation (diffusers + peft)."""
