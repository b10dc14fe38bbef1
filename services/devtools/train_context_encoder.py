"""Fit the context encoder (``moodbgm/emotion_encoder.py``): MiniLM + LoRA reading each phrase in a window.

Examples: every sentence of the train passages read alone, every sentence of the train passages joined in
a random order into talks of 15-40 phrases (so windows cross from one topic to the next, as in a real
transcript), and every train line of the sentence corpus read alone (so a lone phrase is read well too).
Half the passages and half the lines, drawn with the seed, are rendered as raw spoken transcripts by rule
(``spoken``: no case, no punctuation, fillers and false starts), as some speech-to-text output reads.
PyTorch on the CPU; seed 0.

    .venv/bin/python services/devtools/train_context_encoder.py              # fit, calibrate, blend
    .venv/bin/python services/devtools/train_context_encoder.py --hold-out   # the decision set, first

``--hold-out`` fits on the train passages of all but the decision writers (``DECISION_WRITERS``,
``emotion_corpus/protocol_t6.md``) and keeps that encoder in ``DEV_HEAD``. The default fits on all the
train passages, fits the temperature on the calib passages (alone and joined into long talks, unseen),
chooses the blend with the context head on the decision writers and fits its temperature on them and
the calib passages (``choose_blend``), and writes
``emotion_context_encoder.npz`` and the ``context_encoder`` record of ``emotion_metrics.json``;
``--blend-only`` chooses the blend of the shipped encoder again (after the context head is retrained).
``--fit-only`` stops after the fit and its temperature (the encoder alone in ``--out``), so that on two cores
the two fits can run side by side, one thread each, before ``--blend-only``::

    OMP_NUM_THREADS=1 .venv/bin/python services/devtools/train_context_encoder.py --hold-out &
    OMP_NUM_THREADS=1 .venv/bin/python services/devtools/train_context_encoder.py --fit-only; wait
    .venv/bin/python services/devtools/train_context_encoder.py --blend-only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools.emotion_talks import talk_groups
from devtools.train_emotion import DATA, ROOT, SEED, Passage, fit_temperature, load_corpus, load_passages
from moodbgm.emotion import EMOTIONS, ENCODER_NAME, default_encoder_path
from moodbgm.emotion_encoder import (
    LORA_TARGETS,
    ContextEncoder,
    ContextEncoderHead,
    WindowShape,
    window_tokens,
)
from moodbgm.emotion_sequence import log_softmax
from moodbgm.files import write_json

log = logging.getLogger("train_context_encoder")

RANK = 8
LORA_ALPHA = 16.0  # the adapters' output is scaled by alpha / rank
SCALE = 8.0  # the pooled unit vector's length before the linear layer
EPOCHS = 2.0
BATCH = 32
LR = 1e-3
LABEL_SMOOTHING = 0.05
DROPOUT = 0.1
TALK_SIZES = (15, 40)  # random talks for training: phrases per talk
Example = tuple[list[int], tuple[int, int], int]


def writer(passage_id: str) -> str:
    return passage_id.split("-")[0]


def random_talks(passages: Sequence[Passage], rng: random.Random) -> list[list[Passage]]:
    """``passages`` shuffled and joined into talks of ``TALK_SIZES`` phrases (the last may be shorter)."""
    order, talks, current = list(passages), [], []
    rng.shuffle(order)
    target = rng.randint(*TALK_SIZES)
    for p in order:
        current.append(p)
        if sum(len(q.texts) for q in current) >= target:
            talks.append(current)
            current, target = [], rng.randint(*TALK_SIZES)
    return talks + ([current] if current else [])


class Windows:
    """Token windows of talks, with the tokenizer and window shape the runtime uses."""

    def __init__(self, shape: WindowShape) -> None:
        from tokenizers import Tokenizer

        self.shape = shape
        self.tokenizer = Tokenizer.from_file(str(default_encoder_path() / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        cls, sep = self.tokenizer.token_to_id("[CLS]"), self.tokenizer.token_to_id("[SEP]")
        assert cls is not None and sep is not None, "MiniLM's tokenizer has [CLS] and [SEP]"
        self.cls, self.sep = cls, sep
        self._memo: dict[str, list[int]] = {}

    def ids(self, text: str) -> list[int]:
        if text not in self._memo:
            self._memo[text] = self.tokenizer.encode(text, add_special_tokens=False).ids
        return self._memo[text]

    def of_talk(self, texts: Sequence[str], labels: Sequence[str]) -> list[Example]:
        phrases = [self.ids(t) for t in texts]
        return [
            (*window_tokens(phrases, i, self.shape, self.cls, self.sep), EMOTIONS.index(label))
            for i, label in enumerate(labels)
        ]


SPOKEN_SHARE = 0.5  # of the training passages (and corpus lines) read as raw spoken transcripts
FILLERS = ("um", "uh", "so", "like", "yeah", "I mean", "you know", "okay so", "right")


def spoken(text: str, rng: random.Random) -> str:
    """``text`` as a raw speech transcript: lower case but "I", no punctuation but apostrophes, and now
    and then a filler or a false start (a repeated first word or two)."""
    words = [w for w in re.sub(r"[^\w' ]+", " ", text.lower()).split()]
    words = ["I" if w == "i" else ("I" + w[1:] if w.startswith("i'") else w) for w in words]
    if not words:
        return text
    if rng.random() < 0.3:
        words = words[: rng.randint(1, 2)] + words
    if rng.random() < 0.3 and len(words) > 3:
        k = rng.randint(1, len(words) - 1)
        words = [*words[:k], rng.choice(FILLERS), *words[k:]]
    if rng.random() < 0.3:
        words = [rng.choice(FILLERS), *words]
    return " ".join(words)


def training_examples(
    windows: Windows, passages: Sequence[Passage], lines: Sequence[tuple[str, int]], rng: random.Random
) -> list[Example]:
    def render(p: Passage) -> Passage:
        if rng.random() >= SPOKEN_SHARE:
            return p
        return dataclasses.replace(p, texts=tuple(spoken(t, rng) for t in p.texts))

    passages = [render(p) for p in passages]
    out = [e for p in passages for e in windows.of_talk(p.texts, p.labels)]
    for talk in random_talks(passages, rng):
        out += windows.of_talk([t for p in talk for t in p.texts], [lab for p in talk for lab in p.labels])
    lines = [(spoken(t, rng) if rng.random() < SPOKEN_SHARE else t, y) for t, y in lines]
    return out + [e for text, y in lines for e in windows.of_talk([text], [EMOTIONS[y]])]


# ------------------------------------------------------------------------------------ the model


def build_model(rank: int = RANK):
    """The torch model: frozen MiniLM + LoRA on ``LORA_TARGETS`` + trainable layer norms + a linear layer."""
    import torch
    from torch import nn
    from transformers import BertModel

    class LoRALinear(nn.Module):
        def __init__(self, base: nn.Linear) -> None:
            super().__init__()
            self.base = base
            self.a = nn.Parameter(torch.randn(rank, base.in_features) * 0.01)
            self.b = nn.Parameter(torch.zeros(base.out_features, rank))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.base(x) + (x @ self.a.T @ self.b.T) * (LORA_ALPHA / rank)

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = BertModel.from_pretrained(str(default_encoder_path()), add_pooling_layer=False)
            for p in self.bert.parameters():
                p.requires_grad = False
            for layer in self.bert.encoder.layer:
                for target in LORA_TARGETS:
                    parent_name, _, attr = target.rpartition(".")
                    parent = layer.get_submodule(parent_name)
                    setattr(parent, attr, LoRALinear(getattr(parent, attr)))
            self.base_norms = {
                n: p.detach().clone() for n, p in self.bert.named_parameters() if "LayerNorm" in n
            }
            for n, p in self.bert.named_parameters():
                p.requires_grad = "LayerNorm" in n or n.endswith((".a", ".b"))
            self.head = nn.Linear(self.bert.config.hidden_size, len(EMOTIONS))
            self.drop = nn.Dropout(DROPOUT)

        def forward(self, ids: torch.Tensor, mask: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
            pooled = (hidden * span[..., None]).sum(1) / span.sum(1, keepdim=True).clamp(min=1.0)
            pooled = pooled / pooled.norm(dim=1, keepdim=True).clamp(min=1e-6) * SCALE
            return self.head(self.drop(pooled))

        def export(self, shape: WindowShape) -> ContextEncoderHead:
            lora, norms = {}, {}
            for i, layer in enumerate(self.bert.encoder.layer):
                for target in LORA_TARGETS:
                    m = layer.get_submodule(target)
                    lora[f"encoder.layer.{i}.{target}.weight"] = (
                        m.a.detach().numpy().astype(np.float32),
                        m.b.detach().numpy().astype(np.float32),
                    )
            for n, p in self.bert.named_parameters():
                if "LayerNorm" in n:
                    norms[n] = (p.detach() - self.base_norms[n]).numpy().astype(np.float32)
            return ContextEncoderHead(
                lora=lora,
                lora_scale=LORA_ALPHA / RANK,
                norms=norms,
                weight=self.head.weight.detach().numpy().T.astype(np.float64),
                bias=self.head.bias.detach().numpy().astype(np.float64),
                scale=SCALE,
                shape=shape,
            )

    return Model()


def batch_tensors(examples: Sequence[Example]):
    import torch

    width = max(len(ids) for ids, _, _ in examples)
    ids = torch.zeros(len(examples), width, dtype=torch.long)
    mask, span = torch.zeros(len(examples), width), torch.zeros(len(examples), width)
    for row, (seq, (a, b), _) in enumerate(examples):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1.0
        span[row, a:b] = 1.0
    return ids, mask, span, torch.tensor([y for _, _, y in examples])


def fit(examples: Sequence[Example], shape: WindowShape, epochs: float = EPOCHS) -> ContextEncoderHead:
    import torch

    torch.manual_seed(SEED)
    rng = random.Random(SEED)
    model = build_model()
    params = [p for p in model.parameters() if p.requires_grad]
    steps = int(math.ceil(len(examples) / BATCH) * epochs)
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.1)
    log.info(
        "fitting on %d windows: %d steps of %d, %d parameters",
        len(examples),
        steps,
        BATCH,
        sum(p.numel() for p in params),
    )
    model.train()
    step, t0 = 0, time.monotonic()
    while step < steps:  # batches of similar length (little padding), in random order
        order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]) + rng.random() * 20)
        batches = [order[i : i + BATCH] for i in range(0, len(order), BATCH)]
        rng.shuffle(batches)
        for b in batches[: steps - step]:
            ids, mask, span, y = batch_tensors([examples[i] for i in b])
            loss = torch.nn.functional.cross_entropy(
                model(ids, mask, span), y, label_smoothing=LABEL_SMOOTHING
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 50 == 0 or step == steps:
                log.info("step %d/%d loss %.3f, %.0f s", step, steps, loss.item(), time.monotonic() - t0)
    model.eval()
    return model.export(shape)


# ------------------------------------------------------------------------------------ reading


def read(encoder: ContextEncoder, passages: Sequence[Passage]) -> dict[str, np.ndarray]:
    """Logits and labels of ``passages`` read alone and joined in order into long talks
    (``emotion_talks.talk_groups``, as every other head is scored)."""
    alone = np.vstack([encoder.logits(p.texts) for p in passages])
    groups = talk_groups([len(p.texts) for p in passages])
    joined = np.vstack([encoder.logits([t for i in g for t in passages[i].texts]) for g in groups])
    y = np.array([EMOTIONS.index(lab) for p in passages for lab in p.labels])
    return {"alone": alone, "long": joined, "y": y}


def macro_f1(y: np.ndarray, logits: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return round(float(f1_score(y, logits.argmax(1), average="macro", labels=range(len(EMOTIONS)))), 4)


DECISION_WRITERS = ("w6e", "w6f", "w6g", "w6h")  # protocol_t4.md: held out from both models for the choice
DEV_HEAD = ROOT / ".cache" / "emotion-encoder-dev.npz"  # the encoder fitted without them (``--hold-out``)
# the shipped encoder's hold-out twin, committed: refitting it takes an hour and a half on 2 cores
HOLD_OUT_SHIPPED = ROOT / "services" / "devtools" / "emotion_candidates" / "t7" / "encoder-hold-out.npz"
DECISION_TRANSCRIBED = ROOT / "services" / "devtools" / "emotion_corpus" / "decision_transcribed.txt"
BLEND_GRID = ((1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (1.0, 2.0), (2.0, 1.0), (1.0, 3.0))  # (context, encoder)


def calibrated(head: ContextEncoderHead, passages: Sequence[Passage]) -> ContextEncoderHead:
    """``head`` with its temperature fitted on ``passages`` (the calib split, unseen), alone and joined."""
    r = read(ContextEncoder(head), passages)
    t = fit_temperature(np.vstack([r["alone"], r["long"]]), np.concatenate([r["y"], r["y"]]))
    return dataclasses.replace(head, temperature=t)


Reader = Callable[[Sequence[Passage]], dict[str, np.ndarray]]


def shipped_procedure(fit_passages: Sequence[Passage]) -> Reader:
    """The shipped context head's procedure (its members and pool weights, ``emotion_metrics.json``) fitted
    on ``fit_passages`` once, as a reader of passages alone and joined into long talks: calibrated
    log-probabilities (the shipped head's temperature)."""
    from devtools.emotion_eval import context_logits
    from devtools.emotion_talks import join_talks
    from devtools.train_emotion import (
        CachedEncoder,
        _candidates,
        _fit_context,
        candidate_name,
        encode_passages,
    )
    from moodbgm.emotion import LinearHead, load_context_head
    from moodbgm.emotion_sequence import PooledHead

    record = json.loads((DATA / "emotion_metrics.json").read_text())["context_head"]
    shipped = load_context_head(DATA / "emotion_context.npz")
    if not isinstance(shipped, PooledHead):
        raise SystemExit("the blend is chosen against a pooled context head; retrain train_emotion.py first")
    cands = {candidate_name(*c): c for c in _candidates()}
    encoder = CachedEncoder(ROOT / ".cache" / "emotion-embeddings.npz")
    phrase = LinearHead.load(DATA / "emotion_head.npz")  # fitted on the sentence corpus only
    fit_enc = encode_passages(encoder, phrase, fit_passages)
    gru, regression = (_fit_context(fit_enc, *cands[m]) for m in record["members"])
    pool = PooledHead(gru, regression, shipped.weights)  # type: ignore[arg-type]

    def read_logp(dev: Sequence[Passage]) -> dict[str, np.ndarray]:
        dev_enc = encode_passages(encoder, phrase, dev)
        return {
            k: log_softmax(context_logits(pool, d) / shipped.temperature)
            for k, d in (("alone", dev_enc), ("long", join_talks(dev_enc)))
        }

    return read_logp


def choose_blend(
    passages: Sequence[Passage], head: ContextEncoderHead
) -> tuple[tuple[float, float, float], dict[str, object]]:
    """The blend of ``BLEND_GRID`` with the best mean macro-F1 on the decision writers' passages, both
    models fitted without them (``DEV_HEAD``, ``shipped_procedure``), read as written and as
    transcribed (``DECISION_TRANSCRIBED``), each alone and in long talks. Its temperature is fitted on
    those rows and on the calib passages' (alone and in long talks, read by ``head``, fitted on the train
    passages, and by the context head's procedure refitted on them), each set weighted equally
    (``protocol_t6.md``): the decision writers are read worst, the calib passages by the first hand best."""
    if not DEV_HEAD.is_file():
        raise SystemExit(
            f"no {DEV_HEAD}: run this script with --hold-out first, or copy the shipped encoder's hold-out "
            f"twin there ({HOLD_OUT_SHIPPED.relative_to(ROOT)})"
        )
    train = [p for p in passages if p.split == "train"]
    written = [p for p in train if writer(p.id) in DECISION_WRITERS]
    rest = [p for p in train if writer(p.id) not in DECISION_WRITERS]
    transcribed = load_passages(DECISION_TRANSCRIBED)
    if [(p.id, p.labels) for p in transcribed] != [(p.id, p.labels) for p in written]:
        raise SystemExit(f"{DECISION_TRANSCRIBED} does not match the decision writers' passages")
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # rows: (context head, encoder) log-probabilities
    ys: dict[str, np.ndarray] = {}

    def add_rows(name: str, encoder: ContextEncoderHead, context: Reader, dev: Sequence[Passage]) -> None:
        own, theirs = read(ContextEncoder(encoder), dev), context(dev)
        for k in ("alone", "long"):
            parts[f"{name} {k}"] = (theirs[k], log_softmax(own[k] / encoder.temperature))
            ys[f"{name} {k}"] = own["y"]

    dev_head, without_them = ContextEncoderHead.load(DEV_HEAD), shipped_procedure(rest)
    for reading, dev in (("written", written), ("transcribed", transcribed)):
        add_rows(reading, dev_head, without_them, dev)
    scores = {w: {r: macro_f1(ys[r], w[0] * c + w[1] * e) for r, (c, e) in parts.items()} for w in BLEND_GRID}
    for w, by_reading in scores.items():
        log.info("blend context:encoder %g:%g on %s: %s", *w, ",".join(DECISION_WRITERS), by_reading)
    best = max(BLEND_GRID, key=lambda w: sum(scores[w].values()))
    add_rows("calib", head, shipped_procedure(train), [p for p in passages if p.split == "calib"])
    z = np.vstack([best[0] * c + best[1] * e for c, e in parts.values()])
    y = np.concatenate(list(ys.values()))
    n_calib = sum(len(ys[f"calib {k}"]) for k in ("alone", "long"))
    n_decision = len(y) - n_calib  # the calib rows come last
    weight = np.concatenate([np.full(n_decision, 1 / n_decision), np.full(n_calib, 1 / n_calib)])
    t = fit_temperature(z, y, weight)
    record = {f"{w[0]:g}:{w[1]:g}": v for w, v in scores.items()}
    fitted_on = "decision writers and calib passages, each set weighted equally"
    return (best[0], best[1], t), {
        "decision_writers": list(DECISION_WRITERS),
        "blends": record,
        "blend_temperature_fitted_on": fitted_on,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=Path, default=DATA / "emotion_passages.txt")
    ap.add_argument("--corpus", type=Path, default=DATA / "emotion_corpus.jsonl")
    ap.add_argument("--hold-out", action="store_true", help=f"fit without {DECISION_WRITERS} (to {DEV_HEAD})")
    ap.add_argument("--blend-only", action="store_true", help="choose the blend of the shipped encoder only")
    ap.add_argument(
        "--fit-only",
        action="store_true",
        help="fit and calibrate the encoder, write it to --out alone (no blend yet), stop: run --blend-only "
        "after --hold-out has written its encoder (the two fits may then run side by side)",
    )
    ap.add_argument("--out", type=Path, default=DATA / "emotion_context_encoder.npz")
    ap.add_argument("--epochs", type=float, default=EPOCHS)
    ap.add_argument("--metrics", type=Path, default=DATA / "emotion_metrics.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    passages = load_passages(args.passages)
    calib = [p for p in passages if p.split == "calib"]
    if args.blend_only:
        head = ContextEncoderHead.load(args.out)
    else:
        texts, y, held = load_corpus(args.corpus)
        lines = [(t, int(label)) for t, label, h in zip(texts, y, held, strict=True) if not h]
        skip = DECISION_WRITERS if args.hold_out else ()
        train = [p for p in passages if p.split == "train" and writer(p.id) not in skip]
        shape = WindowShape()
        head = fit(training_examples(Windows(shape), train, lines, random.Random(SEED)), shape, args.epochs)
        head = calibrated(head, calib)
        log.info("temperature %.3f (calib passages, unseen)", head.temperature)
        if args.hold_out:
            DEV_HEAD.parent.mkdir(parents=True, exist_ok=True)
            head.save(DEV_HEAD)
            log.info("wrote %s", DEV_HEAD)
            return 0
        if args.fit_only:
            head.save(args.out, seed=np.int64(SEED))
            log.info("wrote %s (the encoder alone); choose the blend with --blend-only", args.out)
            return 0
    blend, record = choose_blend(passages, head)
    head = dataclasses.replace(head, blend=blend)
    head.save(args.out, seed=np.int64(SEED))
    log.info("blend context:encoder %g:%g, temperature %.3f; wrote %s", *blend, args.out)
    metrics = json.loads(args.metrics.read_text(encoding="utf-8"))
    metrics["context_encoder"] = {
        "model": f"{ENCODER_NAME} + LoRA rank {RANK} on {', '.join(LORA_TARGETS)}, layer norms, linear",
        "window": vars(head.shape),
        "epochs": args.epochs,
        "temperature": round(head.temperature, 4),
        "blend": list(blend),
        **record,
    }
    write_json(args.metrics, metrics)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
