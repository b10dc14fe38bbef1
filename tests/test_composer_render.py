"""Composer audio: FluidSynth rendering with the real FluidR3 GM SoundFont."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from helpers import timeline
from moodbgm.config import DEFAULT_SOUNDFONT
from moodbgm.errors import ModelNotFoundError
from moodbgm.generate.base import STYLES, GenerateOptions
from moodbgm.generate.composer import ComposerGenerator, compose, render
from moodbgm.types import SAMPLE_RATE, MusicBed, Timeline

pytestmark = pytest.mark.skipif(not DEFAULT_SOUNDFONT.is_file(), reason="FluidR3 GM SoundFont not installed")


def db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x))) + 1e-12))


@pytest.fixture(scope="module")
def generator() -> ComposerGenerator:
    return ComposerGenerator()


@pytest.fixture(scope="module")
def bed(generator: ComposerGenerator) -> tuple[Timeline, float, MusicBed, list[float]]:
    tl = timeline((7.3, "joy"), (6.1, "fear"), (8.0, "anger"))
    duration = 21.3337  # not a whole number of samples' worth of beats
    seen: list[float] = []
    return tl, duration, generator.generate(tl, duration, GenerateOptions(seed=5), seen.append), seen


def test_exact_length_not_silent_no_clipping(bed: tuple[Timeline, float, MusicBed, list[float]]) -> None:
    _, duration, music, _ = bed
    assert music.sample_rate == SAMPLE_RATE
    assert music.audio.shape == (round(duration * SAMPLE_RATE), 2) and music.audio.dtype == np.float32
    peak = float(np.max(np.abs(music.audio)))
    assert peak <= 10 ** (-1 / 20) + 1e-6
    for start in np.arange(0.0, duration - 2.0, 2.0):  # sound all the way through
        chunk = music.audio[int(start * SAMPLE_RATE) : int((start + 2.0) * SAMPLE_RATE)]
        assert db(chunk) > -45.0, start
    assert db(music.audio[-int(0.05 * SAMPLE_RATE) :]) < db(music.audio) - 20  # faded out at the end


def test_midi_bytes_and_progress(bed: tuple[Timeline, float, MusicBed, list[float]]) -> None:
    tl, _, music, seen = bed
    assert music.midi is not None
    pm = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
    assert len(pm.get_tempo_changes()[0]) == len(tl.sections)
    assert {i.name for i in pm.instruments} >= {"pad", "bass", "arp", "drums"}
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and len(seen) >= 3


def test_same_seed_same_audio_other_seed_differs(generator: ComposerGenerator) -> None:
    tl = timeline((4.0, "neutral"), (4.0, "surprise"))
    a = generator.generate(tl, 8.0, GenerateOptions(seed=1))
    b = generator.generate(tl, 8.0, GenerateOptions(seed=1))
    c = generator.generate(tl, 8.0, GenerateOptions(seed=2))
    assert a.midi == b.midi and np.array_equal(a.audio, b.audio)
    assert a.midi != c.midi and not np.array_equal(a.audio, c.audio)


def test_energy_changes_at_the_planned_boundary() -> None:
    """Quiet sadness then loud anger: the level jumps at the boundary, to within one beat."""
    tl = timeline((9.6, "sadness"), (8.0, "anger"))
    score = compose(tl, tl.duration, GenerateOptions(seed=0))
    audio = render(score, tl.duration).mean(axis=1)
    b = 9.6
    frame = int(0.05 * SAMPLE_RATE)
    env = np.array([db(audio[i : i + frame]) for i in range(0, len(audio) - frame, frame)])
    t = np.arange(len(env)) * 0.05

    def level(lo: float, hi: float) -> float:
        return float(np.median(env[(t >= lo) & (t < hi)]))

    assert level(b + 0.3, b + 2.0) - level(b - 2.0, b - 0.3) > 6.0
    # biggest rise of the 0.5 s moving level near the boundary
    win = 10
    smooth = np.convolve(env, np.ones(win) / win, mode="same")
    rise = smooth[win:] - smooth[:-win]
    rise_t = t[:-win] + win * 0.05 / 2
    near = (rise_t > b - 3) & (rise_t < b + 3)
    onset = float(rise_t[near][np.argmax(rise[near])])
    beat = 60.0 / score.sections[1].plan.tempo
    assert abs(onset - b) <= max(beat, 0.25), onset


@pytest.mark.parametrize("style", STYLES)
def test_every_style_renders(style: str) -> None:
    tl = timeline((3.0, "joy"), (3.5, "sadness"))
    audio = render(compose(tl, 6.5, GenerateOptions(style=style)), 6.5)
    assert audio.shape == (round(6.5 * SAMPLE_RATE), 2)
    assert np.all(np.isfinite(audio)) and db(audio) > -35.0


def test_missing_soundfont_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"fluid-soundfont-gm.*MOODBGM_SOUNDFONT"):
        ComposerGenerator(soundfont=tmp_path / "missing.sf2")


def test_loading_fluidsynth_prints_nothing_on_stdout() -> None:
    """pyfluidsynth prints where it found the library when CI is set; the CLI's stdout must stay clean."""
    import os
    import subprocess
    import sys

    code = "from moodbgm.generate.composer.render import _import_fluidsynth; _import_fluidsynth()"
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "CI": "true"}
    )
    assert r.returncode == 0 and r.stdout == "", r.stdout
