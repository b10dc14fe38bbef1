"""The whole `moodbgm run` on a generated sample, judged like a listener would (issue 5).

Real ffmpeg, real Whisper base, real DeepFilterNet3, Silero VAD, MiniLM + head, FluidSynth.
The pipeline runs once per module on the whole demo script (66 s, 155 words: one word is 0.65 % WER).
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import jiwer
import numpy as np
import pytest

from devtools.sample import SampleInfo, make_sample
from moodbgm import media
from moodbgm.files import read_json, read_wav
from moodbgm.stt import Transcriber, build_transcriber
from moodbgm.types import EMOTIONS

pytestmark = pytest.mark.slow
SR = 48_000


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "moodbgm.cli", "-q", *args], capture_output=True, text=True, env=full_env
    )


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleInfo:
    return make_sample(tmp_path_factory.mktemp("sample") / "clip.mp4", scale=1.0, seed=1)


@pytest.fixture(scope="module")
def job(sample: SampleInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("job") / "job"
    r = run_cli("run", str(sample.video), "-o", str(out), "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out / "output.mp4")
    return out


def _norm(text: str) -> str:
    return re.sub(r"[^a-z' ]+", " ", text.lower()).strip()


def _wer(sample: SampleInfo, audio16: np.ndarray, transcriber: Transcriber) -> float:
    """WER of Whisper's reading against the script: the better of two readings, the whole clip at once
    and in pieces of at least 20 s cut in the middle of pauses. Whole-clip decoding sometimes jumps
    over a passage (a timestamp token leaps ahead; 0.194 against 0.045 on an AMD EPYC after a change of
    AAC coder that made the mix decode closer to itself), and any segmentation has such accidents on
    some CPU; a word the remix really buries is lost in both readings."""
    sr, mids = 16_000, [(a + b) / 2 for a, b in sample.pauses]
    edges = [0.0]
    for m in mids:
        if m - edges[-1] >= 20.0:
            edges.append(m)
    truth, scores = _norm(sample.text), []
    for cuts in ([0.0, sample.duration], [*edges, sample.duration]):
        hyp = " ".join(
            transcriber.transcribe(audio16[int(a * sr) : int(b * sr)]).text
            for a, b in itertools.pairwise(cuts)
        )
        scores.append(float(jiwer.wer(truth, _norm(hyp))))
    print(f"WER whole clip {scores[0]:.3f}, in {len(edges)} pieces {scores[1]:.3f}")
    return min(scores)


# The remix may cost this much WER beyond the input's (8 words of 155). Measured with the pinned
# decoder below on an Intel Xeon (AVX-512): this sample loses 2 words with int8 (1 or 2 threads) and
# none with float32; the demo (seed 0) loses 4 (+0.026) with int8, float32, int8_float32, 1 or 2
# threads, beam 2 or 5. The lost words are soft
# consonants that DeepFilterNet3 suppresses under the old music ("celebrating", "hear"): its voice
# alone scores worse than the output, the VAD covers every line in one span, the gate and the level
# lose nothing. A 25 s cut lost one word more on an AMD EPYC than on the Xeon: the bound leaves
# 4+ words for such spread. On an AMD EPYC (family 26), 2026-11-28: input 0.052 whole / 0.045 in
# pieces, output 0.052 / 0.045 (the fast AAC coder; 0.039 whole with the default coder).
REMIX_WER_COST = 0.05


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    """Whisper base pinned for comparable scores on any x86-64 CPU: int8, 2 threads, English, beam 5,
    greedy temperature only (no sampled fallback), no conditioning on previous text."""
    return build_transcriber(
        model="base",
        device="cpu",
        language="en",
        threads=2,
        beam_size=5,
        temperatures=(0.0,),
        compute_type="int8",
    )


def test_job_directory_is_complete(job: Path) -> None:
    for name in (
        "media.json", "audio.wav", "voice.wav", "transcript.json", "emotions.json", "timeline.json",
        "bgm.mid", "bgm.wav", "mix.wav", "output.mp4", "timeline.png", "job.json",
    ):  # fmt: skip
        assert (job / name).exists(), name
    record = read_json(job / "job.json")
    assert record["status"] == "done" and record["progress"] == 1.0
    assert set(record["stages"]) == {
        "media", "separate", "stt", "emotion", "timeline", "generate", "mix", "mux", "report",
    }  # fmt: skip
    assert all(s["seconds"] >= 0 for s in record["stages"].values())
    assert record["versions"]["moodbgm"]
    assert not list(job.glob("*.part*")) and not list(job.glob(".*"))
    emotions = read_json(job / "emotions.json")["phrases"]
    assert emotions and all(set(p["scores"]) == set(EMOTIONS) for p in emotions)


def test_output_keeps_video_and_duration(sample: SampleInfo, job: Path) -> None:
    src, out = media.probe(sample.video), media.probe(job / "output.mp4")
    assert src.video is not None and out.video is not None and out.audio is not None
    assert abs(out.duration - src.duration) <= 1 / src.video.fps
    assert media.video_packet_hash(job / "output.mp4") == media.video_packet_hash(sample.video)
    bgm, sr = read_wav(job / "bgm.wav")
    assert sr == SR and bgm.shape == (round(src.duration * SR), 2)


def test_speech_stays_intelligible(sample: SampleInfo, job: Path, transcriber: Transcriber) -> None:
    wer_in = _wer(sample, media.load_audio(sample.video), transcriber)
    wer_out = _wer(sample, media.load_audio(job / "output.mp4"), transcriber)
    assert wer_in <= 0.1, wer_in  # the check hears the speech (4 and 7 errors in 155 words measured)
    assert wer_out <= wer_in + REMIX_WER_COST, (wer_in, wer_out)


def _gaps(sample: SampleInfo, margin: float = 0.15) -> list[tuple[int, int]]:
    spans = [(0.0, sample.lines[0].start), *sample.pauses, (sample.lines[-1].end, sample.duration)]
    return [(int((a + margin) * SR), int((b - margin) * SR)) for a, b in spans if b - a > 2 * margin + 0.2]


def _speech(sample: SampleInfo, margin: float = 0.15) -> list[tuple[int, int]]:
    return [(int((ln.start + margin) * SR), int((ln.end - margin) * SR)) for ln in sample.lines]


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    return float(abs(np.dot(x, y)) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12))


def test_old_music_is_gone(sample: SampleInfo, job: Path) -> None:
    old, _ = read_wav(sample.music_wav)
    old = old if old.ndim == 1 else old.mean(axis=1)
    original = media.load_audio(sample.video, sample_rate=SR)
    result = media.load_audio(job / "output.mp4", sample_rate=SR)
    new, _ = read_wav(job / "bgm.wav")
    new = new.mean(axis=1)

    def old_level(x: np.ndarray, a: int, b: int) -> float:
        # amount of the old bed in x, fitted jointly with the new music (the two may correlate by chance)
        basis = np.stack([old[a:b], new[a:b]], axis=1)
        coef, *_ = np.linalg.lstsq(basis, x[a:b], rcond=None)
        return float(abs(coef[0]))

    for a, b in _gaps(sample):
        assert _corr(original[a:b], old[a:b]) > 0.5  # the check can see the old bed...
        assert old_level(result, a, b) < 0.1 * old_level(original, a, b)  # ...it is 20 dB down or gone
        assert _corr(result[a:b], new[a:b]) > 0.8  # and what plays instead is the new music


def test_music_ducks_under_speech(sample: SampleInfo, job: Path) -> None:
    mix, _ = read_wav(job / "mix.wav")
    bgm, _ = read_wav(job / "bgm.wav")

    def gain(a: int, b: int) -> float:  # least-squares level of the music inside the mix
        m, x = bgm[a:b].ravel(), mix[a:b].ravel()
        return float(np.dot(m, x) / (np.dot(m, m) + 1e-12))

    # the bed level is what the music returns to once the ducker has released (short pauses between
    # sentences are shorter than the release, so take the best-recovered gap)
    bed = max(gain(a, b) for a, b in _gaps(sample))
    speech = np.median([gain(a, b) for a, b in _speech(sample, margin=0.3)])
    assert speech > 0 and 20 * np.log10(bed / speech) >= 8.0


def test_rerun_redoes_nothing(sample: SampleInfo, job: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in job.iterdir()}
    r = run_cli("run", str(sample.video), "-o", str(job), "--seed", "3")
    assert r.returncode == 0, r.stderr
    after = {p.name: p.stat().st_mtime_ns for p in job.iterdir()}
    changed = {n for n in after if after[n] != before.get(n)}
    assert changed <= {"job.json"}, changed


def test_replan_with_forced_emotion(job: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "job"
    shutil.copytree(job, copy)
    r = run_cli("timeline", str(copy), "--emotion", "sadness")
    assert r.returncode == 0, r.stderr
    timeline = json.loads((copy / "timeline.json").read_text())
    assert [s["emotion"] for s in timeline["sections"]] == ["sadness"]


def test_failed_run_leaves_no_final_outputs_and_resumes(sample: SampleInfo, tmp_path: Path) -> None:
    out = tmp_path / "job"
    bad = tmp_path / "edited.json"  # an edited timeline that leaves a gap: rejected at the timeline stage
    sections = [
        {"start": 0.0, "end": 3.0, "emotion": "joy"},
        {"start": 4.0, "end": sample.duration, "emotion": "fear"},
    ]
    bad.write_text(json.dumps({"duration": sample.duration, "sections": sections}))
    r = run_cli("run", str(sample.video), "-o", str(out), "--timeline", str(bad))
    assert r.returncode == 2 and "gap" in r.stderr.lower(), r.stderr
    for name in ("timeline.json", "bgm.wav", "bgm.mid", "mix.wav", "output.mp4"):
        assert not (out / name).exists()
    assert not list(out.glob("*.part*"))
    record = read_json(out / "job.json")
    assert record["status"] == "failed" and record["error"]["kind"] == "input"
    assert "gap" in record["error"]["message"].lower()
    transcript_mtime = (out / "transcript.json").stat().st_mtime_ns
    r = run_cli("run", str(sample.video), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert (out / "output.mp4").exists()
    assert (out / "transcript.json").stat().st_mtime_ns == transcript_mtime  # finished work is kept


@pytest.mark.parametrize("name", ["av.mp4", "video_only.mp4"])
def test_video_without_speech_gets_the_new_music_only(media_dir: Path, tmp_path: Path, name: str) -> None:
    """No speech (a 440 Hz tone) or no audio at all: one neutral section, and the output is the bed."""
    out = tmp_path / "job"
    r = run_cli("run", str(media_dir / name), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert read_json(out / "transcript.json")["phrases"] == []
    assert [s["emotion"] for s in read_json(out / "timeline.json")["sections"]] == ["neutral"]
    result = media.load_audio(out / "output.mp4", sample_rate=SR)
    bgm, _ = read_wav(out / "bgm.wav")
    n = min(len(result), len(bgm)) - SR // 2
    assert _corr(result[SR // 2 : n], bgm[SR // 2 : n].mean(axis=1)) > 0.95
    if name == "av.mp4":  # the old tone is gone
        spectrum = np.abs(np.fft.rfft(result[: 4 * SR]))
        tone = spectrum[(437 * 4) : (443 * 4)].max()
        assert tone < 0.05 * spectrum.max()
