"""Score -> standard MIDI file (type 1) bytes, via mido.

Track 0 holds the conductor: tempo, time signature, key signature and marker (the emotion) at the
start of every section, and a tempo on every beat of a ramp or ritardando. Each part has its own track and
channel (drums on channel 10); every section starts with its program change (the kit for drums),
volume (CC7) and reverb send (CC91), so the file opens in any DAW with the right sounds.
"""

from __future__ import annotations

import io

import mido

from moodbgm.generate.composer.events import CHANNELS, ROLES, Score
from moodbgm.generate.composer.mapping import MAJOR_MODES

PPQ = 480
_MAJOR_KEYS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_KEYS = ("Cm", "C#m", "Dm", "Ebm", "Em", "Fm", "F#m", "Gm", "G#m", "Am", "Bbm", "Bm")


def key_name(tonic: int, mode: str) -> str:
    """The key signature name mido uses: the tonic's major or minor key."""
    return (_MAJOR_KEYS if mode in MAJOR_MODES else _MINOR_KEYS)[tonic % 12]


def _track(name: str, events: list[tuple[int, int, mido.Message | mido.MetaMessage]]) -> mido.MidiTrack:
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name=name, time=0))
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def score_to_midi(score: Score) -> bytes:
    """The score as MIDI file bytes (deterministic)."""
    conductor: list[tuple[int, int, mido.Message | mido.MetaMessage]] = []
    per_role: dict[str, list[tuple[int, int, mido.Message | mido.MetaMessage]]] = {r: [] for r in ROLES}
    for sec in score.sections:
        plan = sec.plan
        t0 = plan.start_beat * PPQ
        conductor += [
            (t0, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(plan.tempo))),
            (t0, 1, mido.MetaMessage("time_signature", numerator=plan.bars[0], denominator=4)),
            (t0, 2, mido.MetaMessage("key_signature", key=key_name(plan.tonic, plan.mode))),
            (t0, 3, mido.MetaMessage("marker", text=f"{plan.index}: {plan.emotion}")),
        ]
        previous = plan.tempo
        for beat, bpm in enumerate(plan.tempi):
            if beat == 0:
                conductor[-4] = (t0, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))
            elif abs(bpm - previous) > 1e-9:
                conductor.append(
                    (
                        (plan.start_beat + beat) * PPQ,
                        0,
                        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)),
                    )
                )
            previous = bpm
        for part in sec.parts:
            ch = CHANNELS[part.role]
            events = per_role[part.role]
            events += [
                (t0, 0, mido.Message("program_change", channel=ch, program=part.program)),
                (t0, 0, mido.Message("control_change", channel=ch, control=7, value=part.volume)),
                (
                    t0,
                    0,
                    mido.Message("control_change", channel=ch, control=91, value=round(sec.reverb * 127)),
                ),
            ]
            for n in part.notes:
                on = round((plan.start_beat + n.start) * PPQ)
                off = max(on + 1, round((plan.start_beat + n.end) * PPQ))
                events.append((on, 2, mido.Message("note_on", channel=ch, note=n.pitch, velocity=n.velocity)))
                events.append((off, 1, mido.Message("note_off", channel=ch, note=n.pitch, velocity=0)))
    mid = mido.MidiFile(type=1, ticks_per_beat=PPQ)
    mid.tracks.append(_track("moodbgm", conductor))
    for role in ROLES:
        if per_role[role]:
            mid.tracks.append(_track(role, per_role[role]))
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()
