"""A BERT encoder (all-MiniLM-L6-v2) in numpy: the forward pass of ``transformers.BertModel`` for
inference, from the model's ``model.safetensors`` and ``config.json``.

The emotion classifier embeds a few dozen short phrases per job; for that, importing torch and
transformers cost more than the whole forward pass (about 5 CPU-seconds and 400 MB of memory on a
2-core machine, against a tenth of a second here). Its outputs agree with ``BertModel`` to float32
rounding (``tests/test_minilm.py`` checks it against transformers on real sentences).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import erf

from .errors import ModelNotFoundError


@dataclass(frozen=True)
class BertConfig:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if self.hidden_act != "gelu":
            raise ValueError(f"only the exact gelu activation is implemented, not {self.hidden_act!r}")

    @classmethod
    def load(cls, path: Path) -> BertConfig:
        raw = json.loads(path.read_text())
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


_QKV = ("query", "key", "value")


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + eps)) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / np.float32(np.sqrt(2.0))).astype(np.float32))


class NumpyBert:
    """``last_hidden_state`` of a BERT model for a padded batch of token ids. ``delta`` is added to the
    named weights first (``with_delta``), e.g. low-rank adapters merged into the model
    (``emotion_encoder.py``)."""

    def __init__(self, model_dir: Path, delta: Mapping[str, np.ndarray] | None = None) -> None:
        from safetensors.numpy import load_file

        weights_path, config_path = model_dir / "model.safetensors", model_dir / "config.json"
        if not weights_path.is_file() or not config_path.is_file():
            raise ModelNotFoundError(f"no BERT model at {model_dir} (need model.safetensors and config.json)")
        self.config, self.model_dir = BertConfig.load(config_path), model_dir
        raw = load_file(str(weights_path))
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in raw else ""
        self._w = {k[len(prefix) :]: v.astype(np.float32) for k, v in raw.items() if k.startswith(prefix)}
        del raw
        for i in range(self.config.num_hidden_layers):  # one (in, 3 * out) matrix for q, k, v
            p = f"encoder.layer.{i}.attention.self."
            self._w[p + "qkv.weight"] = np.concatenate([self._w[p + n + ".weight"].T for n in _QKV], axis=1)
            self._w[p + "qkv.bias"] = np.concatenate([self._w[p + n + ".bias"] for n in _QKV])
            for n in _QKV:
                del self._w[p + n + ".weight"], self._w[p + n + ".bias"]
        for name in list(self._w):  # dense weights stored (out, in): keep them transposed, contiguous
            if name.endswith("dense.weight"):
                self._w[name] = np.ascontiguousarray(self._w[name].T)
        if delta:
            self._w = self.with_delta(delta)._w

    def with_delta(self, delta: Mapping[str, np.ndarray]) -> NumpyBert:
        """This model with ``delta`` added to the named weights (as stored in the model file: dense weights
        ``(out, in)``, names without the ``bert.`` prefix). The weights it leaves alone (the embedding
        tables, most of the model's memory when only the dense layers and norms change) are shared with
        this model, not copied; this model is unchanged."""
        size, out = self.config.hidden_size, copy.copy(self)
        out._w = dict(self._w)
        for name, d in delta.items():
            part = next((j for j, n in enumerate(_QKV) if f".attention.self.{n}." in name), -1)
            target = name.replace(f".{_QKV[part]}.", ".qkv.") if part >= 0 else name
            if part >= 0:
                shape: tuple[int, ...] = (size, size) if name.endswith(".weight") else (size,)
            elif name.endswith("dense.weight"):  # kept transposed
                shape = self._w[target].shape[::-1] if target in self._w else ()
            else:
                shape = self._w[target].shape if target in self._w else ()
            if target not in self._w or d.shape != shape:
                raise ValueError(
                    f"delta for {name!r} {d.shape} matches no weight of the model at {self.model_dir}"
                )
            d = d.astype(np.float32)
            if part >= 0:  # q, k, v sit side by side, transposed: add into their slice of one new copy
                if out._w[target] is self._w[target]:
                    out._w[target] = self._w[target].copy()
                cols = slice(part * size, (part + 1) * size)
                if d.ndim == 2:
                    out._w[target][:, cols] += d.T
                else:
                    out._w[target][cols] += d
            elif name.endswith("dense.weight"):
                out._w[target] = np.ascontiguousarray(self._w[target] + d.T)
            else:
                out._w[target] = self._w[target] + d
        return out

    @property
    def dim(self) -> int:
        return self.config.hidden_size

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``(batch, width, hidden)`` float32 for ``(batch, width)`` ids and a 0/1 attention mask."""
        c, w = self.config, self._w
        batch, width = ids.shape
        if width > c.max_position_embeddings:
            raise ValueError(f"at most {c.max_position_embeddings} tokens, got {width}")
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:width][None]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], c.layer_norm_eps)
        x = x.reshape(batch * width, c.hidden_size)  # dense layers as one 2-D product (BLAS), not per row
        heads, size = c.num_attention_heads, c.hidden_size // c.num_attention_heads
        blocked = np.where(mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min).astype(np.float32)
        scale = np.float32(1.0 / np.sqrt(size))
        for i in range(c.num_hidden_layers):
            p = f"encoder.layer.{i}."
            qkv = x @ w[p + "attention.self.qkv.weight"] + w[p + "attention.self.qkv.bias"]
            q, k, v = (
                qkv[..., j * c.hidden_size : (j + 1) * c.hidden_size]
                .reshape(batch, width, heads, size)
                .transpose(0, 2, 1, 3)
                for j in range(3)
            )
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + blocked
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(batch * width, c.hidden_size)
            attn = ctx @ w[p + "attention.output.dense.weight"] + w[p + "attention.output.dense.bias"]
            x = _layer_norm(
                x + attn,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                c.layer_norm_eps,
            )
            inner = _gelu(x @ w[p + "intermediate.dense.weight"] + w[p + "intermediate.dense.bias"])
            out = inner @ w[p + "output.dense.weight"] + w[p + "output.dense.bias"]
            x = _layer_norm(
                x + out, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], c.layer_norm_eps
            )
        return x.reshape(batch, width, c.hidden_size).astype(np.float32, copy=False)
