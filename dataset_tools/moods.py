"""Music mood tags -> one of the seven emotions (pure).

The table covers the reference design's labels (angry, fear, funny, happy, quirky, sad, weird) and
the moods of the Epidemic Sound catalogue. It follows the valence/arousal reading of the composer's
table (``moodbgm.generate.composer.mapping``) and the caption words of ``moodbgm.generate.prompts``:
anger is negative and aroused (aggressive, intense), disgust dark and uneasy, fear tense, joy bright
and uplifting, neutral calm, sadness slow and melancholic, surprise playful and quirky.

**Tie rule.** Every recognised mood of a track votes for its emotion. The emotion with the most votes
wins; on a tie, the tied emotion whose first vote came earliest in the track's mood list wins (mood
lists are ordered most salient first). Unknown moods do not vote. A track with no recognised mood
gets no emotion (``None``), unless it names one explicitly, which always wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from moodbgm.types import EMOTIONS, check_emotion

MOOD_TO_EMOTION: dict[str, str] = {
    # reference design labels
    "angry": "anger",
    "fear": "fear",
    "funny": "surprise",
    "happy": "joy",
    "quirky": "surprise",
    "sad": "sadness",
    "weird": "disgust",
    # anger: negative valence, high arousal
    "aggressive": "anger",
    "anger": "anger",
    "busy & frantic": "anger",
    "frantic": "anger",
    "intense": "anger",
    "powerful": "anger",
    "marching": "anger",
    # disgust: dark, uneasy, dissonant
    "dark": "disgust",
    "disgust": "disgust",
    "heavy & ponderous": "disgust",
    "creepy": "disgust",
    "eerie": "disgust",
    "uneasy": "disgust",
    "ominous": "disgust",
    # fear: tense, suspenseful
    "scary": "fear",
    "suspense": "fear",
    "suspenseful": "fear",
    "tense": "fear",
    "mysterious": "fear",
    "restless": "fear",
    "chasing": "fear",
    "nervous": "fear",
    # joy: bright, uplifting
    "joy": "joy",
    "euphoric": "joy",
    "hopeful": "joy",
    "epic": "joy",
    "uplifting": "joy",
    "romantic": "joy",
    "glamorous": "joy",
    "bright": "joy",
    "cheerful": "joy",
    "triumphant": "joy",
    "heroic": "joy",
    # neutral: calm, warm, steady
    "neutral": "neutral",
    "laid back": "neutral",
    "peaceful": "neutral",
    "relaxing": "neutral",
    "dreamy": "neutral",
    "floating": "neutral",
    "smooth": "neutral",
    "elegant": "neutral",
    "calm": "neutral",
    "chill": "neutral",
    # sadness: slow, melancholic
    "sadness": "sadness",
    "sentimental": "sadness",
    "melancholic": "sadness",
    "melancholy": "sadness",
    "nostalgic": "sadness",
    "somber": "sadness",
    "sorrowful": "sadness",
    # surprise: playful, quirky
    "surprise": "surprise",
    "sneaking": "surprise",
    "playful": "surprise",
    "eccentric": "surprise",
    "whimsical": "surprise",
    "bouncy": "surprise",
}
"""Normalised mood (see ``normalize_mood``) -> emotion."""

assert set(MOOD_TO_EMOTION.values()) == set(EMOTIONS)

_SEPARATORS = re.compile(r"[\s_\-/]+")


def normalize_mood(mood: str) -> str:
    """Lower case, ``and``/``+`` spelled ``&``, separators as single spaces: ``"Busy-and-Frantic"`` ->
    ``"busy & frantic"``."""
    m = _SEPARATORS.sub(" ", mood.strip().lower())
    m = re.sub(r"\s*(?:&|\+|\band\b)\s*", " & ", m)
    return m.strip()


def emotion_for(moods: Iterable[str], explicit: str | None = None) -> str | None:
    """The emotion of a track's moods (see the module doc for the tie rule); ``explicit`` wins."""
    if explicit:
        return check_emotion(explicit.strip().lower())
    votes: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, mood in enumerate(moods):
        emotion = MOOD_TO_EMOTION.get(normalize_mood(mood))
        if emotion is None:
            continue
        votes[emotion] = votes.get(emotion, 0) + 1
        first.setdefault(emotion, i)
    if not votes:
        return None
    return min(votes, key=lambda e: (-votes[e], first[e]))


def unknown_moods(moods: Iterable[str]) -> list[str]:
    """The moods the table does not know (they do not vote)."""
    return [m for m in moods if normalize_mood(m) not in MOOD_TO_EMOTION]
