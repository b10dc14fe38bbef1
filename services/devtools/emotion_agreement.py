"""How far the held-out test labels are a matter of opinion: the test passages of
``emotion_passages.txt`` were relabelled blind, each round by two annotators whose labels are appended
to the same two files (``emotion_corpus/annotator_*.txt``; their brief is
``emotion_corpus/brief_annotators.md``), and this compares them with the writers' labels and with the
shipped context model.

    .venv/bin/python services/devtools/emotion_agreement.py            # humans and the model
    .venv/bin/python services/devtools/emotion_agreement.py --no-model # the annotators only (fast)

The annotators were helper agents of the same kind as the writers of the passages, not independent
people: their agreement with each other is an upper bound on what two people would reach.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "services"))

from devtools.emotion_eval import context_logits, writer_of  # noqa: E402
from devtools.train_emotion import DATA, Passage, load_passages  # noqa: E402
from moodbgm.types import EMOTIONS  # noqa: E402

ANNOTATIONS = Path(__file__).resolve().parent / "emotion_corpus"
ANNOTATORS = ("a", "b")


def read_annotation(path: Path, passages: list[Passage]) -> np.ndarray:
    """One annotator's label indices, in the order of ``passages``; ``ValueError`` when the file does not
    hold exactly those passages and sentences."""
    got: list[tuple[str, str, str]] = []  # passage id, label, text
    pid = ""
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("@"):
            pid = line.split()[1]
        elif line.strip():
            m = re.match(r"^([a-z]+):\s*(\S.*)$", line)
            if m is None or m[1] not in EMOTIONS:
                raise ValueError(f"{path}:{n}: expected 'LABEL: TEXT' with one of {EMOTIONS}: {line!r}")
            got.append((pid, m[1], m[2]))
    want = [(p.id, t) for p in passages for t in p.texts]
    if [(i, t) for i, _, t in got] != want:
        raise ValueError(f"{path}: its passages or sentences differ from the test split; relabel them")
    return np.array([EMOTIONS.index(label) for _, label, _ in got])


def agreement(gold: np.ndarray, other: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import cohen_kappa_score, f1_score

    return {
        "macro_f1": round(float(f1_score(gold, other, average="macro")), 3),
        "kappa": round(float(cohen_kappa_score(gold, other)), 3),
        "accuracy": round(float((gold == other).mean()), 3),
    }


def table(passages: list[Passage], labels: dict[str, np.ndarray]) -> dict[str, dict[str, dict[str, float]]]:
    """For all test passages, the first round's (writer ``t``) and the later writers': each labeller
    against the writers' labels, and the annotators against each other."""
    gold = np.array([EMOTIONS.index(label) for p in passages for label in p.labels])
    first = np.array([writer_of(p.id) == "t" for p in passages for _ in p.texts])
    out = {}
    for name, rows in (("all", np.ones_like(first)), ("first round", first), ("later writers", ~first)):
        row = {who: agreement(gold[rows], lab[rows]) for who, lab in labels.items()}
        row["a vs b"] = agreement(labels["a"][rows], labels["b"][rows])
        out[f"{name} ({int(rows.sum())} sentences)"] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-model", action="store_true", help="compare the annotators only")
    args = ap.parse_args(argv)
    passages = [p for p in load_passages(DATA / "emotion_passages.txt") if p.split == "test"]
    labels = {who: read_annotation(ANNOTATIONS / f"annotator_{who}.txt", passages) for who in ANNOTATORS}
    if not args.no_model:
        from devtools.train_emotion import CachedEncoder, encode_passages, shipped_context
        from moodbgm.emotion import LinearHead

        encoder = CachedEncoder(ROOT / ".cache" / "emotion-embeddings.npz")
        data = encode_passages(encoder, LinearHead.load(DATA / "emotion_head.npz"), passages)
        labels["model"] = context_logits(shipped_context(), data).argmax(1)
    for group, row in table(passages, labels).items():
        print(group)
        for who, a in row.items():
            name = who if who == "a vs b" else f"{who} vs writers"
            scores = f"macro-F1 {a['macro_f1']:.3f}  kappa {a['kappa']:.3f}  accuracy {a['accuracy']:.3f}"
            print(f"  {name:>16}  {scores}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
