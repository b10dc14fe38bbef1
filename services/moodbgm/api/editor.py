"""The score editor's routes: what the page's timeline editor reads, and the re-render of an edit.

``GET /jobs/{id}/editor``: the current sections, the phrases, the scene cuts and every version with
signed links. ``PUT /jobs/{id}/timeline``: an edited timeline, validated (``versions.validate_edit``; a
bad edit is a 422 problem naming the section and the rule), then the current version is frozen and only
``versions.RERUN`` is enqueued (202, ``Location`` the job). ``POST /jobs/{id}/timeline/replan``: the
edit with its unlocked stretches planned again (``replan.py``), rendered by nothing until it is PUT.
``POST /batches/{id}/pick``: one of a batch's variations becomes its picked output. Owner-checked like the
other job routes.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from moodbgm.api import problems
from moodbgm.api.auth import Caller
from moodbgm.api.intake import idempotent
from moodbgm.api.routes import ERRORS, Signer, Svc, _idem, _own_job
from moodbgm.api.schemas import BatchStatus
from moodbgm.api.service import API
from moodbgm.api.signing import signed_status
from moodbgm.errors import InputError
from moodbgm.versions import EditError

editor_router = APIRouter(prefix=API, tags=["editor"], responses=ERRORS)

EDIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["sections"],
                    "properties": {
                        "sections": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["start", "end", "emotion"],
                                "properties": {
                                    "start": {"type": "number"},
                                    "end": {"type": "number"},
                                    "emotion": {"type": "string"},
                                    "intensity": {"type": "number", "minimum": 0, "maximum": 1},
                                    "lock": {"type": "boolean"},
                                    "take": {"type": "integer", "minimum": 0},
                                },
                            },
                        }
                    },
                }
            }
        },
    }
}


@editor_router.get("/jobs/{job_id}/editor", summary="What the timeline editor shows")
def get_editor(job_id: str, svc: Svc, sign: Signer, who: Caller) -> dict[str, Any]:
    """Sections (with intensity, lock, take), phrases, scene cuts, the composer's tempo and bar plan
    (``bars``: per section start, end, tempo, metre and bar start times; null for a generator without
    one), the minimum section length and every version of the score with signed links to its files."""
    _own_job(svc, who, job_id)
    data = svc.editor_data(job_id)
    if data is None:
        raise HTTPException(409, f"job {job_id} has no timeline yet; edit it once it is done")
    if data["export"]:
        name = data["export"]
        data["export"] = f"{API}/jobs/{job_id}/files/{name}?{sign.query(job_id, name)}"
    for v in data["versions"]:
        v["files"] = {
            name: f"{API}/jobs/{job_id}/files/{name}?{sign.query(job_id, name)}" for name in v["files"]
        }
    return data


@editor_router.put(
    "/jobs/{job_id}/timeline",
    status_code=202,
    openapi_extra=EDIT_BODY,
    responses=problems.responses(409),
    summary="Re-render the score from an edited timeline (a new version)",
    description="Validates the edit (sections tile the video, last at least min_section, known "
    "emotions, intensity in [0, 1], lock, take); a bad edit is a 422 problem with `section` (0-based) and "
    "`rule`. Only timeline, generate, mix, mux and report run again. A section whose `take` alone changed "
    "is re-seeded and spliced: the rest of the music stays bit-identical outside the crossfades.",
)
async def put_timeline(request: Request, job_id: str, svc: Svc, who: Caller) -> Response:
    try:
        data = await request.json()
    except ValueError:
        raise InputError('the body must be JSON: {"sections": [...]}') from None

    async def run() -> JSONResponse:
        await run_in_threadpool(_own_job, svc, who, job_id)
        try:
            version = await run_in_threadpool(svc.rerender, job_id, data)
        except EditError as e:
            return _bad_edit(request, e)
        link = f"{API}/jobs/{job_id}"
        return JSONResponse(
            {"id": job_id, "version": version, "links": {"self": link, "editor": f"{link}/editor"}},
            status_code=202,
            headers={"Location": link},
        )

    return await idempotent(request, who, _idem(request), run)


@editor_router.post(
    "/jobs/{job_id}/timeline/replan",
    openapi_extra={**EDIT_BODY, "requestBody": {**EDIT_BODY["requestBody"], "required": False}},
    responses=problems.responses(409),
    summary="Re-plan the unlocked sections from the phrases' emotions (keeps locked ones)",
    description="Takes an edit (or, without a body, the current sections) and answers `{sections}`: every "
    "locked section exactly as it is, every stretch between them planned again from the phrases' "
    "emotions as the job's planning would. Nothing is rendered; `PUT /timeline` renders the result. A bad "
    "edit is a 422 problem with `section` and `rule`.",
)
async def post_replan(request: Request, job_id: str, svc: Svc, who: Caller) -> Response:
    body = await request.body()
    try:
        data = json.loads(body) if body.strip() else None
    except ValueError:
        raise InputError('the body must be JSON: {"sections": [...]}') from None
    await run_in_threadpool(_own_job, svc, who, job_id)
    try:
        sections = await run_in_threadpool(svc.replan, job_id, data)
    except EditError as e:
        return _bad_edit(request, e)
    return JSONResponse({"id": job_id, "sections": sections})


def _bad_edit(request: Request, e: EditError) -> JSONResponse:
    return problems.problem(
        request,
        422,
        e.message,
        problems.URN + "bad-timeline",
        "Bad timeline edit",
        section=e.section,
        rule=e.rule,
    )


@editor_router.post(
    "/batches/{batch_id}/pick",
    response_model=BatchStatus,
    responses=problems.responses(409),
    summary="Pick one variation as the output",
    description='Body `{"job": "<id>"}`: one of the batch\'s variations, done. The batch records it as '
    "`picked` (GET /batches/{id}); the page then plays and edits that job. Picking again replaces it.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["job"],
                        "properties": {"job": {"type": "string"}},
                    }
                }
            },
        }
    },
)
async def pick_variation(request: Request, batch_id: str, svc: Svc, sign: Signer, who: Caller) -> BatchStatus:
    try:
        data = await request.json()
    except ValueError:
        raise InputError('the body must be JSON: {"job": "<id>"}') from None
    if not isinstance(data, dict) or "job" not in data:
        raise InputError('the body must be JSON: {"job": "<id>"}')
    batch = await run_in_threadpool(svc.batch, batch_id)
    if batch is None or not who.may_see(batch.owner):
        raise HTTPException(404, f"no batch {batch_id} (it may have expired)")
    status = await run_in_threadpool(svc.pick, batch_id, data["job"])
    if status is None:
        raise HTTPException(404, f"no batch {batch_id} (it may have expired)")
    return status.model_copy(update={"jobs": [signed_status(j, sign) for j in status.jobs]})
