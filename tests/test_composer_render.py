"""Composer audio: FluidSynth rendering with the real FluidR3 GM SoundFont."""

from __future__ import annotations

import io
import itertools
import threading
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from helpers import timeline
from moodbgm.config import DEFAULT_SOUNDFONT
from moodbgm.errors import ModelNotFoundError
from moodbgm.generate.base import STYLES, GenerateOptions
from moodbgm.generate.composer import ComposerGenerator, SectionScore, compose, render
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
    assert len(pm.key_signature_changes) == len(tl.sections)
    assert len(pm.get_tempo_changes()[0]) >= len(tl.sections)  # + the beats of tempo ramps
    assert {i.name for i in pm.instruments} >= {"pad", "bass", "arp", "drums"}
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and len(seen) >= 3


def test_same_seed_same_audio_other_seed_differs(generator: ComposerGenerator) -> None:
    tl = timeline((4.0, "neutral"), (4.0, "surprise"))
    a = generator.generate(tl, 8.0, GenerateOptions(seed=1))
    b = generator.generate(tl, 8.0, GenerateOptions(seed=1))
    c = generator.generate(tl, 8.0, GenerateOptions(seed=2))
    assert a.midi == b.midi and np.array_equal(a.audio, b.audio)
    assert a.midi != c.midi and not np.array_equal(a.audio, c.audio)


@pytest.mark.parametrize("style", STYLES)
def test_section_loudness_is_balanced(style: str) -> None:
    """Every section within 3 LU of the piece's median (BS.1770), whatever the emotion: anger is
    carried by tempo, harmony and attack, not by level; the closing chord rings out over the end."""
    import pyloudnorm

    tl = timeline(
        (6.0, "sadness"), (6.0, "anger"), (6.0, "neutral"), (6.0, "fear"), (6.0, "joy"),
        (6.0, "disgust"), (6.5, "surprise"),
    )  # fmt: skip
    score = compose(tl, tl.duration, GenerateOptions(style=style, seed=3))
    audio = render(score, tl.duration)
    meter = pyloudnorm.Meter(SAMPLE_RATE)
    lufs = [
        meter.integrated_loudness(
            audio[
                round(s.plan.start * SAMPLE_RATE) : round(min(s.plan.end, tl.duration) * SAMPLE_RATE)
            ].astype(np.float64)
        )
        for s in score.sections
    ]
    med = float(np.median(lufs))
    assert all(abs(x - med) <= 3.0 for x in lufs), [round(x - med, 1) for x in lufs]
    assert all(abs(b - a) <= 3.0 for a, b in itertools.pairwise(lufs))
    final = score.sections[-1].plan
    onset = round(final.time(final.bar_starts[-1]) * SAMPLE_RATE)
    assert 1.0 <= (len(audio) - onset) / SAMPLE_RATE <= 2.0  # the closing chord's release
    assert db(audio[onset : onset + SAMPLE_RATE // 4]) > db(audio[-SAMPLE_RATE // 10 :]) + 15


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

    code = "from moodbgm.generate.composer.synth import import_fluidsynth; import_fluidsynth()"
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "CI": "true"}
    )
    assert r.returncode == 0 and r.stdout == "", r.stdout


def test_section_loudness_meter_agrees_with_pyloudnorm() -> None:
    """The render's vectorised float32 BS.1770 meter against pyloudnorm's reference, on a real
    recording (the demucs music excerpt, stereo) and on FluidSynth music, at lengths the sections
    have; near silence measures -inf, under 0.5 s is not measured."""
    import pyloudnorm

    from moodbgm.generate.composer.loudness import Loudness
    from moodbgm.media import load_audio
    from realmedia import music

    real = load_audio(music(), SAMPLE_RATE, mono=False)
    tl = timeline((5.0, "anger"), (7.0, "sadness"))
    synth = render(compose(tl, 12.0, GenerateOptions(seed=2)), 12.0)
    reference, meter = pyloudnorm.Meter(SAMPLE_RATE), Loudness(SAMPLE_RATE)
    checked = 0
    for audio in (real, synth, real[:, :1] * 0.01):
        for seconds in (0.7, 4.3, 11.9):
            n = round(seconds * SAMPLE_RATE)
            for start in range(0, len(audio) - n, n):
                x = audio[start : start + n]
                expected = reference.integrated_loudness(x.astype(np.float64))
                assert meter(x) == pytest.approx(expected, abs=0.1), (seconds, start)
                checked += 1
    assert checked >= 20
    assert meter(np.zeros((SAMPLE_RATE, 2), np.float32)) == -np.inf
    assert meter(real[: SAMPLE_RATE // 3]) == -np.inf


def test_two_synths_are_deterministic_and_cancel_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sections dealt to two synths in threads: the same bytes every run, whichever thread is faster
    (the split depends only on the score), sounding like the one-synth render; a progress callback
    that raises stops the synths, and a synth's error reaches the caller."""
    import time

    from moodbgm.generate.composer import FluidRenderer, RenderOptions
    from moodbgm.generate.composer.render import _Window
    from moodbgm.generate.composer.synth import SectionSynth

    tl = timeline((4.0, "joy"), (3.0, "fear"), (5.0, "neutral"), (2.5, "anger"), (4.0, "sadness"))
    score = compose(tl, tl.duration, GenerateOptions(seed=4))
    one, two = (FluidRenderer(options=RenderOptions(workers=w)) for w in (1, 2))
    a = two.render(score, tl.duration)
    with monkeypatch.context() as m:  # the bed waits for every section (the synths start late)
        enter = _Window.enter

        def late(self: _Window, first: int) -> bool:
            time.sleep(0.2)
            return enter(self, first)

        m.setattr(_Window, "enter", late)
        b = two.render(score, tl.duration)
    assert np.array_equal(a, b)
    solo = one.render(score, tl.duration)
    assert np.array_equal(solo, one.render(score, tl.duration))
    for sec in score.sections:  # the same music: section levels within 0.5 dB of each other
        span = slice(round(sec.plan.start * SAMPLE_RATE), round(sec.plan.end * SAMPLE_RATE))
        assert abs(db(a[span]) - db(solo[span])) < 0.5

    seen: list[float] = []

    def cancel(fraction: float) -> None:
        seen.append(fraction)
        if len(seen) == 2:
            raise KeyboardInterrupt("cancelled")

    before = threading.active_count()
    with pytest.raises(KeyboardInterrupt, match="cancelled"):
        two.render(score, tl.duration, cancel)
    assert threading.active_count() == before and len(seen) == 2

    def broken(self: SectionSynth, sec: SectionScore, length: int) -> np.ndarray:
        if sec is score.sections[3]:
            raise RuntimeError("synth failed")
        return section(self, sec, length)

    section = SectionSynth.section
    monkeypatch.setattr(SectionSynth, "section", broken)
    with pytest.raises(RuntimeError, match="synth failed"):
        two.render(score, tl.duration)
    assert threading.active_count() == before


def test_sections_are_dealt_by_load_in_score_order() -> None:
    from moodbgm.generate.composer.render import _jobs, _lanes

    tl = timeline((9.0, "joy"), (2.0, "fear"), (2.0, "neutral"), (2.0, "anger"), (6.0, "sadness"))
    score = compose(tl, tl.duration, GenerateOptions(seed=1))
    jobs = _jobs(score, round(tl.duration * SAMPLE_RATE), SAMPLE_RATE, 0.35)
    lanes = _lanes(jobs, 2)
    assert sorted(j.index for lane in lanes for j in lane) == list(range(len(jobs)))
    assert all([j.index for j in lane] == sorted(j.index for j in lane) for lane in lanes)
    assert lanes == [jobs[:1], jobs[1:]]  # the long first section is worth the four others
    loads = [sum(j.length for j in lane) for lane in lanes]
    assert max(loads) - min(loads) <= max(j.length for j in jobs)
    assert _lanes(jobs[:1], 2) == [jobs[:1]]  # one section: one synth
