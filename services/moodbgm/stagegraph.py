"""Runs stages as a dependency graph: a stage starts once every stage it reads has finished.

Independent chains then overlap in threads. In a ``moodbgm run`` the voice isolation (DeepFilterNet,
one native thread) runs beside transcription -> emotion -> timeline -> composing, and the chart
beside the mix. The heavy work of every stage is native code that releases the GIL (the DFN runtime,
CTranslate2, onnxruntime, FluidSynth, ffmpeg in a child process), so threads are enough.

The scheduler knows nothing about stages beyond their names and dependencies; ``run`` does the work.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


def ready(order: Sequence[str], deps: Mapping[str, Sequence[str]], done: set[str]) -> list[str]:
    """Stages of ``order`` (in that order) not yet done whose dependencies are all done."""
    return [n for n in order if n not in done and all(d in done for d in deps.get(n, ()))]


def run_graph(
    order: Sequence[str],
    deps: Mapping[str, Sequence[str]],
    run: Callable[[str], object],
    workers: int = 2,
) -> None:
    """Call ``run(name)`` once for every stage of ``order``, each after all of its ``deps``.

    At most ``workers`` stages run at once; among ready stages the earlier in ``order`` starts first.
    ``workers == 1`` runs them one after another in this thread, in ``order``. After a failure no new
    stage starts; the ones running finish, then the first error is raised.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    names = set(order)
    unknown = {d for n in order for d in deps.get(n, ()) if d not in names}
    if unknown:
        raise ValueError(f"stages depend on unknown stages: {sorted(unknown)}")
    if workers == 1:
        for name in order:
            run(name)
        return
    done: set[str] = set()
    running: dict[Future[object], str] = {}
    error: BaseException | None = None
    with ThreadPoolExecutor(workers, thread_name_prefix="moodbgm-stage") as pool:
        while True:
            if error is None:
                started = set(running.values())
                for name in ready(order, deps, done):
                    if len(running) >= workers:
                        break
                    if name not in started:
                        running[pool.submit(run, name)] = name
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                exc = future.exception()
                if exc is None:
                    done.add(name)
                elif error is None:
                    error = exc
    if error is not None:
        raise error
    missing = [n for n in order if n not in done]
    if missing:  # only possible with a dependency cycle
        raise ValueError(f"stages {missing} were never ready (a dependency cycle?)")


BACKGROUND_NICENESS = 19


def in_background(work: Callable[[], T], name: str = "background") -> T:
    """``work()`` in a thread of its own at the lowest CPU priority (Linux threads have their own nice
    value); the caller waits for it and gets its result or its exception.

    For work off the critical path (the chart beside composing and mixing): it then runs on what the
    other stages leave idle (composing, a one-core mixing pass, the mux) instead of taking a core from
    the synths or the encoder. A new thread, so that no pooled thread keeps the low priority.
    """
    done: Future[T] = Future()

    def run() -> None:
        if sys.platform.startswith("linux"):
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)
            except OSError as err:  # e.g. a seccomp profile: it still runs, at normal priority
                log.warning("could not lower the priority of %s work: %s", name, err)
        try:
            done.set_result(work())
        except BaseException as e:
            done.set_exception(e)

    thread = threading.Thread(target=run, name=f"moodbgm-{name}", daemon=True)
    thread.start()
    thread.join()
    return done.result()
