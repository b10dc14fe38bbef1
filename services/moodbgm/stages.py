"""The stages of a job: ONE table (``STAGES``) of what each stage reads, writes, depends on and runs.

Everything else derives from it: the pipeline's order and keys, the Celery tasks and their queues,
the API's downloadable files, the metrics, the CLI's partial re-runs and docs/ARCHITECTURE.md (checked
by tests/test_architecture.py). ``tests/test_stages.py`` runs every runner and checks that the files
it reads and writes are the declared ones.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from moodbgm import media
from moodbgm.errors import InputError
from moodbgm.files import atomic_path, read_json, read_wav, wav_blocks, write_json, write_silence, write_wav
from moodbgm.jobs import JobDir, JobOptions
from moodbgm.stagegraph import in_background
from moodbgm.types import EmotionScores, Timeline, Transcript

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from moodbgm.config import Settings
    from moodbgm.models import Models

Report = Callable[[float], None]
"""Called by a runner with the fraction of its stage done, 0..1."""
Runner = Callable[[JobDir, JobOptions, "Models", Report], None]

INPUT = "input.*"
"""The uploaded video (``input.<ext>``)."""
TIMELINE_OVERRIDE = "timeline.override.json"
"""An edited timeline the user supplied (``moodbgm run --timeline``); replaces planning when present."""
TAKE = "take.json"
"""A "new take" of some sections (the page's editor, ``versions.py``): the seed and the spans to re-seed."""
TAKE_AUDIO = "take.wav"
"""The previous version's music, kept outside the re-seeded spans of a new take."""
BARS = "bars.json"
"""The composer's plan: per section start, end, tempo, metre and bar start times (none for Riffusion)."""
MIX_AAC = "mix.m4a"
"""The mix as the output's AAC soundtrack (encoded by the mix stage, copied by the mux)."""
USER_FILES = (TIMELINE_OVERRIDE, TAKE, TAKE_AUDIO)
"""Files the user (or the editor) supplies, not a stage: keyed by content, never served as artifacts."""


@dataclass(frozen=True)
class Stage:
    name: str
    inputs: tuple[str, ...]  # files of the job directory it always reads
    outputs: tuple[str, ...]  # files it always writes
    optional: tuple[str, ...]  # files it reads or writes only in some cases
    options: tuple[str, ...]  # JobOptions fields its result depends on
    settings: tuple[str, ...]  # Settings fields (per process model choices) its result depends on
    model: str | None  # the Models getter it uses (preloaded while earlier stages run)
    runner: Runner
    queue: str  # Celery queue of its task
    weight: float  # share of a typical job's time, for overall progress

    @property
    def task(self) -> str:
        """Its Celery task name."""
        return f"moodbgm.{self.name}"

    def key_options(self, options: JobOptions, settings: Settings) -> dict[str, Any]:
        """The option values its result depends on (part of its key)."""
        return {
            **{f: getattr(options, f) for f in self.options},
            **{f: getattr(settings, f) for f in self.settings},
        }


# ---------------------------------------------------------------- runners
def _media_info(job: JobDir) -> dict[str, Any]:
    data: dict[str, Any] = read_json(job.path("media.json"))
    return data


def _media(job: JobDir, options: JobOptions, models: Models, report: Report) -> None:
    info = media.require_video(media.probe(job.input_path()))
    report(0.2)
    cuts = media.detect_scene_cuts(info.path)
    report(0.6)
    media.extract_audio(info.path, job.path("audio.wav"))
    write_json(job.path("media.json"), {**info.to_dict(), "cuts": list(cuts)})


def _separate(job: JobDir, options: JobOptions, models: Models, report: Report) -> None:
    if _media_info(job)["audio"] is None:  # no soundtrack: the voice is silence of the same length
        import soundfile as sf

        info = sf.info(str(job.path("audio.wav")))
        write_silence(job.path("voice.wav"), info.frames, info.samplerate, channels=1)
        write_json(job.path("speech.json"), {"speech": []})
        return
    models.separator().separate_file(job.path("audio.wav"), job.path("voice.wav"), progress=report)
    # the voice activity the mix ducks under, found here (beside transcription) rather than in the mix,
    # so that the mix and every re-render after an edit start from it
    speech = models.speech_detector().detect_file(job.path("voice.wav"))
    write_json(job.path("speech.json"), {"speech": [list(span) for span in speech]})


def _stt(job: JobDir, options: JobOptions, models: Models, report: Report) -> None:
    info = _media_info(job)
    if info["audio"] is None:
        transcript = Transcript(language="", phrases=())
    else:
        audio = media.load_audio(job.path("audio.wav"), sample_rate=16_000)
        transcript = models.transcriber().transcribe(audio, progress=report)
    write_json(job.path("transcript.json"), transcript.to_dict())


def _emotion(job: JobDir, options: JobOptions, models: Models, report: Report) -> None:
    from moodbgm.emotion import classify_transcript

    transcript = Transcript.from_dict(read_json(job.path("transcript.json")))
    result = classify_transcript(models.classifier(), transcript)  # phrases in context; language checked
    write_json(job.path("emotions.json"), result.to_dict(transcript.phrases))
    job.update(emotion_warning=result.warning)


def load_emotions(job: JobDir) -> list[EmotionScores]:
    return [EmotionScores.from_dict(r) for r in read_json(job.path("emotions.json"))["phrases"]]


def _timeline(job: JobDir, options: JobOptions, models: Models, report: Report) -> None:
    from moodbgm.replan import timeline_options
    from moodbgm.timeline import load_timeline_override, plan_timeline

    info = _media_info(job)
    override = job.path(TIMELINE_OVERRIDE)
    if override.exists():
        try:
            timeline = load_timeline_override(read_json(override), info["duration"])
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{override.name}: {e}") from None
    else:
        transcript = Transcript.from_dict(read_json(job.path("transcript.json")))
        timeline = plan_timeline(
            transcript.phrases, load_emotions(job), info["duration"], info["cuts"], timeline_options(options)
        )
    write_json(job.path("timeline.json"), timeline.to_dict())


def _generate(job: JobDir, options: JobOptions, models: Models, report: Report) -> None:
    from moodbgm.generate.base import GenerateOptions

    timeline = Timeline.from_dict(read_json(job.path("timeline.json")))
    generator = models.generator(options.generator)
    take = read_json(job.path(TAKE)) if job.path(TAKE).exists() else None
    seed = int(take["seed"]) if take else options.seed
    bed = generator.generate(
        timeline, timeline.duration, GenerateOptions(style=options.style, seed=seed), progress=report
    )
    if take:  # a new take: the previous music outside the re-seeded spans, bit for bit
        from moodbgm.versions import splice

        previous, sr = read_wav(job.path(TAKE_AUDIO))
        if sr != bed.sample_rate or previous.shape != bed.audio.shape:
            raise InputError("a new take needs the previous version's music at the same rate and length")
        spans = [(float(a), float(b)) for a, b in take["spans"]]
        audio = splice(previous, bed.audio.astype(previous.dtype), sr, spans, float(take["xfade"]))
        bed = dataclasses.replace(bed, audio=audio, midi=None)  # the score of the whole new take is not it
        log.warning("job %s: a new take of %s; no MIDI score is written for a spliced take", job.id, spans)
    if bed.midi is not None:
        with atomic_path(job.path("bgm.mid")) as tmp:
            tmp.write_bytes(bed.midi)
    else:
        job.path("bgm.mid").unlink(missing_ok=True)  # never leave another generator's score beside it
    if bed.bars is not None:  # the composer's tempo and bar plan (the editor's bar guides)
        write_json(job.path(BARS), bed.bars)
    else:
        job.path(BARS).unlink(missing_ok=True)  # a generator without a plan records no bar lines
    write_wav(job.path("bgm.wav"), bed.audio, bed.sample_rate)


def _mix(job: JobDir, options: JobOptions, models: Models, report: Report) -> None:
    from moodbgm.mix import mix_files

    has_audio = _media_info(job)["audio"] is not None
    speech = [(float(a), float(b)) for a, b in read_json(job.path("speech.json"))["speech"]]
    result = mix_files(
        job.path("voice.wav") if has_audio else None,
        job.path("bgm.wav"),
        job.path("mix.wav"),
        speech,
        options.mix_options(),
        out_aac=job.path(MIX_AAC),  # the mux only copies it: the encoding overlaps the mixing
    )
    write_json(job.path("mix.json"), {"speech": speech, **result.to_dict()})


def _mux(job: JobDir, options: JobOptions, models: Models, report: Report) -> None:
    src = job.input_path()
    info = media.MediaInfo.from_dict({**_media_info(job), "path": str(src)})  # probed by the media stage
    media.mux(src, job.path(MIX_AAC), job.path("output.mp4"), info)


def _report(job: JobDir, options: JobOptions, models: Models, report: Report) -> None:
    from moodbgm.report import render_timeline_png

    transcript = Transcript.from_dict(read_json(job.path("transcript.json")))
    timeline = Timeline.from_dict(read_json(job.path("timeline.json")))
    emotions = load_emotions(job)

    def draw() -> None:
        peaks = _millisecond_peaks(job.path("audio.wav"))  # all the waveform's envelope needs
        render_timeline_png(job.path("timeline.png"), peaks, 1000, transcript, emotions, timeline)

    in_background(draw, "chart")  # beside composing and mixing, on the cores they leave idle


def _millisecond_peaks(wav: Path) -> np.ndarray:
    """The largest absolute sample (of the channels' mean) in each millisecond of ``wav``, read in
    blocks: flat memory however long the video."""
    import soundfile as sf

    hop = sf.info(str(wav)).samplerate // 1000
    parts = []
    for block in wav_blocks(wav, 10_000 * hop, mono=True):
        a = np.abs(block)
        full = len(a) // hop * hop
        parts.append(a[:full].reshape(-1, hop).max(axis=1))
        if full < len(a):
            parts.append(a[full:].max(keepdims=True))
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


# ---------------------------------------------------------------- the table
MIX_OPTIONS = ("duck_db", "target_lufs", "music_level_db", "true_peak_db")

# fmt: off
STAGES: tuple[Stage, ...] = (
    Stage("media", (INPUT,), ("media.json", "audio.wav"), (), (), (), None, _media, "media", 0.03),
    Stage("separate", ("media.json", "audio.wav"), ("voice.wav", "speech.json"), (), (), ("separator",),
          "separator", _separate, "media", 0.15),
    Stage("stt", ("media.json", "audio.wav"), ("transcript.json",), (), (),
          ("stt_backend", "stt_model"), "transcriber", _stt, "stt", 0.30),
    Stage("emotion", ("transcript.json",), ("emotions.json",), (), (),
          ("emotion_backend", "emotion_model"), "classifier", _emotion, "nlp", 0.04),
    Stage("timeline", ("media.json", "transcript.json", "emotions.json"), ("timeline.json",),
          (TIMELINE_OVERRIDE,), ("emotion", "min_section", "min_confidence"), (),
          None, _timeline, "nlp", 0.02),
    Stage("generate", ("timeline.json",), ("bgm.wav",), ("bgm.mid", BARS, TAKE, TAKE_AUDIO),
          ("generator", "style", "seed"), (),
          None, _generate, "generate", 0.30),
    Stage("mix", ("media.json", "voice.wav", "speech.json", "bgm.wav"), ("mix.wav", MIX_AAC, "mix.json"),
          (), MIX_OPTIONS, (), None, _mix, "media", 0.10),
    Stage("mux", (INPUT, "media.json", MIX_AAC), ("output.mp4",), (), (), (), None, _mux, "media", 0.03),
    Stage("report", ("audio.wav", "transcript.json", "emotions.json", "timeline.json"), ("timeline.png",),
          (), (), (), None, _report, "media", 0.03),
)
# fmt: on
BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
QUEUES: tuple[str, ...] = tuple(dict.fromkeys(s.queue for s in STAGES))
"""The Celery queues, in stage order."""
PRODUCER: dict[str, str] = {f: s.name for s in STAGES for f in (*s.outputs, *s.optional) if f in s.outputs}
"""Which stage writes each file."""
ARTIFACTS: tuple[str, ...] = tuple(
    f for s in STAGES for f in (*s.outputs, *s.optional) if f not in USER_FILES
)
"""Every file a job can produce, in stage order."""


def upstream(stage: Stage) -> tuple[str, ...]:
    """The stages whose outputs ``stage`` reads (their keys are part of its key)."""
    return tuple(dict.fromkeys(PRODUCER[f] for f in stage.inputs if f in PRODUCER))


def stages_for(files: tuple[str, ...]) -> tuple[Stage, ...]:
    """The stages that make ``files``, with everything upstream of them, in order."""
    need = {PRODUCER[f] for f in files}
    for s in reversed(STAGES):
        if s.name in need:
            need.update(upstream(s))
    return tuple(s for s in STAGES if s.name in need)


def downstream(name: str) -> tuple[str, ...]:
    """``name`` and every stage that (transitively) reads its outputs, in order."""
    out = {name}
    for s in STAGES:
        if any(u in out for u in upstream(s)):
            out.add(s.name)
    return tuple(s.name for s in STAGES if s.name in out)
