"""Long talks and the pooled context head, for ``train_emotion.py``.

* ``join_talks``: passages joined in their order into talks of at least ``LONG_TALK`` sentences, as a
  real transcript strings several topics and moods together. The grouped cross-validation scores every
  candidate on its held-out passages both alone and joined so, and the held-out splits are evaluated
  both ways too (the rows come out in the same order either way).
* ``rank_pool_weights`` / ``cross_fitted_pool``: the log-linear pool of the sequence head, the regression
  head and the phrase head (``moodbgm.emotion_sequence.PooledHead``): ``POOL_GRID``'s weights ranked by
  cross-validated macro-F1 of out-of-fold logits; the pool is scored in cross-validation with the
  weights that rank best on the other folds' rows only.
* ``sample_parts``: the demo and storm samples' real transcripts through the context model and the
  timeline; ``train_emotion.py`` ships the best-ranked weights that keep every part of both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from moodbgm.emotion_sequence import log_softmax

if TYPE_CHECKING:
    from devtools.train_emotion import Encoded
    from moodbgm.emotion import EmotionClassifier

LONG_TALK = 30  # a joined talk gets passages until it has at least this many sentences


def talk_groups(lengths: Sequence[int], size: int = LONG_TALK) -> list[list[int]]:
    """Consecutive indices grouped into talks of at least ``size`` sentences (passage ``i`` has
    ``lengths[i]``); the last talk may be shorter, but not shorter than ``size // 2``: it joins the one
    before."""
    groups: list[list[int]] = [[]]
    for i in range(len(lengths)):
        if sum(lengths[j] for j in groups[-1]) >= size:
            groups.append([])
        groups[-1].append(i)
    if len(groups) > 1 and sum(lengths[j] for j in groups[-1]) < size // 2:
        tail = groups.pop()
        groups[-1] += tail
    return [g for g in groups if g]


def join_talks(data: Encoded, size: int = LONG_TALK) -> Encoded:
    """``data``'s passages joined, in order, into the talks of ``talk_groups``; a talk's id names its
    passages joined by ``+``."""
    from devtools.train_emotion import Encoded

    groups = talk_groups([len(p.texts) for p in data.passages], size)
    passages = tuple(
        replace(
            data.passages[g[0]],
            id="+".join(data.passages[i].id for i in g),
            texts=tuple(t for i in g for t in data.passages[i].texts),
            labels=tuple(lab for i in g for lab in data.passages[i].labels),
            tags=tuple(t for i in g for t in data.passages[i].tags),
        )
        for g in groups
    )
    return Encoded(
        passages,
        tuple(np.vstack([data.emb[i] for i in g]) for g in groups),
        tuple(np.vstack([data.logp[i] for i in g]) for g in groups),
    )


def pool(weights: Sequence[float], parts: Sequence[np.ndarray]) -> np.ndarray:
    """``sum(w * log_softmax(part))``: the pooled logits."""
    return np.asarray(sum(w * log_softmax(p) for w, p in zip(weights, parts, strict=True)))


POOL_GRID = tuple(
    (1.0, r, p) for r in (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5) for p in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
)  # (GRU, regression, phrase) weights; only their ratios matter to the label, a temperature sets the scale
SAMPLE_TRANSCRIPTS = Path(__file__).with_name("sample_transcripts.json")


def rank_pool_weights(
    parts: Sequence[np.ndarray], y: np.ndarray, rows: Sequence[np.ndarray]
) -> list[tuple[float, float, float]]:
    """``POOL_GRID`` from the best to the worst mean macro-F1 over the folds ``rows`` of ``pool``."""
    from sklearn.metrics import f1_score

    def score(w: tuple[float, float, float]) -> float:
        z = pool(w, parts)
        return float(np.mean([f1_score(y[r], z[r].argmax(1), average="macro") for r in rows]))

    scores = {w: score(w) for w in POOL_GRID}
    return sorted(POOL_GRID, key=lambda w: -scores[w])


def cross_fitted_pool(parts: Sequence[np.ndarray], y: np.ndarray, rows: Sequence[np.ndarray]) -> np.ndarray:
    """Pooled out-of-fold logits: each fold's rows pooled with the weights that score best on the other
    folds' rows."""
    out = np.zeros_like(parts[0], dtype=np.float64)
    for k, val in enumerate(rows):
        others = [r for j, r in enumerate(rows) if j != k]
        w = rank_pool_weights(parts, y, others)[0]
        out[val] = pool(w, [p[val] for p in parts])
    return out


def sample_parts(classifier: EmotionClassifier) -> dict[str, tuple[list[str], list[str]]]:
    """For each sample video's real STT transcript (``SAMPLE_TRANSCRIPTS``: the demo and the storm):
    the script's parts (runs of one emotion) and the timeline's emotion at the middle of each, the
    transcript scored in context and planned with the default options and the video's scene cuts."""
    import json

    from moodbgm.emotion import classify_transcript
    from moodbgm.timeline import plan_timeline
    from moodbgm.types import Phrase, Transcript

    out = {}
    for name, sample in json.loads(SAMPLE_TRANSCRIPTS.read_text())["samples"].items():
        phrases = tuple(Phrase(p["start"], p["end"], p["text"]) for p in sample["phrases"])
        result = classify_transcript(classifier, Transcript(sample["language"], phrases))
        timeline = plan_timeline(phrases, result.scores, sample["duration"], sample["cuts"])
        parts: list[tuple[str, float, float]] = []
        for line in sample["script"]:
            if parts and parts[-1][0] == line["emotion"]:
                parts[-1] = (parts[-1][0], parts[-1][1], line["end"])
            else:
                parts.append((line["emotion"], line["start"], line["end"]))
        got = [
            next(s.emotion for s in timeline.sections if s.start <= (a + b) / 2 <= s.end) for _, a, b in parts
        ]
        out[name] = ([e for e, _, _ in parts], got)
    return out
