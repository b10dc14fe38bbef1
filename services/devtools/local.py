"""Local processes for tests, benchmarks and ``services/scripts/up.sh``-like runs: a worker or the API as
a child process with its own environment (``MOODBGM_*``), stopped by its process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass
class LocalProcess:
    """A child process in its own process group (a Celery worker and its pool children, or uvicorn)."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (Celery: warm shutdown), then SIGKILL after ``timeout``; returns the exit code."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return int(self.proc.wait())

    def kill(self) -> None:
        """SIGKILL the whole group at once: no warm shutdown, nothing acknowledged."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def children(self) -> list[int]:
        """Pids of the direct children (the prefork pool processes of a worker)."""
        out = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                out += [int(p) for p in (task / "children").read_text().split()]
        return out

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


def _start(args: list[str], env: Mapping[str, str], log_path: Path) -> LocalProcess:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moodbgm.cli", *args],
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    return LocalProcess(proc, log_path, log)


def start_worker(
    env: Mapping[str, str], log_path: Path, queues: str | None = None, concurrency: int = 1
) -> LocalProcess:
    from moodbgm.stages import QUEUES

    queues = queues or ",".join(QUEUES)
    return _start(["worker", "--queues", queues, "--concurrency", str(concurrency)], env, log_path)


def start_api(env: Mapping[str, str], log_path: Path, port: int, host: str = "127.0.0.1") -> LocalProcess:
    """The API under uvicorn; returns once ``/healthz`` answers (raises if it does not within 30 s)."""
    p = _start(["serve", "--host", host, "--port", str(port)], env, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not p.alive():
            raise RuntimeError(f"the API exited early:\n{p.log_text()[-2000:]}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=1) as r,
        ):
            if r.status == 200:
                return p
        time.sleep(0.2)
    p.stop()
    raise RuntimeError(f"the API did not answer on port {port}:\n{p.log_text()[-2000:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
