"""Spectrogram codec: Riffusion's conventions, PNG params, audio -> image -> audio fidelity."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from moodbgm.generate.spectrogram import (
    PNG_KEY,
    SpectrogramCodec,
    SpectrogramParams,
    image_from_mel,
    load_png,
    mel_filterbank,
    mel_from_image,
    save_png,
    spectral_convergence,
)

SR = 44_100


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tone_mix(seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = sum(
        a * np.sin(2 * np.pi * f * t + ph)
        for a, f, ph in [(0.3, 220, 0), (0.2, 330, 1), (0.15, 554.4, 2), (0.1, 1760, 0.5), (0.05, 4400, 0)]
    )
    return (x * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)


def test_riffusion_defaults() -> None:
    p = SpectrogramParams()
    assert (p.sample_rate, p.hop_length, p.win_length, p.n_fft) == (44_100, 441, 4410, 17_640)
    assert (p.num_frequencies, p.min_frequency, p.max_frequency, p.power_for_image) == (512, 0, 10_000, 0.25)
    assert p.width_for(5.12) == 512 and p.seconds_for(512) == pytest.approx(5.12)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sample_rate": 0},
        {"step_size_ms": 200},
        {"max_frequency": 30_000},
        {"power_for_image": 0},
        {"mel_scale": "x"},
    ],
)
def test_params_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SpectrogramParams(**kwargs)  # type: ignore[arg-type]


def test_mel_filterbank_htk_triangles() -> None:
    p = SpectrogramParams()
    fb = mel_filterbank(p)
    assert fb.shape == (p.n_stft, 512)
    assert fb.min() >= 0 and fb.max() <= 1.0 + 1e-6
    freqs = np.linspace(0, SR // 2, p.n_stft)
    assert not fb[freqs > 10_000].any()  # nothing above max_frequency
    assert (fb.sum(axis=0) > 0).all()  # no empty filter
    centres = freqs[fb.argmax(axis=0)]
    assert np.all(np.diff(centres) >= 0)  # ordered low -> high
    mel_max = 2595 * np.log10(1 + 10_000 / 700)
    expected = 700 * (10 ** (np.linspace(0, mel_max, 514)[1:-1] / 2595) - 1)  # equally spaced HTK mels
    assert np.abs(centres - expected).max() <= SR / p.n_fft  # within one STFT bin


def test_image_shape_and_conventions() -> None:
    codec = SpectrogramCodec()
    image = codec.audio_to_image(tone_mix(5.12), SR)
    assert image.size == (512, 512) and image.mode == "RGB"
    px = np.asarray(image)
    assert (px[..., 0] == px[..., 1]).all() and (px[..., 1] == px[..., 2]).all()
    row_darkness = (255 - px[..., 0].astype(float)).mean(axis=1)
    # 220 Hz is the loudest partial: low frequency, so near the bottom of the image
    assert row_darkness.argmax() > 512 - 60
    assert px.min() == 0  # the peak maps to black


def test_png_params_round_trip(tmp_path) -> None:
    codec = SpectrogramCodec()
    image = codec.audio_to_image(tone_mix(1.0) * 0.5, SR)
    path = save_png(image, tmp_path / "a.png")
    loaded, params, max_value = load_png(path)
    assert params == SpectrogramParams()
    assert max_value == pytest.approx(float(codec.mel_from_audio(tone_mix(1.0) * 0.5, SR).max()), rel=1e-5)
    assert np.array_equal(np.asarray(loaded), np.asarray(image))
    other = SpectrogramParams(max_frequency=8_000)
    with pytest.raises(ValueError, match="max_frequency"):
        load_png(path, expected=other)
    assert load_png(path, expected=None)[1] == params


def test_png_without_params_is_an_error(tmp_path) -> None:
    Image.new("RGB", (64, 512), "white").save(tmp_path / "plain.png")
    with pytest.raises(ValueError, match="no spectrogram params"):
        load_png(tmp_path / "plain.png")
    with pytest.raises(ValueError, match="no spectrogram params"):
        save_png(Image.new("RGB", (8, 8)), tmp_path / "x.png")


def test_images_with_other_params_refused() -> None:
    small = SpectrogramParams(num_frequencies=64)
    image = image_from_mel(np.ones((64, 10)), small)
    with pytest.raises(ValueError, match="different"):
        SpectrogramCodec().images_to_audio([image])
    assert PNG_KEY in image.info


def test_mel_image_round_trip_is_quantisation_only() -> None:
    p = SpectrogramParams()
    rng = np.random.default_rng(0)
    mel = rng.random((512, 40)) ** 4 * 7.0
    back = mel_from_image(image_from_mel(mel, p), p, max_value=float(mel.max()))
    # 8-bit steps of value ** 0.25: bounded relative error where the value is not tiny
    big = mel > 0.05 * mel.max()
    assert np.allclose(back[big], mel[big], rtol=0.1)


SMALL = SpectrogramParams(
    sample_rate=16_000,
    window_duration_ms=50,
    padded_duration_ms=100,
    num_frequencies=128,
    max_frequency=6_000,
)


@pytest.mark.parametrize(
    ("params", "seconds", "bound"),
    [
        pytest.param(SMALL, 2.0, 0.25, id="small"),
        pytest.param(SpectrogramParams(), 2.0, 0.2, id="riffusion", marks=pytest.mark.slow),
    ],
)
def test_audio_image_audio_spectral_convergence(
    params: SpectrogramParams, seconds: float, bound: float
) -> None:
    """Measured on this tone mix: ~0.09 with Riffusion's params (5.12 s), ~0.13 with SMALL."""
    x = tone_mix(seconds, params.sample_rate)
    codec = SpectrogramCodec(params)
    y = codec.image_to_audio(codec.audio_to_image(x, params.sample_rate))
    assert y.shape == (x.shape[0] // params.hop_length * params.hop_length,)
    sc = spectral_convergence(x, y, codec.params)
    assert sc < bound, sc
    noise = np.random.default_rng(0).standard_normal(y.shape).astype(np.float32) * x.std()
    assert spectral_convergence(x, noise, codec.params) > 0.8  # the measure discriminates
    assert 0.7 < y.std() / x.std() < 1.3  # amplitude restored from the image's max value


def test_resamples_and_mixes_stereo() -> None:
    codec = SpectrogramCodec()
    x48 = np.stack([tone_mix(1.0, 48_000)] * 2, axis=1)
    mel48 = codec.mel_from_audio(x48, 48_000)
    mel44 = codec.mel_from_audio(tone_mix(1.0), SR)
    assert mel48.shape == mel44.shape == (512, 100)
    assert np.allclose(mel48[:, 5:-5], mel44[:, 5:-5], rtol=0.05, atol=1e-3 * mel44.max())
