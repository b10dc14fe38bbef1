"""The ``local`` artifact store: job directories under one root (``Settings.data_dir``).

The stage's working directory *is* the job directory, so ``stage_in`` copies nothing and ``publish``
uploads nothing: it checks the outputs are there and writes the manifest atomically (temp + rename).
On a ReadWriteMany volume every pod sees the same root.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import BinaryIO

from moodbgm.artifacts import MANIFEST_DIR, ArtifactMissing, StageManifest, check_key
from moodbgm.files import atomic_path


class LocalDirStore:
    remote = False

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def workdir(self, job_id: str) -> Path:
        check_key(job_id)
        return self.root / job_id

    def _path(self, job_id: str, name: str) -> Path:
        check_key(job_id, name)
        return self.root / job_id / name

    def stage_in(self, job_id: str, names: list[str] | tuple[str, ...]) -> Path:
        missing = [n for n in names if not self._path(job_id, n).is_file()]
        if missing:
            raise ArtifactMissing(f"job {job_id}: no {', '.join(missing)} in {self.root}")
        return self.workdir(job_id)

    def publish(self, job_id: str, stage: str, names: list[str] | tuple[str, ...]) -> StageManifest:
        check_key(job_id, stage)
        files = []
        for name in names:
            path = self._path(job_id, name)
            if not path.is_file():
                raise ArtifactMissing(f"job {job_id}: stage {stage} did not write {name}")
            files.append((name, path.stat().st_size))
        manifest = StageManifest(stage=stage, files=tuple(files))
        with atomic_path(self.root / job_id / MANIFEST_DIR / f"{stage}.json") as tmp:
            tmp.write_text(json.dumps(manifest.to_json()))
        return manifest

    def completed(self, job_id: str, stage: str) -> StageManifest | None:
        check_key(job_id, stage)
        path = self.root / job_id / MANIFEST_DIR / f"{stage}.json"
        try:
            return StageManifest.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            return None

    def exists(self, job_id: str, name: str) -> bool:
        return self._path(job_id, name).is_file()

    def list(self, job_id: str) -> list[str]:
        base = self.workdir(job_id)
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(base))
            for p in base.rglob("*")
            if p.is_file() and not p.relative_to(base).parts[0].startswith(".")
        )

    def sizes(self, job_id: str) -> dict[str, int]:
        return {name: self.size(job_id, name) for name in self.list(job_id)}

    def size(self, job_id: str, name: str) -> int:
        try:
            return self._path(job_id, name).stat().st_size
        except FileNotFoundError as e:
            raise ArtifactMissing(f"job {job_id}: no {name}") from e

    def open(self, job_id: str, name: str) -> BinaryIO:
        try:
            return self._path(job_id, name).open("rb")
        except FileNotFoundError as e:
            raise ArtifactMissing(f"job {job_id}: no {name}") from e

    def url(self, job_id: str, name: str, filename: str | None = None) -> str | None:
        return None  # the API serves the file itself

    def delete(self, job_id: str) -> None:
        shutil.rmtree(self.workdir(job_id), ignore_errors=True)
