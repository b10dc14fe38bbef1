"""The only module that runs ffmpeg/ffprobe (through ffmpeg-python: list-form arguments, no shell).

Every failure raises a ``MediaError`` subclass whose message says in plain words what is wrong and
carries ffmpeg's stderr. A video without an audio stream is valid input (there is simply no speech).
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import ffmpeg
import numpy as np

from moodbgm.errors import (
    EmptyMediaError,
    InputError,
    MediaError,
    NotMediaError,
    NoVideoStreamError,
    TruncatedMediaError,
)
from moodbgm.files import atomic_path, write_silence
from moodbgm.types import SAMPLE_RATE

log = logging.getLogger(__name__)

# stderr fragments -> (error class, plain words)
_DAMAGE = ("partial file", "truncat", "error while decoding", "corrupt", "invalid nal", "moov atom not found")
_NOT_MEDIA = ("invalid data found when processing input", "could not find codec parameters")


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    width: int
    height: int
    fps: float


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class MediaInfo:
    path: str
    duration: float
    format_name: str
    size: int
    video: VideoInfo | None
    audio: AudioInfo | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "duration": self.duration,
            "format_name": self.format_name,
            "size": self.size,
            "video": None if self.video is None else vars(self.video).copy(),
            "audio": None if self.audio is None else vars(self.audio).copy(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MediaInfo:
        return cls(
            path=d["path"],
            duration=float(d["duration"]),
            format_name=d["format_name"],
            size=int(d["size"]),
            video=VideoInfo(**d["video"]) if d.get("video") else None,
            audio=AudioInfo(**d["audio"]) if d.get("audio") else None,
        )


def _stderr(err: ffmpeg.Error) -> str:
    return (err.stderr or b"").decode("utf-8", "replace")


def _classify(path: str, stderr: str, action: str) -> MediaError:
    """Name the problem of a file ffprobe/ffmpeg could not open."""
    low = stderr.lower()
    if "moov atom not found" in low and _looks_like_mp4(path):
        return TruncatedMediaError(f"{path}: truncated or damaged file (its index is missing)", path, stderr)
    if any(k in low for k in _NOT_MEDIA):
        return NotMediaError(f"{path}: not a media file ffmpeg can read", path, stderr)
    if any(k in low for k in _DAMAGE):
        return TruncatedMediaError(f"{path}: truncated or damaged media data", path, stderr)
    return MediaError(f"{path}: ffmpeg could not {action}", path, stderr)


def _looks_like_mp4(path: str) -> bool:
    """An ISO media file starts with an ``ftyp`` box; random bytes do not."""
    with open(path, "rb") as f:
        return f.read(12)[4:8] == b"ftyp"


def _check_file(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise EmptyMediaError(f"{p}: empty file (0 bytes)", str(p))
    return p


def _fps(stream: dict[str, Any]) -> float:
    for key in ("avg_frame_rate", "r_frame_rate"):
        try:
            f = Fraction(stream.get(key, "0/0"))
        except (ValueError, ZeroDivisionError):
            continue
        if f > 0:
            return float(f)
    return 0.0


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Duration, streams, codecs, fps and sample rate of a media file."""
    p = _check_file(path)
    try:
        data = ffmpeg.probe(str(p), v="error")
    except ffmpeg.Error as e:
        raise _classify(str(p), _stderr(e), "read the file") from None
    streams = data.get("streams", [])
    fmt = data.get("format", {})
    vs = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
    ]
    aus = [s for s in streams if s.get("codec_type") == "audio"]
    if not vs and not aus:
        raise NotMediaError(f"{p}: no audio or video streams", str(p))
    video = (
        VideoInfo(
            vs[0].get("codec_name", "?"), int(vs[0].get("width", 0)), int(vs[0].get("height", 0)), _fps(vs[0])
        )
        if vs
        else None
    )
    audio = (
        AudioInfo(
            aus[0].get("codec_name", "?"), int(aus[0].get("sample_rate", 0)), int(aus[0].get("channels", 0))
        )
        if aus
        else None
    )
    duration = _duration(fmt, vs + aus)
    if not duration > 0:
        raise EmptyMediaError(f"{p}: zero duration", str(p))
    return MediaInfo(str(p), duration, fmt.get("format_name", "?"), p.stat().st_size, video, audio)


def _duration(fmt: dict[str, Any], streams: list[dict[str, Any]]) -> float:
    for value in [fmt.get("duration")] + [s.get("duration") for s in streams]:
        try:
            d = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(d) and d > 0:
            return d
    return 0.0


def require_video(info: MediaInfo) -> MediaInfo:
    if info.video is None:
        raise NoVideoStreamError(f"{info.path}: has no video stream (an audio-only file?)", info.path)
    return info


def _run(stream: Any, path: str, action: str, capture_stdout: bool = False) -> bytes:
    """Run an ffmpeg graph over a file that probed fine.

    Undecodable data past a good header means damage, even when ffmpeg exits 0.
    """
    try:
        out, err = stream.global_args("-nostdin", "-hide_banner", "-v", "error").run(
            capture_stdout=capture_stdout, capture_stderr=True
        )
    except ffmpeg.Error as e:
        raise _damage(path, _stderr(e), action) from None
    text = (err or b"").decode("utf-8", "replace")
    if any(k in text.lower() for k in _DAMAGE + _NOT_MEDIA):
        raise _damage(path, text, action)
    return out or b""


def _damage(path: str, stderr: str, action: str) -> MediaError:
    if any(k in stderr.lower() for k in _DAMAGE + _NOT_MEDIA):
        return TruncatedMediaError(f"{path}: truncated or damaged media data", path, stderr)
    return MediaError(f"{path}: ffmpeg could not {action}", path, stderr)


def extract_audio(
    src: str | os.PathLike[str], out_wav: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE
) -> Path:
    """The soundtrack as stereo float WAV at ``sample_rate``, exactly the file's duration long.

    A file without audio gives silence of the right length.
    """
    info = probe(src)
    n = round(info.duration * sample_rate)
    if info.audio is None:
        return write_silence(out_wav, n, sample_rate, channels=2)
    with atomic_path(out_wav) as tmp:
        graph = ffmpeg.input(info.path).output(
            str(tmp),
            map="0:a:0",
            ac=2,
            ar=sample_rate,
            acodec="pcm_f32le",
            af="apad",
            t=f"{n / sample_rate:.6f}",
            f="wav",
        )
        _run(graph.overwrite_output(), info.path, "extract the audio")
    return Path(out_wav)


def load_audio(path: str | os.PathLike[str], sample_rate: int = 16_000, mono: bool = True) -> np.ndarray:
    """Decode any media file's first audio stream to float32 (``(n,)`` mono or ``(n, 2)``)."""
    info = probe(path)
    channels = 1 if mono else 2
    if info.audio is None:
        n = round(info.duration * sample_rate)
        return np.zeros(n if mono else (n, 2), dtype=np.float32)
    graph = ffmpeg.input(info.path).output("pipe:", map="0:a:0", f="f32le", ac=channels, ar=sample_rate)
    raw = _run(graph, info.path, "decode the audio", capture_stdout=True)
    audio = np.frombuffer(raw, dtype=np.float32).copy()
    return audio if mono else audio.reshape(-1, 2)


def mux(
    video_src: str | os.PathLike[str],
    audio_wav: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    audio_bitrate: str = "192k",
) -> Path:
    """The video stream of ``video_src`` copied bit-exactly, with ``audio_wav`` as its AAC soundtrack.

    Same duration as the source, ``+faststart`` for web playback.
    """
    info = require_video(probe(video_src))
    _check_file(audio_wav)
    v = ffmpeg.input(info.path).video
    a = ffmpeg.input(str(audio_wav)).audio
    with atomic_path(out_path) as tmp:
        graph = ffmpeg.output(
            v,
            a,
            str(tmp),
            vcodec="copy",
            acodec="aac",
            audio_bitrate=audio_bitrate,
            t=f"{info.duration:.6f}",
            movflags="+faststart",
            f="mp4",
        )
        _run(graph.overwrite_output(), info.path, "write the output video")
    return Path(out_path)


_PTS = re.compile(r"pts_time:\s*([0-9.]+)")


def detect_scene_cuts(path: str | os.PathLike[str], threshold: float = 0.3) -> tuple[float, ...]:
    """Times (s) of hard scene cuts from ffmpeg's scene-change score; () without a video stream."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    info = probe(path)
    if info.video is None:
        return ()
    graph = (
        ffmpeg.input(info.path)
        .video.filter("scale", 160, -2)
        .filter("select", f"gt(scene,{threshold})")
        .filter("showinfo")
        .output("-", f="null")
    )
    try:
        _, err = graph.global_args("-nostdin", "-hide_banner").run(capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as e:
        raise _damage(info.path, _stderr(e), "detect scene cuts") from None
    text = (err or b"").decode("utf-8", "replace")
    return tuple(
        float(m) for line in text.splitlines() if "Parsed_showinfo" in line for m in _PTS.findall(line)
    )


def video_packet_hash(path: str | os.PathLike[str]) -> str:
    """MD5 of the first video stream's packets (not decoded): equal for a bit-exact stream copy."""
    info = require_video(probe(path))
    graph = ffmpeg.input(info.path).output("-", map="0:v:0", c="copy", f="hash", hash="md5")
    return _run(graph, info.path, "hash the video stream", capture_stdout=True).decode().strip()


def loop_video(src: str | os.PathLike[str], out_path: str | os.PathLike[str], times: int) -> Path:
    """``src`` played ``times`` times in a row, streams copied (long inputs for benchmarks)."""
    if times < 1:
        raise ValueError(f"times must be >= 1, got {times}")
    info = probe(src)
    with atomic_path(out_path) as tmp:
        graph = ffmpeg.input(info.path, stream_loop=times - 1).output(str(tmp), c="copy", f="mp4")
        _run(graph.overwrite_output(), info.path, "loop the video")
    return Path(out_path)
