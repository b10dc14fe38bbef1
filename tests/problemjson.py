"""A small RFC 9457 validator for error responses (``from problemjson import assert_problem``)."""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import urlsplit

REQUIRED = {"type": str, "title": str, "status": int, "detail": str, "instance": str}


class ResponseLike(Protocol):
    status_code: int
    headers: Any

    def json(self) -> Any: ...


def problem_errors(status_code: int, content_type: str, body: Any, path: str | None = None) -> list[str]:
    """Everything wrong with an error response as problem details; empty when it is valid."""
    errors = []
    if content_type.split(";")[0].strip() != "application/problem+json":
        errors.append(f"content type {content_type!r} is not application/problem+json")
    if not isinstance(body, dict):
        return [*errors, f"body is {type(body).__name__}, not a JSON object"]
    for name, kind in REQUIRED.items():
        if not isinstance(body.get(name), kind) or isinstance(body.get(name), bool):
            errors.append(f"member {name!r} missing or not a {kind.__name__}: {body.get(name)!r}")
    if isinstance(body.get("type"), str):
        t = body["type"]
        if t != "about:blank" and not urlsplit(t).scheme:
            errors.append(f"type {t!r} is not an absolute URI")
    if body.get("status") != status_code:
        errors.append(f"status member {body.get('status')!r} differs from the HTTP status {status_code}")
    if not 400 <= status_code <= 599:
        errors.append(f"HTTP status {status_code} is not an error")
    if isinstance(body.get("title"), str) and not body["title"].strip():
        errors.append("empty title")
    if path is not None and body.get("instance") != path:
        errors.append(f"instance {body.get('instance')!r} is not the request path {path!r}")
    return errors


def assert_problem(r: ResponseLike, status: int | None = None, path: str | None = None) -> dict[str, Any]:
    """Assert ``r`` is problem details (with HTTP ``status`` if given); returns the body."""
    if status is not None:
        assert r.status_code == status, (r.status_code, r.json())
    body = r.json()
    errors = problem_errors(r.status_code, r.headers.get("content-type", ""), body, path)
    assert not errors, (errors, body)
    return dict(body)
