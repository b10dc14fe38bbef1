"""Evaluation of the emotion heads on the held-out passages, for ``train_emotion.py``.

``evaluate`` reads the test and out-of-style passages with the phrase head alone and with the context
head in context: each passage alone, joined in file order into talks of ``LONG_TALK`` sentences, and
as one talk per split. It reports macro-F1 and accuracy on all sentences and on those marked "ambiguous
alone", expected calibration error (``ECE_BINS`` equal-width bins, top label) with its reliability table,
greetings/small talk read as neutral or joy, the accuracy of decisive phrases above each confidence
threshold, 95 % intervals of macro-F1 and ECE over passages drawn with replacement (``bootstrap``), and
the same scores for each writer's passages (``writer_of``) and each round's (``round_of``). When the
in-context reading is the blend, its context head is also read alone, with the interval of the blend's
gain over it on the same resampled passages (``paired_gain``). It draws the reliability diagram.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from devtools.emotion_talks import LONG_TALK, join_talks
from moodbgm.emotion_encoder import ContextBlend
from moodbgm.types import EMOTIONS

if TYPE_CHECKING:
    from devtools.train_emotion import Encoded
    from moodbgm.emotion import ContextHead
    from moodbgm.emotion_sequence import PooledHead, SequenceHead

ECE_BINS = 10
THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)
HELD_OUT = ("test", "style")
BOOTSTRAP_DRAWS = 2000


def softmax_t(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits / temperature
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def context_logits(head: ContextHead | SequenceHead | PooledHead | ContextBlend, data: Encoded) -> np.ndarray:
    if isinstance(head, ContextBlend):  # it reads the texts too
        rows = zip(data.emb, data.logp, data.passages, strict=True)
        return np.vstack([head.logits(e, lp, p.texts) for e, lp, p in rows])
    return np.vstack([head.logits(e, lp) for e, lp in zip(data.emb, data.logp, strict=True)])


def ece(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> tuple[float, list[dict[str, float]]]:
    """Expected calibration error of the top label, and the reliability table behind it."""
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    table, total = [], 0.0
    for lo, hi in itertools.pairwise(edges):
        inside = (conf > lo) & (conf <= hi)
        if not inside.any():
            continue
        acc, mean_conf = float((pred[inside] == y[inside]).mean()), float(conf[inside].mean())
        total += inside.mean() * abs(acc - mean_conf)
        table.append(
            {
                "lo": float(lo),
                "hi": float(hi),
                "n": int(inside.sum()),
                "accuracy": acc,
                "confidence": mean_conf,
            }
        )
    return float(total), table


def scores(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score

    per_class = f1_score(y, pred, labels=range(len(EMOTIONS)), average=None, zero_division=0)
    return {
        "n": len(y),
        "macro_f1": round(
            float(f1_score(y, pred, labels=range(len(EMOTIONS)), average="macro", zero_division=0)), 4
        ),
        "accuracy": round(float(accuracy_score(y, pred)), 4),
        "per_class_f1": {e: round(float(f), 4) for e, f in zip(EMOTIONS, per_class, strict=True)},
    }


def confusion(y: np.ndarray, pred: np.ndarray) -> dict[str, dict[str, int]]:
    """Counts of each true label (outer key) read as each label (inner key), ``EMOTIONS`` order."""
    from sklearn.metrics import confusion_matrix

    counts = confusion_matrix(y, pred, labels=range(len(EMOTIONS)))
    rows = zip(EMOTIONS, counts, strict=True)
    return {t: dict(zip(EMOTIONS, map(int, row), strict=True)) for t, row in rows}


def evaluate_split(phrase: np.ndarray, context: np.ndarray, data: Encoded) -> dict[str, Any]:
    """Both heads on one split: all sentences, the ambiguous ones, tagged groups, calibration."""
    y = data.y
    tags = [t for p in data.passages for t in p.tags]
    ambiguous = np.array(["ambiguous" in t for t in tags])
    with_ambiguous = np.array([any("ambiguous" in t for t in p.tags) for p in data.passages for _ in p.texts])
    out: dict[str, Any] = {"passages": len(data.passages)}
    for name, probs in (("phrase", phrase), ("context", context)):
        pred = probs.argmax(1)
        greeting = np.array(["greeting" in t for t in tags])
        ok_greeting = np.isin(pred[greeting], [EMOTIONS.index("joy"), EMOTIONS.index("neutral")])
        e, table = ece(probs, y)
        out[name] = {
            "all": scores(y, pred),
            "ambiguous_sentences": scores(y[ambiguous], pred[ambiguous]),
            "passages_with_ambiguous_sentences": scores(y[with_ambiguous], pred[with_ambiguous]),
            "greeting_neutral_or_joy": round(float(ok_greeting.mean()), 4),
            "greetings": int(greeting.sum()),
            **{
                f"{tag}_accuracy": round(float((pred[m] == y[m]).mean()), 4)
                for tag in ("negation", "sarcasm")
                if (m := np.array([tag in t for t in tags])).any()
            },
            "ece": round(e, 4),
            "reliability": table,
            "confusion": {  # where the errors are: all sentences, and those not ambiguous alone
                "all": confusion(y, pred),
                "not_ambiguous": confusion(y[~ambiguous], pred[~ambiguous]),
            },
        }
    return out


def threshold_table(probs: np.ndarray, y: np.ndarray) -> list[dict[str, float]]:
    """For each confidence threshold: the share of non-neutral predictions above it and their accuracy."""
    conf, pred = probs.max(1), probs.argmax(1)
    emotional = pred != EMOTIONS.index("neutral")
    rows = []
    for t in THRESHOLDS:
        decisive = emotional & (conf >= t)
        rows.append(
            {
                "threshold": t,
                "decisive_share": round(float(decisive.mean()), 4),
                "decisive_accuracy": round(float((pred[decisive] == y[decisive]).mean()), 4)
                if decisive.any()
                else 0.0,
            }
        )
    return rows


def reliability_diagram(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 4.2), squeeze=False)
    for ax, (title, (probs, y)) in zip(axes[0], curves.items(), strict=True):
        e, table = ece(probs, y)
        mids = [(r["lo"] + r["hi"]) / 2 for r in table]
        ax.bar(
            mids,
            [r["accuracy"] for r in table],
            width=1 / ECE_BINS,
            edgecolor="black",
            alpha=0.7,
            label="accuracy",
        )
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ax.plot(
            [r["confidence"] for r in table],
            [r["accuracy"] for r in table],
            "o-",
            color="crimson",
            label="bins",
        )
        for r, m in zip(table, mids, strict=True):
            ax.text(m, 0.02, str(r["n"]), ha="center", fontsize=7)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top label)", ylabel="accuracy")
        ax.set_title(f"{title}\nECE {e:.3f}, n={len(y)}", fontsize=9)
        ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def writer_of(passage_id: str) -> str:
    """Who wrote a held-out passage: its id up to the first ``-`` (``t`` and ``s`` for the first
    round's test and out-of-style passages, ``t2a`` to ``t2d`` for four later writers)."""
    return passage_id.split("-", 1)[0]


def round_of(passage_id: str) -> str:
    """The round a held-out passage belongs to: its writer without the letter that tells the round's
    writers apart (``t2a`` and ``t2d`` wrote round ``t2``; ``t`` and ``s`` are rounds of their own)."""
    writer = writer_of(passage_id)
    return writer.rstrip(string.ascii_lowercase) or writer


def _rows(data: Encoded) -> list[np.ndarray]:
    ends = np.cumsum([0] + [len(p.texts) for p in data.passages])
    return [np.arange(a, b) for a, b in itertools.pairwise(ends)]


def _resamples(data: Encoded, draws: int) -> Iterator[np.ndarray]:
    """The sentence rows of ``draws`` resamples of whole passages with replacement (seed 0)."""
    rows, rng = _rows(data), np.random.default_rng(0)
    for _ in range(draws):
        yield np.concatenate([rows[i] for i in rng.integers(0, len(rows), len(rows))])


def bootstrap(probs: np.ndarray, data: Encoded, draws: int = BOOTSTRAP_DRAWS) -> dict[str, list[float]]:
    """95 % intervals of macro-F1 and ECE over ``draws`` resamples of whole passages with replacement
    (seed 0): how much the numbers owe to which passages happened to be held out."""
    from sklearn.metrics import f1_score

    y, f1s, eces = data.y, [], []
    for r in _resamples(data, draws):
        f1s.append(f1_score(y[r], probs[r].argmax(1), average="macro"))
        eces.append(ece(probs[r], y[r])[0])
    return {
        "macro_f1": [round(float(q), 4) for q in np.percentile(f1s, (2.5, 97.5))],
        "ece": [round(float(q), 4) for q in np.percentile(eces, (2.5, 97.5))],
    }


def paired_gain(
    probs: np.ndarray, baseline: np.ndarray, data: Encoded, draws: int = BOOTSTRAP_DRAWS
) -> list[float]:
    """95 % interval of macro-F1 of ``probs`` minus that of ``baseline``, both read on the same
    ``draws`` resamples of whole passages (seed 0): whether a gain is more than which passages were
    held out."""
    from sklearn.metrics import f1_score

    y, gains = data.y, []
    for r in _resamples(data, draws):
        gains.append(
            f1_score(y[r], probs[r].argmax(1), average="macro")
            - f1_score(y[r], baseline[r].argmax(1), average="macro")
        )
    return [round(float(q), 4) for q in np.percentile(gains, (2.5, 97.5))]


def _groups(data: Encoded, key: Callable[[str], str]) -> dict[str, tuple[int, np.ndarray]]:
    """The passages grouped by ``key`` of their ids, in file order: each group's count and sentence rows."""
    rows = _rows(data)
    out: dict[str, tuple[int, np.ndarray]] = {}
    for name in dict.fromkeys(key(p.id) for p in data.passages):
        mine = [i for i, p in enumerate(data.passages) if key(p.id) == name]
        out[name] = (len(mine), np.concatenate([rows[i] for i in mine]))
    return out


def by_writer(phrase: np.ndarray, context: np.ndarray, data: Encoded) -> dict[str, dict[str, Any]]:
    """Macro-F1 alone and in context, and the context head's ECE, on each writer's passages."""
    y = data.y
    return {
        writer: {
            "passages": n,
            "phrase_macro_f1": scores(y[r], phrase[r].argmax(1))["macro_f1"],
            "context": scores(y[r], context[r].argmax(1)),
            "ece": round(ece(context[r], y[r])[0], 4),
        }
        for writer, (n, r) in sorted(_groups(data, writer_of).items())
    }


def by_round(
    phrase: np.ndarray, context: np.ndarray, data: Encoded, head_alone: np.ndarray | None = None
) -> dict[str, dict[str, Any]]:
    """Each round's passages (``round_of``, in file order): macro-F1 alone and in context, on all their
    sentences and on those ambiguous alone, and the ECE in context (the README's table, row by row);
    with ``head_alone`` (the blend's context head read alone), its macro-F1 too."""
    y = data.y
    ambiguous = np.array(["ambiguous" in t for p in data.passages for t in p.tags])
    readings = {"phrase": phrase, "context": context}
    with_head = readings if head_alone is None else {**readings, "context_head_alone": head_alone}

    def f1(r: np.ndarray, readings: dict[str, np.ndarray]) -> dict[str, float]:
        return {k: scores(y[r], v[r].argmax(1))["macro_f1"] for k, v in readings.items()}

    out = {}
    for name, (n, r) in _groups(data, round_of).items():
        a = r[ambiguous[r]]
        out[name] = {
            "passages": n,
            "sentences": len(r),
            "macro_f1": f1(r, with_head),
            "ambiguous_sentences": len(a),
            "ambiguous_macro_f1": f1(a, readings) if len(a) else None,
            "ece": round(ece(context[r], y[r])[0], 4),
        }
    return out


def evaluate(
    context: ContextHead | SequenceHead | PooledHead | ContextBlend, enc: dict[str, Encoded], diagram: Path
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Every held-out number for ``emotion_metrics.json`` (``evaluation``) and the test passages'
    threshold table; draws the reliability diagram at ``diagram``. ``enc`` holds the passages of each
    split scored by the phrase head (its calibrated log-probabilities)."""

    def probs_of(data: Encoded) -> tuple[np.ndarray, np.ndarray]:
        return np.exp(np.vstack(data.logp)), softmax_t(context_logits(context, data), context.temperature)

    def head_alone(data: Encoded) -> np.ndarray | None:
        if not isinstance(context, ContextBlend):
            return None
        head = context.context  # calibrated by its own temperature
        return np.vstack([head.predict_proba(e, lp) for e, lp in zip(data.emb, data.logp, strict=True)])

    probs = {s: probs_of(enc[s]) for s in HELD_OUT}
    evaluation = {s: evaluate_split(*probs[s], enc[s]) for s in HELD_OUT}
    for s in HELD_OUT:
        evaluation[s]["bootstrap_95"] = bootstrap(probs[s][1], enc[s])
        evaluation[s]["by_writer"] = by_writer(*probs[s], enc[s])
        alone = head_alone(enc[s])
        evaluation[s]["by_round"] = by_round(*probs[s], enc[s], alone)
        if alone is not None:
            evaluation[s]["context_head_alone"] = {
                **scores(enc[s].y, alone.argmax(1)),
                "ece": round(ece(alone, enc[s].y)[0], 4),
                "paired_gain_95": paired_gain(probs[s][1], alone, enc[s]),
            }
        for key, size in (("long_talks", LONG_TALK), ("one_talk", 10**9)):
            talks = join_talks(enc[s], size)
            ctx = probs_of(talks)[1]
            evaluation[s][key] = {
                "talks": len(talks.passages),
                "sentences": [len(p.texts) for p in talks.passages],
                "context": scores(talks.y, ctx.argmax(1)),
                "ece": round(ece(ctx, talks.y)[0], 4),
            }
    reading = "blend" if isinstance(context, ContextBlend) else "context head"
    reliability_diagram(
        diagram,
        {
            "phrase head, test passages": (probs["test"][0], enc["test"].y),
            f"{reading}, test passages": (probs["test"][1], enc["test"].y),
            f"{reading}, out-of-style": (probs["style"][1], enc["style"].y),
        },
    )
    return evaluation, threshold_table(probs["test"][1], enc["test"].y)


def report(evaluation: dict[str, Any]) -> None:
    """The headline numbers, printed."""
    for s in HELD_OUT:
        ph, cx = evaluation[s]["phrase"], evaluation[s]["context"]
        print(f"{s}: phrase alone -> in context")
        print(f"  macro-F1 {ph['all']['macro_f1']:.3f} -> {cx['all']['macro_f1']:.3f}")
        amb = "ambiguous_sentences"
        print(f"  ambiguous sentences macro-F1 {ph[amb]['macro_f1']:.3f} -> {cx[amb]['macro_f1']:.3f}")
        print(f"  ECE {ph['ece']:.3f} -> {cx['ece']:.3f}")
        g = "greeting_neutral_or_joy"
        print(f"  greetings neutral or joy {ph[g]:.2f} -> {cx[g]:.2f}")
        for key in ("long_talks", "one_talk"):
            lt = evaluation[s][key]
            print(f"  {key} {lt['sentences']}: macro-F1 {lt['context']['macro_f1']:.3f}, ECE {lt['ece']:.3f}")
        b = evaluation[s]["bootstrap_95"]
        print(f"  95 % over passages: macro-F1 {b['macro_f1']}, ECE {b['ece']}")
        if alone := evaluation[s].get("context_head_alone"):
            print(f"  the context head alone: macro-F1 {alone['macro_f1']:.3f}, ECE {alone['ece']:.3f}; "
                  f"the blend's gain over it, 95 % over passages {alone['paired_gain_95']}")  # fmt: skip
        for name, r in evaluation[s]["by_round"].items():
            f, af = r["macro_f1"], r["ambiguous_macro_f1"]
            amb = f"{af['phrase']:.3f} -> {af['context']:.3f}" if af else "-"
            head = f", context head alone {f['context_head_alone']:.3f}" if "context_head_alone" in f else ""
            print(f"  round {name} ({r['passages']} passages, {r['sentences']} sentences): macro-F1 "
                  f"{f['phrase']:.3f} -> {f['context']:.3f}, ambiguous {amb} ({r['ambiguous_sentences']}), "
                  f"ECE {r['ece']:.3f}{head}")  # fmt: skip
        for writer, w in evaluation[s]["by_writer"].items():
            print(f"  writer {writer} ({w['passages']} passages): macro-F1 {w['context']['macro_f1']:.3f}, "
                  f"ECE {w['ece']:.3f}")  # fmt: skip
