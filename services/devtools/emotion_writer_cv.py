"""Does the phrase head generalise to a writer it never read? Leave-one-writer-out on the train passages.

    .venv/bin/python services/devtools/emotion_writer_cv.py

For each later writer of the train passages (``w5a``… ``w6h``; the first round's hand always stays in
training), a phrase head (logistic regression with the shipped head's C, read from
``emotion_metrics.json``) is fitted on the sentence corpus' train split alone, plus the other writers'
passage sentences that are not ambiguous alone, or plus all their passage sentences, and scored
(macro-F1) on the held-out writer's sentences: all of them and those not ambiguous alone. Only train
passages are read: no calib, test or style passage. They motivated the stacked phrase head tried in
commit eca1480 and reverted (docs/emotion-history.md).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "services"))

from devtools.emotion_eval import writer_of  # noqa: E402
from devtools.train_emotion import DATA, CachedEncoder, load_corpus, load_passages  # noqa: E402
from moodbgm.types import EMOTIONS  # noqa: E402


def writer(passage_id: str) -> str:
    """``writer_of`` for a train passage: the first round's ids carry no writer prefix."""
    w = writer_of(passage_id)
    return w if re.fullmatch(r"w\d[a-z]", w) else "first round"


def main() -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    texts, y, test = load_corpus(DATA / "emotion_corpus.jsonl")
    encoder = CachedEncoder(ROOT / ".cache" / "emotion-embeddings.npz")
    x = encoder.encode(texts)[~test]
    y = y[~test]
    rows = [
        (writer(p.id), t, EMOTIONS.index(label), "ambiguous" in tags)
        for p in load_passages(DATA / "emotion_passages.txt")
        if p.split == "train"
        for t, label, tags in zip(p.texts, p.labels, p.tags, strict=True)
    ]
    who = np.array([r[0] for r in rows])
    px, py = encoder.encode([r[1] for r in rows]), np.array([r[2] for r in rows])
    clear = ~np.array([r[3] for r in rows])
    c = json.loads((DATA / "emotion_metrics.json").read_text(encoding="utf-8"))["phrase_head"]["C"]
    variants = {  # the other writers' passage sentences each variant adds to the corpus
        "corpus only": np.zeros_like(clear),
        "corpus + clear passage sentences": clear,
        "corpus + all passage sentences": np.ones_like(clear),
    }
    scores: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for w in sorted(set(who) - {"first round"}):
        out = who == w
        for variant, adds in variants.items():
            extra = ~out & adds
            model = LogisticRegression(C=c, max_iter=5000, random_state=0)
            model.fit(np.vstack([x, px[extra]]), np.concatenate([y, py[extra]]))
            pred = model.predict(px[out])
            scores[variant].append(
                (
                    float(f1_score(py[out], pred, average="macro")),
                    float(f1_score(py[out & clear], pred[clear[out]], average="macro")),
                )
            )
        print(w, {v: tuple(round(s, 3) for s in scores[v][-1]) for v in variants}, flush=True)
    for variant, s in scores.items():
        a = np.array(s)
        mean_all, mean_clear = a.mean(axis=0)
        print(f"{variant}: mean over {len(a)} held-out writers, all {mean_all:.3f}, clear {mean_clear:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
