"""Edits of a finished job's score: validate an edited timeline, keep versions, re-seed one section.

Pure parts (no I/O): ``validate_edit`` (an edit -> sections, or an ``EditError`` naming the section and
the rule), ``takes_changed`` and ``take_seed`` (which sections a "new take" re-seeds, and their seed) and
``splice`` (previous audio outside the re-seeded spans, new audio inside, equal-power crossfades).

File parts, over a job directory: ``snapshot`` freezes the current outputs as ``versions/vN/`` (hard
links: a stage replaces a file by renaming onto it, so a frozen version never changes) and
``prepare_rerender`` writes ``timeline.override.json`` (and, for a new take, ``take.json`` + ``take.wav``,
optional inputs of the generate stage) before the API enqueues ``RERUN``. The current version is the
top level of the job directory; ``versions.json`` numbers it.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moodbgm.files import read_json, write_json
from moodbgm.jobs import JobDir
from moodbgm.types import DEFAULT_INTENSITY, EMOTIONS

RERUN: tuple[str, ...] = ("timeline", "generate", "mix", "mux", "report")
"""The stages an edit re-runs (the timeline stage re-plans from the override; earlier ones are kept)."""
VERSIONED: tuple[str, ...] = (
    "timeline.json",
    "timeline.override.json",
    "bgm.wav",
    "bgm.mid",
    "bars.json",
    "mix.wav",
    "mix.m4a",
    "mix.json",
    "output.mp4",
    "timeline.png",
)
"""The files a version holds (what an edit changes)."""
TAKE = "take.json"
"""Which spans a new take re-seeds, the seed and the crossfade (an optional input of generate)."""
TAKE_AUDIO = "take.wav"
"""The previous version's bgm.wav (a hard link), spliced outside the re-seeded spans."""
INDEX = "versions.json"
VERSIONS_DIR = "versions"
XFADE_S = 0.25
"""Crossfade on each side of a re-seeded section, seconds."""
TOLERANCE_S = 0.05


class EditError(ValueError):
    """A bad edit: ``section`` (0-based, None for the whole edit) broke ``rule``."""

    def __init__(self, section: int | None, rule: str, message: str) -> None:
        super().__init__(message)
        self.section = section
        self.rule = rule
        self.message = message


@dataclass(frozen=True)
class SectionEdit:
    start: float
    end: float
    emotion: str
    intensity: float = DEFAULT_INTENSITY  # 0..1: the music's activity (composer/intensity.py)
    lock: bool = False  # the editor keeps a locked section's boundaries and emotion
    take: int = 0  # 0: the job's seed; n > 0: the n-th new take of this section

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "emotion": self.emotion,
            "intensity": self.intensity,
            "lock": self.lock,
            "take": self.take,
        }


def _num(v: Any, k: int, field: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise EditError(k, "number", f"section {k}: {field} must be a finite number, got {v!r}")
    return float(v)


def validate_edit(data: Any, duration: float, min_section: float) -> tuple[SectionEdit, ...]:
    """An edited timeline ``{"sections": [{start, end, emotion, intensity?, lock?, take?}]}`` checked
    against the video: the sections tile ``[0, duration]`` (within 50 ms, closed exactly), each lasts at
    least ``min_section`` s, has a known emotion, an intensity in [0, 1], a boolean lock, a take >= 0."""
    if not isinstance(data, Mapping) or not isinstance(data.get("sections"), list):
        raise EditError(None, "shape", "expected an object with a 'sections' list")
    raw = data["sections"]
    if not raw:
        raise EditError(None, "shape", "'sections' is empty")
    out: list[SectionEdit] = []
    for k, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise EditError(k, "shape", f"section {k} is not an object")
        for key in ("start", "end", "emotion"):
            if key not in item:
                raise EditError(k, "shape", f"section {k} lacks {key}")
        start, end = _num(item["start"], k, "start"), _num(item["end"], k, "end")
        emotion = item["emotion"]
        if emotion not in EMOTIONS:
            raise EditError(
                k, "emotion", f"section {k}: unknown emotion {emotion!r}; one of {', '.join(EMOTIONS)}"
            )
        intensity = _num(item.get("intensity", DEFAULT_INTENSITY), k, "intensity")
        if not 0.0 <= intensity <= 1.0:
            raise EditError(k, "intensity", f"section {k}: intensity must be in [0, 1], got {intensity}")
        lock = item.get("lock", False)
        if not isinstance(lock, bool):
            raise EditError(k, "lock", f"section {k}: lock must be true or false, got {lock!r}")
        take = item.get("take", 0)
        if isinstance(take, bool) or not isinstance(take, int) or take < 0:
            raise EditError(k, "take", f"section {k}: take must be a whole number >= 0, got {take!r}")
        expected = 0.0 if k == 0 else out[-1].end
        if abs(start - expected) > TOLERANCE_S:
            where = "the video's start (0 s)" if k == 0 else f"the end of section {k - 1} ({expected:.3f} s)"
            raise EditError(k, "tile", f"section {k} starts at {start:.3f} s, not at {where}")
        out.append(SectionEdit(expected, end, emotion, intensity, lock, take))
    if abs(out[-1].end - duration) > TOLERANCE_S:
        raise EditError(
            len(out) - 1,
            "tile",
            f"section {len(out) - 1} ends at {out[-1].end:.3f} s, not at the video's end ({duration:.3f} s)",
        )
    last = out[-1]
    out[-1] = SectionEdit(last.start, duration, last.emotion, last.intensity, last.lock, last.take)
    limit = min(min_section, duration)
    for k, s in enumerate(out):
        if s.end - s.start < limit - 1e-9:
            raise EditError(
                k,
                "min_length",
                f"section {k} lasts {s.end - s.start:.3f} s, less than the minimum {limit:g} s",
            )
    return tuple(out)


# ---------------------------------------------------------------- new takes
def takes_changed(old: Sequence[Mapping[str, Any]], new: Sequence[SectionEdit]) -> list[int] | None:
    """The sections whose take alone changed, when the edit changes nothing else (same boundaries,
    emotions and intensities as ``old``); None when the edit changes more (a full re-render)."""
    if len(old) != len(new):
        return None
    changed = []
    for k, (o, n) in enumerate(zip(old, new, strict=True)):
        same = (
            abs(float(o["start"]) - n.start) < 1e-6
            and abs(float(o["end"]) - n.end) < 1e-6
            and o["emotion"] == n.emotion
            and abs(float(o.get("intensity", DEFAULT_INTENSITY)) - n.intensity) < 1e-9
        )
        if not same:
            return None
        if int(o.get("take", 0)) != n.take:
            changed.append(k)
    return changed or None


def take_seed(seed: int, sections: Sequence[SectionEdit]) -> int:
    """The generator's seed for a new take: derived from the job's seed and every section's take, so
    each take of a section is a different (and reproducible) render."""
    takes = ",".join(f"{k}:{s.take}" for k, s in enumerate(sections) if s.take)
    digest = hashlib.sha256(f"{seed}|{takes}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def splice(
    previous: np.ndarray,
    new: np.ndarray,
    sample_rate: int,
    spans: Sequence[tuple[float, float]],
    xfade_s: float,
) -> np.ndarray:
    """``previous`` outside every span widened by ``xfade_s``, ``new`` inside each span, with
    equal-power crossfades of ``xfade_s`` in the widenings. Samples outside the widened spans are
    ``previous``'s, bit for bit. Both inputs have the same shape."""
    if previous.shape != new.shape:
        raise ValueError(f"splice: shapes differ ({previous.shape} vs {new.shape})")
    if xfade_s < 0:
        raise ValueError(f"splice: xfade_s must be >= 0, got {xfade_s}")
    n = previous.shape[0]
    # weight of the new audio per sample, 0..1 (a linear ramp, mapped to equal-power gains)
    w = np.zeros(n, dtype=np.float64)
    x = round(xfade_s * sample_rate)
    for start, end in spans:
        a, b = round(start * sample_rate), round(end * sample_rate)
        a, b = max(0, a), min(n, b)
        if b <= a:
            continue
        w[a:b] = 1.0
        if x:
            ramp = (np.arange(1, x + 1) / (x + 1))[::-1]  # 1 at the span's edge, towards 0 outside
            lo = max(0, a - x)
            w[lo:a] = np.maximum(w[lo:a], ramp[::-1][x - (a - lo) :])
            hi = min(n, b + x)
            w[b:hi] = np.maximum(w[b:hi], ramp[: hi - b])
    out = previous.copy()
    touched = w > 0
    g_new = np.sin(w[touched] * np.pi / 2)
    g_old = np.cos(w[touched] * np.pi / 2)
    if previous.ndim == 2:
        g_new, g_old = g_new[:, None], g_old[:, None]
    out[touched] = (g_old * previous[touched] + g_new * new[touched]).astype(previous.dtype)
    return out


# ---------------------------------------------------------------- versions on disk
def index(job: JobDir) -> dict[str, Any]:
    """``{"current": n, "versions": [{"n", "created", "sections"}...]}``; version 1 before any edit."""
    path = job.path(INDEX)
    if path.exists():
        data: dict[str, Any] = read_json(path)
        return data
    return {"current": 1, "versions": []}


def version_dir(job: JobDir, n: int) -> Path:
    return job.path(f"{VERSIONS_DIR}/v{n}")


def snapshot(job: JobDir, n: int) -> Path:
    """Freeze the current outputs as ``versions/v{n}/`` (hard links; copies across file systems)."""
    dest = version_dir(job, n)
    tmp = dest.with_name(f".{dest.name}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in VERSIONED:
        src = job.path(name)
        if src.is_file():
            try:
                os.link(src, tmp / name)
            except OSError:
                shutil.copy2(src, tmp / name)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest


def version_file(job: JobDir, n: int, name: str) -> Path | None:
    """The file ``name`` of version ``n``: frozen under versions/, or the top level for the current
    version until it is frozen."""
    if name not in VERSIONED:
        return None
    frozen = version_dir(job, n) / name
    if frozen.is_file():
        return frozen
    if n == index(job)["current"] and not version_dir(job, n).exists():
        top = job.path(name)
        return top if top.is_file() else None
    return None


def current_sections(job: JobDir) -> list[dict[str, Any]]:
    """The sections of the current version: the override (with intensity, lock, take) when there is
    one, else the planned timeline."""
    override = job.path("timeline.override.json")
    source = override if override.exists() else job.path("timeline.json")
    sections: list[dict[str, Any]] = read_json(source)["sections"]
    return sections


def prepare_rerender(job: JobDir, sections: Sequence[SectionEdit], duration: float, seed: int) -> int:
    """Freeze the current version, write the edit (and a new take's splice inputs) and number the next
    version. Returns the new version's number. The caller then enqueues ``RERUN``."""
    idx = index(job)
    current = int(idx["current"])
    old = current_sections(job)
    snapshot(job, current)
    reseeded = takes_changed(old, sections)
    take, take_audio = job.path(TAKE), job.path(TAKE_AUDIO)
    with contextlib.suppress(FileNotFoundError):
        take_audio.unlink()
    if reseeded is not None:
        spans = [[sections[k].start, sections[k].end] for k in reseeded]
        os.link(version_dir(job, current) / "bgm.wav", take_audio)
        write_json(
            take, {"sections": reseeded, "spans": spans, "seed": take_seed(seed, sections), "xfade": XFADE_S}
        )
    else:
        take.unlink(missing_ok=True)
    write_json(
        job.path("timeline.override.json"),
        {"duration": duration, "sections": [s.to_dict() for s in sections]},
    )
    entry = {"n": current, "sections": old, "take": reseeded is not None}
    versions = [v for v in idx["versions"] if v["n"] != current] + [entry]
    write_json(job.path(INDEX), {"current": current + 1, "versions": versions})
    return current + 1


# ---------------------------------------------------------------- export for video editors
EXPORT = "export.zip"
EXPORT_FILES = ("bgm.mid", "bgm.wav", "voice.wav", "mix.wav", "output.mp4", "timeline.json")
"""What the export holds (those that exist), plus ``markers.edl``."""


def _timecode(t: float, fps: int) -> str:
    frames = round(t * fps)
    s, f = divmod(frames, fps)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{f:02d}"


def markers_edl(sections: Sequence[Mapping[str, Any]], duration: float, fps: int = 25) -> str:
    """A CMX 3600 EDL of the music over the whole video with one marker (``* LOC``) per section start,
    named by its emotion: Resolve and Premiere import the markers with the EDL."""
    lines = ["TITLE: moodbgm sections", "FCM: NON-DROP FRAME", ""]
    end = _timecode(duration, fps)
    lines.append(f"001  AX       A     C        00:00:00:00 {end} 00:00:00:00 {end}")
    lines.append("* FROM CLIP NAME: bgm.wav")
    for k, s in enumerate(sections):
        tc = _timecode(float(s["start"]), fps)
        lines.append(f"* LOC: {tc} YELLOW  section {k + 1} {s['emotion']}")
    return "\n".join(lines) + "\n"


def export_zip(job: JobDir) -> Path:
    """``export.zip`` of the current version: MIDI, music stem, voice stem, mix, video, timeline JSON and
    ``markers.edl``; written atomically, remade when older than one of its files."""
    import zipfile

    from moodbgm.files import atomic_path

    dest = job.path(EXPORT)
    present = [job.path(f) for f in EXPORT_FILES if job.path(f).is_file()]
    if dest.is_file() and all(p.stat().st_mtime <= dest.stat().st_mtime for p in present):
        return dest
    timeline = read_json(job.path("timeline.json"))
    with atomic_path(dest) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for p in present:
            z.write(p, p.name, compress_type=zipfile.ZIP_STORED if p.suffix == ".mp4" else None)
        z.writestr("markers.edl", markers_edl(timeline["sections"], float(timeline["duration"])))
    return dest
