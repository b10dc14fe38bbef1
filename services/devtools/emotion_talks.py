"""Long talks and the pooled context head, for ``train_emotion.py``.

* ``join_talks``: passages joined in their order into talks of at least ``LONG_TALK`` sentences, as a
  real transcript strings several topics and moods together. The grouped cross-validation scores every
  candidate on its held-out passages both alone and joined so, and the held-out splits are evaluated
  both ways too (the rows come out in the same order either way).
* ``fit_pool_weights`` / ``cross_fitted_pool``: the log-linear pool of the sequence head, the regression
  head and the phrase head (``moodbgm.emotion_sequence.PooledHead``): three non-negative weights
  minimising the negative log-likelihood of out-of-fold logits; scored in cross-validation with weights
  fitted on the other folds' rows only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from devtools.train_emotion import Encoded

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


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return np.asarray(z - np.log(np.exp(z).sum(axis=1, keepdims=True)))


def pool(weights: Sequence[float], parts: Sequence[np.ndarray]) -> np.ndarray:
    """``sum(w * log_softmax(part))``: the pooled logits."""
    return np.asarray(sum(w * log_softmax(p) for w, p in zip(weights, parts, strict=True)))


def fit_pool_weights(parts: Sequence[np.ndarray], y: np.ndarray) -> tuple[float, ...]:
    """Non-negative weights minimising the negative log-likelihood of ``y`` under ``pool``."""
    from scipy.optimize import minimize

    def nll(w: np.ndarray) -> float:
        return float(-log_softmax(pool(w, parts))[np.arange(len(y)), y].mean())

    start = np.full(len(parts), 1.0 / len(parts))
    res = minimize(nll, start, method="L-BFGS-B", bounds=[(0.0, 10.0)] * len(parts))
    return tuple(round(float(w), 4) for w in res.x)


def cross_fitted_pool(parts: Sequence[np.ndarray], y: np.ndarray, rows: Sequence[np.ndarray]) -> np.ndarray:
    """Pooled out-of-fold logits: each fold's rows pooled with weights fitted on the other folds'."""
    out = np.zeros_like(parts[0], dtype=np.float64)
    for val in rows:
        rest = np.setdiff1d(np.arange(len(y)), val)
        w = fit_pool_weights([p[rest] for p in parts], y[rest])
        out[val] = pool(w, [p[val] for p in parts])
    return out
