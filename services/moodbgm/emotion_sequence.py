"""The sequence context head: a small bidirectional GRU over the phrases of one talk, run in numpy.

Each phrase enters as its sentence embedding, the phrase head's calibrated log-probabilities and two
flags (opens / closes the talk). A linear layer with tanh projects that to ``proj`` numbers; one GRU
reads the projections forwards and another backwards; a linear layer maps both GRU states and the
projection to seven logits. ``SequenceHead`` averages the log-softmax of several such members (trained
from different seeds by ``services/devtools/train_sequence.py``) and divides by ``temperature``.
It is trained on passages alone and joined into long talks of up to ``SPAN`` phrases
(``services/devtools/train_sequence.py``); a talk up to ``SPAN`` phrases is read whole, a longer one
in windows of ``SPAN`` phrases, each phrase scored in the window centred on it (its flags still mark
only the talk's true first and last phrase), so the GRUs never run longer than in training.

``PooledHead`` is what ships: a log-linear pool of that ensemble, the regression ``ContextHead`` and the
phrase head's own log-probabilities, weights fitted by likelihood on cross-fitted logits, so strong
evidence in a phrase itself is never washed out by its neighbours.
Parameters follow PyTorch's layout (``torch.nn.GRU``: gates ordered reset, update, new).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .types import EMOTIONS

if TYPE_CHECKING:
    from .emotion import ContextHead

SPAN = 40  # the longest training talk: a talk up to this long is read whole, as in training
PARAMS = (
    "proj.weight", "proj.bias", "out.weight", "out.bias",
    "gru.weight_ih_l0", "gru.weight_hh_l0", "gru.bias_ih_l0", "gru.bias_hh_l0",
    "gru.weight_ih_l0_reverse", "gru.weight_hh_l0_reverse", "gru.bias_ih_l0_reverse",
    "gru.bias_hh_l0_reverse",
)  # fmt: skip


def sequence_inputs(emb: np.ndarray, logp: np.ndarray) -> np.ndarray:
    """``(n, dim + 7 + 2)``: embedding, phrase-head log-probabilities, opens / closes the talk."""
    n = len(logp)
    edges = np.zeros((n, 2))
    if n:
        edges[0, 0] = edges[-1, 1] = 1.0
    return np.hstack([emb, logp, edges]).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _gru(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray) -> np.ndarray:
    """States ``(..., steps, hidden)`` of one GRU over ``x`` ``(..., steps, inputs)``."""
    hidden = w_hh.shape[1]
    gates_in = x @ w_ih.T + b_ih  # (..., steps, 3h), all steps at once
    h = np.zeros((*x.shape[:-2], hidden), dtype=x.dtype)
    out = np.zeros((*x.shape[:-1], hidden), dtype=x.dtype)
    for t in range(x.shape[-2]):
        gi, gh = gates_in[..., t, :], h @ w_hh.T + b_hh
        r = _sigmoid(gi[..., :hidden] + gh[..., :hidden])
        z = _sigmoid(gi[..., hidden : 2 * hidden] + gh[..., hidden : 2 * hidden])
        n = np.tanh(gi[..., 2 * hidden :] + r * gh[..., 2 * hidden :])
        h = (1.0 - z) * n + z * h
        out[..., t, :] = h
    return out


def member_logits(p: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """One member's logits ``(..., n, 7)`` for the inputs ``x`` ``(..., n, inputs)`` of talks."""
    h = np.tanh(x @ p["proj.weight"].T + p["proj.bias"])
    fwd = _gru(h, p["gru.weight_ih_l0"], p["gru.weight_hh_l0"], p["gru.bias_ih_l0"], p["gru.bias_hh_l0"])
    bwd = _gru(
        h[..., ::-1, :],
        p["gru.weight_ih_l0_reverse"],
        p["gru.weight_hh_l0_reverse"],
        p["gru.bias_ih_l0_reverse"],
        p["gru.bias_hh_l0_reverse"],
    )[..., ::-1, :]
    return np.asarray(np.concatenate([fwd, bwd, h], axis=-1) @ p["out.weight"].T + p["out.bias"])


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Log-probabilities of logits ``z`` over the last axis (every head's and the trainers' one copy)."""
    z = z - z.max(axis=-1, keepdims=True)
    return np.asarray(z - np.log(np.exp(z).sum(axis=-1, keepdims=True)))


def softmax(z: np.ndarray) -> np.ndarray:
    """Probabilities of logits ``z`` over the last axis."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


@dataclass(frozen=True)
class SequenceHead:
    """An ensemble of bidirectional GRUs over a talk's phrases (see the module docstring)."""

    members: tuple[dict[str, np.ndarray], ...]
    temperature: float = 1.0
    kind: str = "gru"
    span: int = SPAN  # talks longer than this are read in windows of ``span`` phrases

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("sequence head: needs at least one member")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"sequence head: temperature must be > 0, got {self.temperature}")
        if self.span < 1:
            raise ValueError(f"sequence head: span must be >= 1, got {self.span}")
        for m in self.members:
            if missing := [k for k in PARAMS if k not in m]:
                raise ValueError(f"sequence head: a member lacks {missing}")
            if m["out.bias"].shape != (len(EMOTIONS),):
                raise ValueError(f"sequence head: out.bias must be ({len(EMOTIONS)},)")

    def logits(self, emb: np.ndarray, logp: np.ndarray) -> np.ndarray:
        """Uncalibrated logits ``(n, 7)`` for one talk: the members' mean log-probabilities."""
        x = sequence_inputs(emb, logp)
        expected = self.members[0]["proj.weight"].shape[1]
        if x.shape[1] != expected:
            raise ValueError(f"sequence head expects {expected} inputs per phrase, got {x.shape[1]}")
        n = len(x)
        if not n:
            return np.zeros((0, len(EMOTIONS)))
        if n <= self.span:
            windows, row = x[None], np.arange(n)
        else:  # each phrase in the window of ``span`` phrases centred on it (shifted in at the edges)
            first = np.clip(np.arange(n) - self.span // 2, 0, n - self.span)
            windows = x[first[:, None] + np.arange(self.span)]
            row = np.arange(n) - first
        z = np.mean([log_softmax(member_logits(m, windows).astype(np.float64)) for m in self.members], 0)
        return np.asarray(z[0] if n <= self.span else z[np.arange(n), row])

    def predict_proba(self, emb: np.ndarray, logp: np.ndarray) -> np.ndarray:
        z = self.logits(emb, logp) / self.temperature
        return np.exp(log_softmax(z))

    def save(self, path: Path, **meta: Any) -> None:
        from .emotion import _save_npz

        arrays = {f"m{i}/{k}": m[k].astype(np.float32) for i, m in enumerate(self.members) for k in PARAMS}
        _save_npz(path, kind=np.array(self.kind), temperature=np.float64(self.temperature), **arrays, **meta)

    @classmethod
    def load(cls, path: Path) -> SequenceHead:
        from .emotion import _require_trained

        _require_trained(path, "context head")
        with np.load(path, allow_pickle=False) as z:
            return cls(_members(z), float(z["temperature"]), str(z["kind"]))


def _members(z: Any, prefix: str = "") -> tuple[dict[str, np.ndarray], ...]:
    n = len({k[len(prefix) :].split("/")[0] for k in z.files if k.startswith(prefix + "m") and "/" in k})
    return tuple({k: z[f"{prefix}m{i}/{k}"].astype(np.float32) for k in PARAMS} for i in range(n))


@dataclass(frozen=True)
class PooledHead:
    """``weights[0] * sequence + weights[1] * regression + weights[2] * phrase`` log-probabilities,
    divided by ``temperature``: a product of experts (see the module docstring)."""

    sequence: SequenceHead
    regression: ContextHead
    weights: tuple[float, float, float]
    temperature: float = 1.0
    kind: str = "pool"

    def __post_init__(self) -> None:
        if len(self.weights) != 3 or not all(np.isfinite(w) and w >= 0 for w in self.weights):
            raise ValueError(f"pooled head: need three weights >= 0, got {self.weights}")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"pooled head: temperature must be > 0, got {self.temperature}")
        if self.regression.kind == "hmm" or self.regression.stay > 0:
            raise ValueError("pooled head: the regression must be an unsmoothed regression")

    def logits(self, emb: np.ndarray, logp: np.ndarray) -> np.ndarray:
        """Uncalibrated logits ``(n, 7)`` for one talk."""
        if not len(logp):
            return np.zeros((0, len(EMOTIONS)))
        parts = (self.sequence.logits(emb, logp), log_softmax(self.regression.logits(emb, logp)), logp)
        return np.asarray(sum(w * p for w, p in zip(self.weights, parts, strict=True)))

    def predict_proba(self, emb: np.ndarray, logp: np.ndarray) -> np.ndarray:
        return np.exp(log_softmax(self.logits(emb, logp) / self.temperature))

    def save(self, path: Path, **meta: Any) -> None:
        from .emotion import _save_npz

        seq = {f"seq/m{i}/{k}": m[k] for i, m in enumerate(self.sequence.members) for k in PARAMS}
        _save_npz(
            path,
            kind=np.array(self.kind),
            temperature=np.float64(self.temperature),
            weights=np.array(self.weights, dtype=np.float64),
            **{"seq/span": np.int64(self.sequence.span)},
            **self.regression.arrays("reg/"),
            **seq,
            **meta,
        )

    @classmethod
    def load(cls, path: Path) -> PooledHead:
        from .emotion import ContextHead

        with np.load(path, allow_pickle=False) as z:
            regression = ContextHead.from_arrays(z, "reg/")
            sequence = SequenceHead(_members(z, "seq/"), span=int(z["seq/span"]))
            w = tuple(float(x) for x in z["weights"])
            return cls(sequence, regression, (w[0], w[1], w[2]), float(z["temperature"]))
