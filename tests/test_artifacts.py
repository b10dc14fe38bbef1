"""The artifact store against real backends: a local directory, and S3 over HTTP against moto's
standalone S3 server on 127.0.0.1 (boto3 signs and sends real requests; nothing is mocked in-process).

With S3 the "API" and the "worker" stores have separate scratch directories, so a file can only get
from one to the other through the object store."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from devtools.local import free_port
from moodbgm.artifacts import (
    ArtifactMissing,
    ArtifactStore,
    StageManifest,
    check_key,
    open_store,
)
from moodbgm.artifacts.local import LocalDirStore
from moodbgm.artifacts.s3 import S3Store
from moodbgm.config import Settings
from moodbgm.errors import InputError, TransientError

BUCKET = "moodbgm-test"
JOB = "0123abcd"
# above boto3's multipart threshold (8 MiB): the upload goes in parts, still one atomic object
BIG = 9 * 1024 * 1024


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials as the pod gets them from the moodbgm-s3 Secret; no ~/.aws file is read."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "moodbgm-test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "moodbgm-test-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)


def _s3_settings(endpoint: str, scratch: Path, prefix: str) -> Settings:
    return Settings(
        storage="s3",
        s3_bucket=BUCKET,
        s3_prefix=prefix,
        s3_endpoint_url=endpoint,
        s3_region="us-east-1",
        scratch_dir=scratch,
        data_dir=scratch / "unused-data-dir",
    )


@pytest.fixture
def s3_stores(tmp_path: Path, s3_endpoint: str, aws_env: None) -> tuple[S3Store, S3Store]:
    """(the API's store, a worker's store): separate scratch directories, one bucket."""
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    prefix = f"run-{secrets.token_hex(4)}/"
    api = open_store(_s3_settings(s3_endpoint, tmp_path / "api-scratch", prefix))
    worker = open_store(_s3_settings(s3_endpoint, tmp_path / "worker-scratch", prefix))
    assert isinstance(api, S3Store) and isinstance(worker, S3Store)
    return api, worker


@pytest.fixture(params=["local", "s3"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ArtifactStore, ArtifactStore]:
    """(the API's store, a worker's store) of either backend."""
    if request.param == "local":
        settings = Settings(data_dir=tmp_path / "shared")  # one directory both see (an RWX volume)
        return open_store(settings), open_store(settings)
    pair: tuple[ArtifactStore, ArtifactStore] = request.getfixturevalue("s3_stores")
    return pair


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_a_stage_stages_in_runs_and_publishes(stores: tuple[ArtifactStore, ArtifactStore]) -> None:
    api, worker = stores
    video = os.urandom(BIG)
    _write(api.workdir(JOB) / "input.mp4", video)
    _write(api.workdir(JOB) / "job.json", b'{"id": "0123abcd"}')
    upload = api.publish(JOB, "upload", ["input.mp4", "job.json"])
    assert upload == StageManifest("upload", (("input.mp4", BIG), ("job.json", 18)))

    work = worker.stage_in(JOB, ["input.mp4"])
    assert (work / "input.mp4").read_bytes() == video
    assert not list(work.glob("*.part"))  # no temporary file left
    _write(work / "audio.wav", b"RIFF" + os.urandom(1000))
    _write(work / "media" / "probe.json", b"{}")
    assert worker.completed(JOB, "media") is None
    worker.publish(JOB, "media", ["audio.wav", "media/probe.json"])

    manifest = api.completed(JOB, "media")
    assert manifest == StageManifest("media", (("audio.wav", 1004), ("media/probe.json", 2)))
    assert api.list(JOB) == ["audio.wav", "input.mp4", "job.json", "media/probe.json"]
    assert api.exists(JOB, "audio.wav") and not api.exists(JOB, "mix.wav")
    assert api.size(JOB, "input.mp4") == BIG
    sizes = {"audio.wav": 1004, "input.mp4": BIG, "job.json": 18, "media/probe.json": 2}
    assert api.sizes(JOB) == sizes  # one listing (the API's job status)
    assert api.remote is isinstance(api, S3Store)
    with api.open(JOB, "audio.wav") as f:
        assert f.read() == (work / "audio.wav").read_bytes()
    with pytest.raises(ArtifactMissing):
        api.open(JOB, "mix.wav")
    api.delete(JOB)
    assert api.list(JOB) == [] and api.completed(JOB, "media") is None


def test_missing_input_is_a_clear_error_and_leaves_no_partial_file(
    stores: tuple[ArtifactStore, ArtifactStore],
) -> None:
    _, worker = stores
    with pytest.raises(ArtifactMissing, match=r"stt\.json"):
        worker.stage_in("ffff0000", ["stt.json"])
    leftovers = list(worker.workdir("ffff0000").glob("*")) if worker.workdir("ffff0000").exists() else []
    assert leftovers == []
    with pytest.raises(ArtifactMissing, match=r"did not write mix\.wav"):
        worker.publish("ffff0000", "remix", ["mix.wav"])
    assert worker.completed("ffff0000", "remix") is None


def test_s3_stage_is_complete_only_when_every_output_is_up(
    s3_stores: tuple[S3Store, S3Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker dying mid-upload (here: the second upload fails) leaves the stage not done, also when an
    earlier run had completed it: the manifest is removed first and written last."""
    api, worker = s3_stores
    work = worker.workdir(JOB)
    _write(work / "bgm.wav", b"a" * 10)
    _write(work / "bgm.mid", b"b" * 10)
    worker.publish(JOB, "generate", ["bgm.wav", "bgm.mid"])
    assert api.completed(JOB, "generate") is not None

    real_upload = worker.client.upload_file
    calls: list[str] = []

    def dying_upload(filename: str, bucket: str, key: str, *args: object, **kwargs: object) -> None:
        calls.append(key)
        if len(calls) == 2:
            raise OSError("killed mid-upload")
        real_upload(filename, bucket, key, *args, **kwargs)

    monkeypatch.setattr(worker.client, "upload_file", dying_upload)
    _write(work / "bgm.wav", b"c" * 20)
    with pytest.raises(OSError, match="killed"):
        worker.publish(JOB, "generate", ["bgm.wav", "bgm.mid"])
    assert api.completed(JOB, "generate") is None
    assert api.size(JOB, "bgm.wav") == 20  # the first output is there, but the stage is not done


def test_s3_downloads_are_presigned_urls(s3_stores: tuple[S3Store, S3Store]) -> None:
    api, worker = s3_stores
    _write(worker.workdir(JOB) / "output.mp4", b"\x00\x00\x00\x18ftypmp42" + os.urandom(100))
    worker.publish(JOB, "remix", ["output.mp4"])
    url = api.url(JOB, "output.mp4", filename="0123abcd-output.mp4")
    assert url is not None and "X-Amz-Signature=" in url
    reply = httpx.get(url)
    assert reply.status_code == 200
    assert reply.content == (worker.workdir(JOB) / "output.mp4").read_bytes()
    assert reply.headers["content-disposition"] == 'attachment; filename="0123abcd-output.mp4"'
    tampered = url.replace("output.mp4", "input.mp4", 1)
    assert httpx.get(tampered).status_code == 403


def test_unreachable_object_store_is_transient(tmp_path: Path, aws_env: None) -> None:
    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",  # discard port: connection refused
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    store = S3Store(client, BUCKET, "p", tmp_path)
    with pytest.raises(TransientError, match="unreachable"):
        store.stage_in(JOB, ["input.mp4"])


def test_keys_and_settings_are_checked() -> None:
    for job_id, name in (
        ("..", "x"),
        (JOB, "../etc/passwd"),
        (JOB, "/abs"),
        (JOB, ".stages/x"),
        ("a/b", "x"),
    ):
        with pytest.raises(InputError):
            check_key(job_id, name)
    check_key(JOB, "media/probe.json")
    local = open_store(Settings())
    assert isinstance(local, LocalDirStore)
    assert local.url(JOB, "output.mp4") is None  # the API streams the file itself
    with pytest.raises(ValueError, match="MOODBGM_S3_BUCKET"):
        open_store(Settings(storage="s3"))
