"""The artifact store: where a job's files live between stages, and where the API reads them.

Two backends behind one protocol, chosen by ``Settings.storage`` (``open_store``):

- ``local`` (``LocalDirStore``): the job directories under ``Settings.data_dir``, as today; on one
  machine, or on a ReadWriteMany volume shared by every pod (``k8s/components/storage-rwx``).
- ``s3`` (``S3Store``): any S3-compatible object store (AWS S3, GCS interoperability, MinIO, Ceph),
  with a pod-local scratch directory (``Settings.scratch_dir``) as the stage's working copy: nothing
  passes through a shared disk (``k8s/components/storage-s3``).

A stage's contract with the store (keys are ``<job_id>/<name>``, e.g. ``abc123/stt.json``):

1. ``work = store.stage_in(job_id, inputs)``: the input files, present in ``work`` (``local``: the job
   directory itself, nothing copied; ``s3``: downloaded into ``<scratch>/<job_id>/``, each file written
   to a temporary name and renamed, so a crash never leaves a half file under a final name).
2. the stage runs and writes its outputs in ``work``.
3. ``store.publish(job_id, stage, outputs)``: every output is uploaded (an S3 PUT or multipart upload
   is atomic per object: readers see the old object or the new one, never a part), then the stage's
   manifest ``<job_id>/.stages/<stage>.json`` (names and sizes) is written *last*. The manifest is the
   completion marker: ``store.completed(job_id, stage)`` is ``None`` until every output is in place,
   so a worker killed mid-upload leaves a stage that is simply not done, and is redone on redelivery.

Downloads: ``store.url(job_id, name)`` is a presigned GET URL (``s3``; the API redirects to it) or
``None`` (``local``: the API serves ``store.open(job_id, name)`` / the file itself).

Call points:

- the stage runner (``jobstore.execute_stage``) around ``pipeline.run_stage``: ``stage_in`` before
  (``job.json`` and the stage's declared inputs from the Stage table), ``publish`` after (its outputs
  and ``job.json``), before the job store says the stage is done;
- the API's upload (``api/service.submit``): the job is made in the API's scratch, then
  ``publish(job_id, "upload", [input.<ext>, "job.json"])``;
- the API's downloads (``api/routes.get_file``): ``url`` -> 307 redirect (``MOODBGM_S3_DOWNLOADS=
  redirect``), or ``open`` streamed through the API (``stream``);
- deleting a job: ``delete(job_id)`` (expired jobs: a bucket lifecycle rule, see k8s/README.md).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from moodbgm.errors import InputError, MoodbgmError

if TYPE_CHECKING:
    from moodbgm.config import Settings

log = logging.getLogger(__name__)

MANIFEST_DIR = ".stages"
_SAFE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class ArtifactMissing(MoodbgmError):
    """A file the stage needs is not in the store (a previous stage did not publish it)."""


@dataclass(frozen=True)
class StageManifest:
    """The completion marker of a stage: written after every one of its outputs is in the store."""

    stage: str
    files: tuple[tuple[str, int], ...]  # (name, size in bytes)

    def to_json(self) -> dict[str, object]:
        return {"stage": self.stage, "files": [{"name": n, "size": s} for n, s in self.files]}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> StageManifest:
        files = data.get("files")
        if not isinstance(files, list):
            raise ValueError("manifest without a file list")
        return cls(stage=str(data["stage"]), files=tuple((str(f["name"]), int(f["size"])) for f in files))


def check_key(job_id: str, name: str = "") -> None:
    """Job ids and artifact names are plain relative names: no '..', no absolute path, no hidden file
    (the manifests live under ``.stages``)."""
    for part in [job_id, *name.split("/")] if name else [job_id]:
        if not _SAFE_PART.match(part):
            raise InputError(f"not a valid artifact key part: {part!r}")


class ArtifactStore(Protocol):
    """Where a job's files live; see the module docstring for the stage contract."""

    remote: bool  # True: stages work on scratch copies (stage in, publish); False: in place

    def workdir(self, job_id: str) -> Path:
        """The local directory a stage of this job reads its inputs from and writes its outputs to."""
        ...

    def stage_in(self, job_id: str, names: list[str] | tuple[str, ...]) -> Path:
        """Make ``names`` present in ``workdir(job_id)`` and return it; ``ArtifactMissing`` if one is
        not in the store."""
        ...

    def publish(self, job_id: str, stage: str, names: list[str] | tuple[str, ...]) -> StageManifest:
        """Store the outputs ``names`` from ``workdir(job_id)``, then the stage's manifest (last)."""
        ...

    def completed(self, job_id: str, stage: str) -> StageManifest | None:
        """The stage's manifest, or None while it is not completely published."""
        ...

    def exists(self, job_id: str, name: str) -> bool: ...

    def list(self, job_id: str) -> list[str]:
        """The job's artifact names (sorted; manifests excluded)."""
        ...

    def size(self, job_id: str, name: str) -> int: ...

    def sizes(self, job_id: str) -> dict[str, int]:
        """Every artifact of the job with its size, in one listing (manifests excluded)."""
        ...

    def open(self, job_id: str, name: str) -> BinaryIO:
        """A binary stream of the artifact (read it in chunks; close it)."""
        ...

    def url(self, job_id: str, name: str, filename: str | None = None) -> str | None:
        """A time-limited URL to download the artifact directly, or None when the API must stream it."""
        ...

    def delete(self, job_id: str) -> None:
        """Remove every artifact and manifest of the job."""
        ...


def open_store(settings: Settings) -> ArtifactStore:
    """The store ``settings.storage`` names, built from the settings (one client per store)."""
    if settings.storage == "local":
        from moodbgm.artifacts.local import LocalDirStore

        return LocalDirStore(settings.data_dir)
    from moodbgm.artifacts.s3 import S3Store

    return S3Store.from_settings(settings)


__all__ = [
    "MANIFEST_DIR",
    "ArtifactMissing",
    "ArtifactStore",
    "StageManifest",
    "check_key",
    "open_store",
]
