"""The remix: ducking, loudness, true peak, full-band voice, edge cases, block-wise == whole."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyloudnorm as pyln
import pytest
from scipy import signal

from devtools.sample import old_music, speak
from moodbgm.files import read_wav, write_wav
from moodbgm.loudness import LoudnessMeter, Oversampler, TruePeakLimiter, TruePeakMeter
from moodbgm.mix import MixOptions, duck_curve, duck_gain, gate_curve, mix, mix_files

SR = 48_000
N = 10 * SR
SPANS = [(1.5, 3.5), (6.0, 8.0)]  # speech; gaps 0-1.5, 3.5-6, 8-10


def _band(x: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
    if lo and hi:
        sos = signal.butter(8, [lo, hi], "bandpass", fs=SR, output="sos")
    elif lo:
        sos = signal.butter(8, lo, "highpass", fs=SR, output="sos")
    else:
        sos = signal.butter(8, hi, "lowpass", fs=SR, output="sos")
    return signal.sosfiltfilt(sos, x, axis=0)


def _db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64))))


@pytest.fixture(scope="module")
def voice() -> np.ndarray:
    """Synthetic 'speech': 1-12 kHz noise, syllable-modulated, only inside SPANS (mono)."""
    rng = np.random.default_rng(0)
    x = _band(rng.standard_normal(N), 1000.0, 12000.0)
    t = np.arange(N) / SR
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    mask = np.zeros(N)
    for s, e in SPANS:
        mask[int(s * SR) : int(e * SR)] = 1.0
    return (0.1 * x * env * mask).astype(np.float32)


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    """Stereo 'music' with nothing above 1 kHz: 110 and 165 Hz tones."""
    t = np.arange(N) / SR
    left = 0.2 * np.sin(2 * np.pi * 110 * t) + 0.1 * np.sin(2 * np.pi * 165 * t)
    right = 0.2 * np.sin(2 * np.pi * 110 * t + 0.5) + 0.12 * np.sin(2 * np.pi * 165 * t)
    return np.stack([left, right], axis=1).astype(np.float32)


def _inside(spans: list[tuple[float, float]]) -> list[slice]:
    return [slice(int((s + 0.3) * SR), int((e - 0.1) * SR)) for s, e in spans]


GAPS = [slice(int(0.2 * SR), int(1.2 * SR)), slice(int(5.0 * SR), int(5.9 * SR)), slice(int(9.2 * SR), N)]


def test_music_is_ducked_under_speech(voice: np.ndarray, music: np.ndarray) -> None:
    res = mix(voice, music, SPANS)
    low = _band(res.audio.astype(np.float64), None, 300.0)  # the music only
    under = max(_db(low[s]) for s in _inside(SPANS))
    gaps = min(_db(low[s]) for s in GAPS)
    assert gaps - under >= 8.0, f"music only {gaps - under:.1f} dB lower under speech"
    assert res.report.duck_depth_db >= 8.0


def test_loudness_and_true_peak_with_real_speech_and_music() -> None:
    a = speak("Good morning, and welcome to the update. The meeting runs from nine to ten.", "en-us", 170, 45)
    n = len(a) + 3 * SR
    v = np.zeros(n, dtype=np.float32)
    v[SR : SR + len(a)] = a
    m = old_music(n / SR, seed=0)
    res = mix(v, np.stack([m, m], axis=1), [(1.0, 1.0 + len(a) / SR)])
    out = res.audio.astype(np.float64)
    lufs = pyln.Meter(SR).integrated_loudness(out)
    assert abs(lufs - (-16.0)) <= 0.5
    assert res.report.integrated_lufs == pytest.approx(lufs, abs=0.05)
    tp = 20 * np.log10(np.abs(signal.resample_poly(out, 4, 1, axis=0)).max())  # independent 4x estimate
    assert tp <= -1.0 + 0.02
    assert res.report.true_peak_db <= -1.0


def test_voice_stays_full_band(voice: np.ndarray, music: np.ndarray) -> None:
    res = mix(voice, music, SPANS)
    hf_in = _db(_band(voice.astype(np.float64), 6000.0, None))
    hf_out = _db(_band(res.audio[:, 0].astype(np.float64), 6000.0, None))  # music has nothing up there
    assert hf_out - hf_in == pytest.approx(res.report.gain_db, abs=0.5)
    assert res.report.limiter_db < 0.5


def test_music_bed_level_is_set_relative_to_the_voice(voice: np.ndarray, music: np.ndarray) -> None:
    opts = MixOptions(music_level_db=-9.0, duck_db=0.0)
    res = mix(voice, music, SPANS, opts)
    assert res.report.limiter_db < 0.01  # so the components below are exact
    g = 10 ** (res.report.gain_db / 20)
    voice_part = g * np.repeat(voice[:, None].astype(np.float64), 2, axis=1)
    music_part = res.audio.astype(np.float64) - voice_part
    meter = pyln.Meter(SR)
    level = meter.integrated_loudness(music_part) - meter.integrated_loudness(voice_part)
    assert level == pytest.approx(-9.0, abs=0.2)
    assert res.report.music_lufs - res.report.voice_lufs == pytest.approx(-9.0, abs=0.01)


def test_no_speech_means_music_at_bed_level(voice: np.ndarray, music: np.ndarray) -> None:
    res = mix(voice, music, [])
    low = _band(res.audio.astype(np.float64), None, 300.0)
    levels = [_db(low[s]) for s in [*_inside(SPANS), *GAPS]]
    assert max(levels) - min(levels) < 0.5
    assert res.report.duck_depth_db == 0.0


def test_no_voice_stream_is_music_only(music: np.ndarray, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="moodbgm.mix"):
        res = mix(None, music, SPANS)  # spans without a voice are ignored, loudly
    assert "without a voice" in caplog.text
    k = float(np.dot(res.audio[:, 0], music[:, 0]) / np.dot(music[:, 0], music[:, 0]))
    np.testing.assert_allclose(res.audio, k * music, atol=1e-5)
    assert pyln.Meter(SR).integrated_loudness(res.audio.astype(np.float64)) == pytest.approx(-16.0, abs=0.1)
    assert res.report.voice_lufs == -np.inf and res.report.duck_depth_db == 0.0


@pytest.mark.parametrize("voice_len", [N - 1000, N + 7000])
def test_output_is_exactly_as_long_as_the_music(voice: np.ndarray, music: np.ndarray, voice_len: int) -> None:
    v = np.zeros(voice_len, dtype=np.float32)
    v[: min(N, voice_len)] = voice[:voice_len]
    assert mix(v, music, SPANS).audio.shape == (N, 2)
    assert mix(None, music[:12345], []).audio.shape == (12345, 2)


def test_blockwise_files_equal_whole_array(voice: np.ndarray, music: np.ndarray, tmp_path: Path) -> None:
    whole = mix(voice, music, SPANS)
    vw = write_wav(tmp_path / "voice.wav", voice, SR)
    mw = write_wav(tmp_path / "bgm.wav", music, SR)
    report = mix_files(vw, mw, tmp_path / "mix.wav", SPANS, block_seconds=0.37)
    out, sr = read_wav(tmp_path / "mix.wav")
    assert sr == SR and out.shape == (N, 2)
    np.testing.assert_allclose(out, whole.audio, atol=1e-5)
    assert report.integrated_lufs == pytest.approx(whole.report.integrated_lufs, abs=1e-3)
    assert report.to_dict()["duck_depth_db"] == pytest.approx(whole.report.duck_depth_db)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bgm.wav", "mix.wav", "voice.wav"]
    # no voice file at all
    r2 = mix_files(None, mw, tmp_path / "music_only.wav", [])
    assert r2.to_dict()["voice_lufs"] is None


def test_long_files_measured_in_halves_and_encoded_while_mixed(
    voice: np.ndarray, music: np.ndarray, tmp_path: Path
) -> None:
    """Over 20 s the first pass measures two halves side by side: the same energies as one run (the
    filters of the second half warmed up); the AAC written beside the WAV decodes to the same mix."""
    from moodbgm import media
    from moodbgm.mix import _energies, _energies_of, _Reader, duck_curve, gate_curve

    reps = 3  # 30 s
    v, m = np.tile(voice, reps), np.tile(music, (reps, 1))
    spans = [(a + 10.0 * k, b + 10.0 * k) for k in range(reps) for a, b in SPANS]
    vr, mr, n = _Reader(v, mono=True), _Reader(m, mono=False), len(m)
    curve, gate = duck_curve(spans, n, SR, MixOptions()), gate_curve(spans, n, SR, MixOptions())
    one = _energies_of(vr, mr, curve, gate, SR, SR, 0, n)
    halves = _energies(vr, mr, curve, gate, SR, SR)
    assert one.shape == halves.shape == (n // (SR // 10), 4)
    np.testing.assert_allclose(halves, one, rtol=1e-9, atol=1e-15)

    vw, mw = write_wav(tmp_path / "voice.wav", v, SR), write_wav(tmp_path / "bgm.wav", m, SR)
    mix_files(vw, mw, tmp_path / "mix.wav", spans, out_aac=tmp_path / "mix.m4a")
    wav, _ = read_wav(tmp_path / "mix.wav")
    aac = media.load_audio(tmp_path / "mix.m4a", sample_rate=SR, mono=False)
    assert abs(len(aac) - len(wav)) <= 1024
    k = min(len(aac), len(wav))
    err = aac[SR:k] - wav[SR:k]
    assert 10 * np.log10(np.sum(wav[SR:k] ** 2) / np.sum(err**2)) > 20  # the same mix, AAC-coded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bgm.wav", "mix.m4a", "mix.wav", "voice.wav"]


def test_duck_curve_shape() -> None:
    opts = MixOptions(duck_db=12.0, attack_ms=50.0, release_ms=400.0, lookahead_ms=120.0)
    curve = duck_curve([(2.0, 4.0)], 8 * SR, SR, opts)
    at = lambda t: float(curve[round(t * 100)])  # noqa: E731
    assert at(1.0) == 0.0  # before the look-ahead
    assert at(2.0) < -0.8 * 12.0  # already down when speech starts
    assert at(3.0) == pytest.approx(-12.0, abs=0.01)
    assert -12.0 < at(4.2) < -0.5  # releasing
    assert at(7.0) > -0.01  # back up
    g = duck_gain(curve, 0, 8 * SR, SR)
    blocks = np.concatenate([duck_gain(curve, s, 9999, SR) for s in range(0, 8 * SR, 9999)])[: 8 * SR]
    np.testing.assert_array_equal(g, blocks)
    assert g.max() <= 1.0 and g.min() == pytest.approx(10 ** (-12 / 20), rel=1e-3)


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="duck_db"):
        MixOptions(duck_db=-3)
    with pytest.raises(ValueError, match="attack_ms"):
        MixOptions(attack_ms=0)
    with pytest.raises(ValueError, match="true_peak_db"):
        MixOptions(true_peak_db=2.0)
    with pytest.raises(ValueError, match="target_lufs"):
        MixOptions(target_lufs=0.0)


def test_streaming_loudness_meter_matches_pyloudnorm() -> None:
    rng = np.random.default_rng(5)
    x = _band(rng.standard_normal((7 * SR + 123, 2)), 50.0, 9000.0) * np.array([0.1, 0.05])
    x[2 * SR : 3 * SR] *= 0.001  # a quiet stretch the gates must drop
    meter = LoudnessMeter(SR, 2)
    for i in range(0, len(x), 7001):
        meter.push(x[i : i + 7001])
    assert meter.lufs() == pytest.approx(pyln.Meter(SR).integrated_loudness(x), abs=0.02)


def test_limiter_is_transparent_below_and_holds_the_ceiling_above() -> None:
    t = np.arange(3 * SR) / SR
    x = (0.3 * np.sin(2 * np.pi * 997 * t) + 0.2 * np.sin(2 * np.pi * 4100 * t))[:, None] * np.ones(2)
    x[SR : SR + 4800] *= 4.0  # a loud burst
    lim = TruePeakLimiter(SR, 2, ceiling_db=-1.0)
    y = np.concatenate([*(lim.push(x[i : i + 5000]) for i in range(0, len(x), 5000)), lim.finish()])
    assert y.shape == x.shape
    np.testing.assert_allclose(y[: SR // 2], x[: SR // 2], atol=1e-12)  # aligned, untouched
    tp = 20 * np.log10(np.abs(signal.resample_poly(y, 8, 1, axis=0)).max())
    assert tp <= -1.0 + 0.05
    meter = TruePeakMeter(2)
    meter.push(y)
    assert meter.dbtp() <= -1.0 + 1e-3
    assert lim.max_reduction_db > 6.0


def test_oversampler_skips_only_points_that_cannot_reach_the_floor(music: np.ndarray) -> None:
    """With a floor, peaks above it are the exact interpolated ones and the rest stay under it."""
    x = 2.5 * music.astype(np.float64)
    x[SR : SR + 480] += 0.6 * np.sign(np.sin(2 * np.pi * 5000 * np.arange(480) / SR))[:, None]  # clicks
    exact, fast = Oversampler(2), Oversampler(2)
    e = np.concatenate([exact.push(x[i : i + 7001]) for i in range(0, len(x), 7001)])
    floor = 0.6 * float(e.max())
    f = np.concatenate([fast.push(x[i : i + 7001], floor) for i in range(0, len(x), 7001)])
    hot = e > floor
    assert 0 < hot.sum() < len(e) // 2
    np.testing.assert_allclose(f[hot], e[hot], rtol=1e-12)
    assert np.all(f[~hot] <= floor) and np.all(f >= e - 1e-12)  # never below the exact peak
    # and the exact peaks are the 4x interpolation's, whatever the block size
    ref = np.abs(signal.resample_poly(x, 4, 1, axis=0, window=("kaiser", 8.0))).max()
    assert 20 * np.log10(e.max() / ref) == pytest.approx(0.0, abs=0.1)


def test_voice_residue_is_gated_outside_speech(music: np.ndarray) -> None:
    """What the voice isolation lets through between utterances (a tone here) is gated down."""
    t = np.arange(N) / SR
    residue = (0.1 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)  # above the music's band
    res = mix(residue, music, SPANS)
    high = _band(res.audio.astype(np.float64), 2000.0, None)
    speech = np.mean([_db(high[sl]) for sl in _inside(SPANS)])
    # gaps away from the gate's padding (250 ms) and its 150 ms closing
    quiet = [slice(int(a * SR), int(b * SR)) for a, b in ((0.1, 1.0), (4.5, 5.5), (9.0, 10.0))]
    gaps = np.mean([_db(high[sl]) for sl in quiet])
    assert speech - gaps >= 27.0  # the 30 dB gate


def test_without_speech_the_output_is_the_music(music: np.ndarray) -> None:
    t = np.arange(N) / SR
    residue = (0.1 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    res = mix(residue, music, [])
    out = res.audio.astype(np.float64)
    assert abs(res.report.integrated_lufs - (-16.0)) < 0.5
    assert _db(_band(out, 2000.0, None)) - _db(out) < -25.0  # the residue is 30 dB under the music
    corr = np.corrcoef(out[:, 0], music[:, 0])[0, 1]
    assert corr > 0.99


def test_gate_curve_opens_before_speech_and_closes_after() -> None:
    opts = MixOptions(gate_db=30.0, gate_pad_ms=250.0)
    curve = gate_curve([(2.0, 3.0)], 5 * SR, SR, opts)  # dB at 100 Hz
    assert curve[100] == pytest.approx(-30.0, abs=0.1)  # 1.0 s: closed
    assert curve[190] == pytest.approx(0.0, abs=0.5)  # 1.9 s: opened inside the padding
    assert curve[250] == pytest.approx(0.0, abs=0.1)  # speech
    assert curve[450] == pytest.approx(-30.0, abs=0.5)  # 4.5 s: closed again
    with pytest.raises(ValueError, match="gate_db"):
        MixOptions(gate_db=-1.0)


# ---------------------------------------------------------------- pumping (issue 12)

_PHRASES = (
    "Good morning and welcome to the update.",
    "Today we look at the project schedule.",
    "The meeting runs all morning.",
    "After the break we will talk about the budget.",
    "Thank you all for coming.",
)
_PAUSES = (0.7, 1.0, 3.0, 0.8)  # three short pauses, a long one, a short one


@pytest.fixture(scope="module")
def phrases() -> tuple[np.ndarray, np.ndarray, list[tuple[float, float]]]:
    """Real speech (espeak-ng) with short pauses between phrases, its VAD spans, and music under it."""
    from moodbgm.vad import SpeechDetector

    clips = [speak(t, "en-us", 165, 45) for t in _PHRASES]
    n = int((1.0 + sum(len(c) / SR for c in clips) + sum(_PAUSES) + 2.0) * SR)
    v = np.zeros(n, dtype=np.float32)
    at = SR
    for i, c in enumerate(clips):
        v[at : at + len(c)] = c
        at += len(c) + (int(_PAUSES[i] * SR) if i < len(_PAUSES) else 0)
    spans = SpeechDetector().detect(signal.resample_poly(v, 1, 3).astype(np.float32))
    m = old_music(n / SR, seed=1)
    return v, np.stack([m, m], axis=1).astype(np.float32), spans


@pytest.mark.parametrize("duck_db", [6.0, 11.0, 18.0])
def test_no_pumping_in_short_pauses_and_the_set_duck_depth(
    phrases: tuple[np.ndarray, np.ndarray, list[tuple[float, float]]], duck_db: float
) -> None:
    """Measured on the music as mixed (devtools.music_eval: per-frame regression of the mix on the
    stems): no rise over 2 dB in any pause under 1.2 s, depth within 1.5 dB of the setting, and the
    music back at its bed level in the long pause."""
    from devtools.music_eval.ducking import duck_stats, gain_db, music_gain

    v, m, spans = phrases
    res = mix(v, m, spans, MixOptions(duck_db=duck_db))
    gain = music_gain(res.audio, m, v, SR)
    d = duck_stats(gain, m, spans, [(0.0, len(m) / SR)], SR)
    short = [p for p in d.pauses if p.end - p.start < 1.2]
    assert len(short) >= 3, d.pauses  # the script's short pauses as the VAD (which pads speech) sees them
    assert d.pumps == 0, [p for p in d.pauses if p.pump]
    assert d.reference == "settled"
    assert abs(d.depth_db - duck_db) <= 1.5, d.depth_db
    long = max(d.pauses, key=lambda p: p.end - p.start)
    assert long.end - long.start > 2.0
    g = gain_db(gain)
    assert np.nanmax(g[int(long.start * 100) : int(long.end * 100)]) >= d.bed_gain_db - 1.5  # it comes back


def test_without_the_hold_the_same_speech_pumps(
    phrases: tuple[np.ndarray, np.ndarray, list[tuple[float, float]]],
) -> None:
    from devtools.music_eval.ducking import duck_stats, music_gain

    v, m, spans = phrases
    res = mix(v, m, spans, MixOptions(hold_ms=0.0, release_ms=400.0))
    d = duck_stats(music_gain(res.audio, m, v, SR), m, spans, [(0.0, len(m) / SR)], SR)
    assert d.pumps >= 3


def test_duck_curve_holds_short_pauses_and_releases_smoothly() -> None:
    opts = MixOptions(duck_db=11.0)
    curve = duck_curve([(1.0, 2.0), (3.0, 4.0), (7.0, 8.0)], 10 * SR, SR, opts)
    at = lambda t: float(curve[round(t * 100)])  # noqa: E731
    assert max(curve[200:300]) == pytest.approx(-11.0, abs=1e-6)  # a 1.0 s pause (0.88 s after look-ahead)
    assert at(6.5) > -1.0  # back up in the 3 s pause
    rise = np.diff(curve[400:650])
    assert rise.min() >= 0 and rise[0] < rise.max() / 4  # S-shaped (a one-pole starts steepest)
    assert rise.max() < 0.6  # dB per 10 ms: no jump


def test_a_failed_mix_leaves_no_file_and_no_encoder(
    voice: np.ndarray, music: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psutil

    from moodbgm import loudness

    calls = {"n": 0}
    push = loudness.TruePeakLimiter.push

    def failing(self: loudness.TruePeakLimiter, x: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 3:  # mid-way through the second pass, with the encoder running
            raise RuntimeError("disk full")
        return push(self, x)

    monkeypatch.setattr(loudness.TruePeakLimiter, "push", failing)
    vw, mw = write_wav(tmp_path / "voice.wav", voice, SR), write_wav(tmp_path / "bgm.wav", music, SR)
    with pytest.raises(RuntimeError, match="disk full"):
        mix_files(vw, mw, tmp_path / "mix.wav", SPANS, block_seconds=1.0, out_aac=tmp_path / "mix.m4a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bgm.wav", "voice.wav"]
    assert not [c for c in psutil.Process().children(recursive=True) if "ffmpeg" in c.name()]
