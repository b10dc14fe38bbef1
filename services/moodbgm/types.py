"""Typed results that travel between stages.

Every stage reads and writes these frozen dataclasses; the JSON files of a job directory are their
``to_dict`` forms (see docs/ARCHITECTURE.md). Validation happens once, in ``__post_init__``, and raises a
concise ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

EMOTIONS: tuple[str, ...] = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
SAMPLE_RATE = 48_000


def _check_span(start: float, end: float, what: str) -> None:
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValueError(f"{what}: times must be finite, got {start}..{end}")
    if start < 0 or end < start:
        raise ValueError(f"{what}: need 0 <= start <= end, got {start}..{end}")


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str
    probability: float = 1.0

    def __post_init__(self) -> None:
        _check_span(self.start, self.end, "Word")

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "text": self.text, "probability": self.probability}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Word:
        return cls(float(d["start"]), float(d["end"]), str(d["text"]), float(d.get("probability", 1.0)))


@dataclass(frozen=True)
class Phrase:
    """One utterance: a sentence or a stretch of speech between pauses."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()

    def __post_init__(self) -> None:
        _check_span(self.start, self.end, "Phrase")
        object.__setattr__(self, "words", tuple(self.words))

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "words": [w.to_dict() for w in self.words],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Phrase:
        words = tuple(Word.from_dict(w) for w in d.get("words", ()))
        return cls(float(d["start"]), float(d["end"]), str(d["text"]), words)


@dataclass(frozen=True)
class Transcript:
    language: str
    phrases: tuple[Phrase, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "phrases", tuple(self.phrases))
        for a, b in zip(self.phrases, self.phrases[1:], strict=False):
            if b.start < a.start:
                raise ValueError("Transcript: phrases must be sorted by start time")

    @property
    def text(self) -> str:
        return " ".join(p.text for p in self.phrases)

    def to_dict(self) -> dict[str, Any]:
        return {"language": self.language, "phrases": [p.to_dict() for p in self.phrases]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Transcript:
        return cls(str(d["language"]), tuple(Phrase.from_dict(p) for p in d.get("phrases", ())))


@dataclass(frozen=True)
class EmotionScores:
    """Probabilities for all seven emotions, in ``EMOTIONS`` order, summing to 1."""

    scores: tuple[float, ...]

    def __post_init__(self) -> None:
        s = tuple(float(x) for x in self.scores)
        if len(s) != len(EMOTIONS):
            raise ValueError(f"EmotionScores: need {len(EMOTIONS)} scores, got {len(s)}")
        if any(not math.isfinite(x) or x < 0 for x in s):
            raise ValueError("EmotionScores: scores must be finite and >= 0")
        if abs(sum(s) - 1.0) > 1e-3:
            raise ValueError(f"EmotionScores: scores must sum to 1, got {sum(s):.4f}")
        object.__setattr__(self, "scores", s)

    @classmethod
    def from_probs(cls, probs: Sequence[float] | np.ndarray) -> EmotionScores:
        """Normalise non-negative weights (e.g. a softmax row) into scores."""
        p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, None)
        total = float(p.sum())
        if total <= 0:
            raise ValueError("EmotionScores: all weights are zero")
        return cls(tuple((p / total).tolist()))

    @classmethod
    def one_hot(cls, emotion: str) -> EmotionScores:
        check_emotion(emotion)
        return cls(tuple(1.0 if e == emotion else 0.0 for e in EMOTIONS))

    @property
    def label(self) -> str:
        return EMOTIONS[int(np.argmax(self.scores))]

    @property
    def confidence(self) -> float:
        return max(self.scores)

    def as_dict(self) -> dict[str, float]:
        return dict(zip(EMOTIONS, self.scores, strict=True))

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "confidence": self.confidence, "scores": self.as_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EmotionScores:
        scores = d["scores"]
        return cls(tuple(float(scores[e]) for e in EMOTIONS))


def check_emotion(emotion: str) -> str:
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {', '.join(EMOTIONS)}")
    return emotion


DEFAULT_INTENSITY = 0.5
"""A section's intensity when nobody set it: the emotion's own density (the composer changes nothing)."""


@dataclass(frozen=True)
class Section:
    """A stretch of the video scored with one emotion."""

    start: float
    end: float
    emotion: str
    confidence: float = 1.0
    intensity: float = DEFAULT_INTENSITY  # 0..1: how dense and active the music is (the editor sets it)

    def __post_init__(self) -> None:
        _check_span(self.start, self.end, "Section")
        check_emotion(self.emotion)
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"Section: confidence must be in [0, 1], got {self.confidence}")
        if not 0.0 <= self.intensity <= 1.0:
            raise ValueError(f"Section: intensity must be in [0, 1], got {self.intensity}")

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "emotion": self.emotion,
            "confidence": self.confidence,
            "intensity": self.intensity,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Section:
        return cls(
            float(d["start"]),
            float(d["end"]),
            str(d["emotion"]),
            float(d.get("confidence", 1.0)),
            float(d.get("intensity", DEFAULT_INTENSITY)),
        )


@dataclass(frozen=True)
class Timeline:
    """Sections that tile ``[0, duration]`` exactly, plus the video's scene cuts (boundaries snap to them)."""

    duration: float
    sections: tuple[Section, ...]
    cuts: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "sections", tuple(self.sections))
        object.__setattr__(self, "cuts", tuple(float(c) for c in self.cuts))
        if not (math.isfinite(self.duration) and self.duration > 0):
            raise ValueError(f"Timeline: duration must be > 0, got {self.duration}")
        if not self.sections:
            raise ValueError("Timeline: needs at least one section")
        eps = 1e-6
        if abs(self.sections[0].start) > eps or abs(self.sections[-1].end - self.duration) > eps:
            raise ValueError("Timeline: sections must start at 0 and end at the duration")
        for a, b in zip(self.sections, self.sections[1:], strict=False):
            if abs(a.end - b.start) > eps:
                raise ValueError(f"Timeline: gap or overlap between sections at {a.end:.3f}/{b.start:.3f}")

    def emotion_at(self, t: float) -> str:
        for s in self.sections:
            if t < s.end:
                return s.emotion
        return self.sections[-1].emotion

    def to_dict(self) -> dict[str, Any]:
        return {
            "duration": self.duration,
            "sections": [s.to_dict() for s in self.sections],
            "cuts": list(self.cuts),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Timeline:
        return cls(
            float(d["duration"]),
            tuple(Section.from_dict(s) for s in d["sections"]),
            tuple(float(c) for c in d.get("cuts", ())),
        )


@dataclass(frozen=True)
class MusicBed:
    """Generated music: float32 stereo ``(n, 2)`` at ``sample_rate``, plus MIDI when the backend has it."""

    audio: np.ndarray = field(repr=False)
    sample_rate: int = SAMPLE_RATE
    midi: bytes | None = field(default=None, repr=False)
    bars: dict[str, Any] | None = field(default=None, repr=False)  # the composer's plan (bars.json)

    def __post_init__(self) -> None:
        a = np.asarray(self.audio, dtype=np.float32)
        if a.ndim != 2 or a.shape[1] != 2:
            raise ValueError(f"MusicBed: audio must have shape (n, 2), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("MusicBed: audio contains NaN or inf")
        object.__setattr__(self, "audio", a)

    @property
    def duration(self) -> float:
        return self.audio.shape[0] / self.sample_rate
