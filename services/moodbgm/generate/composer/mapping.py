"""Emotion -> musical parameters, and style -> instrumentation and groove.

The table follows the music-and-emotion literature: the valence/arousal model (Russell) and the
cue tables of Gabrielsson & Lindström (2010, "The role of structure in the musical expression of
emotions") and Juslin & Laukka (2003, "Communication of emotions in vocal expression and music
performance"): fast tempo, high sound level and staccato signal high arousal; major mode, consonance
and high register signal positive valence; minor mode, dissonance, low register and slow tempo signal
negative valence; irregular rhythm and unstable harmony signal fear; sudden change and wide leaps
signal surprise.

Harmony and time:

| emotion  | V / A | mode (scale)            | BPM min/nom/max | meter | harmony                             |
|----------|-------|-------------------------|-----------------|-------|-------------------------------------|
| joy      | +V +A | major (ionian)          | 108 / 120 / 132 | 4/4   | diatonic I-IV-V-vi, consonant       |
| sadness  | -V -A | natural minor (aeolian) | 58 / 66 / 76    | 4/4   | i-VI-III-VII, iv, m7, slow          |
| anger    | -V +A | phrygian, power chords  | 138 / 150 / 168 | 4/4   | i-bII-bVI fifths, tritone (bV)      |
| fear     | -V +A | harmonic minor          | 84 / 96 / 112   | 4/4   | i-viio7-bII, dim7, chromatic bass   |
| surprise | +V +A | lydian + modal shifts   | 118 / 128 / 140 | 4/4   | I-II-bVI-bVII (borrowed), sus4      |
| disgust  | -V ~A | phrygian                | 72 / 80 / 92    | 5/4   | m7b5, bII, bIImaj7, minor 2nds      |
| neutral  | 0V -A | major, sus2/add9        | 84 / 92 / 102   | 4/4   | I-vi-IV-V as sus2/add9, 2 bars each |

Texture and performance:

| emotion  | arp/beat      | register | dynamics   | articulation    | drums      | colour                |
|----------|---------------|----------|------------|-----------------|------------|-----------------------|
| joy      | 2 (8ths)      | bright   | mf (78)    | light, detached | backbeat   | harp, guitar          |
| sadness  | 0.5 (halves)  | low-mid  | p (54)     | legato          | none       | strings, piano, verb  |
| anger    | 4 (16th riff) | low      | ff (106)   | marcato, short  | driving    | distortion gtr, brass |
| fear     | 4 (ostinato)  | low      | pp-mf (60) | tremolo, pulsed | ostinato   | tremolo str., pizz.   |
| surprise | 2, leaps      | high     | mf-f (84)  | staccato accent | syncopated | celesta, vibes, pizz. |
| disgust  | 1.5, 3+3+2    | low      | mp (66)    | heavy, detached | uneven 5/4 | bowed bass, dark pad  |
| neutral  | 1 (quarters)  | mid-low  | p (60)     | legato          | soft       | warm pad, e-piano     |

As background music the parts leave room for the voice (300 Hz-3 kHz): the pad sits at or below E4
(G4 for the bright emotions), the arpeggio is soft, and the melody is sparse (about one note a bar,
every other phrase) and quiet (velocity <= 64).

Styles change instrumentation (General MIDI programs, 0-based) and groove (drum kit, swing,
humanisation), and each emotion may recolour a style (anger: distortion guitar / brass, fear: tremolo
strings...). Programs: 0 piano, 4 e-piano, 8 celesta, 11 vibraphone, 24/25 nylon/steel guitar,
29/30 overdrive/distortion guitar, 32/33/38/43 acoustic/finger/synth/contra bass, 44 tremolo
strings, 45 pizzicato, 46 harp, 48/49/50 strings, 61 brass, 68 oboe, 73 flute, 81 saw lead,
88-95 synth pads. Drum kits (bank 128): 8 room, 16 power, 25 TR-808, 32 jazz, 40 brush, 48 orchestra.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from moodbgm.generate.base import STYLES
from moodbgm.types import EMOTIONS, check_emotion

SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
}
MAJOR_MODES = frozenset({"major", "lydian"})


@dataclass(frozen=True)
class MoodProfile:
    """How one emotion sounds. Tempi in BPM; velocities 1..127; ``register`` in semitones."""

    emotion: str
    mode: str
    tempo: tuple[float, float, float]  # min, nominal, max
    beats_per_bar: int
    progressions: tuple[tuple[str, ...], ...]  # roman numerals, see harmony.parse_chord
    bars_per_chord: int
    arp_rate: float  # notes per beat
    arp_shapes: tuple[str, ...]
    bass_patterns: tuple[str, ...]
    pad_style: str  # "hold" | "stabs" | "tremolo"
    drums: str  # groove name in parts.DRUM_GROOVES, or "none"
    register: int
    velocity: int
    legato: float  # sounding fraction of a note's slot
    melody_per_bar: float
    melody_leap: int  # largest melodic step, in scale degrees
    reverb: float  # FluidSynth reverb level 0..1
    tonics: tuple[int, ...]  # preferred key centres (pitch classes)

    def __post_init__(self) -> None:
        check_emotion(self.emotion)
        lo, nominal, hi = self.tempo
        if not 30 <= lo <= nominal <= hi <= 240:
            raise ValueError(f"{self.emotion}: tempo must satisfy 30 <= min <= nominal <= max <= 240")
        if self.mode not in SCALES:
            raise ValueError(f"{self.emotion}: unknown mode {self.mode!r}")
        if not self.progressions or not all(self.progressions):
            raise ValueError(f"{self.emotion}: needs at least one non-empty progression")
        if self.beats_per_bar not in (3, 4, 5, 6):
            raise ValueError(f"{self.emotion}: beats_per_bar must be 3..6")

    @property
    def is_major(self) -> bool:
        return self.mode in MAJOR_MODES


PROFILES: dict[str, MoodProfile] = {
    p.emotion: p
    for p in (
        MoodProfile(
            "joy", "major", (108, 120, 132), 4,
            (("I", "V", "vi", "IV"), ("I", "IV", "V", "IV"), ("vi", "IV", "I", "V"),
             ("I", "iii", "IV", "V"), ("IV", "I", "V", "vi"), ("I", "vi", "ii7", "V")),
            1, 2.0, ("up", "updown", "broken", "pedal"), ("syncopated", "half", "pulse8"),
            "hold", "backbeat", 5, 78, 0.7, 1.25, 3, 0.25, (0, 2, 7, 9, 5),
        ),
        MoodProfile(
            "sadness", "minor", (58, 66, 76), 4,
            (("i", "bVI", "bIII", "bVII"), ("i", "iv", "bVI", "v"), ("i", "bVII", "bVI", "bVII"),
             ("bVI", "bIII", "iv", "i"), ("i", "iv7", "bVII", "bIIImaj7"), ("i", "v", "bVI", "iv")),
            1, 0.5, ("up", "down", "updown"), ("whole", "half"),
            "hold", "none", -2, 54, 1.0, 0.75, 2, 0.55, (2, 9, 4, 11, 7),
        ),
        MoodProfile(
            "anger", "phrygian", (138, 150, 168), 4,
            (("i", "bII5", "i5", "bVII5"), ("i", "bVI5", "bVII5", "i5"), ("i", "i5", "bII5", "v"),
             ("i", "bVI5", "bII5", "bV5"), ("i", "iv", "bII5", "i5")),
            1, 4.0, ("riff", "pedal"), ("pulse8", "gallop"),
            "stabs", "driving", -7, 106, 0.55, 0.0, 1, 0.12, (4, 9, 2, 7),
        ),
        MoodProfile(
            "fear", "harmonic_minor", (84, 96, 112), 4,
            (("i", "viio7", "i", "bII"), ("i", "bVI", "viio7", "V"), ("i", "#ivo7", "i", "bII"),
             ("iv", "viio7", "i", "bVI"), ("i", "bII", "viio7", "i")),
            1, 4.0, ("ostinato", "chromatic"), ("ostinato", "whole"),
            "tremolo", "ostinato", -5, 60, 0.5, 0.5, 1, 0.45, (2, 4, 11, 6),
        ),
        MoodProfile(
            "surprise", "lydian", (118, 128, 140), 4,
            (("I", "II", "bVI", "bVII"), ("I", "bVII", "IVsus4", "II"), ("I", "bIII", "bVI", "V"),
             ("IV", "II", "bVII", "I"), ("I", "Vsus4", "bVI", "II")),
            1, 2.0, ("leaps", "broken", "updown"), ("syncopated", "octaves"),
            "stabs", "syncopated", 7, 84, 0.45, 1.5, 5, 0.3, (0, 7, 2, 5),
        ),
        MoodProfile(
            "disgust", "phrygian", (72, 80, 92), 5,
            (("i", "bII", "iiø7", "i"), ("i", "bVmaj7", "bII", "v"), ("iø7", "bII", "i", "bVII"),
             ("i", "bIImaj7", "iv", "bII")),
            1, 1.5, ("uneven", "chromatic"), ("uneven", "whole"),
            "hold", "uneven", -8, 66, 0.6, 0.5, 1, 0.35, (4, 11, 1, 6),
        ),
        MoodProfile(
            "neutral", "major", (84, 92, 102), 4,
            (("Isus2", "viadd9", "IVadd9", "Vsus4"), ("Iadd9", "IVmaj7", "Iadd9", "IVmaj7"),
             ("vi7", "IVmaj7", "Isus2", "Vsus4"), ("IVmaj7", "Iadd9", "ii7", "Vsus4")),
            2, 1.0, ("up", "broken"), ("whole", "half"),
            "hold", "soft", -3, 60, 0.95, 0.5, 2, 0.35, (0, 5, 7, 10, 3),
        ),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Instrumentation:
    """GM programs per part (0-based) and the drum kit preset (bank 128); ``None`` drops the part."""

    pad: int
    bass: int
    arp: int
    melody: int
    kit: int
    volumes: dict[str, int] = field(default_factory=dict)  # CC7 per part


@dataclass(frozen=True)
class Groove:
    """Style feel: swing (fraction of an 8th the off-beat is late), humanise (seconds), drum kit map."""

    swing: float
    humanize: float
    velocity_jitter: int
    four_on_floor: bool
    drum_map: dict[int, int | None]  # GM drum note -> replacement note (None: drop)


_VOLUMES = {"pad": 92, "bass": 104, "arp": 76, "melody": 66, "drums": 88}

STYLE_INSTRUMENTS: dict[str, Instrumentation] = {
    "cinematic": Instrumentation(pad=48, bass=43, arp=46, melody=73, kit=48, volumes=_VOLUMES),
    "lofi": Instrumentation(pad=4, bass=33, arp=11, melody=4, kit=32, volumes=_VOLUMES),
    "electronic": Instrumentation(pad=89, bass=38, arp=81, melody=80, kit=25, volumes=_VOLUMES),
    "acoustic": Instrumentation(pad=48, bass=32, arp=25, melody=73, kit=40, volumes=_VOLUMES),
}

# emotion -> style -> part overrides
EMOTION_COLOURS: dict[str, dict[str, dict[str, int]]] = {
    "joy": {"cinematic": {"arp": 46}, "lofi": {"arp": 26}, "acoustic": {"arp": 25}},
    "sadness": {
        "cinematic": {"pad": 49, "arp": 0, "melody": 42},
        "lofi": {"pad": 4, "arp": 0},
        "electronic": {"pad": 94, "arp": 88},
        "acoustic": {"pad": 49, "arp": 0, "melody": 42},
    },
    "anger": {
        "cinematic": {"pad": 61, "arp": 42, "kit": 16},
        "lofi": {"pad": 29, "arp": 29, "kit": 16},
        "electronic": {"pad": 81, "arp": 30},
        "acoustic": {"pad": 30, "arp": 30, "kit": 16},
    },
    "fear": {
        "cinematic": {"pad": 44, "arp": 45},
        "lofi": {"pad": 44, "arp": 11},
        "electronic": {"pad": 95, "arp": 45},
        "acoustic": {"pad": 44, "arp": 45},
    },
    "surprise": {"cinematic": {"arp": 8, "pad": 45}, "lofi": {"arp": 11}, "acoustic": {"arp": 45}},
    "disgust": {
        "cinematic": {"pad": 50, "arp": 42},
        "lofi": {"pad": 50, "arp": 32},
        "electronic": {"pad": 95, "arp": 38},
        "acoustic": {"pad": 50, "arp": 43},
    },
    "neutral": {"cinematic": {"pad": 89, "arp": 46}, "electronic": {"pad": 89}, "acoustic": {"arp": 24}},
}

STYLE_GROOVES: dict[str, Groove] = {
    "cinematic": Groove(0.0, 0.004, 8, False, {42: None, 44: None, 46: None, 51: 49, 39: 38}),
    "lofi": Groove(0.33, 0.012, 12, False, {49: 51, 39: 37, 38: 37}),
    "electronic": Groove(0.0, 0.0, 4, True, {38: 39, 41: 45}),
    "acoustic": Groove(0.12, 0.008, 10, False, {42: 70, 46: 70, 49: 51}),
}


def profile(emotion: str) -> MoodProfile:
    return PROFILES[check_emotion(emotion)]


def instruments(style: str, emotion: str) -> Instrumentation:
    """The style's instrumentation, recoloured for ``emotion``."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {', '.join(STYLES)}")
    base = STYLE_INSTRUMENTS[style]
    colour = EMOTION_COLOURS[check_emotion(emotion)].get(style, {})
    return Instrumentation(
        pad=colour.get("pad", base.pad),
        bass=colour.get("bass", base.bass),
        arp=colour.get("arp", base.arp),
        melody=colour.get("melody", base.melody),
        kit=colour.get("kit", base.kit),
        volumes=base.volumes,
    )


def groove(style: str) -> Groove:
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {', '.join(STYLES)}")
    return STYLE_GROOVES[style]


assert set(PROFILES) == set(EMOTIONS) and set(STYLE_INSTRUMENTS) == set(STYLES)
