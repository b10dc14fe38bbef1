"""The context encoder (``moodbgm/emotion_encoder.py``): windows, the numpy runtime against the torch model
it was fitted as, and its file."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from moodbgm.emotion_encoder import ContextEncoder, ContextEncoderHead, WindowShape, window_tokens

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

CLS, SEP = 101, 102
TALK = (
    "Hi everyone, thanks for tuning in again.",
    "So this week I want to talk about my neighbour.",
    "He parks his van across my driveway every single morning.",
    "I have told him many times.",
    "He just nods and does it again the next day.",
    "I am completely fed up with it.",
)


def test_a_window_holds_the_phrase_between_its_neighbours() -> None:
    phrases = [[1, 2], [3, 4, 5], [6], [7, 8], [9]]
    ids, (a, b) = window_tokens(phrases, 2, WindowShape(before=2, after=1), CLS, SEP)
    assert ids == [CLS, 1, 2, 3, 4, 5, SEP, 6, SEP, 7, 8, SEP]
    assert ids[a:b] == [6]
    ids, (a, b) = window_tokens(phrases, 0, WindowShape(before=3, after=0), CLS, SEP)  # a talk's opening
    assert ids == [CLS, SEP, 1, 2, SEP, SEP] and ids[a:b] == [1, 2]
    shape = WindowShape(before=3, after=3, phrase_tokens=2, before_tokens=3, after_tokens=2)
    ids, (a, b) = window_tokens(phrases, 2, shape, CLS, SEP)  # budgets: the nearest tokens are kept
    assert ids == [CLS, 2, 3, 4, SEP, 6, SEP, 7, 8, SEP]
    with pytest.raises(ValueError, match="window"):
        WindowShape(before=-1)


@pytest.fixture(scope="module")
def fitted_like():  # type: ignore[no-untyped-def]
    """The torch model with random adapters, norms and classifier (as if fitted), and its export."""
    torch = pytest.importorskip("torch")
    from devtools.train_context_encoder import build_model

    torch.manual_seed(1)
    model = build_model()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * (0.05 if "LayerNorm" in name else 0.02))
    model.eval()
    return model, model.export(WindowShape())


def test_the_numpy_runtime_reads_windows_as_the_torch_model_does(fitted_like, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Adapters merged into numpy weights give the torch model's logits (to float32 rounding), through a
    saved and reloaded file; the adapters really change the reading."""
    import torch

    from devtools.train_context_encoder import Windows, batch_tensors

    model, head = fitted_like
    path = tmp_path / "encoder.npz"
    head.save(path)
    encoder = ContextEncoder(ContextEncoderHead.load(path))
    examples = Windows(WindowShape()).of_talk(TALK, ["neutral"] * len(TALK))
    with torch.no_grad():
        want = model(*batch_tensors(examples)[:3]).numpy()
    got = encoder.logits(TALK)
    assert np.abs(got - want).max() < 1e-3, np.abs(got - want).max()
    assert np.abs(got - want).max() < 0.01 * np.abs(want).max()
    plain = ContextEncoderHead(**{**vars(head), "lora": {}, "norms": {}})  # no adapters: another reading
    assert np.abs(ContextEncoder(plain).logits(TALK) - want).max() > 0.1
    assert encoder.logits(TALK[3:4]).shape == (1, 7)  # a lone phrase has a window too
    probs = encoder.predict_proba(TALK)
    assert np.allclose(probs.sum(1), 1.0)


def test_a_delta_for_a_weight_the_model_lacks_is_refused(fitted_like) -> None:  # type: ignore[no-untyped-def]
    from moodbgm.emotion import default_encoder_path
    from moodbgm.minilm import NumpyBert

    with pytest.raises(ValueError, match="matches no weight"):
        NumpyBert(
            default_encoder_path(), delta={"encoder.layer.9.output.dense.weight": np.zeros((384, 1536))}
        )
    _, head = fitted_like
    with pytest.raises(ValueError, match="temperature"):
        ContextEncoderHead(**{**vars(head), "temperature": 0.0})


def test_the_adapters_share_the_sentence_encoders_weights(fitted_like, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``NumpyBert.with_delta`` (how ``build_classifier`` gives the context encoder its MiniLM): the same
    hidden states, bit for bit, as a model file with the adapters merged in, while the weights the
    adapters leave alone (the embedding tables) are the sentence encoder's own arrays, not a second copy,
    and the sentence encoder reads as before."""
    from safetensors.numpy import load_file, save_file

    from moodbgm.emotion import default_encoder_path
    from moodbgm.minilm import NumpyBert

    _, head = fitted_like
    path, delta = default_encoder_path(), head.delta()
    raw = load_file(str(path / "model.safetensors"))
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in raw else ""
    merged = {k: v.astype(np.float32) for k, v in raw.items()}
    for name, d in delta.items():
        merged[prefix + name] = merged[prefix + name] + d
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    save_file(merged, str(tmp_path / "model.safetensors"))

    base = NumpyBert(path)
    ids = np.array([[101, 7592, 2088, 1010, 2129, 2024, 2017, 102], [101, 2748, 102, 0, 0, 0, 0, 0]])
    mask = (ids > 0).astype(np.float32)
    before = base(ids, mask)
    view = base.with_delta(delta)
    assert np.array_equal(view(ids, mask), NumpyBert(tmp_path)(ids, mask))
    assert np.array_equal(base(ids, mask), before)  # the base model is untouched
    word = "embeddings.word_embeddings.weight"
    assert view._w[word] is base._w[word]
    changed = {n for n in view._w if view._w[n] is not base._w[n]}
    assert changed == set(delta) - {n for n in delta if ".attention.self." in n} | {
        n for n in view._w if n.endswith("qkv.weight")
    }, sorted(changed ^ set(delta))[:5]  # the adapted layers and norms only: no embedding table
    encoder = ContextEncoder(head, base=base)
    assert np.array_equal(encoder.logits(TALK), ContextEncoder(head).logits(TALK))
    with pytest.raises(ValueError, match="base model"):
        ContextEncoder(head, model_dir=tmp_path, base=base)


class _FixedHead:
    """A context head that reads every phrase as ``probs``."""

    def __init__(self, probs: list[float]) -> None:
        self.probs = np.array(probs)

    def predict_proba(self, emb: np.ndarray, logp: np.ndarray) -> np.ndarray:
        return np.tile(self.probs, (len(logp), 1))


def test_the_blend_multiplies_the_two_readings(fitted_like) -> None:  # type: ignore[no-untyped-def]
    """``w_context * log p_context + w_encoder * log p_encoder``, over the blend's temperature; with no
    weight on the context head the encoder reads alone."""
    from moodbgm.emotion_encoder import ContextBlend

    _, head = fitted_like
    fixed = [0.4, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    emb, logp = np.zeros((len(TALK), 384)), np.zeros((len(TALK), 7))
    blended = dataclasses.replace(head, temperature=1.5, blend=(1.0, 2.0, 0.8))
    encoder = ContextEncoder(blended)
    want = np.log(fixed) + 2.0 * np.log(encoder.predict_proba(TALK))
    got = ContextBlend(_FixedHead(fixed), encoder)
    np.testing.assert_allclose(got.logits(emb, logp, TALK), want, atol=1e-9)
    assert got.temperature == 0.8
    np.testing.assert_allclose(got.predict_proba(emb, logp, TALK).sum(1), 1.0)
    alone = ContextBlend(_FixedHead(fixed), ContextEncoder(dataclasses.replace(head, blend=(0.0, 1.0, 1.0))))
    np.testing.assert_allclose(
        alone.predict_proba(emb, logp, TALK),
        alone.encoder.predict_proba(TALK),
        atol=1e-9,
    )
    with pytest.raises(ValueError, match="blend"):
        dataclasses.replace(head, blend=(0.0, 0.0, 1.0))


def test_spoken_renderings_look_like_raw_transcripts() -> None:
    """The trainer's spoken renderings (``train_context_encoder.spoken``): no case but "I", no punctuation
    but apostrophes, the words kept in order, fillers and false starts now and then; seeded."""
    import random
    import re

    from devtools.train_context_encoder import FILLERS, spoken

    text = "Honestly, I'm FURIOUS: he did it again, and I told him twice!"
    out = [spoken(text, random.Random(seed)) for seed in range(40)]
    assert out == [spoken(text, random.Random(seed)) for seed in range(40)]
    words = ["honestly", "I'm", "furious", "he", "did", "it", "again", "and", "I", "told", "him", "twice"]
    for o in out:
        assert re.fullmatch(r"[\w' ]+", o) and o.replace("I", "i") == o.lower(), o
        left = iter(o.split())
        assert all(w in left for w in words), o  # the words in order, with additions between
        added = len(o.split()) - len(words)
        assert added <= 2 + 2 * max(len(f.split()) for f in FILLERS), o
    assert any(len(o.split()) > len(words) for o in out) and any(o == " ".join(words) for o in out)


def test_a_weighted_temperature_counts_each_set_equally() -> None:
    """The blend's temperature (``protocol_t6.md``) is fitted on two sets of rows weighted equally
    (``train_emotion.fit_temperature`` with ``weight``): the same as repeating the smaller set's rows until
    both sets have as many, and between the temperatures either set alone would get."""
    from devtools.train_emotion import fit_temperature

    rng = np.random.default_rng(0)
    y_big, y_small = rng.integers(0, 7, 300), rng.integers(0, 7, 30)
    big = rng.normal(size=(300, 7)) * 4  # noisy logits: the wrong class often wins, a high temperature
    big[np.arange(300), y_big] += 3
    small = rng.normal(size=(30, 7))  # clean ones: the right class wins by far, a low temperature
    small[np.arange(30), y_small] += 6
    z, y = np.vstack([big, small]), np.concatenate([y_big, y_small])
    weight = np.concatenate([np.full(300, 1 / 300), np.full(30, 1 / 30)])
    t = fit_temperature(z, y, weight)
    repeated = fit_temperature(np.vstack([big, *[small] * 10]), np.concatenate([y_big, *[y_small] * 10]))
    assert t == pytest.approx(repeated, rel=1e-3)
    t_small, t_big = fit_temperature(small, y_small), fit_temperature(big, y_big)
    assert t_small < t < t_big and fit_temperature(z, y) > t  # unweighted, the big set decides
