"""Composer: emotion mapping, structure, timing and MIDI (pure; no audio rendering here)."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pretty_midi
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from helpers import timeline
from moodbgm.generate.base import GenerateOptions
from moodbgm.generate.composer import compose, keys, plan_sections, score_to_midi
from moodbgm.generate.composer import theme as th
from moodbgm.generate.composer.harmony import parse_chord
from moodbgm.generate.composer.mapping import CUES, PROFILES
from moodbgm.generate.composer.score import RELEASE_S, fit_tempo
from moodbgm.types import EMOTIONS, Section, Timeline


def one(emotion: str, seconds: float = 40.0) -> Timeline:
    return Timeline(seconds, (Section(0.0, seconds, emotion),))


def midi_of(tl: Timeline, seed: int = 0, style: str = "cinematic") -> pretty_midi.PrettyMIDI:
    score = compose(tl, tl.duration, GenerateOptions(style=style, seed=seed))
    return pretty_midi.PrettyMIDI(io.BytesIO(score_to_midi(score)))


def test_tempo_follows_arousal_and_stays_in_range() -> None:
    tempo = {}
    for e in EMOTIONS:
        pm = midi_of(one(e))
        _, bpm = pm.get_tempo_changes()
        tempo[e] = float(bpm[0])
        lo, _, hi = PROFILES[e].tempo
        assert lo - 0.01 <= tempo[e] <= hi + 0.01, e
    assert tempo["anger"] > tempo["surprise"] > tempo["joy"] > tempo["neutral"] > tempo["sadness"]
    assert tempo["fear"] > tempo["disgust"] > tempo["sadness"]


def _third_weights(pm: pretty_midi.PrettyMIDI) -> tuple[float, float]:
    """Duration-weighted share of the minor and major third above the key signature's tonic."""
    tonic = pm.key_signature_changes[0].key_number % 12
    hist = np.zeros(12)
    for inst in pm.instruments:
        if not inst.is_drum:
            for n in inst.notes:
                hist[(n.pitch - tonic) % 12] += n.end - n.start
    hist /= hist.sum()
    return float(hist[3]), float(hist[4])


@pytest.mark.parametrize("seed", [0, 1])
def test_mode_from_pitch_class_statistics(seed: int) -> None:
    for e in ("joy", "neutral"):  # major; the others minor (anger, disgust with bII, fear harmonic)
        minor, major = _third_weights(midi_of(one(e), seed))
        assert major > 0.05 and major > 4 * minor, (e, minor, major)
    for e in ("sadness", "fear", "anger", "disgust"):
        minor, major = _third_weights(midi_of(one(e), seed))
        assert minor > 0.05 and minor > 3 * major, (e, minor, major)
    minor, major = _third_weights(midi_of(one("surprise"), seed))  # Lydian: major
    assert major > 0.05 and major > 2 * minor


def test_density_follows_arousal() -> None:
    rate = {}
    for e in ("anger", "joy", "neutral", "sadness"):
        pm = midi_of(one(e))
        rate[e] = sum(len(i.notes) for i in pm.instruments) / pm.get_end_time()
    assert rate["anger"] > rate["joy"] > rate["neutral"] > rate["sadness"], rate


def test_register_and_voice_room() -> None:
    melody_pitch = {}
    for e in EMOTIONS:
        score = compose(one(e, 60.0), 60.0, GenerateOptions())
        parts = {p.role: p for s in score.sections for p in s.parts}
        assert max(n.pitch for n in parts["pad"].notes) <= 67, e  # pad at or below G4
        assert max(n.pitch for n in parts["bass"].notes) <= 55, e
        mel = parts["melody"].notes  # a melody in every emotion: soft, not busy
        assert 0.2 < len(mel) / 60.0 < 2.0 and max(n.velocity for n in mel) <= 64, (e, len(mel))
        melody_pitch[e] = float(np.mean([n.pitch for n in mel]))
        assert abs(melody_pitch[e] - CUES[e].height) <= 5, (e, melody_pitch[e])  # the cue table's height
    assert melody_pitch["fear"] > melody_pitch["joy"] > melody_pitch["neutral"] > melody_pitch["sadness"]
    low = compose(one("anger"), 40.0, GenerateOptions()).sections[0].parts
    high = compose(one("surprise"), 40.0, GenerateOptions()).sections[0].parts

    def mean_pitch(parts: tuple) -> float:
        return float(np.mean([n.pitch for p in parts if p.role != "drums" for n in p.notes]))

    assert mean_pitch(low) + 8 < mean_pitch(high)


def test_articulation_follows_the_cue_table() -> None:
    """Joy is truly staccato, sadness legato: sounding fraction of each melody/arp note's slot."""

    def sounding(e: str) -> float:
        sec = compose(one(e, 30.0), 30.0, GenerateOptions()).sections[0]
        ratios = []
        for part in sec.parts:
            if part.role not in ("melody", "arp"):
                continue
            onsets = sorted({round(n.start, 3) for n in part.notes})
            for n in part.notes:
                later = [o for o in onsets if o > n.start + 1e-3]
                if later and later[0] - n.start <= 2.0:
                    ratios.append(min(n.duration / (later[0] - n.start), 1.5))
        return float(np.median(ratios))

    assert sounding("joy") < 0.45 < 0.85 < sounding("sadness")
    assert sounding("joy") < sounding("neutral")


def test_same_seed_same_bytes_other_seed_differs() -> None:
    tl = timeline((12.0, "joy"), (10.0, "fear"), (9.0, "sadness"))
    a = score_to_midi(compose(tl, tl.duration, GenerateOptions(seed=3)))
    b = score_to_midi(compose(tl, tl.duration, GenerateOptions(seed=3)))
    c = score_to_midi(compose(tl, tl.duration, GenerateOptions(seed=4)))
    assert a == b and a != c


def test_styles_change_instrumentation() -> None:
    programs = {}
    for style in ("cinematic", "lofi", "electronic", "acoustic"):
        score = compose(one("joy", 20.0), 20.0, GenerateOptions(style=style))
        programs[style] = tuple((p.role, p.program) for p in score.sections[0].parts)
    assert len(set(programs.values())) == 4


def test_boundaries_land_on_bar_lines_in_whole_bars() -> None:
    tl = timeline((9.37, "joy"), (12.44, "sadness"), (3.1, "anger"), (17.9, "disgust"), (7.05, "neutral"))
    pm = midi_of(tl)
    downbeats = pm.get_downbeats()
    plans = plan_sections(tl, tl.duration, 0)
    keys_at = [k.time for k in pm.key_signature_changes]
    assert len(keys_at) == len(plans) == len(tl.sections)
    for plan, key_t in zip(plans, keys_at, strict=True):
        assert set(plan.bars) == {plan.beats_per_bar}  # whole bars only: no 2/4 fill bars
        assert abs(key_t - plan.start) < 1e-3
        assert np.min(np.abs(downbeats - key_t)) < 1e-3  # a bar line at the change
        bar = plan.beats_per_bar * 60.0 / PROFILES[plan.emotion].tempo[0]
        assert abs(plan.start - plan.target_start) <= 0.5 * bar + 1e-6, plan
    # long sections land exactly (tempo stretched within +-8 %)
    assert abs(plans[1].start - 9.37) < 1e-6 and abs(plans[4].start - tl.sections[4].start) < 1e-6


def test_fit_tempo_whole_bars_within_8_percent() -> None:
    joy = PROFILES["joy"]
    tempo, bars, tempi = fit_tempo(47.3, joy)
    assert abs(bars * 4 * 60 / tempo - 47.3) < 1e-6 and 120 * 0.92 <= tempo <= 120 * 1.08 and tempi == ()
    tempo, bars, _ = fit_tempo(2.6, PROFILES["sadness"])  # less than a bar: one whole bar, in range
    assert bars == 1 and 64 * 0.92 - 1e-6 <= tempo <= 64 * 1.08 + 1e-6
    # a ramp from the previous tempo over the first bar, geometric, then the section's tempo
    tempo, bars, tempi = fit_tempo(20.0, PROFILES["anger"], ramp_from=64.0)
    assert len(tempi) == 4 * bars and all(a < b for a, b in itertools.pairwise(tempi[:4]))
    assert tempi[3] == pytest.approx(tempo) and set(tempi[4:]) == {tempo}
    assert sum(60 / t for t in tempi) == pytest.approx(20.0, abs=1e-6)
    # related tempi (double time) need no ramp
    tempo, _, tempi = fit_tempo(48 * 60 / 152, PROFILES["anger"], ramp_from=76.0)
    assert tempi == () and tempo == pytest.approx(152.0)


def test_last_section_ends_with_a_ritardando_and_the_closing_chord() -> None:
    tempo, bars, tempi = fit_tempo(13.0, PROFILES["joy"], last=True)
    lo, _, hi = PROFILES["joy"].tempo
    body = sum(60 / t for t in tempi[: (bars - 1) * 4])
    assert body == pytest.approx(13.0 - RELEASE_S, abs=1e-6)  # the closing chord 1.5 s before the end
    assert lo <= tempo <= hi and all(t <= tempo + 1e-9 for t in tempi[(bars - 2) * 4 :])  # rit.


def test_duration_shorter_than_timeline_is_cut() -> None:
    tl = timeline((10.0, "joy"), (10.0, "anger"), (10.0, "sadness"))
    plans = plan_sections(tl, 14.0, 0)
    assert [p.emotion for p in plans] == ["joy", "anger"]
    assert plans[-1].end >= 14.0 - 1e-6


def test_long_section_does_not_loop() -> None:
    """A 3-minute section: its 4-bar phrases are mostly distinct (progression, voicing, rhythm)."""
    score = compose(one("joy", 180.0), 180.0, GenerateOptions(seed=7))
    sec = score.sections[0]
    bar_beats = sec.plan.beats_per_bar
    phrases: dict[int, set] = {}
    for part in sec.parts:
        for n in part.notes:
            k = int(n.start // (4 * bar_beats))
            phrases.setdefault(k, set()).add((part.role, round(n.start % (4 * bar_beats), 1), n.pitch))
    signatures = [frozenset(v) for _, v in sorted(phrases.items())]
    assert len(signatures) >= 20
    assert len(set(signatures)) >= 0.8 * len(signatures)
    progressions = {sec.chords[i : i + 4] for i in range(0, len(sec.chords) - 3, 4)}
    assert len(progressions) >= 4


def test_fill_and_pickup_before_each_change() -> None:
    tl = timeline((16.0, "joy"), (16.0, "sadness"), (16.0, "anger"))
    score = compose(tl, tl.duration, GenerateOptions())
    joy = next(p for p in score.sections[0].parts if p.role == "drums")
    last_beat = [n for n in joy.notes if n.start >= score.sections[0].plan.beats - 1]
    assert any(n.pitch in (41, 43, 45, 47, 48, 50) for n in last_beat)  # toms (or timpani) fill
    for k in (0, 1):  # the melody's last beat steps up to the next section's first note
        sec, nxt = score.sections[k], score.sections[k + 1]
        mel = next(p for p in sec.parts if p.role == "melody").notes
        pickup = [n for n in mel if n.start >= sec.plan.beats - 1.05]
        first = next(p for p in nxt.parts if p.role == "melody").notes[0]
        assert len(pickup) == 2 and pickup[0].pitch < pickup[1].pitch
        assert (first.pitch - pickup[1].pitch) % 12 in (1, 2)  # a step below the next note
    # a pad tone common to both chords is held over the change
    pad = next(p for p in score.sections[0].parts if p.role == "pad")
    assert any(n.end > score.sections[0].plan.beats for n in pad.notes)


def test_chord_parser() -> None:
    c = parse_chord("viio7")
    assert c.pitch_classes(0) == (11, 2, 5, 8)
    assert parse_chord("bVI").pitch_classes(0) == (8, 0, 3)
    assert parse_chord("ii7").pitch_classes(2) == (4, 7, 11, 2)
    with pytest.raises(ValueError):
        parse_chord("X7")


@settings(max_examples=60, deadline=None)
@example(  # a sub-beat section between two of another emotion must not shift the next one
    lengths=[1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 1.0],
    emotions=["anger"] * 5 + ["disgust", "anger", "anger"],
    seed=0,
)
@given(
    lengths=st.lists(st.floats(0.2, 90.0), min_size=1, max_size=8),
    emotions=st.lists(st.sampled_from(EMOTIONS), min_size=8, max_size=8),
    seed=st.integers(0, 2**31),
)
def test_plans_tile_the_duration_in_whole_bars(lengths: list[float], emotions: list[str], seed: int) -> None:
    tl = timeline(*zip(lengths, emotions, strict=False))
    plans = plan_sections(tl, tl.duration, seed)
    assert plans[0].start == 0.0
    for a, b in itertools.pairwise(plans):
        assert abs(a.end - b.start) < 1e-9 and b.start_beat == a.start_beat + a.beats
    for k, p in enumerate(plans):
        assert set(p.bars) == {p.beats_per_bar}
        lo, _, hi = PROFILES[p.emotion].tempo
        assert lo - 1e-6 <= p.tempo <= hi + 1e-6
        if 0 < k < len(plans) - 1:  # within a bar of the boundary (the first bar may be a ramp)
            slowest = max(4 * 60.0 / PROFILES[q.emotion].tempo[0] for q in plans[k - 1 : k + 1])
            assert abs(p.start - p.target_start) <= slowest + 1e-6
    assert plans[-1].end >= tl.duration - 1e-6


def test_theme_transforms_hand_checked() -> None:
    motif = (th.TNote(0.0, 1.0, 0), th.TNote(1.0, 0.5, 2), th.TNote(1.5, 0.5, 1), th.TNote(2.0, 2.0, 4))
    assert [n.degree for n in th.invert(motif)] == [0, -2, -1, -4]
    assert [(n.onset, n.length) for n in th.scale_time(motif, 2.0)] == [(0, 2), (2, 1), (3, 1), (4, 4)]
    assert [(n.onset, n.length) for n in th.scale_time(motif, 0.5)] == [
        (0, 0.5),
        (0.5, 0.25),
        (0.75, 0.25),
        (1, 1),
    ]
    assert [n.degree for n in th.sequence(motif, 1)] == [1, 3, 2, 5]
    assert th.fragment(motif, 1.5) == motif[:2]
    assert [(n.onset, n.length) for n in th.displace(motif, 0.5, 4.0)] == [
        (0.5, 1),
        (1.5, 0.5),
        (2, 0.5),
        (2.5, 1.5),
    ]
    # 4/4 onto 5/4: the second bar starts on beat 5; a note reaching the bar line holds the 5th beat
    bar2 = th.to_meter((th.TNote(2.0, 2.0, 0), th.TNote(4.0, 1.0, 1)), 5)
    assert [(n.onset, n.length) for n in bar2] == [(2.0, 3.0), (5.0, 1.0)]
    # degrees in a key: E (degree 2) in C major, E-flat in C minor, F in C Phrygian's ... degree 1 = D-flat
    assert th.realise(2, "major", 60) == 64 and th.realise(2, "minor", 60) == 63
    assert th.realise(1, "phrygian", 60) == 61 and th.realise(-1, "major", 60) == 59
    assert th.realise(7, "harmonic_minor", 48) == 60 and th.realise(6, "harmonic_minor", 48) == 59
    # the theme's chords change mode with the emotion: IV in joy, iv7 in sadness, the tritone bV5 in anger
    assert th.chord_for(3, "major", "joy").pitch_classes(0) == (5, 9, 0)
    assert th.chord_for(3, "minor", "sadness").pitch_classes(0) == (5, 8, 0, 3)
    assert th.chord_for(4, "minor", "anger").pitch_classes(0) == (6, 1)


def test_theme_from_the_seed() -> None:
    a, b, c = th.make_theme(3), th.make_theme(3), th.make_theme(4)
    assert a == b and a != c
    for t in (a, c):
        assert t.harmony[0] == 0 and max(n.onset + n.length for n in t.melody) == pytest.approx(16.0)
        assert max(n.onset + n.length for n in t.bass) == pytest.approx(16.0)
        head = [(n.onset, n.length) for n in t.melody if n.onset < 2]  # the motif's head returns in bar 2
        assert [(o + 4, d) for o, d in head] == [(n.onset, n.length) for n in t.melody if 4 <= n.onset < 6]


def test_key_plan_and_pivot_chords_hand_checked() -> None:
    assert keys.signature(9, "minor") == 0 and keys.signature(4, "phrygian") == 0
    assert keys.signature(5, "lydian") == 0 and keys.signature(7, "major") == 7
    # C major -> G major: C is IV of G (a predominant in the new key)
    assert keys.pivot_chord((0, "major"), (7, "major")).pitch_classes(0) == (0, 4, 7)  # type: ignore[union-attr]
    # C major -> A minor: D minor (iv of A minor)
    assert keys.pivot_chord((0, "major"), (9, "minor")).pitch_classes(0) == (2, 5, 9)  # type: ignore[union-attr]
    assert keys.pivot_chord((0, "major"), (0, "major")) is None
    tl = timeline(
        *[(8.0, e) for e in ("joy", "sadness", "anger", "fear", "surprise", "disgust", "neutral", "joy")]
    )
    for seed in range(6):
        plans = plan_sections(tl, tl.duration, seed)
        home = keys.signature(plans[0].tonic, plans[0].mode)
        for p in plans[:-1]:  # closely related: at most one step on the circle of fifths, or parallel
            sig = keys.signature(p.tonic, p.mode)
            assert keys.fifths(sig, home) <= 1 or p.tonic == plans[0].tonic, (seed, p)
        assert plans[-1].tonic == plans[0].tonic  # home at the end


@pytest.mark.parametrize(("style", "pre"), [("cinematic", "V7"), ("acoustic", "IV"), ("lofi", "iv")])
def test_cadence_lands_on_the_tonic_before_the_end(style: str, pre: str) -> None:
    emotion = "sadness" if style == "lofi" else "joy"
    tl = timeline((10.0, "fear"), (13.3, emotion))
    score = compose(tl, tl.duration, GenerateOptions(style=style, seed=2))
    last = score.sections[-1]
    plan = last.plan
    assert last.chords[-2:] == (pre, "i" if emotion == "sadness" else "I")
    final = plan.time(plan.bar_starts[-1])
    assert final == pytest.approx(tl.duration - RELEASE_S, abs=1e-6)
    tonic_third = {plan.tonic, (plan.tonic + (3 if emotion == "sadness" else 4)) % 12, (plan.tonic + 7) % 12}
    for part in last.parts:
        if part.role == "drums":
            continue
        sounding = [n for n in part.notes if n.start >= plan.bar_starts[-1] - 0.1]
        assert sounding and {n.pitch % 12 for n in sounding} <= tonic_third, part.role
        assert max(plan.time(n.end) for n in part.notes) <= tl.duration + 1e-6  # ends with the video
    bass = next(p for p in last.parts if p.role == "bass")
    assert min(n.pitch for n in bass.notes if n.start >= plan.bar_starts[-1] - 0.1) % 12 == plan.tonic


def test_theme_in_every_section_and_no_bar_repeats_in_all_voices() -> None:
    tl = timeline(*[(14.0, e) for e in ("neutral", "joy", "sadness", "anger", "fear", "surprise", "disgust")])
    score = compose(tl, tl.duration, GenerateOptions(seed=5))
    theme = th.make_theme(5)
    for sec in score.sections:
        plan, parts = sec.plan, {p.role: p for p in sec.parts}
        assert "melody" in parts and len(parts["melody"].notes) >= 3, plan.emotion
        if plan.emotion not in ("fear", "disgust"):  # the statement opens the section, time-scaled
            rate = PROFILES[plan.emotion].theme_rate
            want = [n.onset * rate for n in theme.melody if n.onset * rate < 2 * plan.beats_per_bar][:3]
            got = [n.start for n in parts["melody"].notes][:3]
            assert got == pytest.approx(want, abs=0.05), plan.emotion
        bars: list[frozenset] = []
        for b0, blen in zip(plan.bar_starts, plan.bars, strict=True):
            bars.append(
                frozenset(
                    (p.role, round(n.start - b0, 1), n.pitch)
                    for p in sec.parts
                    for n in p.notes
                    if b0 <= n.start < b0 + blen
                )
            )
        assert all(a != b for a, b in itertools.pairwise(bars)), plan.emotion


def test_crash_cymbals_only_on_section_downbeats() -> None:
    tl = timeline((12.0, "joy"), (12.0, "anger"), (12.0, "surprise"))
    score = compose(tl, tl.duration, GenerateOptions(style="electronic", seed=1))
    for sec in score.sections:
        drums = next(p for p in sec.parts if p.role == "drums")
        crashes = [n.start for n in drums.notes if n.pitch == 49]
        assert all(abs(x) < 0.1 for x in crashes), (sec.plan.emotion, crashes)
