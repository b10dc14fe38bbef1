"""REST v1 routes (``/api/v1``): thin wrappers over ``JobService``."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from moodbgm.api.schemas import BatchAccepted, BatchStatus, JobAccepted, JobLinks, JobStatus, Problem
from moodbgm.api.service import API, JobService
from moodbgm.api.uploads import ReceivedForm, new_staging, receive_form
from moodbgm.generate.base import STYLES
from moodbgm.jobs import GENERATORS, JobOptions
from moodbgm.types import EMOTIONS

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "malformed request or unusable file"},
    401: {"model": Problem, "description": "missing or wrong API key"},
    413: {"model": Problem, "description": "upload over the size limit"},
    422: {"model": Problem, "description": "not a video ffprobe can read, or bad options"},
    503: {"model": Problem, "description": "the job store (Redis) is not reachable"},
}

_DEFAULTS = JobOptions()
_OPTION_FIELDS = {
    "generator": {"type": "string", "enum": list(GENERATORS), "default": _DEFAULTS.generator},
    "style": {"type": "string", "enum": list(STYLES), "default": _DEFAULTS.style},
    "seed": {"type": "integer", "minimum": 0, "default": _DEFAULTS.seed},
    "emotion": {"type": "string", "enum": ["auto", *EMOTIONS], "default": "auto"},
}


def _upload_body(files_field: str, many: bool, variations: bool) -> dict[str, Any]:
    binary = {"type": "string", "format": "binary"}
    props: dict[str, Any] = {files_field: {"type": "array", "items": binary} if many else binary}
    props.update(_OPTION_FIELDS)
    if variations:
        props["variations"] = {
            "type": "integer",
            "minimum": 1,
            "default": 1,
            "description": "N > 1: N jobs from this upload, seeds seed..seed+N-1, grouped in a batch",
        }
    schema = {"type": "object", "required": [files_field], "properties": props}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def service(request: Request) -> JobService:
    svc: JobService = request.app.state.service
    return svc


def bearer_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def require_key(request: Request, svc: Annotated[JobService, Depends(service)]) -> None:
    """Bearer API key, when ``Settings.api_keys`` is set."""
    keys = svc.settings.api_keys
    if not keys:
        return
    given = bearer_key(request) or ""
    if not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
        raise HTTPException(401, "missing or wrong API key (send Authorization: Bearer <key>)")


Svc = Annotated[JobService, Depends(service)]
router = APIRouter(prefix=API, tags=["jobs"], responses=ERRORS)
files_router = APIRouter(prefix=API, tags=["files"])


async def _receive(request: Request, svc: JobService, max_files: int) -> ReceivedForm:
    svc.store.ping()  # refuse (503) before taking a large upload we could not queue
    length = request.headers.get("content-length")
    return await receive_form(
        request.headers.get("content-type", ""),
        int(length) if length and length.isdigit() else None,
        request.stream(),
        await run_in_threadpool(new_staging, svc.data_dir),
        svc.settings.max_upload_mb * 1024 * 1024,
        max_files,
    )


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobAccepted,
    dependencies=[Depends(require_key)],
    openapi_extra=_upload_body("file", many=False, variations=True),
    summary="Upload a video and score it (one job, or one per variation)",
)
async def submit_job(request: Request, svc: Svc) -> JobAccepted:
    form = await _receive(request, svc, max_files=1)
    try:
        options, variations = svc.parse_options(form.fields)
    except BaseException:
        form.discard()
        raise
    done = await run_in_threadpool(svc.submit, form, options, variations)
    base = f"{API}/jobs/{done.jobs[0]}"
    return JobAccepted(
        id=done.jobs[0],
        jobs=list(done.jobs),
        seeds=list(done.seeds),
        batch_id=done.batch_id,
        links=JobLinks(self=base, files=f"{base}/files/{{name}}"),
    )


@router.post(
    "/batches",
    status_code=202,
    response_model=BatchAccepted,
    dependencies=[Depends(require_key)],
    openapi_extra=_upload_body("files", many=True, variations=False),
    summary="Upload several videos in one request (one job each, same options)",
)
async def submit_batch(request: Request, svc: Svc) -> BatchAccepted:
    form = await _receive(request, svc, max_files=svc.settings.max_batch_files)
    try:
        options, variations = svc.parse_options({**form.fields, "variations": "1"})
    except BaseException:
        form.discard()
        raise
    done = await run_in_threadpool(svc.submit, form, options, variations)
    batch_id = done.batch_id
    if batch_id is None:  # a batch of one file: still a batch, so GET /batches/{id} works
        batch_id = await run_in_threadpool(svc.single_batch, done.jobs[0])
    return BatchAccepted(
        id=batch_id, jobs=list(done.jobs), names=list(done.names), links={"self": f"{API}/batches/{batch_id}"}
    )


@router.get("/jobs/{job_id}", response_model=JobStatus, dependencies=[Depends(require_key)])
def get_job(job_id: str, svc: Svc) -> JobStatus:
    status = svc.job(job_id)
    if status is None:
        raise HTTPException(404, f"no job {job_id} (it may have expired or been deleted)")
    return status


@router.post("/jobs/{job_id}/cancel", response_model=JobStatus, dependencies=[Depends(require_key)])
def cancel_job(job_id: str, svc: Svc) -> JobStatus:
    """Stop a queued or running job; its files stay until it is deleted or expires."""
    status = svc.cancel(job_id)
    if status is None:
        raise HTTPException(404, f"no job {job_id}")
    return status


@router.delete("/jobs/{job_id}", status_code=204, dependencies=[Depends(require_key)])
def delete_job(job_id: str, svc: Svc) -> Response:
    """Cancel the job if it runs, then delete every file of it and its state."""
    if not svc.delete(job_id):
        raise HTTPException(404, f"no job {job_id}")
    return Response(status_code=204)


@router.get("/batches/{batch_id}", response_model=BatchStatus, dependencies=[Depends(require_key)])
def get_batch(batch_id: str, svc: Svc) -> BatchStatus:
    status = svc.batch(batch_id)
    if status is None:
        raise HTTPException(404, f"no batch {batch_id} (it may have expired)")
    return status


@files_router.get(
    "/jobs/{job_id}/files/{name}",
    response_class=FileResponse,
    responses={
        200: {
            "description": "the file",
            "content": {"video/mp4": {}, "audio/wav": {}, "application/json": {}},
        },
        206: {"description": "a byte range of it (Range: bytes=...)"},
        401: {"model": Problem},
        404: {"model": Problem, "description": "unknown job or artifact, or not produced yet"},
    },
    summary="Download an artifact (output.mp4, mix.wav, bgm.wav, bgm.mid, timeline.json, ..., input)",
)
def get_file(
    job_id: str,
    name: str,
    request: Request,
    svc: Svc,
    token: Annotated[str | None, Query(description="file token from the job's file links")] = None,
    download: Annotated[bool, Query(description="as an attachment")] = False,
) -> FileResponse:
    if svc.settings.api_keys and not (
        token is not None and hmac.compare_digest(token, svc.file_token(job_id))
    ):
        require_key(request, svc)
    found = svc.artifact(job_id, name)
    if found is None:
        raise HTTPException(404, f"job {job_id} has no file {name!r} (yet)")
    path, ctype = found
    filename = f"{job_id[:8]}-{path.name}"
    return FileResponse(
        path,
        media_type=ctype,
        filename=filename,
        content_disposition_type="attachment" if download else "inline",
    )


files_router.add_api_route(
    "/jobs/{job_id}/files/{name}",
    get_file,
    methods=["HEAD"],
    include_in_schema=False,
    response_class=FileResponse,
)
