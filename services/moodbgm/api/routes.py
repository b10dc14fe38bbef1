"""REST v1 routes (``/api/v1``): thin wrappers over ``JobService``, with the caller's key (api/auth.py)
deciding what exists: another key's job or batch is 404. Uploads go through api/intake.py (limits,
Idempotency-Key); file links are signed (api/signing.py); errors are problem details (api/problems.py).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, StreamingResponse

from moodbgm.api import problems
from moodbgm.api.auth import Caller, Principal, principal
from moodbgm.api.idempotency import HEADER, Idempotency
from moodbgm.api.intake import Accepted, idempotent, take_upload
from moodbgm.api.limits import Limits
from moodbgm.api.schemas import BatchAccepted, BatchStatus, JobAccepted, JobLinks, JobPage, JobStatus
from moodbgm.api.service import API, JobService
from moodbgm.api.signing import LinkSigner, signed_status
from moodbgm.api.uploads import ReceivedForm, new_staging, receive_form
from moodbgm.generate.base import STYLES
from moodbgm.jobs import GENERATORS, STATUSES, JobOptions
from moodbgm.types import EMOTIONS

ERRORS = problems.responses(401, 404, 405, 422, 503)
UPLOAD_ERRORS = problems.responses(400, 409, 413, 429)
IDEMPOTENCY_DOC = (
    f"Send an `{HEADER}` header to make retries safe: the same key with the same request answers as "
    "the first time did (one job); with another request, 422."
)

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


def signer(request: Request) -> LinkSigner:
    get = request.app.state.signer
    return get()


Svc = Annotated[JobService, Depends(service)]
Signer = Annotated[LinkSigner, Depends(signer)]
router = APIRouter(prefix=API, tags=["jobs"], responses=ERRORS)
files_router = APIRouter(prefix=API, tags=["files"])


def _limits(request: Request) -> Limits:
    limits: Limits = request.app.state.limits
    return limits


def _idem(request: Request) -> Idempotency:
    idem: Idempotency = request.app.state.idempotency
    return idem


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
    responses=UPLOAD_ERRORS,
    openapi_extra=_upload_body("file", many=False, variations=True),
    summary="Upload a video and score it (one job, or one per variation)",
    description="202 with `Location: /api/v1/jobs/{id}`. " + IDEMPOTENCY_DOC,
)
async def submit_job(request: Request, svc: Svc, who: Caller) -> Response:
    def make(form: ReceivedForm, need_slots: Any) -> Accepted:
        options, variations = svc.parse_options(form.fields)
        need_slots(variations)
        done = svc.submit(form, options, variations, owner=who.key_id)
        base = f"{API}/jobs/{done.jobs[0]}"
        body = JobAccepted(
            id=done.jobs[0],
            jobs=list(done.jobs),
            seeds=list(done.seeds),
            batch_id=done.batch_id,
            links=JobLinks(self=base, files=f"{base}/files/{{name}}"),
        )
        return Accepted(body.model_dump(), base, done.jobs)

    return await take_upload(
        request, who, _limits(request), _idem(request), lambda: _receive(request, svc, 1), make
    )


@router.post(
    "/batches",
    status_code=202,
    response_model=BatchAccepted,
    responses=UPLOAD_ERRORS,
    openapi_extra=_upload_body("files", many=True, variations=False),
    summary="Upload several videos in one request (one job each, same options)",
    description="202 with `Location: /api/v1/batches/{id}`. " + IDEMPOTENCY_DOC,
)
async def submit_batch(request: Request, svc: Svc, who: Caller) -> Response:
    def make(form: ReceivedForm, need_slots: Any) -> Accepted:
        options, variations = svc.parse_options({**form.fields, "variations": "1"})
        need_slots(len(form.files))
        done = svc.submit(form, options, variations, owner=who.key_id)
        batch_id = done.batch_id
        if batch_id is None:  # a batch of one file: still a batch, so GET /batches/{id} works
            batch_id = svc.single_batch(done.jobs[0], owner=who.key_id)
        link = f"{API}/batches/{batch_id}"
        body = BatchAccepted(id=batch_id, jobs=list(done.jobs), names=list(done.names), links={"self": link})
        return Accepted(body.model_dump(), link, done.jobs)

    return await take_upload(
        request,
        who,
        _limits(request),
        _idem(request),
        lambda: _receive(request, svc, svc.settings.max_batch_files),
        make,
    )


def _cursor(token: str | None) -> tuple[float, str] | None:
    if not token:
        return None
    try:
        created, job_id = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return float(created), str(job_id)
    except (ValueError, TypeError, binascii.Error):
        raise HTTPException(400, "malformed cursor: pass next_cursor from the previous page as is") from None


def _next_cursor(job: JobStatus) -> str:
    raw = json.dumps([job.created, job.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@router.get("/jobs", response_model=JobPage, responses=problems.responses(400), summary="This key's jobs")
def list_jobs(
    svc: Svc,
    sign: Signer,
    who: Caller,
    status: Annotated[
        list[str] | None, Query(description=f"only these statuses ({', '.join(STATUSES)}); repeat or comma")
    ] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JobPage:
    """Newest first, one page at a time; an admin key lists every key's jobs."""
    wanted = {s for item in status or [] for s in item.split(",") if s}
    unknown = wanted - set(STATUSES)
    if unknown:
        raise HTTPException(400, f"unknown status {', '.join(sorted(unknown))}; one of {', '.join(STATUSES)}")
    after = _cursor(cursor)
    owner = None if who.admin else who.key_id
    jobs = svc.list_jobs(owner, frozenset(wanted) or None, after, limit + 1)
    more = len(jobs) > limit
    jobs = [signed_status(j, sign) for j in jobs[:limit]]
    nxt = _next_cursor(jobs[-1]) if more else None
    query = f"limit={limit}" + "".join(f"&status={s}" for s in sorted(wanted))
    links = {"self": f"{API}/jobs?{query}" + (f"&cursor={cursor}" if cursor else "")}
    if nxt:
        links["next"] = f"{API}/jobs?{query}&cursor={nxt}"
    return JobPage(jobs=jobs, next_cursor=nxt, links=links)


def _own_job(svc: JobService, who: Principal, job_id: str) -> JobStatus:
    status = svc.job(job_id)
    if status is None or not who.may_see(status.owner):
        raise HTTPException(404, f"no job {job_id} (it may have expired or been deleted)")
    return status


@router.get("/jobs/{job_id}", response_model=JobStatus)
def get_job(
    job_id: str,
    svc: Svc,
    sign: Signer,
    who: Caller,
    original: Annotated[bool, Query(description="also a link to the original upload")] = False,
) -> JobStatus:
    return signed_status(_own_job(svc, who, job_id), sign, original)


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobStatus,
    responses=problems.responses(409),
    description="Stop a queued or running job; its files stay until it is deleted or expires. "
    + IDEMPOTENCY_DOC,
)
async def cancel_job(request: Request, job_id: str, svc: Svc, sign: Signer, who: Caller) -> Response:
    async def run() -> JSONResponse:
        await run_in_threadpool(_own_job, svc, who, job_id)
        status = await run_in_threadpool(svc.cancel, job_id)
        if status is None:
            raise HTTPException(404, f"no job {job_id}")
        return JSONResponse(signed_status(status, sign).model_dump(mode="json"))

    return await idempotent(request, who, _idem(request), run)


@router.delete("/jobs/{job_id}", status_code=204)
def delete_job(job_id: str, svc: Svc, who: Caller) -> Response:
    """Cancel the job if it runs, then delete every file of it and its state."""
    _own_job(svc, who, job_id)
    if not svc.delete(job_id):
        raise HTTPException(404, f"no job {job_id}")
    return Response(status_code=204)


@router.get("/batches/{batch_id}", response_model=BatchStatus)
def get_batch(batch_id: str, svc: Svc, sign: Signer, who: Caller) -> BatchStatus:
    status = svc.batch(batch_id)
    if status is None or not who.may_see(status.owner):
        raise HTTPException(404, f"no batch {batch_id} (it may have expired)")
    return status.model_copy(update={"jobs": [signed_status(j, sign) for j in status.jobs]})


@files_router.get(
    "/jobs/{job_id}/files/{name:path}",
    response_class=FileResponse,
    responses={
        200: {
            "description": "the file",
            "content": {"video/mp4": {}, "audio/wav": {}, "application/json": {}},
        },
        206: {"description": "a byte range of it (Range: bytes=...)"},
        **problems.responses(401, 403, 404, 405, 422, 503),
    },
    summary="Download an artifact (output.mp4, mix.wav, bgm.wav, bgm.mid, timeline.json, ..., input)",
    description="With the owner's bearer key, or with a signed link from the job's `files` (`exp`, "
    "`sig`; `original=1` only in links to the original upload). Range requests resume a download.",
)
def get_file(
    job_id: str,
    name: str,
    request: Request,
    svc: Svc,
    sign: Signer,
    exp: Annotated[str | None, Query(description="signed link: expiry (unix time)")] = None,
    sig: Annotated[str | None, Query(description="signed link: HMAC")] = None,
    original: Annotated[bool, Query(description="signed link: made for the original upload")] = False,
    download: Annotated[bool, Query(description="as an attachment")] = False,
) -> Response:
    if exp is not None or sig is not None:
        sign.verify(job_id, name, exp or "", sig or "", original)  # 403 when expired or tampered
    else:
        _own_job(svc, principal(request), job_id)
    if svc.remote:  # object storage (the score editor's versions live on a local data dir only)
        return _remote_file(svc, job_id, name, request.method == "HEAD", download)
    editor = "/" in name or name == "export.zip"  # a version's file, or the export (api/editor.py)
    found = svc.versioned(job_id, name) if editor else svc.artifact(job_id, name)
    if found is None:
        raise HTTPException(404, f"job {job_id} has no file {name!r} (yet)")
    path, ctype = found
    filename = f"{job_id[:8]}-{name.replace('/', '-')}"
    return FileResponse(
        path,
        media_type=ctype,
        filename=filename,
        content_disposition_type="attachment" if download else "inline",
    )


def _remote_file(svc: JobService, job_id: str, name: str, head: bool, download: bool) -> Response:
    """Object storage: a 307 to a presigned URL (``MOODBGM_S3_DOWNLOADS=redirect``), or the object
    streamed through the API (``stream``)."""
    found = svc.download(job_id, name)
    if found is None:
        raise HTTPException(404, f"job {job_id} has no file {name!r} (yet)")
    key, ctype = found
    filename = f"{job_id[:8]}-{key}"
    if svc.settings.s3_downloads == "redirect":
        url = svc.artifacts.url(job_id, key, filename if download else None)
        if url is not None:
            return RedirectResponse(url, status_code=307)
    disposition = f'{"attachment" if download else "inline"}; filename="{filename}"'
    headers = {"Content-Length": str(svc.artifacts.size(job_id, key)), "Content-Disposition": disposition}
    if head:
        return Response(media_type=ctype, headers=headers)
    body = svc.artifacts.open(job_id, key)

    def chunks() -> Any:
        try:
            while chunk := body.read(1 << 20):
                yield chunk
        finally:
            body.close()

    return StreamingResponse(chunks(), media_type=ctype, headers=headers)


files_router.add_api_route(
    "/jobs/{job_id}/files/{name:path}",
    get_file,
    methods=["HEAD"],
    include_in_schema=False,
    response_class=FileResponse,
)
