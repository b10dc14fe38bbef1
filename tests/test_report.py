"""The timeline chart: a real PNG of the promised size, in the fixed palette, for empty and long inputs."""

from __future__ import annotations

import struct
from pathlib import Path

import matplotlib.colors as mcolors
import matplotlib.image as mimage
import numpy as np
import pytest

from moodbgm.report import EMOTION_COLORS, HEIGHT_PX, WIDTH_PX, fit_label, format_time, render_timeline_png
from moodbgm.timeline import plan_timeline
from moodbgm.types import EMOTIONS, EmotionScores, Phrase, Section, Timeline, Transcript

SR = 8_000


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def scores(emotion: str, confidence: float = 0.8) -> EmotionScores:
    rest = (1.0 - confidence) / (len(EMOTIONS) - 1)
    return EmotionScores(tuple(confidence if e == emotion else rest for e in EMOTIONS))


def speechy_audio(duration: float, phrases: list[Phrase], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    audio = rng.normal(0.0, 0.01, int(duration * SR)).astype(np.float32)
    for p in phrases:
        a, b = int(p.start * SR), int(p.end * SR)
        audio[a:b] += rng.normal(0.0, 0.3, b - a).astype(np.float32)
    return audio


def column_rgb(image: np.ndarray, t: float, duration: float) -> np.ndarray:
    """The pixel column at time ``t`` (the lanes span 5 %..99 % of the width)."""
    x = round((0.05 + 0.94 * t / duration) * image.shape[1])
    return image[:, x, :3]


def has_colour(column: np.ndarray, colour: str) -> bool:
    target = np.array(mcolors.to_rgb(colour))
    return bool(np.any(np.all(np.abs(column - target) < 2 / 255, axis=1)))


def test_palette_is_fixed_and_complete():
    assert list(EMOTION_COLORS) == list(EMOTIONS)
    assert len(set(EMOTION_COLORS.values())) == len(EMOTIONS)
    for colour in EMOTION_COLORS.values():
        assert mcolors.is_color_like(colour)


def test_chart_of_a_story(tmp_path):
    phrases = [Phrase(0.5 + 4 * k, 3.5 + 4 * k, f"phrase number {k} with some words") for k in range(15)]
    sc = [scores("joy") for _ in range(7)] + [scores("sadness") for _ in range(8)]
    duration = 62.0
    timeline = plan_timeline(phrases, sc, duration, cuts=[10.0, 27.7, 41.0])
    assert [s.emotion for s in timeline.sections] == ["joy", "sadness"]
    out = tmp_path / "job" / "timeline.png"

    result = render_timeline_png(
        out, speechy_audio(duration, phrases), SR, Transcript("en", tuple(phrases)), sc, timeline
    )

    assert result == out
    assert png_size(out) == (WIDTH_PX, HEIGHT_PX)
    assert [p.name for p in out.parent.iterdir()] == ["timeline.png"]  # no temp file left behind
    image = mimage.imread(out)
    joy_col, sad_col = column_rgb(image, 15.0, duration), column_rgb(image, 50.0, duration)
    assert has_colour(joy_col, EMOTION_COLORS["joy"]) and not has_colour(joy_col, EMOTION_COLORS["sadness"])
    assert has_colour(sad_col, EMOTION_COLORS["sadness"]) and not has_colour(sad_col, EMOTION_COLORS["joy"])


def test_chart_without_speech_or_audio(tmp_path):
    timeline = plan_timeline([], [], 30.0)
    out = render_timeline_png(
        tmp_path / "empty.png", np.zeros(0, np.float32), SR, Transcript("en"), [], timeline
    )
    assert png_size(out) == (WIDTH_PX, HEIGHT_PX)
    assert has_colour(column_rgb(mimage.imread(out), 15.0, 30.0), EMOTION_COLORS["neutral"])
    # silence and stereo input render too
    stereo = np.zeros((30 * SR, 2), np.float32)
    out2 = render_timeline_png(tmp_path / "silent.png", stereo, SR, Transcript("en"), [], timeline)
    assert png_size(out2) == (WIDTH_PX, HEIGHT_PX)


def test_chart_of_a_ten_minute_video(tmp_path):
    rng = np.random.default_rng(3)
    phrases, sc, t = [], [], 0.3
    while t < 590.0:
        length = rng.uniform(0.3, 6.0)
        phrases.append(Phrase(t, t + length, "a fairly long phrase that cannot possibly fit in its box " * 2))
        sc.append(EmotionScores.from_probs(rng.dirichlet(np.full(7, 0.4))))
        t += length + rng.uniform(0.05, 2.0)
    duration = 600.0
    timeline = plan_timeline(phrases, sc, duration, cuts=rng.uniform(0, duration, 80).tolist())
    out = render_timeline_png(
        tmp_path / "long.png",
        speechy_audio(duration, phrases),
        SR,
        Transcript("en", tuple(phrases)),
        sc,
        timeline,
    )
    assert png_size(out) == (WIDTH_PX, HEIGHT_PX)
    image = mimage.imread(out)
    for s in timeline.sections:
        if s.duration > 10:  # wide enough to hit with one pixel column
            assert has_colour(column_rgb(image, (s.start + s.end) / 2, duration), EMOTION_COLORS[s.emotion])


def test_chart_rejects_mismatched_scores(tmp_path):
    timeline = Timeline(10.0, (Section(0.0, 10.0, "joy"),))
    transcript = Transcript("en", (Phrase(1.0, 2.0, "hi"),))
    with pytest.raises(ValueError, match="1 phrases but 0 scores"):
        render_timeline_png(tmp_path / "x.png", np.zeros(SR), SR, transcript, [], timeline)
    assert not list(tmp_path.iterdir())


def test_labels_fit_or_vanish():
    assert fit_label("hello", 1000) == "hello"
    short = fit_label("a sentence far too long for its box", 60)
    assert short.endswith("…") and 3 < len(short) < 12
    assert fit_label("a sentence far too long for its box", 12) == ""
    assert fit_label("joy 0.71", 30, ellipsis=False) == ""


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0:00"), (5.4, "0:05"), (59.6, "1:00"), (605, "10:05"), (3725, "1:02:05")]
)
def test_time_format(seconds, text):
    assert format_time(seconds) == text


def test_the_chart_reads_millisecond_peaks_in_flat_memory(tmp_path: Path) -> None:
    """The stage hands the chart each millisecond's peak of the soundtrack, read block by block: the
    same envelope as the whole file, without holding it."""
    from moodbgm.files import write_wav
    from moodbgm.report import envelope
    from moodbgm.stages import _millisecond_peaks

    sr = 48_000
    rng = np.random.default_rng(3)
    n = 25 * sr + 17  # 25 s and a bit, speech-like swells
    swell = 0.02 + 0.1 * np.abs(np.sin(2 * np.pi * 0.3 * np.arange(n) / sr))[:, None]
    tone = np.sin(2 * np.pi * 220 * np.arange(n) / sr)[:, None] + 0.05 * rng.standard_normal((n, 2))
    audio = (swell * tone).astype(np.float32)
    audio[12 * sr + 5] = (0.9, 0.7)  # one click
    wav = write_wav(tmp_path / "audio.wav", audio, sr)
    peaks = _millisecond_peaks(wav)
    mono = np.abs(audio.mean(axis=1))
    assert len(peaks) == -(-len(mono) // 48)
    np.testing.assert_array_equal(peaks[:-1], mono[: len(peaks[:-1]) * 48].reshape(-1, 48).max(axis=1))
    assert peaks.max() == mono.max() == pytest.approx(0.8)
    _, whole = envelope(mono, sr, 500)
    _, fast = envelope(peaks, 1000, 500)
    near = lambda e: np.maximum.reduce([np.roll(e, k) for k in (-1, 0, 1)])  # noqa: E731
    assert np.all(fast <= near(whole)) and np.all(whole <= near(fast))  # bin edges move by < 1 ms
