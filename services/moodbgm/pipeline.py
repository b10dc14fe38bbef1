"""Runs the stages over a job directory (DESIGN.md).

Each stage reads files of the job directory, writes its outputs atomically and records in
``job.json`` a key: the hash of its options and of its inputs' keys. A stage whose outputs exist
and whose key is unchanged is skipped, so re-running a job after a crash (or a redelivered Celery
task) redoes only what is missing or what changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import soundfile as sf

from moodbgm import __version__, media
from moodbgm.errors import CancelledError, InputError
from moodbgm.files import read_json, write_json, write_silence, write_wav
from moodbgm.jobs import JobDir, JobOptions
from moodbgm.models import Models
from moodbgm.stagegraph import run_graph
from moodbgm.types import EmotionScores, Timeline, Transcript

log = logging.getLogger(__name__)

StageProgress = Callable[[str, float], None]
"""Called with (stage, fraction of that stage done)."""


@dataclass(frozen=True)
class Stage:
    name: str
    queue: str
    outputs: tuple[str, ...]
    inputs: tuple[str, ...]  # upstream stages whose results this one reads
    weight: float  # share of a typical job's time, for overall progress


STAGES: tuple[Stage, ...] = (
    Stage("media", "media", ("media.json", "audio.wav"), (), 0.03),
    Stage("separate", "media", ("voice.wav",), ("media",), 0.15),
    Stage("stt", "stt", ("transcript.json",), ("media",), 0.30),
    Stage("emotion", "nlp", ("emotions.json",), ("stt",), 0.04),
    Stage("timeline", "nlp", ("timeline.json",), ("media", "emotion"), 0.02),
    Stage("generate", "generate", ("bgm.wav",), ("timeline",), 0.30),
    Stage("mix", "media", ("mix.wav",), ("separate", "generate"), 0.10),
    Stage("mux", "media", ("output.mp4",), ("mix",), 0.03),
    Stage("report", "media", ("timeline.png",), ("separate", "timeline"), 0.03),
)
BY_NAME = {s.name: s for s in STAGES}
TIMELINE_OVERRIDE = "timeline.override.json"
MODEL_OF = {"separate": "separator", "stt": "transcriber", "emotion": "classifier", "mix": "speech_detector"}
"""The ``Models`` getter each stage uses (preloaded by ``run_job`` while earlier stages run)."""
_TOTAL_WEIGHT = sum(s.weight for s in STAGES)
_RECORD_LOCK = threading.Lock()  # stages of one run_job finish in parallel threads (stagegraph)


def stage_options(stage: str, options: JobOptions, models: Models) -> dict[str, Any]:
    """The options a stage's result depends on (part of its key)."""
    o = options
    table: dict[str, dict[str, Any]] = {
        "media": {},
        "separate": {"separator": models.settings.separator},
        "stt": {"backend": models.settings.stt_backend, "model": models.settings.stt_model},
        "emotion": {"backend": models.settings.emotion_backend, "model": models.settings.emotion_model},
        "timeline": {"emotion": o.emotion, "min_section": o.min_section, "min_confidence": o.min_confidence},
        "generate": {"generator": o.generator, "style": o.style, "seed": o.seed},
        "mix": {"duck_db": o.duck_db, "target_lufs": o.target_lufs},
        "mux": {},
        "report": {},
    }
    return table[stage]


def stage_key(job: JobDir, stage: Stage, options: JobOptions, models: Models, record: dict[str, Any]) -> str:
    parts: dict[str, Any] = {"stage": stage.name, "options": stage_options(stage.name, options, models)}
    parts["upstream"] = {u: record.get("stages", {}).get(u, {}).get("key") for u in stage.inputs}
    if stage.name == "media":
        st = job.input_path().stat()
        parts["input"] = [job.input_path().name, st.st_size, st.st_mtime_ns]
    if stage.name == "timeline":
        override = job.path(TIMELINE_OVERRIDE)
        parts["override"] = override.read_text() if override.exists() else None
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def is_done(job: JobDir, stage: Stage, key: str, record: dict[str, Any]) -> bool:
    done = record.get("stages", {}).get(stage.name, {})
    return done.get("key") == key and all(job.path(f).exists() for f in stage.outputs)


def run_stage(job: JobDir, name: str, models: Models, progress: StageProgress | None = None) -> bool:
    """Run one stage unless its outputs are current. Returns True when it did work."""
    stage = BY_NAME[name]
    record = job.read()
    if record.get("status") == "cancelled":
        raise CancelledError(f"job {job.id} was cancelled")
    options = JobOptions.from_dict(record.get("options", {}))
    key = stage_key(job, stage, options, models, record)
    if is_done(job, stage, key, record):
        log.info("job %s: %s is up to date", job.id, name)
        return False
    with _RECORD_LOCK:
        job.update(status="running", stage=name)
    t0 = time.perf_counter()

    def report(fraction: float) -> None:
        if progress is not None:
            progress(name, min(max(fraction, 0.0), 1.0))

    report(0.0)
    _RUNNERS[name](job, options, models, report)
    report(1.0)
    with _RECORD_LOCK:
        record = job.read()
        stages = record.setdefault("stages", {})
        stages[name] = {"key": key, "seconds": round(time.perf_counter() - t0, 3), "finished": time.time()}
        record["progress"] = round(sum(BY_NAME[n].weight for n in stages if n in BY_NAME) / _TOTAL_WEIGHT, 4)
        job.write(record)
    return True


def overall_progress(stage: str, fraction: float) -> float:
    total = sum(s.weight for s in STAGES)
    before = 0.0
    for s in STAGES:
        if s.name == stage:
            return round((before + s.weight * fraction) / total, 4)
        before += s.weight
    raise KeyError(stage)


def run_job(job: JobDir, models: Models, progress: StageProgress | None = None) -> JobDir:
    """All stages in order; marks the record done or failed (with the error in plain words)."""
    job.update(status="running", error=None, versions=versions())
    record = job.read()
    todo = [s.name for s in STAGES if s.name not in record.get("stages", {})]
    models.preload(*(MODEL_OF[s] for s in todo if s in MODEL_OF))
    try:
        # independent stages overlap (separation beside transcription); see stagegraph.py
        deps = {s.name: s.inputs for s in STAGES}
        run_graph([s.name for s in STAGES], deps, lambda name: run_stage(job, name, models, progress))
    except CancelledError:
        raise
    except Exception as e:
        kind = "input" if isinstance(e, InputError) else "internal"
        job.update(status="failed", error={"kind": kind, "message": str(e)})
        raise
    job.update(status="done", stage=None, progress=1.0)
    return job


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"moodbgm": __version__}
    for pkg in ("faster-whisper", "ctranslate2", "torch", "numpy", "diffusers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


# ---------------------------------------------------------------- stages
Report = Callable[[float], None]


def _media(job: JobDir, options: JobOptions, models: Models, report: Report) -> None:
    info = media.require_video(media.probe(job.input_path()))
    report(0.2)
    cuts = media.detect_scene_cuts(info.path)
    report(0.6)
    media.extract_audio(info.path, job.path("audio.wav"))
    write_json(job.path("media.json"), {**info.to_dict(), "cuts": list(cuts)})


def _media_info(job: JobDir) -> dict[str, Any]:
    data: dict[str, Any] = read_json(job.path("media.json"))
    return data


def _separate(job: JobDir, options: JobOptions, models: Models, report: Report) -> None:
    if _media_info(job)["audio"] is None:  # no soundtrack: the voice is silence of the same length
        info = sf.info(str(job.path("audio.wav")))
        write_silence(job.path("voice.wav"), info.frames, info.samplerate, channels=1)
        return
    models.separator().separate_file(job.path("audio.wav"), job.path("voice.wav"), progress=report)


def _stt(job: JobDir, options: JobOptions, models: Models, report: Report) -> None:
    info = _media_info(job)
    if info["audio"] is None:
        transcript = Transcript(language="", phrases=())
    else:
        audio = media.load_audio(job.path("audio.wav"), sample_rate=16_000)
        transcript = models.transcriber().transcribe(audio, progress=report)
    write_json(job.path("transcript.json"), transcript.to_dict())


def _emotion(job: JobDir, options: JobOptions, models: Models, report: Report) -> None:
    transcript = Transcript.from_dict(read_json(job.path("transcript.json")))
    texts = [p.text for p in transcript.phrases]
    scores = models.classifier().classify(texts) if texts else []
    rows = [
        {"start": p.start, "end": p.end, "text": p.text, **s.to_dict()}
        for p, s in zip(transcript.phrases, scores, strict=True)
    ]
    write_json(job.path("emotions.json"), {"phrases": rows})


def load_emotions(job: JobDir) -> list[EmotionScores]:
    return [EmotionScores.from_dict(r) for r in read_json(job.path("emotions.json"))["phrases"]]


def _timeline(job: JobDir, options: JobOptions, models: Models, report: Report) -> None:
    from moodbgm.timeline import TimelineOptions, load_timeline_override, plan_timeline

    info = _media_info(job)
    override = job.path(TIMELINE_OVERRIDE)
    if override.exists():
        try:
            timeline = load_timeline_override(read_json(override), info["duration"])
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{override.name}: {e}") from None
    else:
        transcript = Transcript.from_dict(read_json(job.path("transcript.json")))
        topts = TimelineOptions(
            min_section=options.min_section,
            min_confidence=options.min_confidence,
            force_emotion=options.emotion,
        )
        timeline = plan_timeline(
            transcript.phrases, load_emotions(job), info["duration"], info["cuts"], topts
        )
    write_json(job.path("timeline.json"), timeline.to_dict())


def _generate(job: JobDir, options: JobOptions, models: Models, report: Report) -> None:
    from moodbgm.generate.base import GenerateOptions

    timeline = Timeline.from_dict(read_json(job.path("timeline.json")))
    generator = models.generator(options.generator)
    bed = generator.generate(
        timeline, timeline.duration, GenerateOptions(style=options.style, seed=options.seed), progress=report
    )
    if bed.midi is not None:
        from moodbgm.files import atomic_path

        with atomic_path(job.path("bgm.mid")) as tmp:
            tmp.write_bytes(bed.midi)
    write_wav(job.path("bgm.wav"), bed.audio, bed.sample_rate)


def _mix(job: JobDir, options: JobOptions, models: Models, report: Report) -> None:
    from moodbgm.mix import MixOptions, mix_files

    has_audio = _media_info(job)["audio"] is not None
    speech: list[tuple[float, float]] = []
    if has_audio:
        speech = models.speech_detector().detect_file(job.path("voice.wav"))
    report(0.3)
    result = mix_files(
        job.path("voice.wav") if has_audio else None,
        job.path("bgm.wav"),
        job.path("mix.wav"),
        speech,
        MixOptions(duck_db=options.duck_db, target_lufs=options.target_lufs),
    )
    write_json(job.path("mix.json"), {"speech": speech, **result.to_dict()})


def _mux(job: JobDir, options: JobOptions, models: Models, report: Report) -> None:
    media.mux(job.input_path(), job.path("mix.wav"), job.path("output.mp4"))


def _report(job: JobDir, options: JobOptions, models: Models, report: Report) -> None:
    from moodbgm.report import render_timeline_png

    transcript = Transcript.from_dict(read_json(job.path("transcript.json")))
    timeline = Timeline.from_dict(read_json(job.path("timeline.json")))
    audio = media.load_audio(job.path("audio.wav"), sample_rate=8_000)
    render_timeline_png(job.path("timeline.png"), audio, 8_000, transcript, load_emotions(job), timeline)


_RUNNERS: dict[str, Callable[[JobDir, JobOptions, Models, Report], None]] = {
    "media": _media,
    "separate": _separate,
    "stt": _stt,
    "emotion": _emotion,
    "timeline": _timeline,
    "generate": _generate,
    "mix": _mix,
    "mux": _mux,
    "report": _report,
}
