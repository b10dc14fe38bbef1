"""Shared fixtures: tiny media generated with the real ffmpeg, a real Redis."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small test files: good, odd and broken (made once per session)."""
    d = tmp_path_factory.mktemp("media")
    scenes = ";".join(
        (
            "color=c=red:s=160x120:r=25:d=2[a]",
            "color=c=blue:s=160x120:r=25:d=2[b]",
            "testsrc=s=160x120:r=25:d=2[c]",
        )
    )
    ffmpeg(
        "-f", "lavfi", "-i", f"{scenes};[a][b][c]concat=n=3:v=1[out0]",
        "-f", "lavfi", "-i", "sine=f=440:d=6:sample_rate=44100",
        "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
        str(d / "av.mp4"),
    )  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=160x120:r=25:d=3", "-c:v", "libx264", str(d / "video_only.mp4"))
    ffmpeg("-f", "lavfi", "-i", "sine=f=300:d=2", "-c:a", "aac", str(d / "audio_only.m4a"))
    (d / "random.mp4").write_bytes(bytes(range(256)) * 40)
    (d / "empty.mp4").write_bytes(b"")
    whole = (d / "av.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(whole[: len(whole) // 2])  # index (moov) at the end: lost
    ffmpeg("-i", str(d / "av.mp4"), "-c", "copy", "-movflags", "+faststart", str(d / "faststart.mp4"))
    fs = (d / "faststart.mp4").read_bytes()
    (d / "truncated_faststart.mp4").write_bytes(fs[: len(fs) // 2])  # index first, data cut short
    return d


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Small tensors: one torch thread is faster, and far faster on a shared, oversubscribed CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
