"""The phrase head fitted on the sentence corpus and the passages' sentences, cross-fitted, for
``train_emotion.py``.

The context heads read the phrase head's log-probabilities. Fitting the phrase head on the same passages
the context heads are fitted on would hand them log-probabilities far more certain than any transcript's,
so ``stack`` gives every fitting passage log-probabilities from a phrase head that never read it (K-fold
by passage: *cross-fitting*), fits the temperature on those out-of-fold logits, and returns the head fitted
on everything, for the passages nobody fitted on (held-out splits, real transcripts).

``train_emotion.choose_context`` calls ``stack`` inside each of its own folds (nested), so a validation
fold's passages never inform the log-probabilities the fold's context heads are fitted on.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from moodbgm.emotion import LinearHead
from moodbgm.types import EMOTIONS

if TYPE_CHECKING:
    from devtools.train_emotion import Encoded

SEED = 0
FOLDS = 5
C_GRID = (1.0, 2.0, 4.0)


@dataclass(frozen=True)
class Corpus:
    """The sentence corpus' train split, embedded: rows every phrase head is fitted on."""

    x: np.ndarray
    y: np.ndarray


def fit_linear(x: np.ndarray, y: np.ndarray, c: float) -> LinearHead:
    """Multinomial logistic regression on the sentence embedding, as a ``LinearHead`` (temperature 1)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=5000, random_state=SEED).fit(x, y)
    if list(model.classes_) != list(range(len(EMOTIONS))):
        raise SystemExit("every label must occur in the phrase head's training rows")
    return LinearHead(model.coef_.T.astype(np.float64), model.intercept_.astype(np.float64))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of ``y`` (bounded search in log space)."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(y)), y].mean())

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def rescore(data: Encoded, head: LinearHead) -> Encoded:
    """``data`` with each sentence's log-probabilities from ``head``."""
    from devtools.train_emotion import Encoded

    logp = tuple(np.log(np.clip(head.predict_proba(e), 1e-12, None)) for e in data.emb)
    return Encoded(data.passages, data.emb, logp)


def _fit_on(corpus: Corpus, data: Encoded, c: float) -> LinearHead:
    x = np.vstack([corpus.x, *data.emb]) if data.passages else corpus.x
    return fit_linear(x, np.concatenate([corpus.y, data.y]), c)


def _out_of_fold_logits(corpus: Corpus, data: Encoded, c: float) -> np.ndarray:
    """Every sentence of ``data`` scored by a phrase head fitted on the corpus and the other folds'
    passages (uncalibrated logits, rows in ``data``'s order)."""
    from sklearn.model_selection import KFold

    offsets = np.cumsum([0] + [len(p.texts) for p in data.passages])
    logits = np.zeros((int(offsets[-1]), len(EMOTIONS)))
    folds = KFold(n_splits=FOLDS, shuffle=True, random_state=SEED).split(np.arange(len(data.passages)))
    for fit_idx, val_idx in folds:
        head = _fit_on(corpus, data.subset(fit_idx), c)
        for i in val_idx:
            logits[offsets[i] : offsets[i + 1]] = head.logits(data.emb[i])
    return logits


@dataclass(frozen=True)
class Stacked:
    """``stack``'s result: the phrase head for unseen sentences, and ``data`` with out-of-fold,
    calibrated log-probabilities."""

    head: LinearHead  # fitted on the corpus and all of data's passages; temperature from out-of-fold logits
    c: float  # its regularisation
    data: Encoded
    cv_macro_f1: dict[str, float]  # out-of-fold macro-F1 on data's sentences, for each C tried


def stack(corpus: Corpus, data: Encoded, cs: Sequence[float] = (2.0,)) -> Stacked:
    """The phrase head for ``corpus`` + ``data``'s passages, C the best of ``cs`` by out-of-fold
    macro-F1 on ``data``'s sentences; see the module's docstring."""
    from sklearn.metrics import f1_score

    y = data.y
    oof = {c: _out_of_fold_logits(corpus, data, c) for c in cs}
    cv = {str(c): round(float(f1_score(y, z.argmax(1), average="macro")), 4) for c, z in oof.items()}
    best = max(cs, key=lambda c: cv[str(c)])
    t = fit_temperature(oof[best], y)
    head = replace(_fit_on(corpus, data, best), temperature=t)
    ends = np.cumsum([0] + [len(p.texts) for p in data.passages])
    z = oof[best] / t
    logp = z - z.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    split = tuple(logp[a:b] for a, b in itertools.pairwise(ends))
    return Stacked(head, best, replace(data, logp=split), cv)
