"""The one caption template: training captions (dataset_tools) and inference prompts (Riffusion).

A caption holds only what the generator can fill at inference, so a LoRA sees at inference the
wording it was trained on: the emotion's words, the style (its name and instrument words) and the
tempo, rounded to ``TEMPO_STEP`` bpm. Shape (lower case)::

    "<emotion words> <style> music, <instruments>, <tempo> bpm"
    e.g. "joyful, uplifting, bright cinematic music, orchestral strings, piano, 120 bpm"

The data-set builder fills the emotion from a track's moods, the style from its genre
(``dataset_tools.genres``) and the tempo from its bpm; the Riffusion backend fills them from the
timeline's emotion, the user's style and the composer's tempo. A field that is unknown is left out
(``style=None``: ``"<emotion words> music, ..."``), never guessed. A track's free-text moods, tags
and genre stay in the data set's metadata columns, not in the caption.
"""

from __future__ import annotations

import math

from moodbgm.generate.base import STYLES
from moodbgm.types import EMOTIONS, check_emotion

MOOD_WORDS: dict[str, tuple[str, ...]] = {
    "anger": ("angry", "aggressive", "intense"),
    "disgust": ("dark", "uneasy", "dissonant"),
    "fear": ("tense", "suspenseful", "ominous"),
    "joy": ("joyful", "uplifting", "bright"),
    "neutral": ("calm", "warm", "steady"),
    "sadness": ("sad", "melancholic", "slow"),
    "surprise": ("playful", "surprising", "quirky"),
}
"""Descriptive words per emotion, most characteristic first."""

STYLE_INSTRUMENTS: dict[str, tuple[str, ...]] = {
    "cinematic": ("orchestral strings", "piano"),
    "lofi": ("dusty electric piano", "mellow drums"),
    "electronic": ("synthesizers", "electronic drums"),
    "acoustic": ("acoustic guitar", "soft percussion"),
}
"""Instrument words per style (the same palette the composer voices)."""

TEMPO_STEP = 5
"""Tempo in captions is rounded to this many bpm (finer steps mean nothing to the text encoder)."""

MIN_BPM, MAX_BPM = 20.0, 300.0

assert set(MOOD_WORDS) == set(EMOTIONS) and set(STYLE_INSTRUMENTS) == set(STYLES)


def check_bpm(bpm: float) -> float:
    if not (math.isfinite(bpm) and MIN_BPM <= bpm <= MAX_BPM):
        raise ValueError(f"bpm must be within {MIN_BPM:g}..{MAX_BPM:g}, got {bpm}")
    return float(bpm)


def tempo_words(bpm: float) -> str:
    """``"120 bpm"``: the tempo rounded to ``TEMPO_STEP``."""
    return f"{TEMPO_STEP * round(check_bpm(bpm) / TEMPO_STEP)} bpm"


def caption(emotion: str, style: str | None, bpm: float | None = None) -> str:
    """The caption/prompt for music of ``emotion`` in ``style`` (one of ``STYLES``) at ``bpm``."""
    check_emotion(emotion)
    if style is not None and style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {', '.join(STYLES)}")
    head = ", ".join(MOOD_WORDS[emotion]) + (f" {style}" if style else "") + " music"
    parts = [head, *(STYLE_INSTRUMENTS[style] if style else ())]
    if bpm is not None:
        parts.append(tempo_words(bpm))
    return ", ".join(parts)
