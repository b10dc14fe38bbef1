"""The one device choice for every model (STT, emotion, Riffusion): ``auto``, ``cpu``, ``cuda`` or
``cuda:N``. A GPU that was asked for and is missing is the user's input error (exit 2 / HTTP 4xx)."""

from __future__ import annotations

import logging

from moodbgm.errors import InputError

log = logging.getLogger(__name__)


def cuda_device_count() -> int:
    """CUDA GPUs this process sees (torch's view; ctranslate2's when torch is not installed)."""
    try:
        import torch
    except ImportError:
        import ctranslate2

        try:
            return int(ctranslate2.get_cuda_device_count())
        except Exception as err:  # a broken CUDA install reads as "no GPU", loudly
            log.warning("could not query CUDA devices (%s); treating as none", err)
            return 0
    return int(torch.cuda.device_count())


def resolve_device(requested: str, what: str = "the model", cuda_count: int | None = None) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without one -> ``InputError``."""
    if requested not in ("auto", "cpu", "cuda") and not (
        requested.startswith("cuda:") and requested[5:].isdigit()
    ):
        raise InputError(f"unknown device {requested!r}; expected auto, cpu or cuda")
    if requested == "cpu":
        return "cpu"
    count = cuda_device_count() if cuda_count is None else cuda_count
    if requested == "auto":
        chosen = "cuda" if count > 0 else "cpu"
        log.info("%s: device auto -> %s (%d CUDA device(s) visible)", what, chosen, count)
        return chosen
    if count == 0:
        raise InputError(f"device {requested!r} was requested for {what} but no CUDA GPU is visible")
    return requested
