"""The ``moodbgm`` command line (docs/ARCHITECTURE.md).

Exit codes: 0 done, 2 bad input or usage, 1 internal failure."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from moodbgm import __version__
from moodbgm.config import Settings
from moodbgm.errors import InputError

if TYPE_CHECKING:
    from moodbgm.types import Transcript

log = logging.getLogger("moodbgm")


class _Bar:
    """A tqdm bar over a job's stages (0–100 %), on stderr."""

    def __init__(self, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=100,
            unit="%",
            disable=not enabled or not sys.stderr.isatty(),
            bar_format="{l_bar}{bar}| {elapsed}<{remaining}",
        )

    def stage(self, name: str, fraction: float) -> None:
        from moodbgm.pipeline import overall_progress

        self.bar.set_description(name.ljust(8))
        self.bar.n = round(100 * overall_progress(name, fraction), 1)
        self.bar.refresh()

    def fraction(self, label: str) -> Callable[[float], None]:
        def update(f: float) -> None:
            self.bar.set_description(label)
            self.bar.n = round(100 * f, 1)
            self.bar.refresh()

        return update

    def close(self) -> None:
        self.bar.close()


@contextlib.contextmanager
def _spinner(enabled: bool, label: str) -> Iterator[None]:
    """A spinner with elapsed time on stderr while something without progress runs."""
    from tqdm import tqdm

    done = threading.Event()
    with tqdm(desc=label, bar_format="{desc} {elapsed}", disable=not enabled) as bar:
        ticker = threading.Thread(target=lambda: [bar.refresh() for _ in iter(lambda: done.wait(0.2), True)])
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()


def _settings(args: argparse.Namespace) -> Settings:
    updates = {
        k: v for k in ("stt_model", "stt_backend", "device") if (v := getattr(args, k, None)) is not None
    }
    return Settings().model_copy(update=updates)


def cmd_run(args: argparse.Namespace) -> int:
    from moodbgm.jobs import JobOptions, create_job
    from moodbgm.models import Models
    from moodbgm.pipeline import TIMELINE_OVERRIDE, run_job

    settings = _settings(args)
    options = JobOptions.from_settings(
        settings,
        generator=args.generator,
        style=args.style,
        seed=args.seed,
        emotion=args.emotion,
        min_section=args.min_section,
    )
    from moodbgm import media

    media.require_video(media.probe(args.video))  # reject bad input before making a job directory
    from moodbgm.pipeline import BESIDE_STT

    models = Models(settings, stt_reserve_cores=BESIDE_STT)  # separation runs beside transcription
    models.generator(options.generator)  # missing weights fail now, not after transcription
    job = create_job(args.outdir, args.video, options)
    _set_override(job.path(TIMELINE_OVERRIDE), args.timeline)
    from tqdm.contrib.logging import logging_redirect_tqdm

    from moodbgm.pipeline import STAGES
    from moodbgm.progress import JobProgress

    bar = JobProgress({s.name: s.weight for s in STAGES}, enabled=not args.quiet)  # lines when not a tty
    try:
        with logging_redirect_tqdm():
            run_job(job, models, progress=bar, time_limit_s=settings.task_soft_time_limit_s)
    finally:
        bar.close()
    print(job.path("output.mp4"))
    return 0


def _set_override(target: Path, source: str | None) -> None:
    if source is None:
        target.unlink(missing_ok=True)
        return
    src = Path(source)
    if not src.is_file():
        raise InputError(f"{src}: no such timeline file")
    try:
        json.loads(src.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{src}: not valid JSON ({e})") from None
    if src.resolve() != target.resolve():
        shutil.copyfile(src, target)


def cmd_transcribe(args: argparse.Namespace) -> int:
    from moodbgm import media
    from moodbgm.files import write_json
    from moodbgm.stt import build_transcriber

    settings = _settings(args)
    audio = media.load_audio(args.media, sample_rate=16_000)
    transcriber = build_transcriber(
        settings.stt_backend, settings.stt_model, device=settings.device, language=settings.stt_language
    )
    bar = _Bar(not args.quiet)
    try:
        transcript = transcriber.transcribe(audio, progress=bar.fraction("transcribe"))
    finally:
        bar.close()
    if args.output:
        if args.json:
            write_json(args.output, transcript.to_dict())
        else:
            Path(args.output).write_text(_lines(transcript), encoding="utf-8")
        print(args.output)
    elif args.json:
        print(json.dumps(transcript.to_dict(), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(_lines(transcript))
    return 0


def _lines(transcript: Transcript) -> str:
    return "".join(f"[{p.start:.2f} - {p.end:.2f}] {p.text}\n" for p in transcript.phrases)


def cmd_classify(args: argparse.Namespace) -> int:
    from moodbgm.emotion import build_classifier

    settings = _settings(args)
    backend = args.backend or settings.emotion_backend
    model = args.model or (settings.emotion_model if backend == "transformers" else None)
    with _spinner(not args.quiet and sys.stderr.isatty(), "loading the emotion model"):
        classifier = build_classifier(backend, model)
    lines = [ln.strip() for ln in sys.stdin]
    texts = [t for t in lines if t]
    for scores in classifier.classify(texts) if texts else []:
        print(json.dumps(scores.to_dict()))
    return 0


def cmd_timeline(args: argparse.Namespace) -> int:
    from moodbgm.jobs import JobDir, JobOptions
    from moodbgm.models import Models
    from moodbgm.pipeline import run_stage
    from moodbgm.stages import TIMELINE_OVERRIDE, stages_for

    job = JobDir(args.outdir)
    record = job.read()
    if not job.path("transcript.json").exists():
        raise InputError(f"{job.root}: no transcript.json; run `moodbgm run` first")
    settings = _settings(args)
    overrides = dict(record.options)
    if args.emotion is not None:
        overrides["emotion"] = args.emotion if args.emotion != "auto" else None
    if args.min_section is not None:
        overrides["min_section"] = args.min_section
    options = JobOptions.from_settings(settings, **overrides)
    job.update(options=options.to_dict())
    if args.timeline is not None:
        _set_override(job.path(TIMELINE_OVERRIDE), args.timeline)
    models = Models(settings)
    bar = _Bar(not args.quiet)
    try:
        for stage in stages_for(REPLANNED):  # the stages already current are skipped
            run_stage(job, stage.name, models, progress=bar.stage)
    finally:
        bar.close()
    for name in REPLANNED:
        print(job.path(name))
    return 0


REPLANNED = ("emotions.json", "timeline.json", "timeline.png")
"""What ``moodbgm timeline`` re-makes (with whatever they depend on, when not current)."""


def cmd_serve(args: argparse.Namespace) -> int:
    from moodbgm.api.server import serve

    return serve(Settings(), host=args.host, port=args.port)


def cmd_worker(args: argparse.Namespace) -> int:
    from moodbgm.worker.main import run_worker

    return run_worker(Settings(), queues=args.queues, concurrency=args.concurrency)


def cmd_submit(args: argparse.Namespace) -> int:
    """Upload videos to a running API (``moodbgm.client``); with --wait, follow them and download."""
    from moodbgm.client import ApiError, Client, Job

    settings = Settings()
    videos = [Path(v) for v in args.videos]
    for v in videos:
        if not v.is_file():
            raise InputError(f"{v}: no such file")
    options = {"generator": args.generator, "style": args.style, "seed": args.seed, "emotion": args.emotion}
    key = args.key or settings.api_key or None
    try:
        with Client(args.url or settings.api_url, key) as api:
            submitted = [(v, api.submit(v, **options)) for v in videos]
            for v, sub in submitted:
                print(f"{sub.id}\t{v}", flush=True)
            if not args.wait:
                return 0
            code = 0
            stems = [v.stem for v in videos]
            for v, sub in submitted:
                seen: list[str] = []

                def report(job: Job, v: Path = v, seen: list[str] = seen) -> None:
                    line = f"{v.name}: {job.status}" + (
                        f" {job.stage} {job.progress:.0f}%" if job.stage else ""
                    )
                    if not args.quiet and (not seen or seen[-1] != line):
                        print(line, file=sys.stderr, flush=True)
                        seen.append(line)

                job = api.wait(sub.id, poll_s=args.poll, on_update=report)
                if job.status != "done":
                    err = job.error or {}
                    print(f"moodbgm: {v}: {job.status}: {err.get('message', '')}", file=sys.stderr)
                    code = max(code, 2 if err.get("kind") == "input" else 1)
                    continue
                if args.outdir:
                    name = v.stem if stems.count(v.stem) == 1 else f"{v.stem}-{job.id[:8]}"
                    print(api.download(job.id, "output.mp4", Path(args.outdir) / f"{name}.mp4"), flush=True)
            return code
    except ApiError as e:
        print(f"moodbgm: the API refused: {e}", file=sys.stderr)
        return 2 if e.status < 500 else 1


def build_parser() -> argparse.ArgumentParser:
    from moodbgm.stages import QUEUES
    from moodbgm.types import EMOTIONS

    p = argparse.ArgumentParser(prog="moodbgm", description=__doc__)
    p.add_argument("--version", action="version", version=f"moodbgm {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, warnings only")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="score a video: the whole pipeline in-process")
    r.add_argument("video")
    r.add_argument("-o", "--outdir", required=True, help="job directory to write")
    r.add_argument("--generator", choices=("composer", "riffusion"))
    r.add_argument("--style", help="cinematic, lofi, electronic or acoustic")
    r.add_argument("--seed", type=int)
    r.add_argument("--emotion", choices=EMOTIONS, help="force one emotion for the whole video")
    r.add_argument("--timeline", help="use this edited timeline.json instead of planning one")
    r.add_argument("--min-section", type=float, help="shortest music section in seconds (default 5)")
    r.add_argument("--stt-model", help="base, tiny.en or a faster-whisper model directory")
    r.add_argument("--device", choices=("auto", "cpu", "cuda"))
    r.set_defaults(func=cmd_run)

    t = sub.add_parser("transcribe", help="speech to text, one phrase a line")
    t.add_argument("media")
    t.add_argument("--json", action="store_true", help="the transcript.json form")
    t.add_argument("-o", "--output", help="write to this file instead of stdout")
    t.add_argument("--stt-model", help="base, tiny.en or a faster-whisper model directory")
    t.add_argument("--stt-backend", choices=("faster-whisper", "openai-whisper"))
    t.add_argument("--device", choices=("auto", "cpu", "cuda"))
    t.set_defaults(func=cmd_transcribe)

    c = sub.add_parser("classify", help="text lines on stdin -> JSON lines with label, confidence, scores")
    c.add_argument("--backend", choices=("embedded", "transformers"))
    c.add_argument("--model", help="transformers backend: local model directory or HF cache id")
    c.set_defaults(func=cmd_classify)

    tl = sub.add_parser("timeline", help="re-plan the emotion timeline of an existing job directory")
    tl.add_argument("outdir")
    tl.add_argument("--emotion", choices=(*EMOTIONS, "auto"), help="force one emotion ('auto' to unset)")
    tl.add_argument("--timeline", help="use this edited timeline.json")
    tl.add_argument("--min-section", type=float)
    tl.set_defaults(func=cmd_timeline)

    s = sub.add_parser("serve", help="REST API + web form")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.set_defaults(func=cmd_serve)

    w = sub.add_parser("worker", help="Celery worker")
    w.add_argument("--queues", default=",".join(QUEUES), help="comma-separated queues")
    w.add_argument("--concurrency", type=int, default=1)
    w.set_defaults(func=cmd_worker)

    sm = sub.add_parser("submit", help="upload videos to a running API (MOODBGM_API_URL, MOODBGM_API_KEY)")
    sm.add_argument("videos", nargs="+", metavar="VIDEO")
    sm.add_argument("--wait", action="store_true", help="follow the jobs until they finish")
    sm.add_argument("-o", "--outdir", help="with --wait: download each output.mp4 here")
    sm.add_argument("--url", help="the API (default MOODBGM_API_URL, http://127.0.0.1:8000)")
    sm.add_argument("--key", help="API key (default MOODBGM_API_KEY)")
    sm.add_argument("--generator", choices=("composer", "riffusion"))
    sm.add_argument("--style", help="cinematic, lofi, electronic or acoustic")
    sm.add_argument("--seed", type=int)
    sm.add_argument("--emotion", choices=EMOTIONS, help="force one emotion for the whole video")
    sm.add_argument("--poll", type=float, default=1.0, help="seconds between status reads")
    sm.set_defaults(func=cmd_submit)

    sc = sub.add_parser("scale", help="set the replicas of a queue's worker Deployment (Kubernetes)")
    sc.add_argument("rest", nargs=argparse.REMAINDER, help="QUEUE N [--namespace NS]")
    sc.set_defaults(func=lambda a: __import__("moodbgm.scale", fromlist=["main"]).main(a.rest))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("faster_whisper", "httpx", "urllib3", "matplotlib", "PIL", "numba"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    try:
        return int(args.func(args) or 0)
    except InputError as e:
        print(f"moodbgm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("moodbgm: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        log.debug("internal failure", exc_info=True)
        print(f"moodbgm: internal error: {type(e).__name__}: {e} (run with -v for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
