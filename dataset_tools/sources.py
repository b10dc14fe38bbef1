"""Labelled tracks: a folder of audio files and a metadata file (CSV or JSONL) -> ``Track`` objects.

Columns (CSV header or JSON keys; see README.md): ``file`` (required, relative to the metadata file's
folder or absolute), ``moods``, ``tags``, ``genre``, ``bpm``, ``emotion`` (explicit label, wins over
moods), ``style`` (one of moodbgm's styles; adds its name and instrument words to the caption),
``title``. The caption is ``moodbgm.generate.prompts.caption(emotion, style, bpm)``; moods, tags and
genre stay metadata.
List columns are JSON lists or strings separated by ``,``, ``;`` or ``|``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataset_tools.moods import emotion_for, unknown_moods
from moodbgm.generate.base import STYLES
from moodbgm.generate.prompts import MAX_BPM, MIN_BPM, caption, check_bpm
from moodbgm.types import check_emotion

logger = logging.getLogger(__name__)

_LIST_SPLIT = re.compile(r"[,;|]")


class DatasetError(ValueError):
    """Bad input to the data set tools (message says what and why)."""


@dataclass(frozen=True)
class Track:
    """One labelled audio file. ``source`` is its stable id (path relative to the metadata file)."""

    path: Path
    source: str
    emotion: str
    moods: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    genre: str | None = None
    bpm: float | None = None
    style: str | None = None
    title: str | None = None

    def __post_init__(self) -> None:
        check_emotion(self.emotion)
        if not self.source:
            raise ValueError("Track: source must not be empty")
        if self.style is not None and self.style not in STYLES:
            raise ValueError(f"Track {self.source}: unknown style {self.style!r}; expected one of {STYLES}")
        if self.bpm is not None:
            try:
                check_bpm(self.bpm)
            except ValueError as e:
                raise ValueError(f"Track {self.source}: {e}") from None
        object.__setattr__(self, "moods", tuple(self.moods))
        object.__setattr__(self, "tags", tuple(self.tags))

    @property
    def caption(self) -> str:
        """The training caption: the shared template, filled as the generator fills it at inference."""
        return caption(self.emotion, self.style, self.bpm)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.source,
            "emotion": self.emotion,
            "moods": list(self.moods),
            "tags": list(self.tags),
            "genre": self.genre,
            "bpm": self.bpm,
            "style": self.style,
            "title": self.title,
        }


def as_list(value: Any) -> tuple[str, ...]:
    """A list column: JSON/py list, numpy array, or a string separated by ``,``/``;``/``|``."""
    if value is None:
        return ()
    if isinstance(value, float) and math.isnan(value):
        return ()
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("["):
            try:
                return as_list(json.loads(s))
            except json.JSONDecodeError:
                s = s.strip("[]")
        return tuple(p.strip().strip("'\"") for p in _LIST_SPLIT.split(s) if p.strip().strip("'\""))
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return tuple(str(v).strip() for v in value if v is not None and str(v).strip())
    return (str(value).strip(),)


def _text(value: Any) -> str | None:
    items = as_list(value)
    return ", ".join(items) if items else None


def _bpm(value: Any, where: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        bpm = float(value)
    except (TypeError, ValueError):
        logger.warning("%s: bpm %r is not a number; ignored", where, value)
        return None
    if not (math.isfinite(bpm) and MIN_BPM <= bpm <= MAX_BPM):
        logger.warning("%s: bpm %r outside %g..%g; ignored", where, value, MIN_BPM, MAX_BPM)
        return None
    return bpm


def track_from_row(row: dict[str, Any], root: Path, where: str) -> Track | None:
    """A metadata row -> ``Track``; ``None`` (with a warning) when no emotion can be resolved."""
    file = row.get("file")
    if not file or not str(file).strip():
        raise DatasetError(f"{where}: no 'file' value")
    source = str(file).strip()
    path = Path(source) if Path(source).is_absolute() else root / source
    moods = as_list(row.get("moods"))
    explicit = row.get("emotion")
    explicit = str(explicit).strip() if explicit is not None and str(explicit).strip() else None
    try:
        emotion = emotion_for(moods, explicit)
    except ValueError as e:
        raise DatasetError(f"{where}: {e}") from None
    if emotion is None:
        logger.warning("%s (%s): no known mood in %s; track skipped", where, source, list(moods))
        return None
    if unknown := unknown_moods(moods):
        logger.debug("%s: moods without an emotion: %s", where, unknown)
    style = row.get("style")
    style = str(style).strip() if style is not None and str(style).strip() else None
    try:
        return Track(
            path=path, source=source, emotion=emotion, moods=moods, tags=as_list(row.get("tags")),
            genre=_text(row.get("genre")), bpm=_bpm(row.get("bpm"), where), style=style,
            title=_text(row.get("title")),
        )  # fmt: skip
    except ValueError as e:
        raise DatasetError(f"{where}: {e}") from None


def read_metadata(metadata: Path) -> tuple[list[Track], int]:
    """Tracks of a CSV/JSONL metadata file (files relative to its folder) and the number skipped.

    Missing audio files are a ``DatasetError`` listing them.
    """
    metadata = Path(metadata)
    if not metadata.is_file():
        raise DatasetError(f"metadata file not found: {metadata}")
    rows: list[tuple[str, dict[str, Any]]] = []
    if metadata.suffix.lower() == ".csv":
        with metadata.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "file" not in reader.fieldnames:
                raise DatasetError(f"{metadata}: CSV needs a 'file' column; found {reader.fieldnames}")
            rows = [(f"{metadata.name}:{i + 2}", dict(r)) for i, r in enumerate(reader)]
    elif metadata.suffix.lower() in (".jsonl", ".json"):
        for i, line in enumerate(metadata.read_text(encoding="utf-8").splitlines()):
            if line.strip():
                try:
                    rows.append((f"{metadata.name}:{i + 1}", json.loads(line)))
                except json.JSONDecodeError as e:
                    raise DatasetError(f"{metadata.name}:{i + 1}: not JSON ({e})") from None
    else:
        raise DatasetError(f"{metadata}: metadata must be .csv or .jsonl")
    tracks: list[Track] = []
    skipped = 0
    for where, row in rows:
        track = track_from_row(row, metadata.parent, where)
        if track is None:
            skipped += 1
        else:
            tracks.append(track)
    missing = [t.source for t in tracks if not t.path.is_file()]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DatasetError(f"{metadata}: audio files not found: {', '.join(missing[:5])}{more}")
    if len({t.source for t in tracks}) != len(tracks):
        raise DatasetError(f"{metadata}: the same file is listed twice")
    return tracks, skipped
