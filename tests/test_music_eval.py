"""The music evaluator on hand-made scores and mixes with known cues (devtools.music_eval).

Sections are written from the composer's cue table itself (tempo, mode, height, articulation,
regularity, dissonance, brightness, loudness), so a well-formed piece must agree with every cue, and
each defect the evaluator exists to catch (a loud section, a pumping mix, a wrong key, an ending off
the tonic) must fail its check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from devtools.music_eval.audio import lufs
from devtools.music_eval.cues import table
from devtools.music_eval.ducking import music_gain
from devtools.music_eval.evaluate import evaluate
from devtools.music_eval.symbolic import detect_key, pitch_class_histogram
from devtools.sample import _script, make_sample
from moodbgm.generate.composer.mapping import MAJOR_MODES, SCALES

SR = 16_000
SECTION_S = 6.0
ARC = ("neutral", "joy", "sadness", "anger", "fear", "surprise")
# onset patterns in beats, by regularity (high = steady, mid = syncopated, low = irregular)
RHYTHM = {
    "high": [0.5] * 8,
    "mid": [0.75, 0.25, 0.5, 0.75, 0.25, 0.5, 0.5, 0.5],
    "low": [0.25, 1.0, 0.33, 0.67, 0.25, 1.25, 0.5, 0.75],
}
HARMONICS = {"low": 1, "mid": 4, "high": 12}


def _chord(emotion: str) -> list[int]:
    """Pitch classes of the pad: the tonic triad of the mode (C), with clashes for dissonant cues."""
    c = table()[emotion]
    third = 4 if c.mode in MAJOR_MODES else 3
    pcs = [0, third, 7]
    if c.dissonance == "mid":
        pcs.append(10 if third == 3 else 2)  # m7 / add9
    if c.dissonance == "high":
        pcs += [1, 6]
    return pcs


def _section(pm: pretty_midi.PrettyMIDI, emotion: str, t0: float, t1: float) -> None:
    c = table()[emotion]
    beat = 60.0 / c.tempo
    pad, melody = pm.instruments
    for pc in _chord(emotion):
        pad.notes.append(pretty_midi.Note(60, 48 + pc, t0, t1))
    pad.notes.append(pretty_midi.Note(60, 36, t0, t1))  # the bass on the tonic
    scale = SCALES[c.mode]
    pitches = [0, 7, 12, 7] if c.dissonance == "low" else [0, scale[1], scale[2], 7, 12, scale[5]]
    if c.dissonance == "high":
        pitches = [0, 1, 6, 7, 1, 0]
    mean = float(np.mean(pitches))
    base = 12 * round((c.height - mean) / 12)  # the C that puts the melody's centre nearest the height
    t, k = t0, 0
    while True:
        ioi = RHYTHM[c.regularity][k % 8] * beat
        if t + ioi > t1:
            break
        pitch = base + pitches[k % len(pitches)]
        melody.notes.append(pretty_midi.Note(80, pitch, t, t + c.articulation * ioi))
        t, k = t + ioi, k + 1


def _synth(pm: pretty_midi.PrettyMIDI, emotions: list[str], end: float, loud: dict[str, float]) -> np.ndarray:
    """Decaying additive tones (brighter emotions get more harmonics), each section set to its loudness."""
    n = int(end * SR)
    out = np.zeros(n)
    for inst in pm.instruments:
        for note in inst.notes:
            emo = emotions[min(int(note.start // SECTION_S), len(emotions) - 1)]
            a, b = int(note.start * SR), min(n, int((note.end + 0.3) * SR))
            t = np.arange(b - a) / SR
            f = pretty_midi.note_number_to_hz(note.pitch)
            h = HARMONICS[table()[emo].brightness]
            tone = sum(np.sin(2 * np.pi * f * k * t) / k for k in range(1, h + 1) if f * k < SR / 2.2)
            env = np.minimum(1.0, t / 0.01) * np.exp(-t / 1.5)
            env[t > note.end - note.start] *= np.exp(
                -(t[t > note.end - note.start] - (note.end - note.start)) / 0.05
            )
            out[a:b] += 0.05 * tone * env
    for i, emo in enumerate(emotions):
        a, b = int(i * SECTION_S * SR), int((i + 1) * SECTION_S * SR)
        target = -23.0 + table()[emo].loudness + loud.get(emo, 0.0)
        out[a:b] *= 10 ** ((target - lufs(out[a:b], SR)) / 20)
    return np.stack([out, out], axis=1)


def _piece(
    emotions: tuple[str, ...] = ARC, loud: dict[str, float] | None = None, ending: str = "I"
) -> tuple[pretty_midi.PrettyMIDI, np.ndarray, list[tuple[float, float, str]]]:
    pm = pretty_midi.PrettyMIDI(resolution=480)
    pm.instruments += [pretty_midi.Instrument(48, name="pad"), pretty_midi.Instrument(0, name="melody")]
    sections = [(i * SECTION_S, (i + 1) * SECTION_S, e) for i, e in enumerate(emotions)]
    # each section's tempo from the table (pretty_midi keeps its tempo map as (tick, seconds per tick))
    scales, tick = [], 0
    for emo in emotions:
        per_tick = 60.0 / (table()[emo].tempo * pm.resolution)
        scales.append((tick, per_tick))
        tick += round(SECTION_S / per_tick)
    pm._tick_scales = scales
    pm._update_tick_to_time(tick + 1)
    for s, e, emo in sections[:-1]:
        _section(pm, emo, s, e)
    # the last section: its figure, then the final chord 1.5 s before the end
    s, e, emo = sections[-1]
    _section(pm, emo, s, e - 1.5)
    pad, _melody = pm.instruments
    pad.notes = [n for n in pad.notes if n.start < s] + [
        pretty_midi.Note(60, 48 + pc, s, e - 1.5) for pc in _chord(emo)
    ]
    third = 4 if table()[emo].mode in MAJOR_MODES else 3
    final = {"I": [0, third, 7], "IV": [5, 9, 0]}[ending]
    pad.notes += [pretty_midi.Note(60, 48 + pc, e - 1.5, e - 0.4) for pc in final]
    pad.notes.append(pretty_midi.Note(60, 36 + final[0], e - 1.5, e - 0.4))
    bgm = _synth(pm, list(emotions), sections[-1][1], loud or {})
    return pm, bgm, sections


@pytest.fixture(scope="module")
def piece() -> tuple[pretty_midi.PrettyMIDI, np.ndarray, list[tuple[float, float, str]]]:
    return _piece()


def _scale_notes(pcs: list[int], tonic_weight: dict[int, float]) -> list[pretty_midi.Note]:
    notes, t = [], 0.0
    for p in pcs:
        d = 0.5 * tonic_weight.get(p % 12, 1.0)
        notes.append(pretty_midi.Note(80, p, t, t + d))
        t += d
    return notes


def test_mode_of_c_major_and_a_minor_scales() -> None:
    major = _scale_notes([60, 62, 64, 65, 67, 69, 71, 72], {0: 2.0, 7: 1.5})
    minor = _scale_notes([57, 59, 60, 62, 64, 65, 67, 69], {9: 2.0, 4: 1.5})  # A natural minor
    kmaj, kmin = detect_key(pitch_class_histogram(major)), detect_key(pitch_class_histogram(minor))
    assert kmaj is not None and (kmaj.tonic, kmaj.mode) == (0, "major"), kmaj
    assert kmin is not None and (kmin.tonic, kmin.mode) == (9, "minor"), kmin
    assert detect_key(np.zeros(12)) is None


def test_cadence_on_the_tonic_and_off_it() -> None:
    for ending, tonic in (("I", True), ("IV", False)):
        pm, bgm, sections = _piece(("neutral", "joy"), ending=ending)
        r = evaluate(pm, bgm, SR, sections)
        assert r.cadence.is_tonic is tonic, (ending, r.cadence)
        assert r.cadence.release_s == pytest.approx(1.5, abs=0.05)
        assert r.checks()["cadence_release"], r.tail_drop_db


def test_a_well_formed_piece_agrees_with_the_cue_table(piece) -> None:  # type: ignore[no-untyped-def]
    pm, bgm, sections = piece
    r = evaluate(pm, bgm, SR, sections)
    bad = {s.emotion: [c for c, ok in s.cues.items() if ok is False] for s in r.sections}
    assert r.agreement == 1.0, bad
    assert all(ok is not None for s in r.sections for ok in s.cues.values())
    checks = r.checks()
    assert checks["loudness_jumps"] and checks["melody_everywhere"] and checks["cadence_tonic"], checks
    assert r.passed, checks
    keys = [s.score.key for s in r.sections]
    assert all(k is not None and k.tonic == 0 for k in keys), keys


def test_a_loud_anger_section_fails(piece) -> None:  # type: ignore[no-untyped-def]
    pm, _, sections = piece
    bgm = _synth(pm, [e for *_, e in sections], sections[-1][1], {"anger": 10.0})
    r = evaluate(pm, bgm, SR, sections)
    anger = next(s for s in r.sections if s.emotion == "anger")
    assert anger.cues["loudness"] is False
    assert not r.checks()["loudness_jumps"] and not r.checks()["loudness_balance"]
    assert max(r.jumps_lu) > 9.0
    assert not r.passed


def test_wrong_mode_and_tempo_are_caught(piece) -> None:  # type: ignore[no-untyped-def]
    pm, bgm, sections = piece
    wrong = [(s, e, {"sadness": "joy", "joy": "sadness"}.get(emo, emo)) for s, e, emo in sections]
    r = evaluate(pm, bgm, SR, wrong)
    for s in r.sections:
        if s.emotion in ("joy", "sadness"):
            assert s.cues["mode"] is False and s.cues["tempo"] is False, s.cues
    assert r.agreement < 0.9 and not r.checks()["cue_agreement"]


# ---------------------------------------------------------------- the mix

SPEECH = [(1.0, 3.0), (3.7, 6.0), (6.8, 9.0), (9.6, 12.0), (14.0, 16.5), (17.3, 20.0)]  # pauses 0.6-2 s


def _mix_with_gain(bgm: np.ndarray, voice: np.ndarray, gain_db: np.ndarray) -> np.ndarray:
    g = np.repeat(10 ** (gain_db / 20), SR // 100)[: len(bgm)]
    return (bgm * g[:, None] + voice[:, None] * 0.8).astype(np.float32)


def _voice(n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    v = np.zeros(n)
    for s, e in SPEECH:
        a, b = int(s * SR), int(e * SR)
        v[a:b] = 0.1 * rng.standard_normal(b - a) * (0.6 + 0.4 * np.sin(np.arange(b - a) / SR * 25))
    return v


def _gains(n_frames: int, depth: float, hold: bool) -> np.ndarray:
    """A duck of ``depth`` dB over the speech; ``hold`` keeps it down through pauses under 1.2 s."""
    g = np.zeros(n_frames)
    spans = list(SPEECH)
    if hold:
        merged: list[tuple[float, float]] = []
        for s, e in spans:
            if merged and s - merged[-1][1] < 1.2:
                merged[-1] = (merged[-1][0], e)
            else:
                merged.append((s, e))
        spans = merged
    for s, e in spans:
        g[int((s - 0.1) * 100) : int(e * 100)] = -depth
    # attack / release as a real mix would (one-pole, 50 / 300 ms)
    out, x = np.empty_like(g), 0.0
    for i, t in enumerate(g):
        a = np.exp(-0.01 / (0.05 if t < x else 0.3))
        x = a * x + (1 - a) * t
        out[i] = x
    return out


@pytest.mark.parametrize("hold", [False, True])
def test_pumping_is_counted_and_duck_depth_measured(hold: bool) -> None:
    pm, bgm, _ = _piece(("neutral", "sadness", "joy", "neutral"))
    sections = [(0.0, 11.0, "neutral"), (11.0, 24.0, "neutral")]
    voice = _voice(len(bgm))
    gains = _gains(len(bgm) // (SR // 100) + 1, 11.0, hold)
    mix = _mix_with_gain(bgm, voice, gains)
    a = music_gain(mix, bgm, voice, SR)
    assert np.nanmedian(20 * np.log10(a[int(0.2 * 100) : int(0.8 * 100)])) == pytest.approx(0.0, abs=0.1)
    r = evaluate(pm, bgm, SR, sections, mix, voice, SPEECH, duck_setting_db=11.0)
    assert r.duck is not None
    assert r.duck.depth_db == pytest.approx(11.0, abs=0.5)
    assert r.checks()["duck_depth"]
    short = [p for p in r.duck.pauses if p.end - p.start < 1.2]
    assert len(short) == 4
    if hold:
        assert r.duck.pumps == 0 and r.checks()["no_pumps"]
    else:
        assert r.duck.pumps == 4 and not r.checks()["no_pumps"]
        assert min(p.rise_db for p in short) > 5.0


def test_a_shallow_duck_fails_the_depth_check() -> None:
    pm, bgm, _ = _piece(("neutral", "neutral", "neutral", "neutral"))
    voice = _voice(len(bgm))
    mix = _mix_with_gain(bgm, voice, _gains(len(bgm) // (SR // 100) + 1, 6.5, True))
    r = evaluate(pm, bgm, SR, [(0.0, 24.0, "neutral")], mix, voice, SPEECH, duck_setting_db=11.0)
    assert r.duck is not None and r.duck.depth_db == pytest.approx(6.5, abs=0.5)
    assert not r.checks()["duck_depth"]


def test_the_second_sample_arc_orders_the_parts_differently(tmp_path: Path) -> None:
    def parts(arc: str) -> list[str]:
        return [emotion for _, emotion in dict.fromkeys((p, e) for p, e, *_ in _script(1.0, arc))]

    assert parts("demo") == ["neutral", "joy", "surprise", "fear", "sadness", "anger", "joy"]
    assert parts("storm") == ["sadness", "fear", "anger", "neutral", "surprise", "joy"]
    with pytest.raises(ValueError, match="arc"):
        make_sample(tmp_path / "x.mp4", arc="nope")
