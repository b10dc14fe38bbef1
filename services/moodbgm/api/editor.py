"""The score editor's routes: what the page's timeline editor reads, and the re-render of an edit.

``GET /jobs/{id}/editor``: the current sections, the phrases, the scene cuts and every version with
signed links. ``PUT /jobs/{id}/timeline``: an edited timeline, validated (``versions.validate_edit``; a
bad edit is a 422 problem naming the section and the rule), then the current version is frozen and only
``versions.RERUN`` is enqueued (202, ``Location`` the job). Owner-checked like the other job routes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from moodbgm.api import problems
from moodbgm.api.auth import Caller
from moodbgm.api.intake import idempotent
from moodbgm.api.routes import ERRORS, Signer, Svc, _idem, _own_job
from moodbgm.api.service import API
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
            return problems.problem(
                request,
                422,
                e.message,
                problems.URN + "bad-timeline",
                "Bad timeline edit",
                section=e.section,
                rule=e.rule,
            )
        link = f"{API}/jobs/{job_id}"
        return JSONResponse(
            {"id": job_id, "version": version, "links": {"self": link, "editor": f"{link}/editor"}},
            status_code=202,
            headers={"Location": link},
        )

    return await idempotent(request, who, _idem(request), run)
