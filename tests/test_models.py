"""Models are built once per process, on first use or ahead of it in a background thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from moodbgm.config import Settings
from moodbgm.errors import ModelNotFoundError
from moodbgm.models import Models


def test_preloaded_model_is_the_one_used() -> None:
    models = Models(Settings())
    models.preload("speech_detector").join(timeout=120)
    first = models.speech_detector()
    assert models.speech_detector() is first


def test_preload_error_surfaces_at_use(tmp_path: Path) -> None:
    models = Models(Settings(stt_model=str(tmp_path / "no-such-model")))
    models.preload("transcriber").join(timeout=60)  # the background thread itself does not fail loudly
    for _ in range(2):  # the same error every time, without rebuilding
        with pytest.raises(ModelNotFoundError, match="no-such-model"):
            models.transcriber()


def test_release_forgets_models() -> None:
    models = Models(Settings())
    first = models.speech_detector()
    models.release()
    assert models.speech_detector() is not first
