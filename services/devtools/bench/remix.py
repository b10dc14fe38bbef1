"""Remix benchmark: voice isolation + VAD + mix over the demo sample's soundtrack.

Speed: ``separate_s``, ``vad_s``, ``mix_s`` and ``rtf`` (their sum over the duration). Quality, when
the sample's stems are next to it (``<name>.json`` from ``devtools.sample``): the isolated voice's
SI-SDR against the clean voice stem (and the soundtrack's, for reference), the music's drop in the
pauses, and how much of the script's speech the VAD covers. The music bed is the sample generator's
synthetic music (not timed).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from devtools.sample import load_sample_info, old_music
from moodbgm import media
from moodbgm.files import read_wav, write_wav
from moodbgm.mix import MixOptions, mix_files
from moodbgm.separate import DeepFilterNetSeparator, downmix
from moodbgm.vad import SpeechDetector


def _si_sdr(est: np.ndarray, ref: np.ndarray) -> float:
    c = float(np.dot(est, ref) / np.sqrt(np.dot(est, est) * np.dot(ref, ref)))
    return round(10 * np.log10(c * c / max(1 - c * c, 1e-12)), 2)


def _quality(
    sample: Path, audio_wav: Path, voice_wav: Path, spans: list[tuple[float, float]]
) -> dict[str, Any]:
    info_json = sample.with_suffix(".json")
    if not info_json.exists():
        return {}
    info = load_sample_info(info_json)
    clean, _ = read_wav(info.voice_wav)
    mix = downmix(read_wav(audio_wav)[0])
    voice, sr = read_wav(voice_wav)
    n = min(len(clean), len(voice), len(mix))
    clean, mix, voice = clean[:n], mix[:n], voice[:n]
    q = sr // 4
    pauses = [slice(round(a * sr) + q, round(b * sr) - q) for a, b in info.pauses if b - a > 0.75]
    drops = [10 * np.log10(np.mean(mix[p] ** 2) / max(np.mean(voice[p] ** 2), 1e-20)) for p in pauses]
    speech = sum(ln.end - ln.start for ln in info.lines)
    covered = sum(max(0.0, min(e, ln.end) - max(s, ln.start)) for ln in info.lines for s, e in spans)
    return {
        "si_sdr_soundtrack_db": _si_sdr(mix, clean),
        "si_sdr_voice_db": _si_sdr(voice, clean),
        "pause_drop_db_min": round(float(min(drops)), 2) if drops else None,
        "vad_recall": round(covered / speech, 3),
        "vad_speech_s": round(sum(e - s for s, e in spans), 2),
        "script_speech_s": round(speech, 2),
    }


def run(sample: Path, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    audio = media.extract_audio(sample, workdir / "audio.wav")
    frames, sr = read_wav(audio)
    duration = len(frames) / sr
    write_wav(workdir / "bgm.wav", np.repeat(old_music(duration, seed=7, sample_rate=sr)[:, None], 2, 1), sr)
    del frames

    t0 = time.perf_counter()
    separator = DeepFilterNetSeparator()
    separator.separate_file(audio, workdir / "voice.wav")
    t1 = time.perf_counter()
    detector = SpeechDetector()
    spans = detector.detect_file(workdir / "voice.wav")
    t2 = time.perf_counter()
    report = mix_files(workdir / "voice.wav", workdir / "bgm.wav", workdir / "mix.wav", spans, MixOptions())
    t3 = time.perf_counter()

    result: dict[str, Any] = {
        "duration_s": round(duration, 2),
        "separate_s": round(t1 - t0, 3),
        "vad_s": round(t2 - t1, 3),
        "mix_s": round(t3 - t2, 3),
        "rtf": round((t3 - t0) / duration, 4),
        "spans": len(spans),
        "mix_lufs": round(report.integrated_lufs, 2),
        "mix_true_peak_db": round(report.true_peak_db, 2),
        "duck_depth_db": round(report.duck_depth_db, 2),
        "limiter_db": round(report.limiter_db, 2),
    }
    result.update(_quality(sample, audio, workdir / "voice.wav", spans))
    return result
