"""Voice activity with the real Silero VAD ONNX model shipped in the silero-vad wheel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from devtools.sample import old_music, pink_noise, speak
from moodbgm.errors import MediaError, ModelNotFoundError
from moodbgm.files import write_wav
from moodbgm.vad import (
    VAD_RATE,
    SpeechDetector,
    VadOptions,
    merge_spans,
    silero_model_path,
    spans_from_probs,
    spans_to_mask,
)

WIN = 512 / VAD_RATE  # seconds per probability


@pytest.fixture(scope="module")
def detector() -> SpeechDetector:
    return SpeechDetector()


@pytest.fixture(scope="module")
def talk() -> tuple[np.ndarray, list[tuple[float, float]]]:
    """16 kHz: two sentences 2.5 s apart over quiet music; returns the audio and the true spans."""
    a = speak("Good morning, and welcome to the update.", "en-us", 170, 45, VAD_RATE)
    b = speak("The meeting runs from nine to ten.", "en-us", 170, 50, VAD_RATE)
    s0, s1 = VAD_RATE, VAD_RATE + len(a) + int(2.5 * VAD_RATE)
    n = s1 + len(b) + 2 * VAD_RATE
    x = np.zeros(n, dtype=np.float32)
    x[s0 : s0 + len(a)] += a
    x[s1 : s1 + len(b)] += b
    music = old_music(n / VAD_RATE, seed=2, sample_rate=VAD_RATE)[:n]
    x += 0.08 * music / np.abs(music).max()
    truth = [(s0 / VAD_RATE, (s0 + len(a)) / VAD_RATE), (s1 / VAD_RATE, (s1 + len(b)) / VAD_RATE)]
    return x, truth


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def test_finds_each_sentence_and_nothing_in_the_pause(detector: SpeechDetector, talk) -> None:  # type: ignore[no-untyped-def]
    x, truth = talk
    spans = detector.detect(x)
    assert spans == sorted(spans)
    for t in truth:
        covered = sum(_overlap(s, t) for s in spans)
        assert covered >= 0.9 * (t[1] - t[0]), f"sentence {t} covered {covered:.2f} s by {spans}"
    # every detected span lies on a sentence (padding and espeak's trailing breath allowed)
    for s in spans:
        assert any(_overlap(s, t) > 0 for t in truth)
        assert not (truth[0][1] + 0.7 < s[0] < truth[1][0] - 0.7), f"span {s} in the pause"


def test_no_speech_in_silence_noise_or_music(detector: SpeechDetector) -> None:
    rng = np.random.default_rng(0)
    n = 6 * VAD_RATE
    music = old_music(6.0, seed=0, sample_rate=VAD_RATE)[:n]
    assert detector.detect(np.zeros(n, dtype=np.float32)) == []
    assert detector.detect(0.05 * pink_noise(n, rng)) == []
    assert detector.detect(0.3 * music / np.abs(music).max()) == []
    assert detector.detect(np.zeros(0, dtype=np.float32)) == []


def test_probabilities_one_per_window(detector: SpeechDetector, talk) -> None:  # type: ignore[no-untyped-def]
    x, truth = talk
    p = detector.probabilities(x)
    assert len(p) == -(-len(x) // 512)
    assert ((p >= 0) & (p <= 1)).all()
    mid = int((truth[0][0] + truth[0][1]) / 2 / WIN)
    assert p[mid - 5 : mid + 5].mean() > 0.5
    assert p[: int(0.8 / WIN)].max() < 0.5  # the lead-in is music only


def test_detect_file_streams_48k_stereo_like_detect(detector: SpeechDetector, talk, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    x, _ = talk
    x48 = signal.resample_poly(x, 3, 1).astype(np.float32)
    wav = write_wav(tmp_path / "voice.wav", np.stack([x48, x48], axis=1), 48_000)
    seen: list[float] = []
    from_file = detector.detect_file(wav, progress=seen.append, block_seconds=0.77)
    direct = detector.detect(x)
    assert len(from_file) == len(direct)
    for a, b in zip(from_file, direct, strict=True):
        assert abs(a[0] - b[0]) <= 0.1 and abs(a[1] - b[1]) <= 0.1
    assert seen[-1] == 1.0


def test_detect_file_refuses_odd_rates(detector: SpeechDetector, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "a.wav", np.zeros(4410, dtype=np.float32), 44_100)
    with pytest.raises(MediaError, match="multiple of 16 kHz"):
        detector.detect_file(wav)


def test_model_ships_in_the_wheel_and_bad_paths_fail_clearly(tmp_path: Path) -> None:
    assert silero_model_path().is_file()
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelNotFoundError, match="Silero"):
        SpeechDetector(model_path=tmp_path / "bad.onnx")


def test_spans_from_probs_hysteresis_and_limits() -> None:
    opts = VadOptions(threshold=0.5, min_speech_ms=250, min_silence_ms=200, speech_pad_ms=0)
    p = np.zeros(100)
    p[10:30] = 0.9  # 0.64 s of speech
    p[30:33] = 0.1  # 96 ms dip: shorter than min_silence, stays one span
    p[33:50] = 0.9
    p[50:52] = 0.4  # between exit (0.35) and enter thresholds: still speech
    p[52:60] = 0.9
    p[80:83] = 0.9  # 96 ms blip: shorter than min_speech, dropped
    spans = spans_from_probs(p, 100 * WIN, opts)
    np.testing.assert_allclose(spans, [(10 * WIN, 60 * WIN)])
    padded = spans_from_probs(p, 100 * WIN, VadOptions(min_speech_ms=250, speech_pad_ms=200))
    np.testing.assert_allclose(padded, [(10 * WIN - 0.2, 60 * WIN + 0.2)])
    assert spans_from_probs(p, 100 * WIN, VadOptions(speech_pad_ms=400))[0][0] == 0.0  # clamped at 0
    # speech until the very end ends at the duration; padding is clamped
    q = np.full(20, 0.9)
    assert spans_from_probs(q, 20 * WIN - 0.01, VadOptions(speech_pad_ms=100)) == [(0.0, 20 * WIN - 0.01)]


def test_spans_to_mask_blockwise_equals_whole() -> None:
    spans = [(0.1, 0.25), (0.5, 0.5), (0.9, 2.0)]
    whole = spans_to_mask(spans, 1000, 1000)
    assert whole.sum() == 150 + 100
    assert whole[100] and not whole[99] and not whole[250] and whole[999]
    parts = np.concatenate([spans_to_mask(spans, 137, 1000, start=s) for s in range(0, 1000, 137)])[:1000]
    np.testing.assert_array_equal(parts, whole)


def test_merge_spans() -> None:
    assert merge_spans([(2.0, 3.0), (0.0, 1.0), (0.9, 1.5)]) == [(0.0, 1.5), (2.0, 3.0)]
    assert merge_spans([(0.0, 1.0), (1.2, 2.0)], gap=0.3) == [(0.0, 2.0)]
    with pytest.raises(ValueError):
        merge_spans([(1.0, 0.0)])


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="threshold"):
        VadOptions(threshold=1.5)
    with pytest.raises(ValueError, match="neg_threshold"):
        VadOptions(threshold=0.5, neg_threshold=0.7)
    with pytest.raises(ValueError, match="durations"):
        VadOptions(min_speech_ms=-1)
