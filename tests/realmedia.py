"""Real recordings for tests, from package registries (services/scripts/fetch-test-media.sh).

* ``librivox()``: five LibriVox clips (one narrator, Jane Austen) with transcripts and pocketsphinx word
  alignments, from the pocketsphinx sdist on PyPI;
* ``codec2(name)``: speech samples of Debian's codec2-examples;
* ``music()``: the real music excerpt ``test.mp3`` of the demucs sdist.

The first call runs the fetch script (quick once cached in ``.cache/test-media``). A test that needs
the media skips, saying why, only when a registry cannot be reached; any other failure is an error.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "services" / "scripts" / "fetch-test-media.sh"
UNREACHABLE = 75  # the script's exit status when a registry cannot be reached


@functools.cache
def _fetch() -> tuple[Path | None, str]:
    cache = Path(os.environ.get("MOODBGM_TEST_MEDIA", ROOT / ".cache" / "test-media"))
    done = subprocess.run(["bash", str(SCRIPT), str(cache)], capture_output=True, text=True, timeout=900)
    if done.returncode == UNREACHABLE:
        return None, done.stderr.strip().splitlines()[-1]
    if done.returncode != 0:
        raise RuntimeError(f"{SCRIPT.name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return cache, ""


def media_dir() -> Path:
    """The cache of real media; skips the calling test when a registry is unreachable."""
    cache, why = _fetch()
    if cache is None:
        pytest.skip(f"real test media unavailable: {why}")
    return cache


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Utterance:
    """One LibriVox clip: 16 kHz mono wav, its transcript, and its forced-aligned words."""

    path: Path
    text: str
    words: tuple[Word, ...]
    duration: float


def librivox() -> list[Utterance]:
    d = media_dir() / "librivox"
    out = []
    for clip in (d / "fileids").read_text().split():
        align = json.loads((d / f"{clip}.json").read_text())
        words = tuple(
            Word(re.sub(r"\(\d+\)$", "", w["t"]), w["b"], w["b"] + w["d"])
            for w in align["w"]
            if not w["t"].startswith("<")
        )
        text = (d / f"{clip}.txt").read_text().strip()
        out.append(Utterance(d / f"{clip}.wav", text, words, float(align["d"])))
    return out


def codec2(name: str) -> Path:
    path = media_dir() / "codec2" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not in codec2-examples")
    return path


def music() -> Path:
    return media_dir() / "music" / "demucs-test.mp3"


_SPOKEN = {"mr": "mister", "mrs": "missus", "dr": "doctor"}


def normalise(text: str) -> str:
    """Lower case, no punctuation, a few abbreviations spelled out: what WER compares."""
    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()
    return " ".join(_SPOKEN.get(w, w) for w in words)


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    return float(jiwer.wer(normalise(reference), normalise(hypothesis)))
