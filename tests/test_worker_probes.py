"""The worker probes of the rendered manifests, run as they are against a live worker; and the broker
counts (waiting + running tasks) that KEDA scales the workers on.

The probe test starts ``moodbgm worker`` with the container's own command and environment (the
ConfigMap plus the container's env, as the kubelet would set them), only the Redis URL and the data
directory pointing at the test's Redis and a temporary directory, then runs the probe's exact
``exec.command`` as a local process with ``HOSTNAME`` set as in a pod (the host name)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from kombu import Connection

from helpers import redis_url, render_overlay
from moodbgm.api.app import create_app
from moodbgm.config import Settings

PROBE_DB = 6
DEPTH_DB = 7
ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

Doc = dict[str, Any]


def _worker_containers(overlay: str) -> dict[str, tuple[Doc, dict[str, str]]]:
    docs = render_overlay(overlay)
    (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
    return {
        d["metadata"]["name"]: (d["spec"]["template"]["spec"]["containers"][0], config["data"])
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    }


def _pod_env(container: Doc, config: dict[str, str], **overrides: str) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom ConfigMap, then env in order with
    $(VAR) expanded from what came before; Secret values are not available here and stay empty."""
    env = dict(config)
    for entry in container.get("env", []):
        value = entry.get("value", "")
        env[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), ""), value)
    env.update(overrides)
    return env


@pytest.fixture(scope="module")
def media_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Doc, dict[str, str]]]:
    container, config = _worker_containers("cpu")["worker-media"]
    data = tmp_path_factory.mktemp("probe")
    env = _pod_env(
        container,
        config,
        MOODBGM_REDIS_URL=redis_url(PROBE_DB),
        MOODBGM_DATA_DIR=str(data / "jobs"),
        HOME=str(data),
        HF_HOME=str(data / "hf"),
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        PYTHONPATH=os.environ.get("PYTHONPATH", ""),
        # in a pod HOSTNAME is the pod name, which is also the host name
        HOSTNAME=socket.gethostname(),
    )
    log = (data / "worker.log").open("wb")
    proc = subprocess.Popen(container["command"], env=env, stdout=log, stderr=subprocess.STDOUT)
    yield container, env
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def _run_probe(probe: Doc, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        probe["exec"]["command"], env=env, capture_output=True, text=True, timeout=probe["timeoutSeconds"]
    )


def test_every_worker_in_every_overlay_has_the_same_probe_command() -> None:
    """So running one worker's probes below covers them all."""
    commands = {
        (
            c["startupProbe"]["exec"]["command"] == c["livenessProbe"]["exec"]["command"],
            tuple(c["livenessProbe"]["exec"]["command"]),
        )
        for overlay in ("cpu", "gpu", "cpu-s3")
        for c, _ in _worker_containers(overlay).values()
    }
    assert len(commands) == 1 and next(iter(commands))[0]


@pytest.mark.slow
def test_probe_commands_from_the_manifests_pass_against_a_live_worker(
    media_worker: tuple[Doc, dict[str, str]],
) -> None:
    container, env = media_worker
    startup = container["startupProbe"]
    deadline = time.monotonic() + startup["periodSeconds"] * startup["failureThreshold"]
    while True:  # as the kubelet does: the startup probe until it passes, within its budget
        result = _run_probe(startup, env)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"celery@{socket.gethostname()}: OK" in result.stdout
    live = _run_probe(container["livenessProbe"], env)
    assert live.returncode == 0, live.stdout + live.stderr
    # negative control: the same command from a pod of another name finds no worker and fails
    other = _run_probe(container["livenessProbe"], {**env, "HOSTNAME": "some-other-pod"})
    assert other.returncode != 0


# ------------------------------------------------------------------------------ waiting + running tasks


@pytest.fixture
def depth_settings(tmp_path: Path) -> Iterator[Settings]:
    url = redis_url(DEPTH_DB)
    redis.Redis.from_url(url).flushdb()
    prefix = f"t{time.monotonic_ns()}:"
    # /ops/queues needs no key, but the API refuses to start without keys unless auth is disabled
    yield Settings(data_dir=tmp_path / "jobs", redis_url=url, redis_prefix=prefix, auth="disabled")
    redis.Redis.from_url(url).flushdb()


def test_ops_queues_counts_waiting_and_running_tasks_from_the_broker(depth_settings: Settings) -> None:
    """Real kombu messages: three sent to `media`, one taken and not acknowledged (a running task under
    acks_late) -> 2 waiting, 1 running; after the ack, 0 running."""
    with Connection(depth_settings.redis_url) as conn, TestClient(create_app(depth_settings)) as client:
        media = conn.SimpleQueue("media")
        for i in range(3):
            media.put({"n": i})
        conn.SimpleQueue("generate").put({"n": 9})
        taken = media.get(timeout=5)

        assert client.get("/ops/queues", params={"queues": "media"}).json() == {
            "queues": ["media"],
            "waiting": 2,
            "running": 1,
        }
        both = client.get("/ops/queues", params={"queues": "stt,media,generate"}).json()
        assert (both["waiting"], both["running"]) == (3, 1)
        assert client.get("/ops/queues", params={"queues": "nlp"}).json()["running"] == 0
        assert client.get("/ops/queues", params={"queues": "video"}).status_code in (400, 422)

        taken.ack()
        assert client.get("/ops/queues", params={"queues": "media"}).json()["running"] == 0
        media.close()
