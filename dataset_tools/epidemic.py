"""Importer for a local copy of the Hugging Face data set ``Chr0my/Epidemic_music`` (one parquet per genre).

The column names are not documented, so common aliases are accepted (case-insensitive):

| meaning | columns tried |
|---|---|
| moods   | moods, mood, mood_tags |
| genre   | genres, genre, main_genre (else the parquet's file name, URL-decoded: ``Hip%20Hop`` -> Hip Hop) |
| bpm     | bpm, tempo |
| title   | title, name, track_title, track_name |
| tags    | tags, keywords, themes |
| id      | id, track_id, trackid, uuid |
| emotion | emotion (an explicit label; wins over moods) |
| audio   | audio (``{bytes, path}``, as ``datasets`` stores audio) |
| file    | file, path, filename, file_name, audio_path, url, audio_url, mp3, lqmp3, link, src |

A file column resolves to a local file: an absolute path as is, a relative path or a URL's last path
segment under ``audio_root`` (default: the parquet's folder). Embedded audio bytes are written to
``OUT/audio/``. The result is ``OUT/metadata.jsonl`` in the ``build`` input format, with a ``style``
mapped from the track's genres, then the file's genre (``dataset_tools.genres``), so the captions carry
the style words the generator prompts with. A parquet without a mood column or any audio column is a
``DatasetError`` that lists the columns found.

Parquets are streamed: ``BATCH_ROWS`` rows at a time, only the columns used, and metadata lines are
written as they come, so memory does not grow with the file size.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataset_tools.crops import stable_hash
from dataset_tools.genres import style_for
from dataset_tools.moods import emotion_for
from dataset_tools.sources import DatasetError, as_list
from moodbgm.files import atomic_path
from moodbgm.generate.base import STYLES

logger = logging.getLogger(__name__)

ALIASES: dict[str, tuple[str, ...]] = {
    "moods": ("moods", "mood", "mood_tags"),
    "genre": ("genres", "genre", "main_genre"),
    "bpm": ("bpm", "tempo"),
    "title": ("title", "name", "track_title", "track_name"),
    "tags": ("tags", "keywords", "themes"),
    "id": ("id", "track_id", "trackid", "uuid"),
    "emotion": ("emotion",),
    "audio": ("audio",),
    "file": (
        "file",
        "path",
        "filename",
        "file_name",
        "audio_path",
        "url",
        "audio_url",
        "mp3",
        "lqmp3",
        "link",
        "src",
    ),
}

_MAGIC = ((b"RIFF", ".wav"), (b"fLaC", ".flac"), (b"OggS", ".ogg"), (b"ID3", ".mp3"), (b"\xff\xfb", ".mp3"),
          (b"\xff\xf3", ".mp3"), (b"\xff\xf2", ".mp3"))  # fmt: skip


BATCH_ROWS = 64
"""Rows per parquet record batch: with embedded audio (~5 MB a track) about 300 MB at a time."""


@dataclass(frozen=True)
class ImportResult:
    metadata: Path
    tracks: int
    skipped_no_emotion: int
    skipped_missing_audio: int
    styles: dict[str, int]  # tracks per style
    no_style: int  # tracks whose genre maps to no style


def find_columns(columns: Sequence[str]) -> dict[str, str]:
    """Meaning -> actual column name, for the meanings found (first alias that matches wins)."""
    lower = {c.lower(): c for c in columns}
    found: dict[str, str] = {}
    for meaning, aliases in ALIASES.items():
        for alias in aliases:
            if alias in lower:
                found[meaning] = lower[alias]
                break
    return found


def _suffix(data: bytes, name: str | None) -> str:
    if name and Path(name).suffix:
        return Path(name).suffix.lower()
    for magic, ext in _MAGIC:
        if data.startswith(magic):
            return ext
    return ".bin"


def _local_file(value: str, audio_root: Path) -> Path:
    if value.startswith(("http://", "https://")):
        name = urllib.parse.unquote(Path(urllib.parse.urlparse(value).path).name)
        return audio_root / name
    p = Path(value).expanduser()
    return p if p.is_absolute() else audio_root / p


def _batches(parquet: Path, batch_rows: int) -> tuple[Iterator[tuple[int, dict[str, Any]]], dict[str, str]]:
    """The parquet's rows, read one record batch at a time (only the columns used), and its columns.

    Memory stays that of one batch whatever the file size: rows are never collected whole.
    """
    import pyarrow.parquet as pq

    # buffered column reads: without them a column chunk of all row groups is read at once (measured:
    # peak Arrow memory grew with the file, 38 -> 98 MB for 20 -> 80 MB of audio; flat 19 MB with these)
    pf = pq.ParquetFile(parquet, buffer_size=1 << 20, pre_buffer=False)
    names = pf.schema_arrow.names
    cols = find_columns(names)
    if ("moods" not in cols and "emotion" not in cols) or ("audio" not in cols and "file" not in cols):
        raise DatasetError(
            f"{parquet}: cannot find a mood column ({'/'.join(ALIASES['moods'])}) and an audio column "
            f"(audio or {'/'.join(ALIASES['file'])}); columns found: {', '.join(names)}"
        )

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        i = 0
        try:
            for batch in pf.iter_batches(batch_size=batch_rows, columns=sorted(set(cols.values()))):
                for row in batch.to_pylist():
                    yield i, row
                    i += 1
        finally:
            pf.close()

    return rows(), cols


def import_epidemic(
    parquets: Sequence[Path], out_dir: Path, audio_root: Path | None = None, batch_rows: int = BATCH_ROWS
) -> ImportResult:
    """Import parquet files (or folders of them) into ``out_dir`` (see the module doc)."""
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
    files: list[Path] = []
    for p in parquets:
        p = Path(p)
        if p.is_dir():
            files.extend(sorted(p.glob("*.parquet")))
        elif p.is_file():
            files.append(p)
        else:
            raise DatasetError(f"not found: {p}")
    if not files:
        raise DatasetError(f"no parquet files in {', '.join(map(str, parquets))}")
    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    tracks = no_emotion = missing = 0
    styles: Counter[str | None] = Counter()
    meta = out_dir / "metadata.jsonl"
    with atomic_path(meta) as tmp, tmp.open("w", encoding="utf-8") as out:
        for parquet in files:
            rows, cols = _batches(parquet, batch_rows)
            root = Path(audio_root) if audio_root is not None else parquet.parent
            default_genre = urllib.parse.unquote(parquet.stem)
            for i, row in rows:
                entry = _entry(parquet, i, row, cols, out_dir, root, default_genre)
                if entry is None:
                    no_emotion += 1
                    continue
                if "file" not in entry:
                    missing += 1
                    continue
                if entry["file"] in seen:
                    continue
                seen.add(entry["file"])
                styles[entry["style"]] += 1
                tracks += 1
                out.write(json.dumps(entry, ensure_ascii=False) + "\n")
        out.close()
        if not tracks:
            raise DatasetError(
                f"no usable tracks in {len(files)} parquet file(s) ({missing} without local audio, "
                f"{no_emotion} without a known mood)"
            )
    if missing:
        logger.warning("%d tracks skipped: audio file not found locally (audio root %s)", missing, audio_root)
    if no_emotion:
        logger.warning("%d tracks skipped: no mood maps to an emotion", no_emotion)
    if styles[None]:
        logger.warning("%d of %d tracks have a genre that maps to no style (their captions name none)",
                       styles[None], tracks)  # fmt: skip
    by_style = {s: styles.get(s, 0) for s in STYLES}
    return ImportResult(meta, tracks, no_emotion, missing, by_style, styles[None])


def _entry(
    parquet: Path, i: int, row: dict[str, Any], cols: dict[str, str], out_dir: Path, root: Path,
    default_genre: str,
) -> dict[str, Any] | None:  # fmt: skip
    """Row ``i`` -> a ``build`` metadata entry; None without an emotion, no ``file`` key without audio."""
    moods = as_list(row.get(cols["moods"])) if "moods" in cols else ()
    explicit = row.get(cols["emotion"]) if "emotion" in cols else None
    try:
        emotion = emotion_for(moods, str(explicit) if explicit else None)
    except ValueError as e:
        raise DatasetError(f"{parquet.name} row {i}: {e}") from None
    if emotion is None:
        return None
    genres = as_list(row.get(cols["genre"])) if "genre" in cols else ()
    entry: dict[str, Any] = {
        "moods": list(moods),
        "tags": list(as_list(row.get(cols["tags"]))) if "tags" in cols else [],
        "genre": ", ".join(genres) if genres else default_genre,
        "style": style_for((*genres, default_genre)),
        "bpm": row.get(cols["bpm"]) if "bpm" in cols else None,
        "title": str(row[cols["title"]]) if "title" in cols and row.get(cols["title"]) else None,
    }
    if explicit:
        entry["emotion"] = emotion
    ident = (
        str(row[cols["id"]]) if "id" in cols and row.get(cols["id"]) is not None else f"{parquet.stem}-{i}"
    )
    key = f"{stable_hash(parquet.name + '/' + ident):016x}"
    audio = row.get(cols["audio"]) if "audio" in cols else None
    file: Path | None = None
    if isinstance(audio, dict) and audio.get("bytes"):
        data = bytes(audio["bytes"])
        file = out_dir / "audio" / f"{key}{_suffix(data, audio.get('path'))}"
        if not file.is_file():
            with atomic_path(file) as tmp:
                tmp.write_bytes(data)
    else:
        ref = (
            audio.get("path")
            if isinstance(audio, dict)
            else row.get(cols["file"])
            if "file" in cols
            else None
        )
        if ref:
            file = _local_file(str(ref), root)
    if file is None or not file.is_file():
        logger.debug("%s row %d: audio not found (%s)", parquet.name, i, file)
        return entry
    entry["file"] = str(file.relative_to(out_dir)) if file.is_relative_to(out_dir) else str(file.resolve())
    return {"file": entry.pop("file"), **entry}
