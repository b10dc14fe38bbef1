"""Train the embedded emotion model (phrase head + context head), calibrate and evaluate it, reproducibly.

    .venv/bin/python services/devtools/train_emotion.py            # writes heads, metrics, diagram
    .venv/bin/python services/devtools/train_emotion.py --check    # only validate the corpora

Two hand-written corpora in ``services/moodbgm/data/``:

* ``emotion_corpus.jsonl`` ({"text", "label", "split"}): single sentences. The *phrase head* (multinomial
  logistic regression over all-MiniLM-L6-v2 embeddings) is fitted on its train split, C chosen by 5-fold
  stratified cross-validation; its test split is evaluated once.
* ``emotion_passages.txt``: multi-sentence passages with a label per sentence (format in its header),
  split by whole passage into train / calib / test / style (style: held-out passages in transcribed-
  speech style). train + calib are the *fitting* passages. The *context head* is chosen among
  ``CONTEXT_KINDS`` x decay x C (HMM: x stay; the grid is ``CONTEXT_GRID``) and the bidirectional-GRU
  ensemble (``SequenceHead``, fitted by ``train_sequence.py`` on the passages alone and joined into
  long talks; x ``SEQUENCE_DROPOUTS``) and ``POOL`` (the best GRU and regression pooled with the phrase
  head, ``PooledHead``) by 5-fold cross-validation grouped by passage on the fitting passages: the mean
  macro-F1 of the held-out folds read passage by passage and joined into long talks (``join_talks``),
  as real transcripts are. The winner is then fitted on all fitting passages.

Calibration: one temperature for each head, fitted by negative log-likelihood on predictions for
sentences the head never saw: the phrase head's on the fitting passages' sentences, the context head's on
the calib passages, read (alone and joined into long talks) by the chosen head fitted on the train
passages only (``fit_final``); the shipped head is fitted on train + calib. The fitted GRUs are cached
by digest in ``.cache/emotion-gru`` (git-ignored), so a re-run that changes only the choosing or the
calibration takes minutes. Evaluation on the test and style passages: ``emotion_eval.evaluate``
(passages alone, in long talks and as one talk; macro-F1, ECE, greetings, thresholds, passage-bootstrap
intervals, each writer's passages). Writes ``data/emotion_head.npz``, ``data/emotion_context.npz``,
``data/emotion_metrics.json`` and the reliability diagram ``docs/emotion-reliability.png``.

    .venv/bin/python services/devtools/train_emotion.py --evaluate   # the shipped heads, re-measured
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "services"))

from devtools.emotion_eval import (  # noqa: E402
    ECE_BINS,
    HELD_OUT,
    context_logits,
    evaluate,
    report,
    scores,
    softmax_t,
    threshold_table,
)
from devtools.emotion_talks import (  # noqa: E402
    LONG_TALK,
    cross_fitted_pool,
    join_talks,
    pool,
    rank_pool_weights,
    sample_parts,
)
from devtools.train_sequence import fit_sequence_head  # noqa: E402
from moodbgm.emotion import (  # noqa: E402
    ENCODER_NAME,
    ContextHead,
    EmbeddedClassifier,
    LinearHead,
    SentenceEncoder,
    context_features,
    load_context_head,
)
from moodbgm.emotion_encoder import ContextBlend, ContextEncoder, ContextEncoderHead  # noqa: E402
from moodbgm.emotion_sequence import SPAN, PooledHead, SequenceHead  # noqa: E402
from moodbgm.files import write_json  # noqa: E402
from moodbgm.types import EMOTIONS  # noqa: E402

DATA = ROOT / "services" / "moodbgm" / "data"
DIAGRAM = ROOT / "docs" / "emotion-reliability.png"
SEED = 0
C_GRID = (1.0, 2.0, 4.0)
CONTEXT_GRID = {  # kind: (decays, Cs)
    # C 8 and the topic features ("full", decay 0.5, C 4) never beat this in earlier rounds (README).
    "both": ((0.5,), (4.0,)),
}
SEQUENCE_DROPOUTS = (0.5,)  # the bidirectional GRU ensemble (train_sequence.py); 0.3 scored 0.68 vs 0.70
WINDOW = 3
STAYS = (0.5, 0.7)  # the plain HMM over phrase-head probabilities
POOL = "pool gru+regression+phrase"  # the best GRU and regression pooled with the phrase head
NEAR_DUPLICATE = 0.95
MIN_PER_LABEL = 250
MIN_TEST_FRACTION = 0.20
SPLITS = ("train", "calib", "test", "style")
FIT_SPLITS = ("train", "calib")  # the passages the models and temperatures are fitted on
CALIBRATE_ON = "calib"  # the context head's temperature: these passages, unseen (see fit_final)
GRU_CACHE = ROOT / ".cache" / "emotion-gru"  # fitted GRU ensembles by digest (_cached_sequence_head)
TAGS = {"*": "ambiguous", "g": "greeting", "n": "negation", "s": "sarcasm"}

log = logging.getLogger("train_emotion")


# ------------------------------------------------------------------------------------ corpora


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


@dataclass(frozen=True)
class Passage:
    id: str
    kind: str
    split: str
    texts: tuple[str, ...]
    labels: tuple[str, ...]
    tags: tuple[frozenset[str], ...]  # per sentence: subset of TAGS' values


_SENTENCE = re.compile(r"^(?P<label>[a-z]+)(?:/(?P<tags>[*gns]+))?:\s*(?P<text>\S.*)$")


def load_passages(path: Path) -> list[Passage]:
    """Parse ``emotion_passages.txt``; raises ``ValueError`` naming the line of any mistake."""
    passages: list[Passage] = []
    head: list[str] | None = None
    rows: list[tuple[str, str, frozenset[str]]] = []

    def close() -> None:
        if head is not None:
            if not rows:
                raise ValueError(f"{path}: passage {head[0]} has no sentences")
            texts, labels, tags = zip(*rows, strict=True)
            passages.append(Passage(head[0], head[1], head[2], texts, labels, tags))

    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            close()
            head, rows = line[1:].split(), []
            if len(head) != 3 or head[2] not in SPLITS:
                raise ValueError(f"{path}:{n}: expected '@ ID KIND SPLIT' with SPLIT in {SPLITS}: {line!r}")
            continue
        m = _SENTENCE.match(line)
        if m is None or head is None or m["label"] not in EMOTIONS:
            raise ValueError(f"{path}:{n}: expected 'LABEL[/TAGS]: TEXT' inside a passage: {line!r}")
        rows.append((m["text"], m["label"], frozenset(TAGS[t] for t in m["tags"] or "")))
    close()
    ids = Counter(p.id for p in passages)
    if dup := [i for i, c in ids.items() if c > 1]:
        raise ValueError(f"{path}: duplicate passage ids {dup}")
    return passages


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def check_corpus(texts: list[str], y: np.ndarray, test: np.ndarray, emb: np.ndarray) -> list[str]:
    """Everything wrong with the sentence corpus (empty when it is fine)."""
    problems = []
    for t in texts:
        if not 3 <= len(t.split()) <= 30:
            problems.append(f"not 3-30 words: {t!r}")
    norm = Counter(_norm(t) for t in texts)
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


def check_passages(passages: Sequence[Passage], corpus_texts: Sequence[str]) -> list[str]:
    """Every held-out split covers all seven labels; no sentence repeats (nor copies the sentence corpus)."""
    problems = []
    for split in ("test", "style"):
        seen = {label for p in passages if p.split == split for label in p.labels}
        if missing := set(EMOTIONS) - seen:
            problems.append(f"split {split} lacks labels {sorted(missing)}")
    counts = Counter(_norm(t) for p in passages for t in p.texts)
    corpus = {_norm(t) for t in corpus_texts}
    problems += [f"sentence repeated in passages: {t!r}" for t, c in counts.items() if c > 1 and len(t) > 12]
    problems += [f"passage sentence copies the sentence corpus: {t!r}" for t in counts if t in corpus]
    return problems


# ------------------------------------------------------------------------------------ fitting


def train_phrase_head(x: np.ndarray, y: np.ndarray) -> tuple[LinearHead, float, dict[str, float]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
    cv = {}
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=5000, random_state=SEED)
        cv[str(c)] = float(cross_val_score(model, x, y, cv=folds, scoring="f1_macro").mean())
        log.info("phrase head C=%-5s cross-validated macro-F1 %.4f", c, cv[str(c)])
    best = max(C_GRID, key=lambda c: cv[str(c)])
    model = LogisticRegression(C=best, max_iter=5000, random_state=SEED).fit(x, y)
    if list(model.classes_) != list(range(len(EMOTIONS))):
        raise SystemExit("every label must occur in the training split")
    head = LinearHead(model.coef_.T.astype(np.float64), model.intercept_.astype(np.float64))
    return head, best, cv


def fit_temperature(logits: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> float:
    """The temperature minimising the negative log-likelihood of ``y``, each row weighted by ``weight``
    (default equal; bounded search in log space)."""
    from scipy.optimize import minimize_scalar

    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=float)

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-(w * logp[np.arange(len(y)), y]).sum() / w.sum())

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


@dataclass(frozen=True)
class Encoded:
    """The passages of one split, embedded and scored by the phrase head."""

    passages: tuple[Passage, ...]
    emb: tuple[np.ndarray, ...]
    logp: tuple[np.ndarray, ...]  # calibrated phrase-head log-probabilities

    @property
    def y(self) -> np.ndarray:
        return np.array([EMOTIONS.index(label) for p in self.passages for label in p.labels])

    def subset(self, idx: Sequence[int]) -> Encoded:
        return Encoded(
            tuple(self.passages[i] for i in idx),
            tuple(self.emb[i] for i in idx),
            tuple(self.logp[i] for i in idx),
        )


def _prior(data: Encoded) -> np.ndarray:
    prior = np.bincount(data.y, minlength=len(EMOTIONS)) + 1.0
    return np.asarray(prior / prior.sum())


def _fit_context(data: Encoded, kind: str, decay: float, c_or_stay: float) -> ContextHead | SequenceHead:
    from sklearn.linear_model import LogisticRegression

    if kind == "gru":
        return _cached_sequence_head(data, c_or_stay)
    if kind == "hmm":
        return ContextHead("hmm", np.zeros((0, len(EMOTIONS))), _prior(data), stay=c_or_stay)
    x = np.vstack(
        [context_features(e, lp, kind, decay, WINDOW) for e, lp in zip(data.emb, data.logp, strict=True)]
    )
    model = LogisticRegression(C=c_or_stay, max_iter=5000, random_state=SEED).fit(x, data.y)
    if list(model.classes_) != list(range(len(EMOTIONS))):
        raise SystemExit("every label must occur in the train passages")
    return ContextHead(
        kind,
        model.coef_.T.astype(np.float64),
        model.intercept_.astype(np.float64),
        decay,
        WINDOW,
        prior=_prior(data),
    )


def _cached_sequence_head(data: Encoded, dropout: float) -> SequenceHead:
    """``fit_sequence_head`` on ``data``, kept in ``GRU_CACHE`` under a digest of its inputs, the dropout
    and the source of ``train_sequence.py`` (its hyper-parameters included): the GRUs are most of the
    training time, and a re-run that changes only the choosing or the calibration refits none of them."""
    import hashlib

    from devtools import train_sequence

    digest = hashlib.sha256(Path(train_sequence.__file__).read_bytes())
    for e, lp in zip(data.emb, data.logp, strict=True):
        digest.update(np.ascontiguousarray(e, np.float32).tobytes())
        digest.update(np.ascontiguousarray(lp, np.float32).tobytes())
    digest.update(data.y.astype(np.int64).tobytes() + repr(dropout).encode())
    path = GRU_CACHE / f"{digest.hexdigest()[:32]}.npz"
    if path.is_file():
        return SequenceHead.load(path)
    head = fit_sequence_head(data.emb, data.logp, data.y, dropout=dropout)
    path.parent.mkdir(parents=True, exist_ok=True)
    head.save(path)
    return head


def _pool_members(heads: Sequence[Any], choice: Choice) -> tuple[SequenceHead, ContextHead]:
    sequence, regression = heads
    if not (isinstance(sequence, SequenceHead) and isinstance(regression, ContextHead)):
        raise SystemExit(f"the pool needs a GRU and a regression, got {choice.members}")
    return sequence, regression


def samples_classifier(
    encoder: CachedEncoder, phrase: LinearHead, head: PooledHead, through: ContextEncoder | None
) -> EmbeddedClassifier:
    """The reading whose timeline the sample constraint checks: the pool alone, or ``through`` the given
    context encoder at its blend (``--samples-through-blend``, ``protocol_t8b.md``: the reading that
    ships)."""
    context = head if through is None else ContextBlend(head, through)
    return EmbeddedClassifier(encoder.sentence_encoder(), phrase, context)


def fit_final(
    fit: Encoded,
    choice: Choice,
    encoder: CachedEncoder,
    phrase: LinearHead,
    through: ContextEncoder | None = None,
) -> tuple[ContextHead | SequenceHead | PooledHead, dict[str, Any]]:
    """The chosen head fitted on all the fitting passages, and a record of the choice. Its temperature is
    fitted on the ``CALIBRATE_ON`` passages read by the same head fitted without them (both readings:
    passages alone and joined into long talks): a model of nearly the final one's strength on passages it
    never saw. A pool takes the best-ranked weights that keep every part of the demo and storm samples'
    transcripts (``sample_parts``) in the timeline, read by the pool alone or ``through`` a context
    encoder (``samples_classifier``)."""
    heads = [_fit_context(fit, *m) for m in choice.members]
    calib_idx = [i for i, p in enumerate(fit.passages) if p.split == CALIBRATE_ON]
    without = fit.subset([i for i, p in enumerate(fit.passages) if p.split != CALIBRATE_ON])
    probe = [_fit_context(without, *m) for m in choice.members]
    readings = (fit.subset(calib_idx), join_talks(fit.subset(calib_idx)))
    y2 = np.concatenate([r.y for r in readings])
    record: dict[str, Any] = {
        "tried": [],
        "temperature_fitted_on": f"{CALIBRATE_ON} passages, unseen",
        "samples_read": "the pool alone"
        if through is None
        else f"the pool blended with the context encoder at {list(through.head.blend)}",
    }
    if not choice.pool_ranking:
        t = fit_temperature(np.vstack([context_logits(probe[0], r) for r in readings]), y2)
        return dataclasses.replace(heads[0], temperature=t), {**record, "temperature": t}
    sequence, regression = _pool_members(heads, choice)
    probe_sequence, probe_regression = _pool_members(probe, choice)
    for rank, w in enumerate(choice.pool_ranking):
        unseen = PooledHead(probe_sequence, probe_regression, w)
        t = fit_temperature(np.vstack([context_logits(unseen, r) for r in readings]), y2)
        head = PooledHead(sequence, regression, w, t)
        parts = sample_parts(samples_classifier(encoder, phrase, head, through))
        ok = all(want == got for want, got in parts.values())
        record["tried"].append({"weights": w, "rank": rank, "samples_keep_every_part": ok, "samples": parts})
        log.info("pool weights %s (rank %d), temperature %.3f: samples %s", w, rank, t, parts)
        if ok:
            return head, {**record, "weights": w, "temperature": t}
    raise SystemExit("no pool weights keep every part of the sample transcripts; see the log")


def _candidates() -> list[tuple[str, float, float]]:
    lr = [(k, d, c) for k, (decays, cs) in CONTEXT_GRID.items() for d in decays for c in cs]
    return lr + [("gru", 0.0, d) for d in SEQUENCE_DROPOUTS] + [("hmm", 0.0, s) for s in STAYS]


@dataclass(frozen=True)
class Choice:
    """What the grouped cross-validation found: the best candidate's name and its out-of-fold logits."""

    name: str
    scores: dict[str, float]  # macro-F1 on the held-out passages alone
    long_scores: dict[str, float]  # the same passages joined into long talks (``join_talks``)
    oof: np.ndarray
    long_oof: np.ndarray  # the same rows, the held-out passages read joined into long talks
    members: tuple[tuple[str, float, float], ...]  # the candidate, or the pool's GRU and regression
    pool_ranking: tuple[tuple[float, float, float], ...]  # POOL_GRID ranked on all out-of-fold rows
    pool_parts: tuple[np.ndarray, ...]  # the pooled parts' out-of-fold logits, alone then in talks


def candidate_name(kind: str, decay: float, value: float) -> str:
    return {"hmm": f"hmm stay={value:g}", "gru": f"gru dropout={value:g}"}.get(
        kind, f"{kind} decay={decay:g} C={value:g}"
    )


def choose_context(train: Encoded) -> Choice:
    """The candidate with the best macro-F1 under 5-fold cross-validation grouped by passage, the mean
    of its scores on the held-out passages alone and joined into long talks (``join_talks``). One more
    candidate, ``POOL``: the best GRU, the best regression and the phrase head pooled, its weights fitted
    on both readings' logits (``emotion_talks.cross_fitted_pool``)."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import KFold

    folds = list(KFold(n_splits=5, shuffle=True, random_state=SEED).split(np.arange(len(train.passages))))
    offsets = np.cumsum([0] + [len(p.texts) for p in train.passages])
    rows = [np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in idx]) for _, idx in folds]
    y = train.y

    def f1(logits: np.ndarray) -> float:
        return round(float(np.mean([f1_score(y[r], logits[r].argmax(1), average="macro") for r in rows])), 4)

    oof: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # name: (alone, in long talks)
    cands = {candidate_name(*c): c for c in _candidates()}
    for cand in cands.values():
        alone, joined = np.zeros((len(y), len(EMOTIONS))), np.zeros((len(y), len(EMOTIONS)))
        for (fit_idx, val_idx), val_rows in zip(folds, rows, strict=True):
            head = _fit_context(train.subset(fit_idx), *cand)
            val = train.subset(val_idx)
            alone[val_rows] = context_logits(head, val)
            joined[val_rows] = context_logits(head, join_talks(val))
        name = candidate_name(*cand)
        oof[name] = (alone, joined)
        log.info("context %-24s cv macro-F1 %.4f, in long talks %.4f", name, f1(alone), f1(joined))
    phrase = np.vstack(train.logp)

    def best_of(kinds: tuple[str, ...]) -> str:
        return max((n for n in oof if n.split()[0] in kinds), key=lambda n: f1(oof[n][0]))

    parts = (best_of(("gru",)), best_of(("both", "full", "emb", "prob")))
    both = [np.vstack(oof[n]) for n in parts] + [np.vstack([phrase, phrase])]  # alone, then in talks
    yy, rows2 = np.concatenate([y, y]), [np.concatenate([r, r + len(y)]) for r in rows]
    pooled = cross_fitted_pool(both, yy, rows2)
    oof[POOL] = (pooled[: len(y)], pooled[len(y) :])
    scores = {n: f1(a) for n, (a, _) in oof.items()}
    long_scores = {n: f1(j) for n, (_, j) in oof.items()}
    log.info("context %-24s cv macro-F1 %.4f, in long talks %.4f", POOL, scores[POOL], long_scores[POOL])
    best = max(scores, key=lambda n: scores[n] + long_scores[n])  # real transcripts are long talks
    if best != POOL:
        return Choice(best, scores, long_scores, *oof[best], (cands[best],), (), ())
    ranking = tuple(rank_pool_weights(both, yy, rows2))
    log.info("pool of %s, weights ranked %s", parts, ranking[:5])
    members = (cands[parts[0]], cands[parts[1]])
    return Choice(best, scores, long_scores, *oof[best], members, ranking, tuple(both))


# ---------------------------------------------------------------------------------------- main


class CachedEncoder:
    """The sentence encoder with an on-disk cache (``.cache/emotion-embeddings``, git-ignored): the
    encoder is deterministic, so re-training after a corpus edit embeds only the new sentences."""

    def __init__(self, cache: Path) -> None:
        self._encoder: SentenceEncoder | None = None
        self.cache = cache
        self.memo: dict[str, np.ndarray] = {}
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                self.memo = dict(zip((str(t) for t in z["texts"]), z["emb"], strict=True))

    def sentence_encoder(self) -> SentenceEncoder:
        self._encoder = self._encoder or SentenceEncoder()
        return self._encoder

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in self.memo})
        if missing:
            self._encoder = self._encoder or SentenceEncoder()
            self.memo.update(zip(missing, self._encoder.encode(missing), strict=True))
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(self.cache, texts=np.array(list(self.memo)), emb=np.stack(list(self.memo.values())))
        return np.stack([self.memo[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)


def encode_passages(encoder: CachedEncoder, head: LinearHead, passages: Sequence[Passage]) -> Encoded:
    emb = encoder.encode([t for p in passages for t in p.texts])
    logp = np.log(np.clip(head.predict_proba(emb), 1e-12, None))
    ends = np.cumsum([0] + [len(p.texts) for p in passages])
    return Encoded(
        tuple(passages),
        tuple(emb[a:b] for a, b in itertools.pairwise(ends)),
        tuple(logp[a:b] for a, b in itertools.pairwise(ends)),
    )


def shipped_context(
    context: Path = DATA / "emotion_context.npz", encoder: Path = DATA / "emotion_context_encoder.npz"
) -> ContextBlend:
    """The shipped in-context reading, as ``moodbgm.emotion.build_classifier`` builds it."""
    return ContextBlend(load_context_head(context), ContextEncoder(ContextEncoderHead.load(encoder)))


def evaluate_shipped(
    args: argparse.Namespace, encoder: CachedEncoder, by_split: dict[str, list[Passage]]
) -> int:
    """``--evaluate``: the held-out numbers of the shipped in-context reading (the context head blended
    with the context encoder, ``train_context_encoder.py``), without training (minutes, not an hour):
    rewrites ``evaluation`` and the test thresholds in the metrics file and redraws the diagram."""
    head, context = LinearHead.load(args.head), shipped_context(args.context, args.encoder)
    pooled = context.context
    enc = {s: encode_passages(encoder, head, by_split[s]) for s in HELD_OUT}
    metrics = json.loads(args.metrics.read_text(encoding="utf-8"))
    if abs(metrics["context_head"]["temperature"] - pooled.temperature) > 1e-4:
        raise SystemExit(f"{args.metrics} does not describe {args.context}; retrain")
    if list(metrics.get("context_encoder", {}).get("blend", ())) != list(context.encoder.head.blend):
        raise SystemExit(f"{args.metrics} does not describe {args.encoder}; run train_context_encoder.py")
    metrics["evaluation"], metrics["thresholds"]["test"] = evaluate(context, enc, args.diagram)
    metrics["passages"] = {
        s: {"passages": len(ps), "sentences": sum(len(p.texts) for p in ps)} for s, ps in by_split.items()
    }
    write_json(args.metrics, metrics)
    report(metrics["evaluation"])
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DATA / "emotion_corpus.jsonl")
    ap.add_argument("--passages", type=Path, default=DATA / "emotion_passages.txt")
    ap.add_argument("--head", type=Path, default=DATA / "emotion_head.npz")
    ap.add_argument("--context", type=Path, default=DATA / "emotion_context.npz")
    ap.add_argument("--encoder", type=Path, default=DATA / "emotion_context_encoder.npz")
    ap.add_argument("--metrics", type=Path, default=DATA / "emotion_metrics.json")
    ap.add_argument("--diagram", type=Path, default=DIAGRAM)
    ap.add_argument("--check", action="store_true", help="validate the corpora, train nothing")
    ap.add_argument(
        "--evaluate",
        action="store_true",
        help="train nothing: evaluate the shipped heads on the held-out passages (rewrites the metrics' "
        "evaluation and test thresholds, and the diagram)",
    )
    ap.add_argument(
        "--samples-through-blend",
        action="store_true",
        help="check the pool's sample constraint on the pool blended with the context encoder (--encoder) "
        "at its blend, the reading that ships, instead of on the pool alone (protocol_t8b.md)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from sklearn.metrics import f1_score

    texts, y, test = load_corpus(args.corpus)
    passages = load_passages(args.passages)
    encoder = CachedEncoder(ROOT / ".cache" / "emotion-embeddings.npz")
    emb = encoder.encode(texts)
    problems = check_corpus(texts, y, test, emb) + check_passages(passages, texts)
    for p in problems:
        log.error("corpus: %s", p)
    if problems:
        return 1
    by_split = {s: [p for p in passages if p.split == s] for s in SPLITS}
    log.info(
        "corpus OK: %d lines, %d held out; passages %s",
        len(texts),
        int(test.sum()),
        {s: (len(ps), sum(len(p.texts) for p in ps)) for s, ps in by_split.items()},
    )
    if args.check:
        return 0
    if args.evaluate:
        return evaluate_shipped(args, encoder, by_split)

    # 1. phrase head on the sentence corpus; temperature on the fitting passages' sentences (never
    #    seen by the phrase head)
    head, best_c, cv = train_phrase_head(emb[~test], y[~test])
    fitting = [p for p in passages if p.split in FIT_SPLITS]
    raw = encode_passages(encoder, head, fitting)
    head_t = fit_temperature(np.vstack([head.logits(e) for e in raw.emb]), raw.y)
    head = LinearHead(head.weight, head.bias, temperature=head_t)
    corpus_pred = head.predict_proba(emb[test]).argmax(1)
    log.info("phrase head: C=%s, temperature %.3f, corpus held-out macro-F1 %.4f", best_c, head_t,
             f1_score(y[test], corpus_pred, average="macro"))  # fmt: skip

    # 2. context head chosen by grouped cross-validation on the fitting passages, then fitted on them
    #    all; its temperature on the calib passages, unseen (``fit_final``)
    enc = {s: encode_passages(encoder, head, by_split[s]) for s in HELD_OUT}
    fit = encode_passages(encoder, head, fitting)
    choice = choose_context(fit)
    through = ContextEncoder(ContextEncoderHead.load(args.encoder)) if args.samples_through_blend else None
    context, pool_record = fit_final(fit, choice, encoder, head, through)
    ctx_t = context.temperature
    log.info("context head: %s, temperature %.3f", choice.name, ctx_t)

    # 3. evaluation on the held-out passages (``evaluate``)
    evaluation, test_thresholds = evaluate(context, enc, args.diagram)
    thresholds = {
        "fitting (out-of-fold)": threshold_table(
            softmax_t(pool(context.weights, [p[: len(fit.y)] for p in choice.pool_parts]), ctx_t)
            if isinstance(context, PooledHead)
            else softmax_t(choice.oof, ctx_t),
            fit.y,
        ),
        "test": test_thresholds,
    }
    metrics: dict[str, Any] = {
        "encoder": ENCODER_NAME,
        "seed": SEED,
        "phrase_head": {
            "model": "multinomial logistic regression on the sentence embedding",
            "C": best_c,
            "cv_macro_f1": cv,
            "temperature": round(head_t, 4),
            "corpus_test": scores(y[test], corpus_pred),
            "n_train": int((~test).sum()),
        },
        "context_head": {
            "kind": context.kind,
            "chosen": choice.name,
            "members": [candidate_name(*m) for m in choice.members],
            "pool": pool_record,
            "window": WINDOW,
            "span": SPAN,
            "long_talk": LONG_TALK,
            "temperature": round(ctx_t, 4),
            "cv_macro_f1": choice.scores,
            "cv_macro_f1_long_talks": choice.long_scores,
        },
        "passages": {
            s: {"passages": len(ps), "sentences": sum(len(p.texts) for p in ps)} for s, ps in by_split.items()
        },
        "evaluation": evaluation,
        "thresholds": thresholds,
        "ece_bins": ECE_BINS,
    }
    head.save(args.head, C=np.float64(best_c), seed=np.int64(SEED))
    context.save(args.context, seed=np.int64(SEED))
    write_json(args.metrics, metrics)
    report(evaluation)
    log.warning(
        "these numbers are the context head's alone; the shipped reading blends it with the context "
        "encoder, whose blend was chosen against the previous context head: run "
        "train_context_encoder.py --blend-only, then this script with --evaluate (make train-emotion)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
