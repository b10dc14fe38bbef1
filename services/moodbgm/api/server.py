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
        timeout_graceful_shutdown=30,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1
