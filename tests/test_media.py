from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from moodbgm import media
from moodbgm.errors import (
    EmptyMediaError,
    InputError,
    MediaError,
    NotMediaError,
    NoVideoStreamError,
    TruncatedMediaError,
)


def test_probe_reads_streams(media_dir: Path) -> None:
    info = media.probe(media_dir / "av.mp4")
    assert info.duration == pytest.approx(6.0, abs=0.1)
    assert info.video is not None and info.video.codec == "h264"
    assert (info.video.width, info.video.height) == (160, 120)
    assert info.video.fps == pytest.approx(25.0)
    assert info.audio is not None and info.audio.sample_rate == 44100
    assert media.MediaInfo.from_dict(info.to_dict()) == info


def test_video_without_audio_is_valid(media_dir: Path, tmp_path: Path) -> None:
    info = media.probe(media_dir / "video_only.mp4")
    assert info.audio is None and info.video is not None
    out = media.extract_audio(media_dir / "video_only.mp4", tmp_path / "a.wav")
    audio, sr = sf.read(out)
    assert sr == 48000 and audio.shape == (round(info.duration * 48000), 2)
    assert not np.any(audio)


def test_extract_audio_exact_length_48k_stereo(media_dir: Path, tmp_path: Path) -> None:
    info = media.probe(media_dir / "av.mp4")
    out = media.extract_audio(media_dir / "av.mp4", tmp_path / "audio.wav")
    audio, sr = sf.read(out, dtype="float32")
    assert sr == 48000 and audio.shape == (round(info.duration * 48000), 2)
    # a 440 Hz sine survives resampling: dominant frequency
    spec = np.abs(np.fft.rfft(audio[48000:96000, 0]))
    assert abs(np.argmax(spec) * 48000 / 48000 - 440) < 2
    assert not list(tmp_path.glob("*.part*")), "no temp files left behind"


def test_load_audio_mono_16k(media_dir: Path) -> None:
    a = media.load_audio(media_dir / "av.mp4", sample_rate=16000)
    assert a.dtype == np.float32 and a.ndim == 1
    assert len(a) == pytest.approx(6 * 16000, rel=0.02)
    assert 0.1 < np.abs(a).max() <= 1.0


def test_mux_copies_video_bit_exactly(media_dir: Path, tmp_path: Path) -> None:
    src = media_dir / "av.mp4"
    info = media.probe(src)
    n = round(info.duration * 48000)
    t = np.arange(n) / 48000
    wav = tmp_path / "new.wav"
    sf.write(wav, np.stack([np.sin(2 * np.pi * 220 * t)] * 2, axis=1).astype(np.float32) * 0.3, 48000)
    out = media.mux(src, media.encode_aac(wav, tmp_path / "new.m4a"), tmp_path / "out.mp4")
    oi = media.probe(out)
    assert oi.audio is not None and oi.audio.codec == "aac"
    assert oi.video is not None and oi.video.codec == info.video.codec  # type: ignore[union-attr]
    assert abs(oi.duration - info.duration) <= 1 / info.video.fps  # type: ignore[union-attr]
    assert media.video_packet_hash(out) == media.video_packet_hash(src)
    # faststart: the index (moov) comes before the media data (mdat)
    head = out.read_bytes()
    assert head.find(b"moov") < head.find(b"mdat")


def test_scene_cuts(media_dir: Path) -> None:
    cuts = media.detect_scene_cuts(media_dir / "av.mp4")
    assert len(cuts) == 2
    assert cuts[0] == pytest.approx(2.0, abs=0.05) and cuts[1] == pytest.approx(4.0, abs=0.05)
    assert media.detect_scene_cuts(media_dir / "audio_only.m4a") == ()


@pytest.mark.parametrize(
    ("name", "error", "words"),
    [
        ("random.mp4", NotMediaError, "not a media file"),
        ("empty.mp4", EmptyMediaError, "empty file"),
        ("truncated.mp4", TruncatedMediaError, "truncated"),
    ],
)
def test_bad_input_probe(media_dir: Path, name: str, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words) as exc:
        media.probe(media_dir / name)
    assert isinstance(exc.value, InputError)
    assert name in str(exc.value)


def test_truncated_data_after_good_index(media_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TruncatedMediaError, match="truncated") as exc:
        media.extract_audio(media_dir / "truncated_faststart.mp4", tmp_path / "a.wav")
    assert exc.value.stderr  # ffmpeg's own words are kept
    assert not (tmp_path / "a.wav").exists(), "no half file under the final name"


def test_missing_file_and_zero_duration(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        media.probe(tmp_path / "nope.mp4")


def test_aac_encoder_streams_what_encode_aac_makes(tmp_path: Path) -> None:
    """Blocks written while they are produced decode to the same samples as encoding the WAV."""
    rng = np.random.default_rng(0)
    t = np.arange(3 * 48000) / 48000
    audio = (0.3 * np.stack([np.sin(2 * np.pi * 330 * t), np.sin(2 * np.pi * 440 * t)], axis=1)
             + 0.01 * rng.standard_normal((len(t), 2))).astype(np.float32)  # fmt: skip
    sf.write(tmp_path / "a.wav", audio, 48000, subtype="FLOAT")
    whole = media.encode_aac(tmp_path / "a.wav", tmp_path / "whole.m4a")
    encoder = media.AacEncoder(tmp_path / "streamed.m4a", 48000, 2)
    for start in range(0, len(audio), 7001):
        encoder.write(audio[start : start + 7001])
    streamed = encoder.close()
    a = media.load_audio(whole, sample_rate=48000, mono=False)
    b = media.load_audio(streamed, sample_rate=48000, mono=False)
    assert a.shape == b.shape and abs(len(a) - len(audio)) <= 1024
    assert np.array_equal(a, b)
    assert np.corrcoef(a[2048:-2048, 0], audio[2048 : len(a) - 2048, 0])[0, 1] > 0.99


def test_aac_encoder_failure_and_abort(tmp_path: Path) -> None:
    encoder = media.AacEncoder(tmp_path / "x.m4a", 48000, 2)
    with pytest.raises(ValueError, match=r"expected \(n, 2\)"):
        encoder.write(np.zeros(100, np.float32))
    encoder.write(np.zeros((4800, 2), np.float32))
    encoder.abort()
    assert not (tmp_path / "x.m4a").exists()
    bad = media.AacEncoder(tmp_path / "no-such-dir" / "x.m4a", 48000, 2)  # ffmpeg cannot open it
    for _ in range(20):
        bad.write(np.zeros((48000, 2), np.float32))  # never blocks, though nobody reads the pipe
    with pytest.raises(MediaError, match="could not encode the soundtrack") as err:
        bad.close()
    assert "no-such-dir" in err.value.stderr


def test_audio_only_has_no_video(media_dir: Path, tmp_path: Path) -> None:
    info = media.probe(media_dir / "audio_only.m4a")
    with pytest.raises(NoVideoStreamError, match="no video stream"):
        media.require_video(info)
    with pytest.raises(NoVideoStreamError):
        media.mux(media_dir / "audio_only.m4a", media_dir / "audio_only.m4a", tmp_path / "o.mp4")
