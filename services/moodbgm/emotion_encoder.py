"""The context encoder: MiniLM reading each phrase **in a window of its neighbours**.

The other heads read a frozen embedding of each phrase alone and combine the embeddings afterwards. This
one is all-MiniLM-L6-v2 with low-rank adapters (LoRA) on every dense layer and retrained layer norms,
fitted (``services/devtools/train_context_encoder.py``) to read the tokens

    [CLS] up to `before` phrases before [SEP] the phrase [SEP] up to `after` phrases after [SEP]

and classify the mean of the phrase's own output vectors (L2-normalised, times ``scale``) with a linear
layer, so every token of the phrase attends to its neighbours' words. At run time the adapters are merged
into the weights and the encoder runs in numpy (``minilm.NumpyBert``), like the plain sentence encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .emotion_sequence import softmax
from .errors import ModelNotFoundError

if TYPE_CHECKING:
    from .minilm import NumpyBert

LORA_TARGETS = (  # the dense layers of each block that carry adapters
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)


@dataclass(frozen=True)
class WindowShape:
    """How much of the talk a phrase is read with: phrases and token budgets on each side."""

    before: int = 3
    after: int = 2
    phrase_tokens: int = 60
    before_tokens: int = 90
    after_tokens: int = 50

    def __post_init__(self) -> None:
        if (
            min(self.before, self.after) < 0
            or min(self.phrase_tokens, self.before_tokens, self.after_tokens) < 1
        ):
            raise ValueError(f"window: phrase counts must be >= 0 and token budgets >= 1, got {self}")


def window_tokens(
    phrases: Sequence[Sequence[int]], i: int, shape: WindowShape, cls: int, sep: int
) -> tuple[list[int], tuple[int, int]]:
    """The token ids phrase ``i`` of a talk is read in (``phrases``: each phrase's ids without special
    tokens), and the ``[start, end)`` span of its own tokens. Each phrase keeps its first
    ``phrase_tokens``; the phrases before keep their last ``before_tokens``, those after their first
    ``after_tokens``."""
    cut = [list(p[: shape.phrase_tokens]) for p in phrases]
    before = [t for p in cut[max(0, i - shape.before) : i] for t in p][-shape.before_tokens :]
    after = [t for p in cut[i + 1 : i + 1 + shape.after] for t in p][: shape.after_tokens]
    ids = [cls, *before, sep, *cut[i], sep, *after, sep]
    start = len(before) + 2
    return ids, (start, start + len(cut[i]))


def default_context_encoder_path() -> Path:
    from importlib import resources

    return Path(str(resources.files("moodbgm") / "data" / "emotion_context_encoder.npz"))


@dataclass(frozen=True)
class ContextEncoderHead:
    """The fitted adapters, classifier and temperature (``emotion_context_encoder.npz``)."""

    lora: dict[str, tuple[np.ndarray, np.ndarray]]  # weight name -> (A (r, in), B (out, r))
    lora_scale: float
    norms: dict[str, np.ndarray]  # layer-norm weight name -> fitted value minus the base model's
    weight: np.ndarray  # (hidden, 7)
    bias: np.ndarray  # (7,)
    scale: float  # the pooled unit vector is multiplied by this before the linear layer
    shape: WindowShape
    temperature: float = 1.0  # the encoder's own, fitted on passages it never saw
    blend: tuple[float, float, float] = (0.0, 1.0, 1.0)  # ContextBlend: context head, encoder, temperature
    kind: str = "encoder"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"context encoder: temperature must be > 0, got {self.temperature}")
        pool, own, t = self.blend
        if not (min(pool, own) >= 0 and pool + own > 0 and np.isfinite(t) and t > 0):
            raise ValueError(
                f"context encoder: blend needs weights >= 0, not both 0, and a temperature > 0: {self.blend}"
            )
        if self.weight.shape != (self.weight.shape[0], self.bias.shape[0]):
            raise ValueError(
                f"context encoder: weight {self.weight.shape} does not match bias {self.bias.shape}"
            )

    def delta(self) -> dict[str, np.ndarray]:
        """What to add to the base model's weights: the adapters' ``scale * B @ A`` and the layer norms'
        changes."""
        out = {name: (self.lora_scale * b @ a).astype(np.float32) for name, (a, b) in self.lora.items()}
        return out | {name: d.astype(np.float32) for name, d in self.norms.items()}

    def save(self, path: Path, **meta: Any) -> None:
        from .emotion import _save_npz

        arrays: dict[str, Any] = {f"lora_a/{k}": a for k, (a, _) in self.lora.items()}
        arrays |= {f"lora_b/{k}": b for k, (_, b) in self.lora.items()}
        arrays |= {f"norm/{k}": v for k, v in self.norms.items()}
        window = {f"window/{k}": np.int64(v) for k, v in vars(self.shape).items()}
        _save_npz(
            path,
            kind=np.array(self.kind),
            weight=self.weight,
            bias=self.bias,
            scale=np.float64(self.scale),
            lora_scale=np.float64(self.lora_scale),
            temperature=np.float64(self.temperature),
            blend=np.array(self.blend, dtype=np.float64),
            **window,
            **arrays,
            **meta,
        )

    @classmethod
    def load(cls, path: Path) -> ContextEncoderHead:
        if not path.is_file():
            raise ModelNotFoundError(
                f"no context encoder at {path}; run services/devtools/train_context_encoder.py"
            )
        with np.load(path, allow_pickle=False) as z:
            a = {k[len("lora_a/") :]: z[k] for k in z.files if k.startswith("lora_a/")}
            return cls(
                lora={k: (v, z[f"lora_b/{k}"]) for k, v in a.items()},
                lora_scale=float(z["lora_scale"]),
                norms={k[len("norm/") :]: z[k] for k in z.files if k.startswith("norm/")},
                weight=z["weight"],
                bias=z["bias"],
                scale=float(z["scale"]),
                shape=WindowShape(**{k: int(z[f"window/{k}"]) for k in WindowShape.__dataclass_fields__}),
                temperature=float(z["temperature"]),
                blend=(float(z["blend"][0]), float(z["blend"][1]), float(z["blend"][2])),
            )


class ContextEncoder:
    """Scores every phrase of a talk from its window (``ContextEncoderHead`` on the MiniLM weights)."""

    def __init__(
        self,
        head: ContextEncoderHead,
        model_dir: Path | None = None,
        batch_size: int = 32,
        base: NumpyBert | None = None,
    ) -> None:
        """``base``: MiniLM already loaded from ``model_dir`` (the sentence encoder's); the adapters are
        added to a view of it that shares every weight they leave alone, instead of a second copy."""
        from tokenizers import Tokenizer

        from .emotion import default_encoder_path
        from .minilm import NumpyBert

        path = Path(model_dir) if model_dir is not None else default_encoder_path()
        if base is not None and Path(base.model_dir) != path:
            raise ValueError(f"context encoder: the base model is from {base.model_dir}, not {path}")
        if not (path / "tokenizer.json").is_file():
            raise ModelNotFoundError(f"no MiniLM tokenizer at {path}")
        self.head, self.batch_size = head, batch_size
        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        cls, sep = self._tokenizer.token_to_id("[CLS]"), self._tokenizer.token_to_id("[SEP]")
        if cls is None or sep is None:
            raise ModelNotFoundError(f"the tokenizer at {path} has no [CLS] or [SEP] token")
        self._cls, self._sep = cls, sep
        self._model = (base if base is not None else NumpyBert(path)).with_delta(head.delta())

    def tokens(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Uncalibrated ``(n, 7)`` logits for the phrases of one talk, in order."""
        phrases = self.tokens(texts)
        windows = [
            window_tokens(phrases, i, self.head.shape, self._cls, self._sep) for i in range(len(texts))
        ]
        out = np.zeros((len(texts), self.head.bias.shape[0]))
        order = sorted(range(len(windows)), key=lambda i: len(windows[i][0]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = max(len(windows[i][0]) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.float32)
            span = np.zeros((len(idx), width), dtype=np.float32)
            for row, i in enumerate(idx):
                seq, (a, b) = windows[i]
                ids[row, : len(seq)], mask[row, : len(seq)], span[row, a:b] = seq, 1.0, 1.0
            hidden = self._model(ids, mask)
            pooled = (hidden * span[..., None]).sum(axis=1) / np.maximum(span.sum(axis=1, keepdims=True), 1.0)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-6)
            out[idx] = (self.head.scale * pooled) @ self.head.weight + self.head.bias
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return softmax(self.logits(texts) / self.head.temperature)


class ContextHeadLike(Protocol):
    def predict_proba(self, emb: np.ndarray, logp: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ContextBlend:
    """The in-context reading when the context encoder ships: ``w_context * log p_context + w_encoder *
    log p_encoder`` (both calibrated), divided by a temperature (``ContextEncoderHead.blend``, chosen on
    writers held out from both models' fitting; ``train_context_encoder.py``)."""

    context: ContextHeadLike
    encoder: ContextEncoder

    @property
    def temperature(self) -> float:
        return self.encoder.head.blend[2]

    def logits(self, emb: np.ndarray, logp: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """Uncalibrated ``(n, 7)`` logits for one talk: its embeddings, phrase-head log-probabilities and
        texts."""
        w_context, w_encoder, _ = self.encoder.head.blend
        out = w_encoder * np.log(np.clip(self.encoder.predict_proba(texts), 1e-12, None))
        if w_context:
            out = out + w_context * np.log(np.clip(self.context.predict_proba(emb, logp), 1e-12, None))
        return np.asarray(out)

    def predict_proba(self, emb: np.ndarray, logp: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        return softmax(self.logits(emb, logp, texts) / self.temperature)
