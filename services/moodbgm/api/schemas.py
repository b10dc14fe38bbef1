"""Response models of REST v1 (they make the OpenAPI document at ``/docs``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobStatusName = Literal["queued", "running", "done", "failed", "cancelled"]


class ErrorInfo(BaseModel):
    kind: Literal["input", "internal", "timeout", "cancelled"] = Field(
        description="input: the upload/options, retrying won't help; internal; timeout: a stage ran past its "
        "time limit; cancelled: stopped on request"
    )
    stage: str | None = Field(None, description="the stage that failed")
    message: str = Field(description="what went wrong, in plain words")


class FileLink(BaseModel):
    name: str = Field(examples=["output.mp4"])
    url: str = Field(examples=["/api/v1/jobs/3f2a.../files/output.mp4"])
    content_type: str = Field(examples=["video/mp4"])
    size: int = Field(description="bytes")


class JobLinks(BaseModel):
    self: str
    files: str


class JobStatus(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "5d1c0a3e9b7f4f4e8a3c2b1d0e9f8a7b",
                    "name": "interview.mp4",
                    "status": "running",
                    "stage": "stt",
                    "progress": 41.5,
                    "options": {"generator": "composer", "style": "cinematic", "seed": 0, "emotion": None},
                    "timings": {"media": 0.8, "separate": 3.1},
                    "error": None,
                    "files": [],
                    "batch_id": None,
                    "created": 1767225600.0,
                    "updated": 1767225604.2,
                    "links": {"self": "/api/v1/jobs/5d1c...", "files": "/api/v1/jobs/5d1c.../files/{name}"},
                }
            ]
        }
    )

    id: str = Field(description="uuid4 hex")
    name: str = Field(description="the uploaded file's name (display only)")
    status: JobStatusName
    stage: str | None = Field(description="stage running now (or where it failed)")
    progress: float = Field(ge=0, le=100, description="percent of the whole job")
    options: dict[str, Any]
    timings: dict[str, float] = Field(description="seconds each finished stage took")
    error: ErrorInfo | None
    emotion_warning: str | None = Field(
        default=None,
        description="why the emotions say nothing (e.g. speech in a language the classifier cannot "
        "read: every phrase neutral)",
    )
    files: list[FileLink] = Field(description="downloadable artifacts present now")
    batch_id: str | None
    owner: str = Field("", description="id of the API key that made the job (not the key)")
    created: float = Field(description="unix time")
    updated: float = Field(description="unix time")
    links: JobLinks


class JobAccepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "5d1c0a3e9b7f4f4e8a3c2b1d0e9f8a7b",
                    "status": "queued",
                    "jobs": ["5d1c0a3e9b7f4f4e8a3c2b1d0e9f8a7b", "9a8b..."],
                    "seeds": [7, 8],
                    "batch_id": "c0ffee...",
                    "links": {"self": "/api/v1/jobs/5d1c...", "files": "/api/v1/jobs/5d1c.../files/{name}"},
                }
            ]
        }
    )

    id: str = Field(description="the (first) job's id")
    status: JobStatusName = "queued"
    jobs: list[str] = Field(description="one job per variation (seeds seed..seed+N-1); the first is `id`")
    seeds: list[int]
    batch_id: str | None = Field(description="groups the variations when there are several")
    links: JobLinks


class BatchAccepted(BaseModel):
    id: str = Field(description="batch id (uuid4 hex)")
    jobs: list[str] = Field(description="job ids, in the order the files were sent")
    names: list[str] = Field(description="the files' names, same order")
    links: dict[str, str]


class BatchStatus(BaseModel):
    id: str
    kind: Literal["files", "variations"]
    status: JobStatusName = Field(description="running while any job is queued or running, else done/failed")
    progress: float = Field(ge=0, le=100, description="mean progress of the jobs, percent")
    jobs: list[JobStatus]
    created: float
    owner: str = Field("", description="id of the API key that made the batch")
    picked: str | None = Field(
        None, description="variations: the job picked as the output (POST /batches/{id}/pick), if any"
    )


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``); some types add members (``errors``,
    ``retry_after``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(
        description="a URI naming the kind of problem", examples=["urn:moodbgm:problem:rate-limited"]
    )
    title: str = Field(description="short summary of the kind", examples=["Too many active jobs"])
    status: int = Field(ge=400, le=599, description="the HTTP status")
    detail: str = Field(examples=["the upload is not a media file ffprobe can read"])
    instance: str = Field(description="the request path", examples=["/api/v1/jobs"])


class JobPage(BaseModel):
    jobs: list[JobStatus]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")
    links: dict[str, str] = Field(description="self, and next when there is a next page")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    redis: str | None = None
