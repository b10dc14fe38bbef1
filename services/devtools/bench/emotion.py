"""Emotion benchmark: classify 1,000 spoken-style phrases with the embedded model on CPU.

The phrases are the corpus's held-out split followed by training lines, up to 1,000 (the sample video
is not needed: its transcript is a few dozen phrases). Macro-F1 is measured on the held-out split.
"""

from __future__ import annotations

import json
import resource
import time
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from moodbgm.emotion import build_classifier
from moodbgm.types import EMOTIONS

N_PHRASES = 1000


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _f1_per_class(truth: list[str], predicted: list[str]) -> dict[str, float]:
    f1 = {}
    for e in EMOTIONS:
        tp = sum(t == e and p == e for t, p in zip(truth, predicted, strict=True))
        fp = sum(t != e and p == e for t, p in zip(truth, predicted, strict=True))
        fn = sum(t == e and p != e for t, p in zip(truth, predicted, strict=True))
        f1[e] = round(2 * tp / (2 * tp + fp + fn), 4) if tp else 0.0
    return f1


def run(sample: Path, workdir: Path) -> dict[str, Any]:
    corpus = resources.files("moodbgm") / "data" / "emotion_corpus.jsonl"
    rows = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows.sort(key=lambda r: r["split"] != "test")  # held-out first, stable otherwise
    rows = rows[:N_PHRASES]
    texts = [r["text"] for r in rows]

    t0 = time.perf_counter()
    clf = build_classifier("embedded", device="cpu")
    clf.classify(texts[:8])  # warm-up
    load_s = time.perf_counter() - t0

    t0, c0 = time.perf_counter(), _cpu_seconds()
    scores = clf.classify(texts)
    seconds, cpu_seconds = time.perf_counter() - t0, _cpu_seconds() - c0

    held = [(r["label"], s.label) for r, s in zip(rows, scores, strict=True) if r["split"] == "test"]
    per_class = _f1_per_class([t for t, _ in held], [p for _, p in held])
    return {
        "phrases": len(texts),
        "seconds": round(seconds, 3),
        "phrases_per_s": round(len(texts) / seconds, 1),
        "cpu_seconds": round(cpu_seconds, 3),  # wall time depends on how busy the shared CPU is
        "torch_threads": torch.get_num_threads(),
        "load_seconds": round(load_s, 3),
        "held_out": len(held),
        "macro_f1": round(sum(per_class.values()) / len(per_class), 4),
        "per_class_f1": per_class,
    }
