"""Speech-to-text benchmark: load the default transcriber, transcribe the demo sample.

RTF = transcription wall time / audio duration (goal <= 0.15 on a 2-core CPU). ``transcribe_cpu_s``
is the process CPU time of the transcription, a steadier figure than wall time on a shared machine.
When the sample's ground truth (``<name>.json`` from ``devtools.sample``) lies next to it, the word
error rate is reported too.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from devtools.sample import load_sample_info
from moodbgm import media
from moodbgm.stt import build_transcriber

log = logging.getLogger(__name__)


def _words(text: str) -> list[str]:
    return re.sub(r"[^\w\s']", " ", text.lower()).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance over lower-cased, punctuation-free words, divided by the reference length."""
    ref, hyp = _words(reference), _words(hypothesis)
    if not ref:
        return float(bool(hyp))
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / len(ref)


def run(sample: Path, workdir: Path) -> dict[str, Any]:
    audio = media.load_audio(sample)
    duration = len(audio) / 16_000
    t0 = time.perf_counter()
    transcriber = build_transcriber()
    load_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    transcript = transcriber.transcribe(audio)
    transcribe_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    result: dict[str, Any] = {
        "model_load_s": round(load_s, 3),
        "transcribe_s": round(transcribe_s, 3),
        "transcribe_cpu_s": round(cpu_s, 3),
        "audio_s": round(duration, 3),
        "rtf": round(transcribe_s / duration, 4) if duration else None,
        "phrases": len(transcript.phrases),
    }
    truth = sample.with_suffix(".json")
    if truth.is_file():
        info = load_sample_info(truth)
        result["wer"] = round(word_error_rate(info.text, transcript.text), 4)
        result["sentences"] = len(info.lines)
    log.info("stt bench: %s", result)
    return result
