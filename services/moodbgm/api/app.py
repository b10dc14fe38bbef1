"""The FastAPI application: REST v1, the web form, health and metrics.

Build it with ``create_app(settings)`` (uvicorn: ``--factory`` via ``moodbgm.api.server``); nothing is
built at import time. Domain errors become 4xx with a clear message; an unreachable Redis becomes 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Annotated

import redis
from fastapi import Depends, FastAPI, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from moodbgm import __version__
from moodbgm.api import metrics, problems
from moodbgm.api.auth import Keyring, admin
from moodbgm.api.editor import editor_router
from moodbgm.api.idempotency import Idempotency
from moodbgm.api.limits import Limits
from moodbgm.api.routes import files_router, router
from moodbgm.api.schemas import Health
from moodbgm.api.service import JobService
from moodbgm.api.signing import LinkSigner, shared_secret
from moodbgm.config import Settings
from moodbgm.generate.base import STYLES
from moodbgm.jobs import GENERATORS, JobOptions
from moodbgm.jobstore import JobStore
from moodbgm.stages import QUEUES
from moodbgm.types import EMOTIONS
from moodbgm.worker.app import create_celery
from moodbgm.worker.main import parse_queues
from moodbgm.worker.queue_depth import QueueDepth, broker_depth

log = logging.getLogger(__name__)

HERE = Path(str(resources.files("moodbgm.api")))
PURGE_INTERVAL_S = 3600.0
# used when moodbgm.report has no palette of its own
DEFAULT_COLORS = {
    "anger": "#d62728",
    "disgust": "#8c8c2b",
    "fear": "#7b4fa0",
    "joy": "#f2b701",
    "neutral": "#8a8f98",
    "sadness": "#1f77b4",
    "surprise": "#ff7f0e",
}


def emotion_colors() -> dict[str, str]:
    try:
        from moodbgm.report import EMOTION_COLORS
    except ImportError:
        return dict(DEFAULT_COLORS)
    return {e: str(EMOTION_COLORS.get(e, DEFAULT_COLORS[e])) for e in EMOTIONS}


def create_app(settings: Settings) -> FastAPI:
    keyring = Keyring.from_settings(settings)  # refuses to start without keys unless auth is disabled
    store = JobStore.from_url(settings.redis_url, settings.redis_prefix, settings.job_retention_s)
    service = JobService(settings, store, create_celery(settings))
    registry = metrics.make_registry(store)
    broker = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=3)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        port = settings.metrics_port
        separate = metrics.MetricsServer(registry, settings.metrics_host, port) if port else None
        if separate is not None:
            await run_in_threadpool(separate.start)
        sweeper = asyncio.create_task(_sweep(service))
        stale = asyncio.create_task(_sweep_stale(service))
        yield
        sweeper.cancel()
        stale.cancel()
        if separate is not None:
            await run_in_threadpool(separate.stop)

    app = FastAPI(
        title="moodbgm",
        version=__version__,
        description="Background music that follows the mood of what is said in a video. Upload a video "
        "(POST /api/v1/jobs), follow its progress (GET /api/v1/jobs/{id}), download output.mp4.",
        lifespan=lifespan,
        docs_url="/docs" if settings.docs_enabled else None,  # all three off: MOODBGM_DOCS_ENABLED=false
        redoc_url="/redoc" if settings.docs_enabled else None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    app.state.service = service
    app.state.settings = settings
    _access(app, settings, keyring, store)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "HEAD", "POST", "DELETE"],
            allow_headers=["Authorization", "Range", "Content-Type", "Idempotency-Key"],
            expose_headers=["Content-Range", "Accept-Ranges", "Content-Length", "Location", "Retry-After"],
        )
    app.include_router(router)
    app.include_router(editor_router)
    app.include_router(files_router)
    problems.install(app)

    @app.get("/healthz", response_model=Health, tags=["ops"])
    def healthz() -> Health:
        """The process is alive."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["ops"], responses={503: {"model": Health}})
    def readyz() -> Response:
        """Ready to serve: the data directory is there. Redis is reported, not required: while it
        restarts, downloads (files on disk) still work and Redis-backed routes answer 503 themselves;
        taking every API pod out of the Service would fail them all."""
        try:
            store.ping()
            redis_state = "ok"
        except redis.exceptions.RedisError as e:
            redis_state = f"unavailable: {e}"
        if not settings.data_dir.is_dir():
            return JSONResponse(Health(status="unavailable", redis=redis_state).model_dump(), status_code=503)
        return JSONResponse(Health(status="ok", redis=redis_state).model_dump())

    @app.get("/ops/queues", response_model=QueueDepth, tags=["ops"])
    def queues(names: Annotated[str, Query(alias="queues")] = ",".join(QUEUES)) -> QueueDepth:
        """Waiting and running (taken, not yet acknowledged) tasks of some queues, from the broker:
        KEDA's metrics-api trigger scales the workers on it (k8s/components/keda)."""
        return broker_depth(broker, parse_queues(names))

    @app.get(
        "/metrics",
        tags=["ops"],
        response_class=Response,
        dependencies=[Depends(admin)],
        responses=problems.responses(401, 403),
    )
    def prometheus() -> Response:
        """Prometheus text; needs an admin key here (without one: ``MOODBGM_METRICS_PORT``)."""
        return Response(metrics.render(registry), media_type=metrics.CONTENT_TYPE)

    templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape())
    page = {
        "generators": GENERATORS,
        "styles": STYLES,
        "emotions": EMOTIONS,
        "max_variations": settings.max_variations,
        "max_upload_mb": settings.max_upload_mb,
        "needs_key": keyring.enabled,
        "docs": settings.docs_enabled,
        "settings": settings,
        "defaults": JobOptions.from_settings(settings),
        "colors_json": json.dumps(emotion_colors()),
        "version": __version__,
    }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(templates.get_template("index.html").render(**page))

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app


def _access(app: FastAPI, settings: Settings, keyring: Keyring, store: JobStore) -> None:
    """Keys, per-key limits, Idempotency-Key records and the download-link signer on ``app.state``."""
    app.state.keyring = keyring
    app.state.limits = Limits(settings, store)
    app.state.idempotency = Idempotency(store.redis, store.prefix)
    signers: list[LinkSigner] = []

    def signer() -> LinkSigner:  # the Redis-kept secret is read on first use (Redis may start later)
        if not signers:
            secret = settings.link_secret.encode() or shared_secret(store.redis, store.prefix)
            signers.append(LinkSigner(secret, settings.link_ttl_s))
        return signers[0]

    app.state.signer = signer


async def _sweep(service: JobService) -> None:
    """Apply the retention: every hour, remove folders of expired jobs and stale uploads."""
    while True:
        try:
            removed = await run_in_threadpool(service.purge_expired)
            if removed:
                log.info("retention: removed %d expired folder(s)", removed)
        except redis.exceptions.RedisError as e:
            log.warning("retention sweep skipped, Redis not reachable: %s", e)
        await asyncio.sleep(PURGE_INTERVAL_S)


async def _sweep_stale(service: JobService) -> None:
    """No job stuck forever: every ``stale_sweep_interval_s``, fail the running jobs whose stage has
    not renewed its heartbeat for ``heartbeat_timeout_s`` (its worker was killed and not replaced).
    Every API replica runs it; failing a job twice is harmless (the second finds it finished)."""
    while True:
        await asyncio.sleep(service.settings.stale_sweep_interval_s)
        try:
            failed = await run_in_threadpool(service.fail_stale)
            if failed:
                log.warning("stale-job sweep: failed %s (no heartbeat)", ", ".join(failed))
        except Exception as e:  # Redis or the object store unreachable: try again next time
            log.warning("stale-job sweep skipped: %s", e)
