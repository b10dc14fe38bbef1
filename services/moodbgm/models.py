"""The models a process uses, built lazily from its ``Settings`` on first use and then reused.

The CLI builds one ``Models`` per run; a Celery worker builds one per child process after fork.
Nothing is loaded at import time and there is no global instance.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from moodbgm.config import Settings

if TYPE_CHECKING:
    from moodbgm.emotion import EmotionClassifier
    from moodbgm.generate.base import MusicGenerator
    from moodbgm.separate import VoiceSeparator
    from moodbgm.stt import Transcriber
    from moodbgm.vad import SpeechDetector

log = logging.getLogger(__name__)


class Models:
    """Each model is built once, on first use or ahead of it by ``preload`` (in a background thread).

    A model that failed to build raises the same error at every use, preloaded or not.
    """

    def __init__(self, settings: Settings | None = None, *, stt_reserve_cores: int = 0) -> None:
        """``stt_reserve_cores``: cores kept busy beside transcription in this process (``run_job``
        separates the voice on one); with ``stt_threads`` = 0 the transcriber uses the rest."""
        self.settings = settings or Settings()
        self.stt_reserve_cores = stt_reserve_cores
        self._cache: dict[str, Future[Any]] = {}
        self._lock = threading.Lock()

    def _get(self, key: str, build: Callable[[], Any]) -> Any:
        with self._lock:
            future = self._cache.get(key)
            owner = future is None
            if future is None:
                future = self._cache[key] = Future()
        if owner:
            log.info("loading %s", key)
            try:
                future.set_result(build())
            except BaseException as e:
                future.set_exception(e)
        return future.result()

    def preload(self, *names: str) -> threading.Thread:
        """Build the named models (method names, e.g. "transcriber") in a background thread.

        The loading overlaps with work in native code (ffmpeg, ONNX runtimes); errors surface when
        the model is used.
        """
        getters = [getattr(self, n) for n in names]

        def load() -> None:
            for get in getters:
                with contextlib.suppress(Exception):  # kept in the future, raised at use
                    get()

        thread = threading.Thread(target=load, name="moodbgm-preload", daemon=True)
        thread.start()
        return thread

    def transcriber(self) -> Transcriber:
        from moodbgm.stt import build_transcriber

        s = self.settings
        return self._get(
            "stt",
            lambda: build_transcriber(
                s.stt_backend,
                s.stt_model,
                device=s.device,
                language=s.stt_language,
                threads=s.stt_threads,
                reserve_cores=self.stt_reserve_cores,
            ),
        )

    def classifier(self) -> EmotionClassifier:
        from moodbgm.emotion import build_classifier

        s = self.settings
        model = s.emotion_model if s.emotion_backend == "transformers" else None
        device = "cpu" if s.device == "auto" else s.device
        return self._get("emotion", lambda: build_classifier(s.emotion_backend, model, device=device))

    def separator(self) -> VoiceSeparator:
        from moodbgm.separate import build_separator

        return self._get("separate", lambda: build_separator(self.settings.separator))

    def speech_detector(self) -> SpeechDetector:
        from moodbgm.vad import SpeechDetector

        return self._get("vad", SpeechDetector)

    def generator(self, name: str) -> MusicGenerator:
        return self._get(f"generate:{name}", lambda: self._build_generator(name))

    def _build_generator(self, name: str) -> MusicGenerator:
        from moodbgm.generate.composer import ComposerGenerator

        s = self.settings
        composer = ComposerGenerator(soundfont=s.soundfont)
        if name == "composer":
            return composer
        if name == "riffusion":
            from moodbgm.generate.riffusion.generator import RiffusionGenerator, RiffusionOptions

            options = RiffusionOptions(
                steps=s.riffusion_steps,
                batch_size=s.riffusion_batch_size,
                compile=s.riffusion_compile,
                scheduler=s.riffusion_scheduler,
                strength=s.riffusion_strength,
                lora_path=s.lora_path,
                lora_scale=s.lora_scale,
            )
            return RiffusionGenerator.load(
                s.riffusion_model,
                device=s.device,
                dtype=s.riffusion_dtype,
                options=options,
                composer=composer,
            )
        raise ValueError(f"unknown generator {name!r}")

    def release(self) -> None:
        """Drop every model (frees memory between long jobs or before a fork)."""
        self._cache.clear()
