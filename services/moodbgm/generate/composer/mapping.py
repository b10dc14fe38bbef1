"""Emotion -> musical cues (the one table), and style -> instrumentation and groove.

``CUES`` is the single cue table: tempo, mode, pitch height, loudness, articulation, brightness,
rhythmic regularity and dissonance of each emotion; the composer reads them from here and nowhere
else. The values follow the cue tables of Juslin & Laukka (2003, "Communication of emotions in vocal
expression and music performance: different channels, same code?", Psychological Bulletin 129(5))
and Gabrielsson & Lindström (2010, "The role of structure in the musical expression of emotions",
Handbook of Music and Emotion, ch. 14): happiness = fast, major, high, bright, staccato, regular;
sadness = slow, minor, low, soft, dark, legato; anger = fast, minor/dissonant, sharp attacks, harsh;
fear = fast or irregular, minor, high, variable loudness, dissonant; tenderness (our neutral) =
slow-moderate, major, soft, legato. Surprise (sudden change, wide leaps, syncopation) and disgust
(slow-moderate, dissonant, irregular, low) follow the same tables' arousal and valence cues.

| emotion  | BPM     | mode        | height  | level   | artic.      | bright | rhythm      | dissonance    |
|----------|---------|-------------|---------|---------|-------------|--------|-------------|---------------|
| anger    | 140-164 | minor, bII  | low C4  | +1.0 LU | marcato .5  | bright | syncopated  | high: bII, bV |
| disgust  | 74-86   | Phrygian    | low A3  | -0.5 LU | detached .7 | dark   | irregular   | high: m7, bII |
| fear     | 103-121 | harm. minor | high C6 | 0 LU    | tremolo .6  | mid    | irregular   | high: dim7    |
| joy      | 110-130 | major       | high E5 | +0.5 LU | staccato .3 | bright | regular     | low           |
| neutral  | 85-99   | major       | mid G4  | -0.5 LU | legato .95  | mid    | regular     | low: triads   |
| sadness  | 59-69   | minor       | low A3  | -1.0 LU | legato 1    | dark   | even (slow) | mid: m7       |
| surprise | 121-143 | major, II   | high G5 | +0.5 LU | staccato .4 | bright | syncopated  | mid: II, sus4 |

Rhythm: irregular = displaced and dropped hits, 5/4 for disgust; dissonance: the chords that carry
it, plus a semitone cluster in the pad of the "high" ones.

Tempo: nominal x (0.92, 1.08), the range a section's tempo may be stretched in to fit its time.
Loudness: the section's rendered level relative to the piece; all offsets lie within +-1 LU so
every section stays within 3 LU of the median and of its neighbours: arousal is carried by tempo,
attack and harmony, not by level. Articulation: the sounding fraction of a note's slot (melody,
arpeggio, bass; pads of the staccato emotions are short stabs). Height: the melody's centre (MIDI
note); ``register`` moves the accompaniment with it.

``PROFILES`` holds the texture of each emotion: progressions for the episodes between statements of
the theme, arpeggio and bass patterns, pad style (hold, stabs, tremolo swells), drum groove, reverb
and preferred keys. As background music the parts leave room for the voice: the pad sits at or below
G4, the arpeggio is soft and the melody soft (velocity <= 64) and sparse.

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
TEMPO_STRETCH = 0.08  # a section's tempo stays within nominal x (1 +- this)
LEVELS = ("low", "mid", "high")


@dataclass(frozen=True)
class Cues:
    """The target cues of one emotion (see the module's table)."""

    emotion: str
    tempo: float  # nominal BPM; the range is tempo x (1 -+ TEMPO_STRETCH)
    mode: str  # a key of SCALES
    height: int  # the melody's centre, MIDI note
    loudness: float  # LU relative to the piece, within +-1.5
    articulation: float  # sounding fraction of a note's slot
    brightness: str  # LEVELS: dark / mid / bright -> low / mid / high
    regularity: str  # LEVELS: irregular / syncopated / regular -> low / mid / high
    dissonance: str  # LEVELS

    def __post_init__(self) -> None:
        check_emotion(self.emotion)
        if not 40 <= self.tempo <= 200 or self.mode not in SCALES or not 36 <= self.height <= 96:
            raise ValueError(f"{self.emotion}: tempo 40..200, a known mode and height 36..96 required")
        if abs(self.loudness) > 1.5 or not 0 < self.articulation <= 1:
            raise ValueError(f"{self.emotion}: loudness within +-1.5 LU, articulation in (0, 1]")
        if not {self.brightness, self.regularity, self.dissonance} <= set(LEVELS):
            raise ValueError(f"{self.emotion}: brightness, regularity and dissonance must be in {LEVELS}")

    @property
    def tempo_range(self) -> tuple[float, float]:
        return self.tempo * (1 - TEMPO_STRETCH), self.tempo * (1 + TEMPO_STRETCH)

    @property
    def is_major(self) -> bool:
        return self.mode in MAJOR_MODES


CUES: dict[str, Cues] = {
    c.emotion: c
    for c in (
        #    emotion     BPM  mode              height loud  artic brightness regularity dissonance
        Cues("anger",    152, "minor",           60,  1.0, 0.50, "high", "mid",  "high"),
        Cues("disgust",   80, "phrygian",        57, -0.5, 0.70, "low",  "low",  "high"),
        Cues("fear",     112, "harmonic_minor",  84,  0.0, 0.60, "mid",  "low",  "high"),
        Cues("joy",      120, "major",           76,  0.5, 0.30, "high", "high", "low"),
        Cues("neutral",   92, "major",           67, -0.5, 0.95, "mid",  "high", "low"),
        Cues("sadness",   64, "minor",           57, -1.0, 1.00, "low",  "mid",  "mid"),
        Cues("surprise", 132, "major",           79,  0.5, 0.40, "high", "mid",  "mid"),
    )
}  # fmt: skip


@dataclass(frozen=True)
class MoodProfile:
    """How one emotion's texture is built; its cues come from ``CUES``. Velocities 1..127."""

    emotion: str
    beats_per_bar: int
    progressions: tuple[tuple[str, ...], ...]  # roman numerals for episodes, see harmony.parse_chord
    arp_rate: float  # notes per beat
    arp_shapes: tuple[str, ...]
    bass_patterns: tuple[str, ...]
    pad_style: str  # "hold" | "stabs" | "tremolo"
    drums: str  # groove name in drums.DRUM_GROOVES, or "none"
    register: int  # semitones the accompaniment moves up or down
    velocity: int
    theme_rate: float  # theme time scale: 2 augmentation, 0.5 diminution
    melody_leap: int  # octave displacement of theme notes (surprise), 0 none
    reverb: float  # FluidSynth reverb level 0..1
    tonics: tuple[int, ...]  # preferred key centres (pitch classes)

    def __post_init__(self) -> None:
        check_emotion(self.emotion)
        if not self.progressions or not all(self.progressions):
            raise ValueError(f"{self.emotion}: needs at least one non-empty progression")
        if self.beats_per_bar not in (3, 4, 5, 6):
            raise ValueError(f"{self.emotion}: beats_per_bar must be 3..6")
        if self.theme_rate not in (0.5, 1.0, 2.0):
            raise ValueError(f"{self.emotion}: theme_rate must be 0.5, 1 or 2")

    @property
    def cues(self) -> Cues:
        return CUES[self.emotion]

    @property
    def mode(self) -> str:
        return self.cues.mode

    @property
    def tempo(self) -> tuple[float, float, float]:
        """min, nominal, max BPM."""
        lo, hi = self.cues.tempo_range
        return lo, self.cues.tempo, hi

    @property
    def legato(self) -> float:
        return self.cues.articulation

    @property
    def is_major(self) -> bool:
        return self.cues.is_major


PROFILES: dict[str, MoodProfile] = {
    p.emotion: p
    for p in (
        MoodProfile(
            "joy", 4,
            (("I", "V", "vi", "IV"), ("I", "IV", "V", "IV"), ("vi", "IV", "I", "V"),
             ("I", "iii", "IV", "V"), ("IV", "I", "V", "vi"), ("I", "vi", "ii7", "V")),
            2.0, ("up", "updown", "broken", "pedal"), ("half", "pulse8"),
            "stabs", "backbeat", 5, 78, 1.0, 0, 0.25, (0, 2, 7, 9, 5),
        ),
        MoodProfile(
            "sadness", 4,
            (("i", "bVI", "bIII", "bVII"), ("i", "iv", "bVI", "v"), ("i", "bVII", "bVI", "bVII"),
             ("bVI", "bIII", "iv", "i"), ("i", "iv7", "bVII", "bIIImaj7"), ("i", "v", "bVI", "iv")),
            0.5, ("up", "down", "updown"), ("whole", "half"),
            "hold", "none", -5, 58, 2.0, 0, 0.55, (2, 9, 4, 11, 7),
        ),
        MoodProfile(
            "anger", 4,
            (("i", "bII5", "i", "bV5"), ("i", "iv", "bII5", "i"), ("i", "iv", "bV5", "bII5"),
             ("i", "bII5", "iv", "i"), ("iv", "bV5", "i", "bII5")),
            2.0, ("riff", "pedal"), ("pulse8", "gallop"),
            "stabs", "driving", -5, 92, 0.5, 0, 0.12, (4, 9, 2, 7),
        ),
        MoodProfile(
            "fear", 4,
            (("i", "viio7", "i", "bII"), ("i", "bVI", "viio7", "V"), ("i", "#ivo7", "i", "bII"),
             ("iv", "viio7", "i", "bVI"), ("i", "bII", "viio7", "i")),
            4.0, ("ostinato", "chromatic"), ("ostinato", "whole"),
            "tremolo", "ostinato", 9, 62, 0.5, 0, 0.45, (2, 4, 11, 6),
        ),
        MoodProfile(
            "surprise", 4,
            (("I", "II", "V", "I"), ("I", "vi", "II", "V"), ("I", "II", "vi", "V"),
             ("IV", "II", "V", "I"), ("I", "Vsus4", "II", "V")),
            2.0, ("leaps", "broken", "updown"), ("syncopated", "octaves"),
            "stabs", "syncopated", 7, 84, 1.0, 12, 0.3, (0, 7, 2, 5),
        ),
        MoodProfile(
            "disgust", 5,
            (("i", "bII", "iiø7", "i"), ("i", "bVmaj7", "bII", "v"), ("iø7", "bII", "i", "bVII"),
             ("i", "bIImaj7", "iv", "bII")),
            1.5, ("uneven", "chromatic"), ("uneven", "whole"),
            "hold", "uneven", -8, 66, 1.0, 0, 0.35, (4, 11, 1, 6),
        ),
        MoodProfile(
            "neutral", 4,
            (("I", "vi", "IV", "V"), ("I", "IV", "I", "V"), ("vi", "IV", "I", "V"),
             ("IV", "I", "ii", "V"), ("I", "iii", "IV", "I")),
            1.0, ("up", "broken"), ("whole", "half"),
            "hold", "soft", -3, 60, 1.0, 0, 0.35, (0, 5, 7, 10, 3),
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
    "sadness": {  # dark: soft sustained timbres, few upper partials
        "cinematic": {"pad": 89, "arp": 89, "melody": 73},
        "lofi": {"pad": 4, "arp": 89, "melody": 73},
        "electronic": {"pad": 89, "arp": 89, "melody": 73},
        "acoustic": {"pad": 89, "arp": 48, "melody": 73},
    },
    "anger": {
        "cinematic": {"pad": 61, "arp": 42, "kit": 16},
        "lofi": {"pad": 29, "arp": 29, "kit": 16},
        "electronic": {"pad": 81, "arp": 30},
        "acoustic": {"pad": 30, "arp": 30, "kit": 16},
    },
    "fear": {  # tremolo strings, pizzicato, a thin high violin line
        "cinematic": {"pad": 44, "arp": 45, "melody": 40},
        "lofi": {"pad": 44, "arp": 11, "melody": 40},
        "electronic": {"pad": 95, "arp": 45, "melody": 81},
        "acoustic": {"pad": 44, "arp": 45, "melody": 40},
    },
    "surprise": {"cinematic": {"arp": 8, "pad": 61}, "lofi": {"arp": 11}, "acoustic": {"arp": 45}},
    "disgust": {
        "cinematic": {"pad": 50, "arp": 42},
        "lofi": {"pad": 50, "arp": 32},
        "electronic": {"pad": 95, "arp": 38},
        "acoustic": {"pad": 50, "arp": 43},
    },
    "neutral": {
        "cinematic": {"pad": 89, "arp": 46},
        "lofi": {"pad": 89},
        "electronic": {"pad": 89},
        "acoustic": {"arp": 24},
    },
}

STYLE_GROOVES: dict[str, Groove] = {
    "cinematic": Groove(0.0, 0.004, 8, False, {42: None, 44: None, 46: None, 51: None, 39: 38}),
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


assert set(PROFILES) == set(CUES) == set(EMOTIONS) and set(STYLE_INSTRUMENTS) == set(STYLES)
