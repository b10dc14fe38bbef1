"""The demo video: synthetic speech with an emotional arc over an "old" music bed, noise and scene cuts.

``make_sample`` deterministically builds ~60 s of espeak-ng speech reading a script whose parts move
through several of the seven emotions (neutral -> joy -> surprise -> fear -> sadness -> anger ->
hopeful joy), with real pauses between sentences, mixed with a synthesised music bed (a plucked
arpeggio over a soft organ pad, ~12 dB under the voice) and noise (pink noise + 50 Hz mains hum) that
the pipeline later removes, over a picture of coloured scenes with hard cuts at known times.

Because this is a test/demo fixture generator and not a pipeline stage, it calls ``espeak-ng``
through ``subprocess`` and encodes the video with ffmpeg-python directly (media.py stays the only
ffmpeg user of the pipeline itself). Everything it knows about the sample (sentence times, intended
emotions, cut times, stem paths) is returned as ``SampleInfo`` and written to ``<name>.json`` next to
the video; the stems (mono float WAVs at 48 kHz whose sum is the soundtrack on both channels) go to
``<name>.stems/``.

``arc`` picks the order of the parts: ``demo`` (above) or ``storm`` (sadness -> fear -> anger ->
neutral -> surprise -> joy), a second arc for the music benchmark.

Run: ``python -m devtools.sample OUT.mp4 [--duration-scale F] [--seed N] [--arc demo|storm]``.
"""

from __future__ import annotations

import argparse
import io
import itertools
import logging
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg
import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from moodbgm.files import atomic_path, read_json, write_json, write_wav
from moodbgm.types import SAMPLE_RATE, check_emotion

log = logging.getLogger(__name__)

WIDTH, HEIGHT, FPS = 320, 180, 10
LEAD_IN = 0.8  # silence before the first sentence
SENTENCE_PAUSE = 0.85  # between sentences of one part
PART_PAUSE = 1.2  # between emotional parts
TAIL = 1.2  # silence after the last sentence
VOICE_DB = -20.0  # RMS of the voice while it speaks, dBFS
MUSIC_DB = -12.0  # music RMS relative to the voice's active RMS
NOISE_DB = -30.0  # pink noise RMS relative to the voice
HUM_DB = -34.0  # mains hum RMS relative to the voice

# (emotion, espeak voice, speed wpm, pitch 0-99, sentences)
# fmt: off
_SCRIPT: tuple[tuple[str, str, int, int, tuple[str, ...]], ...] = (
    ("neutral", "en-us", 160, 45, (
        "Good morning and welcome to the update.",
        "Today we look at the project schedule.",
        "The meeting runs all morning.",
    )),
    ("joy", "en-us+f3", 178, 70, (
        "We won the award, and I am so happy!",
        "This is the best day of my whole life.",
        "Everyone is laughing and celebrating together.",
    )),
    ("surprise", "en-us+f3", 172, 80, (
        "Wait, what is that over there?",
        "I cannot believe it, the room is full of balloons!",
        "Wow, I never expected this at all.",
    )),
    ("fear", "en-us", 155, 55, (
        "Something is moving in the dark.",
        "I am terrified, please do not leave me alone.",
        "I can hear footsteps coming closer.",
    )),
    ("sadness", "en-us", 140, 30, (
        "She is gone and never coming back.",
        "I miss her so much that it hurts.",
        "Everything feels empty without her.",
    )),
    ("anger", "en-us+m3", 180, 40, (
        "How dare you lie to me like that!",
        "I am furious, this is completely unacceptable.",
        "Get out of my house right now!",
    )),
    ("joy", "en-us+f3", 168, 65, (
        "But tomorrow is a new day, full of hope.",
        "We will smile again and dance in the sun.",
        "Thank you all, I love you so much.",
    )),
)
# fmt: on

ARCS: dict[str, tuple[int, ...]] = {"demo": (0, 1, 2, 3, 4, 5, 6), "storm": (4, 3, 5, 0, 2, 1)}
"""Orders of the script's parts (indices into ``_SCRIPT``)."""

# scene colours (top-left, bottom-right) of the gradients; a cut falls in the pause before these parts
_SCENES: tuple[tuple[tuple[int, int, int], tuple[int, int, int]], ...] = (
    ((30, 60, 110), (150, 170, 190)),  # calm blue-grey
    ((250, 200, 40), (250, 110, 150)),  # warm yellow-pink
    ((10, 10, 20), (70, 20, 90)),  # dark violet
    ((150, 170, 210), (220, 225, 235)),  # pale blue-grey
    ((230, 30, 20), (90, 0, 0)),  # red
    ((120, 220, 120), (250, 240, 160)),  # bright green
)
_CUT_BEFORE_PART = (1, 3, 4, 5, 6)  # scene i+1 starts in the pause before this part


@dataclass(frozen=True)
class ScriptLine:
    """One spoken sentence, placed exactly: ``start``/``end`` bound its non-silent samples."""

    text: str
    emotion: str
    start: float
    end: float
    voice: str

    def __post_init__(self) -> None:
        check_emotion(self.emotion)
        if not self.text.strip():
            raise ValueError("ScriptLine: empty text")
        if not 0 <= self.start < self.end:
            raise ValueError(f"ScriptLine: need 0 <= start < end, got {self.start}..{self.end}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "emotion": self.emotion,
            "start": self.start,
            "end": self.end,
            "voice": self.voice,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScriptLine:
        return cls(str(d["text"]), str(d["emotion"]), float(d["start"]), float(d["end"]), str(d["voice"]))


@dataclass(frozen=True)
class SampleInfo:
    """What ``make_sample`` produced: the video, its ground truth, and the stems of its soundtrack."""

    video: Path
    duration: float
    lines: tuple[ScriptLine, ...]
    cuts: tuple[float, ...]
    voice_wav: Path
    music_wav: Path
    noise_wav: Path
    sample_rate: int = SAMPLE_RATE
    seed: int = 0
    scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "lines", tuple(self.lines))
        object.__setattr__(self, "cuts", tuple(float(c) for c in self.cuts))
        if not self.lines:
            raise ValueError("SampleInfo: needs at least one line")
        if self.duration <= self.lines[-1].end:
            raise ValueError("SampleInfo: duration must exceed the last line's end")
        if any(not 0 < c < self.duration for c in self.cuts):
            raise ValueError("SampleInfo: cuts must lie inside (0, duration)")

    @property
    def text(self) -> str:
        return " ".join(line.text for line in self.lines)

    @property
    def pauses(self) -> tuple[tuple[float, float], ...]:
        """The silent gaps between consecutive sentences as (start, end)."""
        return tuple((a.end, b.start) for a, b in zip(self.lines, self.lines[1:], strict=False))

    def to_dict(self) -> dict[str, Any]:
        return {
            "video": str(self.video),
            "duration": self.duration,
            "sample_rate": self.sample_rate,
            "seed": self.seed,
            "scale": self.scale,
            "lines": [line.to_dict() for line in self.lines],
            "cuts": list(self.cuts),
            "stems": {
                "voice": str(self.voice_wav),
                "music": str(self.music_wav),
                "noise": str(self.noise_wav),
            },
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SampleInfo:
        stems = d["stems"]
        return cls(
            video=Path(d["video"]),
            duration=float(d["duration"]),
            lines=tuple(ScriptLine.from_dict(x) for x in d["lines"]),
            cuts=tuple(float(c) for c in d["cuts"]),
            voice_wav=Path(stems["voice"]),
            music_wav=Path(stems["music"]),
            noise_wav=Path(stems["noise"]),
            sample_rate=int(d["sample_rate"]),
            seed=int(d["seed"]),
            scale=float(d["scale"]),
        )


# ---------------------------------------------------------------- speech


def speak(text: str, voice: str, speed: int, pitch: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """espeak-ng's rendering of ``text`` as float32 mono at ``sample_rate``, silence trimmed."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"espeak-ng failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    audio, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    audio = resample_poly(audio, sample_rate, sr).astype(np.float32)  # 22050 -> 48000 exactly
    loud = np.flatnonzero(np.abs(audio) > 1e-3)
    if loud.size == 0:
        raise RuntimeError(f"espeak-ng produced silence for {text!r}")
    return audio[loud[0] : loud[-1] + 1]


def _script(scale: float, arc: str = "demo") -> list[tuple[int, str, str, int, int, str]]:
    """The first sentences of the script for ``scale``: (part, emotion, voice, speed, pitch, text)."""
    parts = [_SCRIPT[k] for k in ARCS[arc]]
    flat = [(i, emo, v, s, p, t) for i, (emo, v, s, p, texts) in enumerate(parts) for t in texts]
    n = max(1, min(len(flat), round(len(flat) * scale)))
    return flat[:n]


# ---------------------------------------------------------------- music and noise


def _midi_hz(note: int) -> float:
    return 440.0 * 2.0 ** ((note - 69) / 12.0)


def old_music(duration: float, seed: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A looping I-vi-IV-V in C at 96 bpm: plucked square-ish arpeggio over a soft organ pad (mono)."""
    rng = np.random.default_rng(seed)
    n = round(duration * sample_rate)
    out = np.zeros(n, dtype=np.float64)
    beat = 60.0 / 96.0
    chords = ((60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62))
    patterns = ((0, 1, 2, 1, 0, 1, 2, 1), (0, 2, 1, 2, 0, 2, 1, 2), (0, 1, 2, 3, 2, 1, 0, 1))
    pattern = patterns[int(rng.integers(len(patterns)))]
    bar = 4 * beat
    note_len = beat / 2
    t_note = np.arange(int(note_len * 1.6 * sample_rate)) / sample_rate
    t_bar = np.arange(int(bar * sample_rate)) / sample_rate
    for b in range(int(np.ceil(duration / bar))):
        chord = chords[b % len(chords)]
        start = round(b * bar * sample_rate)
        # organ pad: a few odd harmonics per chord tone, slow attack/release
        pad = np.zeros_like(t_bar)
        for note in chord:
            f = _midi_hz(note - 12)
            for h, a in ((1, 1.0), (2, 0.35), (3, 0.5), (5, 0.2)):
                pad += a * np.sin(2 * np.pi * f * h * t_bar)
        env = np.minimum(1.0, np.minimum(t_bar / 0.3, (bar - t_bar) / 0.3))
        _add(out, start, 0.05 * pad * env)
        # plucked arpeggio: odd harmonics (hollow, square-ish), fast exponential decay
        for k, idx in enumerate(pattern):
            note = chord[idx % 3] + (12 if idx == 3 else 0) + 12
            f = _midi_hz(note)
            tone = sum((1.0 / h) * np.sin(2 * np.pi * f * h * t_note) for h in (1, 3, 5, 7))
            pluck = tone * np.exp(-t_note * 7.0) * np.minimum(1.0, t_note / 0.004)
            velocity = 0.8 + 0.2 * rng.random()
            _add(out, start + round(k * note_len * sample_rate), 0.25 * velocity * pluck)
    return out.astype(np.float32)


def _add(out: np.ndarray, start: int, x: np.ndarray) -> None:
    end = min(len(out), start + len(x))
    if end > start:
        out[start:end] += x[: end - start]


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS pink (1/f power) noise by spectral shaping of white noise."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return (x / np.sqrt(np.mean(x**2))).astype(np.float32)


def hum(n: int, sample_rate: int = SAMPLE_RATE, base: float = 50.0) -> np.ndarray:
    """Unit-RMS mains hum: 50 Hz with odd harmonics."""
    t = np.arange(n) / sample_rate
    x = sum(a * np.sin(2 * np.pi * base * h * t) for h, a in ((1, 1.0), (3, 0.5), (5, 0.25)))
    x = np.asarray(x)
    return (x / np.sqrt(np.mean(x**2))).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _db(db: float) -> float:
    return float(10.0 ** (db / 20.0))


# ---------------------------------------------------------------- picture


def _scene_frame(scene: int, k: int) -> np.ndarray:
    """Frame ``k`` of a scene: a diagonal gradient drifting sideways with a bright bar sweeping across."""
    (r0, g0, b0), (r1, g1, b1) = _SCENES[scene % len(_SCENES)]
    x = np.linspace(0.0, 1.0, WIDTH)[None, :]
    y = np.linspace(0.0, 1.0, HEIGHT)[:, None]
    w = np.clip(0.5 * (x + y) + 0.1 * np.sin(2 * np.pi * (x - 0.02 * k)), 0.0, 1.0)
    img = np.stack([c0 + (c1 - c0) * w for c0, c1 in ((r0, r1), (g0, g1), (b0, b1))], axis=-1)
    bar = (3 * k + 40 * scene) % WIDTH
    img[:, bar : bar + 6] = 0.5 * img[:, bar : bar + 6] + 120.0
    return np.clip(img, 0, 255).astype(np.uint8)


def _encode(out: Path, audio_wav: Path, cut_frames: Sequence[int], n_frames: int) -> None:
    bounds = [0, *cut_frames, n_frames]
    video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{WIDTH}x{HEIGHT}", framerate=FPS)
    audio = ffmpeg.input(str(audio_wav))
    stream = ffmpeg.output(
        video,
        audio,
        str(out),
        vcodec="libx264",
        pix_fmt="yuv420p",
        crf=30,
        preset="medium",
        g=FPS * 10,
        acodec="aac",
        audio_bitrate="96k",
        ar=SAMPLE_RATE,
        movflags="+faststart",
        f="mp4",
    ).global_args("-hide_banner", "-loglevel", "error", "-threads", "1")
    proc = stream.overwrite_output().run_async(pipe_stdin=True, pipe_stderr=True)
    assert proc.stdin is not None
    try:
        for scene, (a, b) in enumerate(itertools.pairwise(bounds)):
            for k in range(a, b):
                proc.stdin.write(_scene_frame(scene, k - a).tobytes())
    finally:
        proc.stdin.close()
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        code = proc.wait()
    if code != 0:
        raise RuntimeError(f"ffmpeg failed to encode the sample ({code}): {stderr.strip()}")


# ---------------------------------------------------------------- assembly


def make_sample(out: Path, *, scale: float = 1.0, seed: int = 0, arc: str = "demo") -> SampleInfo:
    """Write the demo video ``out`` (.mp4), ``<stem>.json`` and ``<stem>.stems/``; return what it holds.

    ``scale < 1`` keeps only the first ``round(N * scale)`` sentences (at least one) for quick tests.
    The same ``seed`` gives the same audio samples.
    """
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    if arc not in ARCS:
        raise ValueError(f"unknown arc {arc!r}; expected one of {', '.join(ARCS)}")
    out = Path(out)
    sr = SAMPLE_RATE
    script = _script(scale, arc)
    log.info("speaking %d sentences", len(script))

    clips: list[np.ndarray] = []
    lines: list[ScriptLine] = []
    t = LEAD_IN
    for j, (part, emotion, voice, speed, pitch, text) in enumerate(script):
        if j > 0:
            t += PART_PAUSE if part != script[j - 1][0] else SENTENCE_PAUSE
        start = round(t * sr)
        clip = speak(text, voice, speed, pitch, sr)
        clips.append(clip)
        lines.append(ScriptLine(text, emotion, start / sr, (start + len(clip)) / sr, voice))
        t = (start + len(clip)) / sr
    n = round((t + TAIL) * FPS) * (sr // FPS)  # a whole number of video frames
    duration = n / sr

    voice_track = np.zeros(n, dtype=np.float32)
    for line, clip in zip(lines, clips, strict=True):
        i = round(line.start * sr)
        voice_track[i : i + len(clip)] += clip
    voice_rms = _db(VOICE_DB)
    voice_track *= voice_rms / _rms(np.concatenate(clips))  # the voice level does not depend on the seed

    rng = np.random.default_rng(seed)
    music = old_music(duration, seed, sr)
    music *= voice_rms * _db(MUSIC_DB) / max(_rms(music), 1e-9)
    noise = pink_noise(n, rng) * voice_rms * _db(NOISE_DB) + hum(n, sr) * voice_rms * _db(HUM_DB)
    peak = float(np.max(np.abs(voice_track + music + noise)))
    if peak > 0.99:
        raise RuntimeError(f"the sample's soundtrack would clip (peak {peak:.2f}); lower VOICE_DB")

    # cuts: in the pause before chosen parts (frame-aligned), when the sample reaches that far
    first_of_part = {part: k for k, (part, *_rest) in reversed(list(enumerate(script)))}
    cut_frames: list[int] = []
    for part in _CUT_BEFORE_PART:
        k = first_of_part.get(part)
        if k is None or k == 0:
            continue
        mid = 0.5 * (lines[k - 1].end + lines[k].start)
        cut_frames.append(round(mid * FPS))
    n_frames = n // (sr // FPS)

    stems_dir = out.with_name(out.stem + ".stems")
    stems_dir.mkdir(parents=True, exist_ok=True)
    voice_wav = write_wav(stems_dir / "voice.wav", voice_track, sr)
    music_wav = write_wav(stems_dir / "music.wav", music, sr)
    noise_wav = write_wav(stems_dir / "noise.wav", noise, sr)
    mix_wav = stems_dir / ".mix.wav"
    try:
        write_wav(mix_wav, np.repeat((voice_track + music + noise)[:, None], 2, axis=1), sr)
        with atomic_path(out) as tmp:
            _encode(tmp, mix_wav, cut_frames, n_frames)
    finally:
        mix_wav.unlink(missing_ok=True)

    info = SampleInfo(
        video=out,
        duration=duration,
        lines=tuple(lines),
        cuts=tuple(f / FPS for f in cut_frames),
        voice_wav=voice_wav,
        music_wav=music_wav,
        noise_wav=noise_wav,
        sample_rate=sr,
        seed=seed,
        scale=scale,
    )
    write_json(out.with_suffix(".json"), info.to_dict())
    log.info("wrote %s (%.1f s, %d sentences, cuts at %s)", out, duration, len(lines), list(info.cuts))
    return info


def load_sample_info(json_path: Path) -> SampleInfo:
    """The ``SampleInfo`` stored next to a sample video."""
    return SampleInfo.from_dict(read_json(json_path))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.sample", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output video (.mp4)")
    parser.add_argument("--duration-scale", type=float, default=1.0, help="fraction of the script, (0, 1]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arc", choices=tuple(ARCS), default="demo", help="order of the emotional parts")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not 0 < args.duration_scale <= 1:
        parser.error("--duration-scale must be in (0, 1]")
    info = make_sample(args.out, scale=args.duration_scale, seed=args.seed, arc=args.arc)
    print(f"{info.video} ({info.duration:.1f} s, {len(info.lines)} sentences, cuts {list(info.cuts)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
