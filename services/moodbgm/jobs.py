"""A job directory (docs/ARCHITECTURE.md): its files, its options and its typed ``job.json`` record."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moodbgm.errors import InputError
from moodbgm.files import read_json, write_json
from moodbgm.generate.base import STYLES
from moodbgm.types import check_emotion

if TYPE_CHECKING:
    from moodbgm.config import Settings
    from moodbgm.mix import MixOptions

_LOCK = threading.RLock()  # one read-modify-write of a job.json at a time in this process (heartbeats)

GENERATORS = ("composer", "riffusion")
STATUSES = ("queued", "running", "done", "failed", "cancelled")
TERMINAL = frozenset({"done", "failed", "cancelled"})
ERROR_KINDS = ("input", "internal", "timeout", "cancelled")
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
SETTING_OF = {"min_confidence": "emotion_min_confidence"}
"""JobOptions fields whose Settings default has another name (the others share the field's name)."""


def new_job_id() -> str:
    return uuid.uuid4().hex


def is_job_id(job_id: str) -> bool:
    """Service job ids are uuid4 hex: never a path that could walk out of the data directory."""
    return bool(_JOB_ID.match(job_id))


def check_job_id(job_id: str) -> str:
    if not is_job_id(job_id):
        raise InputError(f"bad job id {job_id!r}")
    return job_id


@dataclass(frozen=True)
class JobOptions:
    """What a user chooses per job (model choices are per process, in Settings).

    The defaults here are the only ones: a Settings field left unset (None) means "this default".
    """

    generator: str = "composer"
    style: str = "cinematic"
    seed: int = 0
    emotion: str | None = None  # force one emotion for the whole video
    min_section: float = 5.0
    min_confidence: float = 0.40
    duck_db: float = 11.0
    target_lufs: float = -16.0
    music_level_db: float = -7.0  # music bed vs voice loudness (LU), before ducking
    true_peak_db: float = -1.0

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
        self.mix_options()  # the mix ranges are checked once, by MixOptions

    def mix_options(self) -> MixOptions:
        from moodbgm.mix import MixOptions

        return MixOptions(
            duck_db=self.duck_db,
            target_lufs=self.target_lufs,
            music_level_db=self.music_level_db,
            true_peak_db=self.true_peak_db,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobOptions:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> JobOptions:
        """Defaults from ``settings`` (fields it sets), then ``overrides`` (those not None).

        Raises ``InputError`` (a user's choice) with the first bad value in plain words.
        """
        fields: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            value = getattr(settings, SETTING_OF.get(name, name), None)
            if value is not None:
                fields[name] = value
        unknown = set(overrides) - set(cls.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown job option(s): {', '.join(sorted(unknown))}")
        fields.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**fields)
        except (TypeError, ValueError) as e:
            raise InputError(str(e)) from None

    def replace(self, **fields: Any) -> JobOptions:
        return dataclasses.replace(self, **fields)


@dataclass(frozen=True)
class JobError:
    """The one error shape (job.json, the job store, the API): kind, the stage it happened in, words."""

    kind: str  # input | internal | timeout | cancelled
    stage: str | None
    message: str

    def __post_init__(self) -> None:
        if self.kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobError:
        return cls(kind=d["kind"], stage=d.get("stage"), message=d["message"])


@dataclass(frozen=True)
class StageRecord:
    """One stage's run: ``heartbeat`` is renewed while it runs (a stale one means a lost runner)."""

    status: str  # running | done | failed | cancelled
    started: float
    heartbeat: float
    key: str | None = None  # set when done: the hash its outputs are current for
    finished: float | None = None
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StageRecord:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if "status" not in known:  # a record of version 0.x: only finished stages, {key, seconds, finished}
            at = float(d.get("finished") or 0.0)
            known = {"status": "done", "started": at, "heartbeat": at, **known}
        return cls(**known)


@dataclass(frozen=True)
class JobRecord:
    """``job.json``: what the job is and how far it got. Written only through ``JobDir``."""

    id: str
    created: float
    updated: float = 0.0
    name: str = ""
    status: str = "queued"
    stage: str | None = None
    progress: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    error: JobError | None = None
    versions: dict[str, str] = field(default_factory=dict)
    stages: dict[str, StageRecord] = field(default_factory=dict)
    emotion_warning: str | None = None  # why the emotions say nothing (e.g. a language it cannot read)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown job status {self.status!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["error"] = None if self.error is None else self.error.to_dict()
        d["stages"] = {k: v.to_dict() for k, v in self.stages.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobRecord:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        known["error"] = JobError.from_dict(d["error"]) if d.get("error") else None
        known["stages"] = {k: StageRecord.from_dict(v) for k, v in (d.get("stages") or {}).items()}
        return cls(**known)

    def replace(self, **fields: Any) -> JobRecord:
        return dataclasses.replace(self, **fields)


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

    def exists(self) -> bool:
        return self.record_path.exists()

    # ---- the record
    def read(self) -> JobRecord:
        try:
            data = read_json(self.record_path)
        except FileNotFoundError:
            raise InputError(f"{self.root}: not a job directory (no job.json)") from None
        return JobRecord.from_dict(data)

    def write(self, record: JobRecord) -> JobRecord:
        record = record.replace(updated=time.time())
        write_json(self.record_path, record.to_dict())
        return record

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with _LOCK:
            yield

    def update(self, **fields: Any) -> JobRecord:
        with _LOCK:
            return self.write(self.read().replace(**fields))

    def update_stage(self, stage: str, **fields: Any) -> JobRecord:
        """Change fields of one stage's record (made when missing)."""
        with _LOCK:
            record = self.read()
            old = record.stages.get(stage)
            now = time.time()
            new = (
                dataclasses.replace(old, **fields)
                if old is not None
                else StageRecord(**{"status": "running", "started": now, "heartbeat": now, **fields})
            )
            return self.write(record.replace(stages={**record.stages, stage: new}))

    # ---- cancellation: a marker file, so a request never races the runner's writes of job.json
    @property
    def cancel_path(self) -> Path:
        return self.root / ".cancel"

    def request_cancel(self) -> None:
        self.cancel_path.touch()

    def cancel_requested(self) -> bool:
        return self.cancel_path.exists()

    def clean_partials(self) -> None:
        """Temp files a failed or killed stage left behind (``.name.xxxx.part.ext``)."""
        for p in self.root.glob(".*.part*"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def files(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_file() and not p.name.startswith("."))


def create_job(
    root: str | os.PathLike[str], source: str | os.PathLike[str], options: JobOptions, name: str = ""
) -> JobDir:
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
    record = job.read() if job.exists() else JobRecord(id=job.id, created=time.time(), name=name)
    job.cancel_path.unlink(missing_ok=True)
    job.write(
        record.replace(
            name=name or record.name,
            status="queued",
            stage=None,
            progress=0.0,
            error=None,
            options=options.to_dict(),
        )
    )
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
