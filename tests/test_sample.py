"""The demo sample generator: real espeak-ng, real ffmpeg, checked through media.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from devtools.sample import (
    SENTENCE_PAUSE,
    SampleInfo,
    ScriptLine,
    load_sample_info,
    main,
    make_sample,
    speak,
)
from moodbgm import media
from moodbgm.files import read_wav
from moodbgm.types import EMOTIONS


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> SampleInfo:
    """The first 4 sentences (neutral -> joy, one scene cut), seed 3."""
    return make_sample(tmp_path_factory.mktemp("sample") / "small.mp4", scale=0.2, seed=3)


def _db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12)


def test_small_sample_files_and_metadata(small: SampleInfo) -> None:
    assert small.video.is_file() and small.video.suffix == ".mp4"
    assert [line.emotion for line in small.lines] == ["neutral", "neutral", "neutral", "joy"]
    assert all(line.end - line.start > 1.0 for line in small.lines)
    assert all(b - a >= 0.8 for a, b in small.pauses)
    assert small.lines[0].start > 0.5 and small.duration > small.lines[-1].end + 0.5
    # the JSON next to the video is the same SampleInfo
    stored = load_sample_info(small.video.with_suffix(".json"))
    assert stored == small
    assert json.loads(small.video.with_suffix(".json").read_text())["stems"]["music"] == str(small.music_wav)


def test_small_sample_video_streams(small: SampleInfo) -> None:
    info = media.probe(small.video)
    assert info.video is not None and info.audio is not None
    assert (info.video.codec, info.video.width, info.video.height) == ("h264", 320, 180)
    assert info.audio.codec == "aac" and info.audio.sample_rate == 48_000
    assert info.duration == pytest.approx(small.duration, abs=0.1)
    assert small.video.stat().st_size < 400_000  # ~13 s


def test_scene_cuts_are_where_the_metadata_says(small: SampleInfo) -> None:
    assert len(small.cuts) == 1
    cut = small.cuts[0]
    assert small.lines[2].end < cut < small.lines[3].start  # in the pause before the joy part
    found = media.detect_scene_cuts(small.video)
    assert len(found) == 1 and found[0] == pytest.approx(cut, abs=0.11)


def test_stems_add_up_to_the_soundtrack(small: SampleInfo) -> None:
    voice, sr = read_wav(small.voice_wav)
    music, _ = read_wav(small.music_wav)
    noise, _ = read_wav(small.noise_wav)
    assert sr == 48_000 and voice.shape == music.shape == noise.shape
    assert len(voice) == round(small.duration * sr)
    decoded = media.load_audio(small.video, sample_rate=sr, mono=True)
    n = min(len(decoded), len(voice))
    total = (voice + music + noise)[:n]
    corr = float(np.corrcoef(total, decoded[:n])[0, 1])
    assert corr > 0.95  # AAC at 96 kbit/s keeps the waveform
    # the voice stem is silent in the pauses and present in the sentences
    for a, b in small.pauses:
        assert np.max(np.abs(voice[int(a * sr) + 1 : int(b * sr) - 1])) < 2e-3
    speech = np.concatenate([voice[int(x.start * sr) : int(x.end * sr)] for x in small.lines])
    # music ~12 dB and noise ~30 dB under the voice
    assert _db(music) - _db(speech) == pytest.approx(-12.0, abs=1.0)
    assert _db(noise) - _db(speech) < -25.0
    assert _db(speech) == pytest.approx(-20.0, abs=0.1)
    assert np.max(np.abs(total)) <= 0.99


def test_same_seed_same_audio_other_seed_other_music(small: SampleInfo, tmp_path: Path) -> None:
    again = make_sample(tmp_path / "again.mp4", scale=0.2, seed=3)
    other = make_sample(tmp_path / "other.mp4", scale=0.2, seed=4)
    assert again.lines == small.lines and again.cuts == small.cuts
    for stem in ("voice_wav", "music_wav", "noise_wav"):
        assert np.array_equal(read_wav(getattr(again, stem))[0], read_wav(getattr(small, stem))[0]), stem
    assert np.array_equal(read_wav(other.voice_wav)[0], read_wav(small.voice_wav)[0])
    assert not np.array_equal(read_wav(other.music_wav)[0], read_wav(small.music_wav)[0])
    assert not np.array_equal(read_wav(other.noise_wav)[0], read_wav(small.noise_wav)[0])


def test_espeak_is_deterministic() -> None:
    a = speak("The quick brown fox.", "en-us", 160, 50)
    b = speak("The quick brown fox.", "en-us", 160, 50)
    assert a.dtype == np.float32 and len(a) > 48_000 * 0.5
    assert np.array_equal(a, b)
    assert abs(a[0]) > 1e-3 and abs(a[-1]) > 1e-3  # trimmed to the sound


def test_cli_writes_video_json_and_stems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.mp4"
    assert main([str(out), "--duration-scale", "0.05", "--seed", "1"]) == 0
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert sorted(p.name for p in (tmp_path / "cli.stems").iterdir()) == [
        "music.wav",
        "noise.wav",
        "voice.wav",
    ]
    assert str(out) in capsys.readouterr().out


def test_rejects_bad_scale_and_bad_lines(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scale"):
        make_sample(tmp_path / "x.mp4", scale=0.0)
    with pytest.raises(ValueError, match="scale"):
        make_sample(tmp_path / "x.mp4", scale=1.5)
    with pytest.raises(ValueError, match="emotion"):
        ScriptLine("hi", "boredom", 0.0, 1.0, "en-us")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "x.mp4"), "--duration-scale", "2"])


@pytest.mark.slow
def test_full_demo_has_the_emotional_arc(tmp_path: Path) -> None:
    info = make_sample(tmp_path / "demo.mp4")
    assert 55.0 <= info.duration <= 75.0
    assert info.video.stat().st_size < 2_000_000
    # parts: consecutive lines with the same emotion; each part >= 6 s, 5+ distinct emotions
    parts: list[list[ScriptLine]] = []
    for line in info.lines:
        if parts and parts[-1][0].emotion == line.emotion and line.start - parts[-1][-1].end < 1.0:
            parts[-1].append(line)
        else:
            parts.append([line])
    assert [p[0].emotion for p in parts] == ["neutral", "joy", "surprise", "fear", "sadness", "anger", "joy"]
    assert all(p[-1].end - p[0].start >= 6.0 and len(p) >= 3 for p in parts)
    assert set(info.lines[i].emotion for i in range(len(info.lines))) <= set(EMOTIONS)
    assert all(b - a >= SENTENCE_PAUSE - 1e-6 for a, b in info.pauses)
    assert len(info.cuts) == 5
    found = media.detect_scene_cuts(info.video)
    assert len(found) == len(info.cuts)
    assert all(f == pytest.approx(c, abs=0.11) for f, c in zip(found, info.cuts, strict=True))
