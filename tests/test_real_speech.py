"""Real human speech over real music, through the real pipeline (media from tests/realmedia.py).

The scene: five LibriVox clips (one narrator) read one after another with pauses, over the demucs
sdist's real music excerpt (looped) as the old bed, muxed into a small video with ffmpeg. Checked:
the word error rate of the real transcriber on the mixed input and on the remixed output of a full
``moodbgm run`` (the remix must keep the speech as intelligible as the input), each clip's phrase
timing against its pocketsphinx forced alignment, and the emotion stage on real speech.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from moodbgm import media
from moodbgm.types import Transcript
from realmedia import codec2, librivox, music, wer

pytestmark = pytest.mark.slow

SR = 44_100
LEAD, GAP = 1.0, 1.4  # seconds of music before the first clip and between clips (> the phrase max_pause)
BED_DB = -12.0  # the old bed's level relative to the speech's peak-normalised level


@dataclass(frozen=True)
class Scene:
    video: Path
    reference: str  # the whole transcript
    starts: tuple[float, ...]  # each clip's first aligned word, seconds into the video
    ends: tuple[float, ...]  # each clip's last aligned word
    duration: float


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    clips = librivox()
    d = tmp_path_factory.mktemp("real")
    pieces, starts, ends, t = [np.zeros(round(LEAD * SR), np.float32)], [], [], LEAD
    for clip in clips:
        speech = media.load_audio(clip.path, sample_rate=SR)
        speech = 0.5 * speech / np.abs(speech).max()
        starts.append(t + clip.words[0].start)
        ends.append(t + clip.words[-1].end)
        pieces += [speech, np.zeros(round(GAP * SR), np.float32)]
        t += len(speech) / SR + GAP
    voice = np.concatenate(pieces)
    bed = media.load_audio(music(), sample_rate=SR)
    bed = np.tile(bed, int(np.ceil(len(voice) / len(bed))))[: len(voice)]
    bed = bed / np.sqrt(np.mean(bed**2)) * np.sqrt(np.mean(voice[voice != 0] ** 2)) * 10 ** (BED_DB / 20)
    mix = voice + bed
    sf.write(d / "mix.wav", np.stack([mix, mix], axis=1) / max(1.0, float(np.abs(mix).max())), SR)
    video = d / "scene.mp4"
    picture = f"color=c=darkblue:s=160x120:r=25:d={len(mix) / SR:.3f}"
    _ffmpeg(
        "-f", "lavfi", "-i", picture, "-i", str(d / "mix.wav"),
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-shortest", str(video),
    )  # fmt: skip
    reference = " ".join(c.text for c in clips)
    return Scene(video, reference, tuple(starts), tuple(ends), len(mix) / SR)


@pytest.fixture(scope="module")
def run_dir(scene: Scene, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full ``moodbgm run`` of the scene through the installed command line."""
    out = tmp_path_factory.mktemp("run") / "job"
    done = subprocess.run(
        [sys.executable, "-m", "moodbgm.cli", "-q", "run", str(scene.video), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def transcriber():  # type: ignore[no-untyped-def]
    from moodbgm.models import Models

    return Models().transcriber()


def _transcribe(transcriber, path: Path) -> Transcript:  # type: ignore[no-untyped-def]
    result: Transcript = transcriber.transcribe(media.load_audio(path, sample_rate=16_000))
    return result


def _text(t: Transcript) -> str:
    return " ".join(p.text for p in t.phrases)


def test_wer_of_the_input_and_the_remix(scene: Scene, run_dir: Path, transcriber) -> None:  # type: ignore[no-untyped-def]
    before = wer(scene.reference, _text(_transcribe(transcriber, scene.video)))
    after = wer(scene.reference, _text(_transcribe(transcriber, run_dir / "output.mp4")))
    print(f"WER over the old bed {before:.3f}, after the remix {after:.3f}")
    assert before <= 0.15, before  # real read speech over music at -12 dB: the transcriber copes
    # The new bed must not bury the voice. One word is 1.4 points of WER here, and which words the int8
    # transcriber gets right on a changed mix depends on the CPU: within +0.05 on an Intel Xeon (family 6
    # model 207); on an AMD EPYC (family 25 model 1) 0.014 -> 0.070, at e1e1587 as at this commit
    # ("disposed" heard as "sposed" twice, "is" as "as", "his" as "its", the last one already in the
    # isolated voice). A buried voice loses far more (a third of the words and up).
    assert after <= before + 0.075, (before, after)


def test_phrase_timing_follows_the_forced_alignment(scene: Scene, run_dir: Path) -> None:
    transcript = Transcript.from_dict(json.loads((run_dir / "transcript.json").read_text()))
    assert transcript.language == "en"
    starts = np.array([p.start for p in transcript.phrases])
    ends = np.array([p.end for p in transcript.phrases])
    # some phrase starts where each clip's first word starts, and one ends where its last word ends.
    # Measured (Xeon, faster-whisper base): starts 0.29-0.61 s early (Whisper's word timestamps lead).
    start_errors = [float(np.min(np.abs(starts - s))) for s in scene.starts]
    end_errors = [float(np.min(np.abs(ends - e))) for e in scene.ends]
    print(f"phrase start errors {np.round(start_errors, 2)}, end errors {np.round(end_errors, 2)}")
    assert max(start_errors) <= 0.8 and float(np.median(start_errors)) <= 0.5, (start_errors, starts)
    assert max(end_errors) <= 0.8 and float(np.median(end_errors)) <= 0.5, (end_errors, ends)
    # no phrase bridges a pause between two clips
    for end, nxt in zip(scene.ends[:-1], scene.starts[1:], strict=True):
        middle = (end + nxt) / 2
        assert not np.any((starts < middle - 0.2) & (ends > middle + 0.2)), middle


def test_full_run_outputs(scene: Scene, run_dir: Path) -> None:
    record = json.loads((run_dir / "job.json").read_text())
    assert record["status"] == "done", record
    assert record.get("emotion_warning") is None
    info = media.probe(run_dir / "output.mp4")
    assert info.audio is not None and abs(info.duration - scene.duration) < 0.1
    emotions = json.loads((run_dir / "emotions.json").read_text())
    assert emotions["language"] == "en" and emotions["warning"] is None
    assert len(emotions["phrases"]) >= len(scene.starts)
    timeline = json.loads((run_dir / "timeline.json").read_text())
    assert timeline["sections"][0]["start"] == 0.0
    assert abs(timeline["sections"][-1]["end"] - scene.duration) < 0.1


def test_other_speakers_are_transcribed_as_english(transcriber) -> None:  # type: ignore[no-untyped-def]
    """codec2-examples: real speech by other speakers, 8 and 16 kHz."""
    for name in ("vk5qi.wav", "speech_orig_16k.wav"):
        t = _transcribe(transcriber, codec2(name))
        assert t.language == "en", (name, t.language)
        assert len(_text(t).split()) >= 8, (name, _text(t))
