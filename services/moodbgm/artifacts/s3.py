"""The ``s3`` artifact store: objects ``<prefix><job_id>/<name>`` in one bucket of any S3-compatible
service, through boto3 (the AWS SDK for Python; botocore signs SigV4, retries, and splits large files
into multipart uploads, which are atomic like a single PUT: the object appears when it is complete).

Each process works in its own scratch directory (``Settings.scratch_dir``, an emptyDir in a pod):
``stage_in`` downloads there, ``publish`` uploads from there and writes the stage's manifest last.
Credentials come from boto3's standard chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` from the
``moodbgm-s3`` Secret, a web identity token (IRSA, GKE workload identity), an instance profile).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from moodbgm.artifacts import MANIFEST_DIR, ArtifactMissing, StageManifest, check_key
from moodbgm.errors import MoodbgmError, TransientError

if TYPE_CHECKING:
    from moodbgm.config import Settings

MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
TRANSIENT_CODES = {
    "500",
    "502",
    "503",
    "504",
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
}
DELETE_BATCH = 1000  # DeleteObjects' maximum


class StorageError(MoodbgmError):
    """The object store refused a request (permissions, no such bucket...); the message says what."""


class S3Store:
    remote = True

    def __init__(
        self, client: Any, bucket: str, prefix: str, scratch: Path, presign_ttl_s: int = 3600
    ) -> None:
        if not bucket:
            raise ValueError("the s3 artifact store needs a bucket (MOODBGM_S3_BUCKET)")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.scratch = Path(scratch)
        self.presign_ttl_s = presign_ttl_s

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Store:
        import boto3
        from botocore.config import Config

        endpoint = settings.s3_endpoint_url or None
        config = Config(
            signature_version="s3v4",
            retries={"max_attempts": 5, "mode": "standard"},
            # MinIO and most self-hosted services want path-style URLs
            s3={"addressing_style": "path" if endpoint else "auto"},
        )
        client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint, region_name=settings.s3_region or None, config=config
        )
        return cls(
            client, settings.s3_bucket, settings.s3_prefix, settings.scratch_dir, settings.s3_presign_ttl_s
        )

    # ------------------------------------------------------------------------------------------ keys

    def key(self, job_id: str, name: str) -> str:
        check_key(job_id, name)
        return f"{self.prefix}{job_id}/{name}"

    def _manifest_key(self, job_id: str, stage: str) -> str:
        check_key(job_id, stage)
        return f"{self.prefix}{job_id}/{MANIFEST_DIR}/{stage}.json"

    def workdir(self, job_id: str) -> Path:
        check_key(job_id)
        return self.scratch / job_id

    # ------------------------------------------------------------------------------------------ calls

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one client call; map its failures to ArtifactMissing / TransientError / StorageError."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in MISSING_CODES:
                raise ArtifactMissing(f"{what}: not in s3://{self.bucket}") from e
            if code in TRANSIENT_CODES:
                raise TransientError(f"{what}: object store unavailable ({code})") from e
            raise StorageError(f"{what}: s3://{self.bucket} refused: {code} {e}") from e
        except BotoCoreError as e:  # no connection, timeouts, no credentials
            raise TransientError(f"{what}: object store unreachable: {e}") from e

    def stage_in(self, job_id: str, names: list[str] | tuple[str, ...]) -> Path:
        work = self.workdir(job_id)
        for name in names:
            final = work / name
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
            os.close(fd)
            try:
                self._call(
                    f"job {job_id}: {name}",
                    self.client.download_file,
                    self.bucket,
                    self.key(job_id, name),
                    tmp,
                )
                os.replace(tmp, final)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        return work

    def publish(self, job_id: str, stage: str, names: list[str] | tuple[str, ...]) -> StageManifest:
        work = self.workdir(job_id)
        missing = [n for n in names if not (work / n).is_file()]
        if missing:
            raise ArtifactMissing(f"job {job_id}: stage {stage} did not write {', '.join(missing)}")
        marker = self._manifest_key(job_id, stage)
        # a re-run: the stage is not complete while its new outputs go up
        self._call(f"job {job_id}: unmark {stage}", self.client.delete_object, Bucket=self.bucket, Key=marker)
        files = []
        for name in names:
            path = work / name
            files.append((name, path.stat().st_size))
            self._call(
                f"job {job_id}: {name}",
                self.client.upload_file,
                str(path),
                self.bucket,
                self.key(job_id, name),
            )
        manifest = StageManifest(stage=stage, files=tuple(files))
        body = json.dumps(manifest.to_json()).encode()
        self._call(
            f"job {job_id}: mark {stage}",
            self.client.put_object,
            Bucket=self.bucket,
            Key=marker,
            Body=body,
            ContentType="application/json",
        )
        return manifest

    def completed(self, job_id: str, stage: str) -> StageManifest | None:
        try:
            reply = self._call(
                f"job {job_id}: {stage} manifest",
                self.client.get_object,
                Bucket=self.bucket,
                Key=self._manifest_key(job_id, stage),
            )
        except ArtifactMissing:
            return None
        with contextlib.closing(reply["Body"]) as body:
            return StageManifest.from_json(json.loads(body.read()))

    def exists(self, job_id: str, name: str) -> bool:
        try:
            self.size(job_id, name)
        except ArtifactMissing:
            return False
        return True

    def size(self, job_id: str, name: str) -> int:
        head = self._call(
            f"job {job_id}: {name}", self.client.head_object, Bucket=self.bucket, Key=self.key(job_id, name)
        )
        return int(head["ContentLength"])

    def _objects(self, job_id: str) -> dict[str, int]:
        """Every object under the job's prefix: key -> size."""
        check_key(job_id)
        base = f"{self.prefix}{job_id}/"
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base)
        objects: dict[str, int] = {}
        for page in self._call(f"job {job_id}: list", list, pages):
            objects.update((obj["Key"], int(obj["Size"])) for obj in page.get("Contents", []))
        return objects

    def _keys(self, job_id: str) -> list[str]:
        return list(self._objects(job_id))

    def sizes(self, job_id: str) -> dict[str, int]:
        base = f"{self.prefix}{job_id}/"
        named = ((k[len(base) :], size) for k, size in self._objects(job_id).items())
        return {n: size for n, size in sorted(named) if not n.startswith(f"{MANIFEST_DIR}/")}

    def list(self, job_id: str) -> list[str]:
        base = f"{self.prefix}{job_id}/"
        names = (k[len(base) :] for k in self._keys(job_id))
        return sorted(n for n in names if not n.startswith(f"{MANIFEST_DIR}/"))

    def open(self, job_id: str, name: str) -> BinaryIO:
        reply = self._call(
            f"job {job_id}: {name}", self.client.get_object, Bucket=self.bucket, Key=self.key(job_id, name)
        )
        return cast(BinaryIO, reply["Body"])

    def url(self, job_id: str, name: str, filename: str | None = None) -> str | None:
        params = {"Bucket": self.bucket, "Key": self.key(job_id, name)}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        url = self._call(
            f"job {job_id}: {name} url",
            self.client.generate_presigned_url,
            "get_object",
            Params=params,
            ExpiresIn=self.presign_ttl_s,
        )
        return str(url)

    def delete(self, job_id: str) -> None:
        keys = self._keys(job_id)
        for start in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": k} for k in keys[start : start + DELETE_BATCH]]
            self._call(
                f"job {job_id}: delete",
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": batch, "Quiet": True},
            )
