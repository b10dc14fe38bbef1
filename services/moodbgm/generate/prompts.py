"""The one caption template: training captions (dataset_tools) and inference prompts (Riffusion).

A LoRA sees at inference exactly the wording it was trained on, so both sides call ``caption``.
Shape: ``"<mood words> <genre or style> music, <instruments>[, <tags>][, <bpm> bpm]"``, lower case,
e.g. ``"joyful, uplifting, bright cinematic music, orchestral strings, piano, 120 bpm"``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

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

assert set(MOOD_WORDS) == set(EMOTIONS) and set(STYLE_INSTRUMENTS) == set(STYLES)

_SPACES = re.compile(r"\s+")


def _clean(word: str) -> str:
    return _SPACES.sub(" ", word.replace(",", " ")).strip().lower()


def caption(
    emotion: str,
    style: str | None,
    tags: Sequence[str] = (),
    genre: str | None = None,
    bpm: float | None = None,
) -> str:
    """A caption/prompt for music of ``emotion``.

    ``style`` (one of ``STYLES``) picks the instrument words; ``genre`` (free text, e.g. a data set's
    genre tag) replaces the style name in the phrase "<...> music" when given. ``tags`` are extra
    descriptors appended in order (duplicates of words already present are dropped). ``bpm`` adds
    the tempo, rounded.
    """
    check_emotion(emotion)
    if style is not None and style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {', '.join(STYLES)}")
    if bpm is not None and not (math.isfinite(bpm) and 20 <= bpm <= 300):
        raise ValueError(f"bpm must be within 20..300, got {bpm}")
    kind = _clean(genre) if genre else (style or "")
    head = ", ".join(MOOD_WORDS[emotion]) + (f" {kind}" if kind else "") + " music"
    parts = [head]
    if style is not None:
        parts.extend(STYLE_INSTRUMENTS[style])
    seen = {*MOOD_WORDS[emotion], kind, *parts[1:]}
    for tag in tags:
        t = _clean(tag)
        if t and t not in seen:
            parts.append(t)
            seen.add(t)
    if bpm is not None:
        parts.append(f"{round(bpm)} bpm")
    return ", ".join(parts)
