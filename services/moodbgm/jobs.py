"""A job directory (DESIGN.md): its files, its options and its ``job.json`` record."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from moodbgm.errors import InputError
from moodbgm.files import read_json, write_json
from moodbgm.generate.base import STYLES
from moodbgm.types import check_emotion

GENERATORS = ("composer", "riffusion")
STATUSES = ("queued", "running", "done", "failed", "cancelled")


@dataclass(frozen=True)
class JobOptions:
    """What a user chooses per job (model choices are per process, in Settings)."""

    generator: str = "composer"
    style: str = "cinematic"
    seed: int = 0
    emotion: str | None = None  # force one emotion for the whole video
    min_section: float = 5.0
    min_confidence: float = 0.40
    duck_db: float = 11.0
    target_lufs: float = -16.0

    def __post_init__(self) -> None:
        if self.generator not in GENERATORS:
            raise ValueError(f"unknown generator {self.generator!r}; expected one of {', '.join(GENERATORS)}")
        if self.style not in STYLES:
            raise ValueError(f"unknown style {self.style!r}; expected one of {', '.join(STYLES)}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.emotion is not None:
            check_emotion(self.emotion)
        if self.min_section <= 0:
            raise ValueError("min_section must be > 0")
        if not 0 <= self.min_confidence <= 1:
            raise ValueError("min_confidence must be in [0, 1]")
        if not 0 <= self.duck_db <= 40:
            raise ValueError("duck_db must be in [0, 40]")
        if not -40 <= self.target_lufs <= -5:
            raise ValueError("target_lufs must be in [-40, -5]")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobOptions:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


class JobDir:
    """Paths and the ``job.json`` record of one job. Holds no state beyond its path."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @property
    def id(self) -> str:
        return self.root.name

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def record_path(self) -> Path:
        return self.root / "job.json"

    def input_path(self) -> Path:
        found = sorted(p for p in self.root.glob("input.*") if ".part" not in p.name)
        if not found:
            raise InputError(f"job {self.id}: no input file in {self.root}")
        return found[0]

    # ---- the record
    def read(self) -> dict[str, Any]:
        if not self.record_path.exists():
            raise InputError(f"{self.root}: not a job directory (no job.json)")
        data: dict[str, Any] = read_json(self.record_path)
        return data

    def write(self, record: dict[str, Any]) -> None:
        record["updated"] = time.time()
        write_json(self.record_path, record)

    def update(self, **fields: Any) -> dict[str, Any]:
        record = self.read()
        record.update(fields)
        self.write(record)
        return record

    def files(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_file() and not p.name.startswith("."))


def create_job(root: str | os.PathLike[str], source: str | os.PathLike[str], options: JobOptions) -> JobDir:
    """Make (or reuse) a job directory holding ``source`` as ``input.<ext>`` and a fresh record.

    Re-creating a job over an existing directory keeps its outputs, so unchanged stages are skipped.
    """
    job = JobDir(root)
    job.root.mkdir(parents=True, exist_ok=True)
    src = Path(source)
    if not src.is_file():
        raise InputError(f"{src}: no such file")
    ext = src.suffix.lower() or ".bin"
    target = job.path(f"input{ext}")
    for old in job.root.glob("input.*"):
        if old != target:
            old.unlink()
    if not target.exists() or not _same_file(src, target):
        _place(src, target)
    record = job.read() if job.record_path.exists() else {"id": job.id, "created": time.time(), "stages": {}}
    record.update(status="queued", stage=None, progress=0.0, error=None, options=options.to_dict())
    job.write(record)
    return job


def _same_file(a: Path, b: Path) -> bool:
    sa, sb = a.stat(), b.stat()
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino) or (
        sa.st_size == sb.st_size and int(sa.st_mtime) == int(sb.st_mtime)
    )


def _place(src: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.part")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, target)
