"""``moodbgm serve``: the API and web form under uvicorn (foreground; SIGTERM stops it gracefully)."""

from __future__ import annotations

import uvicorn

from moodbgm.api.app import create_app
from moodbgm.config import Settings


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> int:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        # on SIGTERM: stop accepting, let requests in flight finish for this long (k8s: the pod's grace
        # period minus its preStop pause, k8s/base/api.yaml)
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1
