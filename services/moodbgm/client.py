"""A small typed client of REST v1 (httpx), used by ``moodbgm submit`` and the tests.

    with Client("http://127.0.0.1:8000", key) as api:
        job = api.submit(Path("talk.mp4"), style="lofi")
        done = api.wait(job.id)
        api.download(done.id, "output.mp4", Path("out/talk.mp4"))

- Every POST carries an ``Idempotency-Key`` (one per call), so retrying it never makes a second job.
- 429 and 503 are retried after the server's ``Retry-After`` (or a backoff when it sends none), up to
  ``retries`` times; a wait longer than ``max_wait_s`` is not slept through but raised.
- Connection errors are retried the same way (every call is safe to repeat).
- ``download`` resumes: it writes ``<dest>.part`` and asks for the rest with ``Range`` after a break.
- Errors are ``ApiError`` with the server's problem details (RFC 9457).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

API = "/api/v1"
RETRY_STATUSES = frozenset({429, 503})
TERMINAL = frozenset({"done", "failed", "cancelled"})
CHUNK = 1024 * 1024


class ApiError(Exception):
    """An error answer: ``status`` and the problem details (``title``, ``detail``, ``type``, ...)."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        super().__init__(f"{status} {self.title}: {self.detail}")

    @property
    def title(self) -> str:
        return str(self.problem.get("title", ""))

    @property
    def detail(self) -> str:
        return str(self.problem.get("detail", ""))

    @property
    def type(self) -> str:
        return str(self.problem.get("type", "about:blank"))


@dataclass(frozen=True)
class FileInfo:
    name: str
    url: str  # a signed link: works without the key until it expires
    content_type: str
    size: int


@dataclass(frozen=True)
class Job:
    id: str
    name: str
    status: str
    stage: str | None
    progress: float  # percent
    files: dict[str, FileInfo]
    error: dict[str, Any] | None
    batch_id: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Job:
        files = {
            f["name"]: FileInfo(f["name"], f["url"], f["content_type"], int(f["size"])) for f in d["files"]
        }
        return cls(
            id=d["id"],
            name=d.get("name", ""),
            status=d["status"],
            stage=d.get("stage"),
            progress=float(d.get("progress", 0.0)),
            files=files,
            error=d.get("error"),
            batch_id=d.get("batch_id"),
            raw=dict(d),
        )


@dataclass(frozen=True)
class Submitted:
    id: str
    jobs: tuple[str, ...]
    seeds: tuple[int, ...]
    batch_id: str | None
    location: str


@dataclass(frozen=True)
class Page:
    jobs: tuple[Job, ...]
    next_cursor: str | None


class Client:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        key: str | None = None,
        *,
        timeout_s: float = 120.0,
        retries: int = 5,
        max_wait_s: float = 120.0,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``http``: an httpx.Client to send through (e.g. FastAPI's TestClient); its base URL is used."""
        if retries < 0 or max_wait_s < 0:
            raise ValueError("retries and max_wait_s must be >= 0")
        self._own = http is None
        self.http = (
            http if http is not None else httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s)
        )
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.retries = retries
        self.max_wait_s = max_wait_s
        self.sleep = sleep

    def close(self) -> None:
        if self._own:
            self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- transport
    def _send(
        self, method: str, path: str, build: Callable[[], dict[str, Any]] | None = None
    ) -> httpx.Response:
        """One request, retried on 429/503 (after Retry-After) and on connection errors. ``build`` makes
        the request's keyword arguments afresh for each attempt (files are re-opened)."""
        for attempt in range(self.retries + 1):
            kwargs = build() if build else {}
            opened = kwargs.pop("_open", [])  # files of this attempt, closed after it
            headers = {**self.headers, **kwargs.pop("headers", {})}
            try:
                r = self.http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
                self.sleep(_backoff(attempt))
                continue
            finally:
                for f in opened:
                    f.close()
            if r.status_code in RETRY_STATUSES and attempt < self.retries:
                told = _retry_after(r)
                wait = _backoff(attempt) if told is None else told
                if wait > self.max_wait_s:
                    _raise_for(r)
                self.sleep(wait)
                continue
            return r
        raise AssertionError("unreachable")

    def _json(self, method: str, path: str, build: Callable[[], dict[str, Any]] | None = None) -> Any:
        r = self._send(method, path, build)
        _raise_for(r)
        return r.json() if r.content else None

    # ---- jobs
    def submit(
        self,
        video: Path,
        *,
        generator: str | None = None,
        style: str | None = None,
        seed: int | None = None,
        emotion: str | None = None,
        variations: int | None = None,
        idempotency_key: str | None = None,
    ) -> Submitted:
        """Upload one video; the options left ``None`` take the server's defaults."""
        fields = {
            "generator": generator,
            "style": style,
            "seed": seed,
            "emotion": emotion,
            "variations": variations,
        }
        data = {k: str(v) for k, v in fields.items() if v is not None}
        idem = idempotency_key or uuid.uuid4().hex

        def build() -> dict[str, Any]:
            f = video.open("rb")
            return {
                "files": {"file": (video.name, f, "application/octet-stream")},
                "data": data,
                "headers": {"Idempotency-Key": idem},
                "_open": [f],
            }

        r = self._send("POST", f"{API}/jobs", build)
        _raise_for(r)
        body = r.json()
        return Submitted(
            id=body["id"],
            jobs=tuple(body["jobs"]),
            seeds=tuple(body["seeds"]),
            batch_id=body.get("batch_id"),
            location=r.headers.get("location", f"{API}/jobs/{body['id']}"),
        )

    def job(self, job_id: str, original: bool = False) -> Job:
        params = {"original": "true"} if original else {}
        return Job.from_json(self._json("GET", f"{API}/jobs/{job_id}", lambda: {"params": params}))

    def jobs(self, status: str | None = None, limit: int = 20, cursor: str | None = None) -> Page:
        """One page of this key's jobs, newest first."""
        params: dict[str, str] = {"limit": str(limit)}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        body = self._json("GET", f"{API}/jobs", lambda: {"params": params})
        return Page(tuple(Job.from_json(j) for j in body["jobs"]), body["next_cursor"])

    def iter_jobs(self, status: str | None = None, page_size: int = 50) -> Iterator[Job]:
        cursor: str | None = None
        while True:
            page = self.jobs(status, page_size, cursor)
            yield from page.jobs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: str) -> Job:
        idem = uuid.uuid4().hex
        body = self._json(
            "POST", f"{API}/jobs/{job_id}/cancel", lambda: {"headers": {"Idempotency-Key": idem}}
        )
        return Job.from_json(body)

    def delete(self, job_id: str) -> None:
        r = self._send("DELETE", f"{API}/jobs/{job_id}")
        if r.status_code != 404:  # already gone: what a repeated delete wants
            _raise_for(r)

    def wait(
        self,
        job_id: str,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
        on_update: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll until the job is done, failed or cancelled; ``TimeoutError`` after ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if on_update:
                on_update(job)
            if job.finished:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout_s:.0f} s")
            time.sleep(poll_s)

    # ---- files
    # ---- the score editor
    def editor(self, job_id: str) -> dict[str, Any]:
        """What the page's timeline editor shows: ``sections`` (with intensity, lock, take),
        ``phrases``, ``cuts``, ``bars``, ``min_section``, ``version`` and every version's signed links."""
        body: dict[str, Any] = self._json("GET", f"{API}/jobs/{job_id}/editor")
        return body

    def edit_timeline(
        self, job_id: str, sections: Sequence[Mapping[str, Any]], idempotency_key: str | None = None
    ) -> int:
        """Re-render the job's score from edited ``sections`` (``start``, ``end``, ``emotion``, and
        optionally ``intensity``, ``lock``, ``take``); returns the new version's number at once (follow
        it with ``wait``). A bad edit raises ``ApiError`` 422 whose ``problem`` names the ``section``
        (0-based) and the ``rule``."""
        idem = idempotency_key or uuid.uuid4().hex
        data = {"sections": [dict(s) for s in sections]}
        body = self._json(
            "PUT",
            f"{API}/jobs/{job_id}/timeline",
            lambda: {"json": data, "headers": {"Idempotency-Key": idem}},
        )
        return int(body["version"])

    def replan(
        self, job_id: str, sections: Sequence[Mapping[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """The sections planned again around the locked ones (of ``sections``, or of the current
        timeline); nothing is rendered."""
        data = None if sections is None else {"sections": [dict(s) for s in sections]}
        body = self._json(
            "POST", f"{API}/jobs/{job_id}/timeline/replan", lambda: {} if data is None else {"json": data}
        )
        return list(body["sections"])

    def pick(self, batch_id: str, job_id: str) -> dict[str, Any]:
        """Pick one finished variation of a batch as its output; returns the batch (``picked`` set)."""
        body: dict[str, Any] = self._json(
            "POST", f"{API}/batches/{batch_id}/pick", lambda: {"json": {"job": job_id}}
        )
        return body

    def download(self, job_id: str, name: str, dest: Path) -> Path:
        """Fetch one file of a job to ``dest``, resuming ``<dest>.part`` from a broken earlier try."""
        part = dest.with_name(dest.name + ".part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        path = f"{API}/jobs/{job_id}/files/{name}"
        for attempt in range(self.retries + 1):
            have = part.stat().st_size if part.exists() else 0
            headers = {**self.headers, **({"Range": f"bytes={have}-"} if have else {})}
            try:
                # object storage: a 307 to a presigned URL (httpx drops the key on another origin)
                with self.http.stream("GET", path, headers=headers, follow_redirects=True) as r:
                    if r.status_code == 416 and _complete(r, have):
                        break
                    if r.status_code in RETRY_STATUSES and attempt < self.retries:
                        r.read()
                        self.sleep(min(_retry_after(r) or _backoff(attempt), self.max_wait_s))
                        continue
                    if r.status_code not in (200, 206):
                        r.read()
                        _raise_for(r)
                    with part.open("ab" if r.status_code == 206 else "wb") as out:
                        for chunk in r.iter_bytes(CHUNK):
                            out.write(chunk)
                break
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
                self.sleep(_backoff(attempt))
        part.replace(dest)
        return dest


def _backoff(attempt: int) -> float:
    return float(min(2**attempt, 30))


def _retry_after(r: httpx.Response) -> float | None:
    value = r.headers.get("retry-after", "")
    return float(value) if value.strip().isdigit() else None


def _complete(r: httpx.Response, have: int) -> bool:
    """A 416 for ``bytes=<have>-`` means the part already holds the whole file."""
    total = r.headers.get("content-range", "").rpartition("/")[2]
    return total.isdigit() and int(total) == have


def _raise_for(r: httpx.Response) -> None:
    if r.status_code < 400:
        return
    try:
        problem = r.json()
    except ValueError:
        problem = {"title": r.reason_phrase, "detail": r.text[:500]}
    if not isinstance(problem, dict):
        problem = {"title": r.reason_phrase, "detail": str(problem)}
    raise ApiError(r.status_code, problem)
