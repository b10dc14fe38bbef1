"""Taking an upload on behalf of a key: limits first (before reading a possibly huge body), then the
body, then ``Idempotency-Key`` (a replay answers as the first time did), then the jobs.

Order, for ``POST /jobs`` and ``POST /batches``:

1. a key already used with ``Idempotency-Key``: no limit is counted again (it is a retry);
2. otherwise uploads per hour (429), storage quota against ``Content-Length`` (413) and one active-job
   slot reserved (429), all before the body is read;
3. the body is streamed to staging; its fingerprint claims the idempotency key (or replays, 422, 409);
4. the quota again with the real size, the options, the slots for every variation, then the jobs.

Any failure releases the slot reservation and the idempotency claim, and leaves nothing on disk.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from moodbgm.api.auth import Principal
from moodbgm.api.idempotency import HEADER, Idempotency, fingerprint
from moodbgm.api.limits import Limits
from moodbgm.api.uploads import ReceivedForm


@dataclass(frozen=True)
class Accepted:
    body: dict[str, Any]
    location: str
    jobs: tuple[str, ...]


def accepted_response(status: int, body: dict[str, Any], location: str | None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"Location": location} if location else None)


async def take_upload(
    request: Request,
    who: Principal,
    limits: Limits,
    idem: Idempotency,
    receive: Callable[[], Awaitable[ReceivedForm]],
    make: Callable[[ReceivedForm, Callable[[int], None]], Accepted],
) -> JSONResponse:
    """Run the steps above; ``make(form, need_slots)`` turns the form into jobs (in a thread) and calls
    ``need_slots(n)`` once it knows how many jobs the form makes."""
    idem_key = Idempotency.check_key(request.headers.get(HEADER))
    retry = idem_key is not None and await run_in_threadpool(idem.seen, who, idem_key)
    token: str | None = None
    claimed = False
    fp = ""
    form: ReceivedForm | None = None
    try:
        if not retry:
            length = request.headers.get("content-length")
            await run_in_threadpool(limits.count_upload, who)
            await run_in_threadpool(
                limits.check_storage, who, int(length) if length and length.isdigit() else 0
            )
            token = await run_in_threadpool(limits.reserve, who)
        form = await receive()
        if idem_key is not None:
            files = [(f.field, f.name, f.sha256) for f in form.files]
            fp = fingerprint(request.method, request.url.path, form.fields, files)
            replay = await run_in_threadpool(idem.begin, who, idem_key, fp)
            if replay is not None:
                form.discard()
                limits.release(who, token)
                return accepted_response(replay.status, replay.body, replay.location)
            claimed = True
        if not retry:
            await run_in_threadpool(limits.check_storage, who, sum(f.size for f in form.files))

        def need_slots(n: int) -> None:
            if n > 1 and token is not None:
                limits.reserve(who, n, token)

        done = await run_in_threadpool(make, form, need_slots)
        await run_in_threadpool(limits.confirm, who, token, done.jobs)
        token = None
        if claimed and idem_key is not None:
            await run_in_threadpool(idem.finish, who, idem_key, fp, 202, done.body, done.location)
        return accepted_response(202, done.body, done.location)
    except BaseException:
        if form is not None:
            form.discard()
        limits.release(who, token)
        if claimed and idem_key is not None:
            idem.abandon(who, idem_key)
        raise


async def idempotent(
    request: Request, who: Principal, idem: Idempotency, run: Callable[[], Awaitable[JSONResponse]]
) -> JSONResponse:
    """A POST without an upload (cancel) under ``Idempotency-Key``: replayed, or 422 for another path."""
    idem_key = Idempotency.check_key(request.headers.get(HEADER))
    if idem_key is None:
        return await run()
    fp = fingerprint(request.method, request.url.path, dict(request.query_params))
    replay = await run_in_threadpool(idem.begin, who, idem_key, fp)
    if replay is not None:
        return accepted_response(replay.status, replay.body, replay.location)
    try:
        response = await run()
    except BaseException:
        idem.abandon(who, idem_key)
        raise
    body = json.loads(bytes(response.body))
    await run_in_threadpool(
        idem.finish, who, idem_key, fp, response.status_code, body, response.headers.get("location")
    )
    return response
