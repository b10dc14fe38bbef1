"""Train the embedded emotion head from the hand-written corpus, reproducibly.

    .venv/bin/python services/devtools/train_emotion.py            # writes head + metrics
    .venv/bin/python services/devtools/train_emotion.py --check    # only validate the corpus

Reads ``services/moodbgm/data/emotion_corpus.jsonl`` ({"text", "label", "split"}), checks it (labels,
3-30 words, >= 250 lines per label, a stratified held-out split of >= 20%, no exact or near duplicates:
MiniLM cosine > 0.95), embeds it with the shipped all-MiniLM-L6-v2 encoder, picks the inverse
regularisation C of a multinomial logistic regression by 5-fold stratified cross-validation on the
training split only (fixed seed), fits on the whole training split and evaluates once on the held-out
split. Writes ``data/emotion_head.npz`` (numpy weights read by ``moodbgm.emotion.LinearHead``) and
``data/emotion_metrics.json``; prints held-out macro-F1 and per-class F1.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "services"))

from moodbgm.emotion import ENCODER_NAME, LinearHead, SentenceEncoder  # noqa: E402
from moodbgm.files import write_json  # noqa: E402
from moodbgm.types import EMOTIONS  # noqa: E402

DATA = ROOT / "services" / "moodbgm" / "data"
SEED = 0
C_GRID = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
NEAR_DUPLICATE = 0.95
MIN_PER_LABEL = 250
MIN_TEST_FRACTION = 0.20

log = logging.getLogger("train_emotion")


def load_corpus(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Texts, label indices, and a boolean "is held-out" mask."""
    texts, labels, test = [], [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row["label"] not in EMOTIONS or row["split"] not in ("train", "test"):
            raise SystemExit(f"{path}:{n}: bad label or split in {row}")
        texts.append(str(row["text"]))
        labels.append(EMOTIONS.index(row["label"]))
        test.append(row["split"] == "test")
    return texts, np.asarray(labels), np.asarray(test)


def check_corpus(texts: list[str], y: np.ndarray, test: np.ndarray, emb: np.ndarray) -> list[str]:
    """Everything wrong with the corpus (empty when it is fine)."""
    problems = []
    for t in texts:
        if not 3 <= len(t.split()) <= 30:
            problems.append(f"not 3-30 words: {t!r}")
    norm = Counter(re.sub(r"\W+", " ", t.lower()).strip() for t in texts)
    problems += [f"duplicate: {t!r}" for t, c in norm.items() if c > 1]
    for k, name in enumerate(EMOTIONS):
        n, n_test = int((y == k).sum()), int(((y == k) & test).sum())
        if n < MIN_PER_LABEL:
            problems.append(f"{name}: {n} lines, need >= {MIN_PER_LABEL}")
        if n and n_test / n < MIN_TEST_FRACTION:
            problems.append(f"{name}: held-out fraction {n_test / n:.2f} < {MIN_TEST_FRACTION}")
    sim = emb @ emb.T
    np.fill_diagonal(sim, 0.0)
    for i, j in zip(*np.nonzero(np.triu(sim) > NEAR_DUPLICATE), strict=True):
        problems.append(f"near duplicates ({sim[i, j]:.3f}): {texts[i]!r} / {texts[j]!r}")
    log.info("max pairwise cosine in the corpus: %.3f", float(sim.max()))
    return problems


def train(x: np.ndarray, y: np.ndarray) -> tuple[LinearHead, float, dict[str, float]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
    cv = {}
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=5000, random_state=SEED)
        cv[str(c)] = float(cross_val_score(model, x, y, cv=folds, scoring="f1_macro").mean())
        log.info("C=%-5s cross-validated macro-F1 %.4f", c, cv[str(c)])
    best = max(C_GRID, key=lambda c: cv[str(c)])
    model = LogisticRegression(C=best, max_iter=5000, random_state=SEED).fit(x, y)
    if list(model.classes_) != list(range(len(EMOTIONS))):
        raise SystemExit("every label must occur in the training split")
    head = LinearHead(model.coef_.T.astype(np.float64), model.intercept_.astype(np.float64))
    return head, best, cv


def evaluate(head: LinearHead, x: np.ndarray, y: np.ndarray) -> dict[str, object]:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    pred = head.predict_proba(x).argmax(axis=1)
    per_class = f1_score(y, pred, labels=range(len(EMOTIONS)), average=None)
    return {
        "macro_f1": round(float(f1_score(y, pred, average="macro")), 4),
        "accuracy": round(float(accuracy_score(y, pred)), 4),
        "per_class_f1": {e: round(float(f), 4) for e, f in zip(EMOTIONS, per_class, strict=True)},
        "confusion": confusion_matrix(y, pred, labels=range(len(EMOTIONS))).tolist(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DATA / "emotion_corpus.jsonl")
    ap.add_argument("--head", type=Path, default=DATA / "emotion_head.npz")
    ap.add_argument("--metrics", type=Path, default=DATA / "emotion_metrics.json")
    ap.add_argument("--check", action="store_true", help="validate the corpus, train nothing")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    texts, y, test = load_corpus(args.corpus)
    emb = SentenceEncoder().encode(texts)
    problems = check_corpus(texts, y, test, emb)
    for p in problems:
        log.error("corpus: %s", p)
    if problems:
        return 1
    log.info("corpus OK: %d lines, %d held out", len(texts), int(test.sum()))
    if args.check:
        return 0

    head, best_c, cv = train(emb[~test], y[~test])
    metrics = evaluate(head, emb[test], y[test])
    metrics.update(
        encoder=ENCODER_NAME,
        head="multinomial logistic regression",
        C=best_c,
        cv_macro_f1=cv,
        seed=SEED,
        n_train=int((~test).sum()),
        n_test=int(test.sum()),
        corpus=str(args.corpus.relative_to(ROOT)) if args.corpus.is_relative_to(ROOT) else str(args.corpus),
    )
    head.save(args.head, C=np.float64(best_c), seed=np.int64(SEED))
    write_json(args.metrics, metrics)
    print(f"held-out macro-F1: {metrics['macro_f1']:.4f}  (accuracy {metrics['accuracy']:.4f}, C={best_c})")
    for name, f in metrics["per_class_f1"].items():  # type: ignore[attr-defined]
        print(f"  {name:<9} F1 {f:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
