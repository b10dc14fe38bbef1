"""Every error as RFC 9457 problem details (``application/problem+json``).

Members: ``type`` (a ``urn:moodbgm:problem:<slug>`` URI, or ``about:blank`` for a plain HTTP status),
``title`` (short, fixed per type), ``status``, ``detail`` (this occurrence, in plain words) and
``instance`` (the request's path). Validation errors add ``errors`` (where and what); rate limits add
``retry_after`` (seconds, as the ``Retry-After`` header says).

Domain errors map here, at the edge: ``InputError`` → 400/413/422, ``BadLink`` → 403, ``LimitExceeded``
→ 429/413, an unreachable Redis → 503, anything else → 500 (logged with its traceback).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import kombu.exceptions
import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from moodbgm.api.schemas import Problem
from moodbgm.api.signing import BadLink
from moodbgm.api.uploads import BadUpload, UploadTooLarge
from moodbgm.errors import InputError

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
URN = "urn:moodbgm:problem:"


class LimitExceeded(Exception):
    """A per-key limit: 429 (rate, concurrency) with ``Retry-After``, or 413 (storage quota)."""

    def __init__(self, slug: str, title: str, detail: str, status: int = 429, retry_after: int | None = None):
        super().__init__(detail)
        self.slug, self.title, self.detail, self.status, self.retry_after = (
            slug,
            title,
            detail,
            status,
            retry_after,
        )


class ProblemError(Exception):
    """A problem with its own type (e.g. an Idempotency-Key reused for another request)."""

    def __init__(self, status: int, slug: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail


def problem(
    request: Request,
    status: int,
    detail: str,
    type_: str = "about:blank",
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = Problem(
        type=type_,
        title=title or HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=request.url.path,
    ).model_dump()
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem details (and document them)."""
    document(app)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        return problem(request, exc.status_code, str(exc.detail), headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        return problem(
            request, 422, f"invalid request: {where}", URN + "validation", "Invalid request", errors=errors
        )

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> JSONResponse:
        if isinstance(exc, UploadTooLarge):
            return problem(request, 413, str(exc), URN + "upload-too-large", "Upload too large")
        if isinstance(exc, BadUpload):
            return problem(request, 400, str(exc), URN + "bad-upload", "Unusable upload")
        return problem(request, 422, str(exc), URN + "bad-input", "Unusable input")

    @app.exception_handler(BadLink)
    async def bad_link(request: Request, exc: BadLink) -> JSONResponse:
        return problem(request, 403, str(exc), URN + "bad-link", "Download link not valid")

    @app.exception_handler(LimitExceeded)
    async def limit(request: Request, exc: LimitExceeded) -> JSONResponse:
        extra: dict[str, Any] = {}
        headers = None
        if exc.retry_after is not None:
            headers = {"Retry-After": str(exc.retry_after)}
            extra["retry_after"] = exc.retry_after
        return problem(request, exc.status, exc.detail, URN + exc.slug, exc.title, headers, **extra)

    @app.exception_handler(ProblemError)
    async def own_problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem(request, exc.status, exc.detail, URN + exc.slug, exc.title)

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("%s %s: Redis not reachable: %s", request.method, request.url.path, exc)
        return problem(
            request,
            503,
            f"the job store (Redis) is not reachable; try again shortly ({exc})",
            URN + "store-unavailable",
            "Job store unavailable",
            {"Retry-After": "10"},
            retry_after=10,
        )

    for exc_type in (
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        kombu.exceptions.OperationalError,
    ):
        app.add_exception_handler(exc_type, unavailable)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return problem(request, 500, "internal error; it was logged", URN + "internal", "Internal error")


def document(app: FastAPI) -> None:
    """The OpenAPI document lists error responses as ``application/problem+json`` only (FastAPI would
    also list the model under ``application/json``)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = build()
        for path in spec.get("paths", {}).values():
            for op in path.values():
                for code, resp in op.get("responses", {}).items():
                    content = resp.get("content", {})
                    if code[0] in "45" and MEDIA_TYPE in content:
                        content.pop("application/json", None)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for the given error statuses, all as problem details."""
    return {
        code: {
            "model": Problem,
            "description": DESCRIPTIONS.get(code, HTTPStatus(code).phrase),
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for code in codes
    }


DESCRIPTIONS = {
    400: "malformed request or unusable file",
    401: "missing or unknown API key",
    403: "expired or tampered download link, or an admin-only resource",
    404: "no such job, batch or file for this key (another key's job is not found either)",
    405: "method not allowed on this path",
    409: "a request with this Idempotency-Key is still in progress",
    413: "upload over the size limit, or over this key's storage quota",
    422: "invalid parameters, not a readable video, or an Idempotency-Key reused with another body",
    429: "a per-key limit (active jobs, uploads per hour); see Retry-After",
    503: "the job store (Redis) is not reachable; see Retry-After",
}
