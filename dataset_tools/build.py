"""Tracks -> spectrogram/caption data set in the Hugging Face ``imagefolder`` layout.

Output folder::

    dataset.json        manifest: spectrogram params, build options, counts (params travel with data)
    metadata.jsonl      one line per image: file_name, text, emotion, source, offset, genre, style, bpm
    rejects.jsonl       one line per track left out: source, kind, reason (see below)
    images/*.png        512-column spectrogram crops, params embedded in each PNG
    .work/*.json        per-track results (resuming; hidden, so ``datasets`` ignores it)

Each track is one unit of work (a process pool runs them): decode at the codec's rate, draw seeded
crop offsets, reject near-silent crops (RMS around the mean, so a DC offset counts as silence),
remove the DC offset and loudness-normalise the rest, encode and save. A crop whose PNG
exists is not encoded again, and a track whose result file is complete is not decoded again;
``metadata.jsonl`` is rebuilt from the result files in track order, so the same inputs and seed give
the same files whatever the worker count or how often the build was interrupted.

A track that cannot be used is left out and the build goes on; ``rejects.jsonl`` lists it with its
``kind``: ``error`` (the file cannot be decoded: ``NotMediaError``, ``TruncatedMediaError``, ... from
``moodbgm.media``, or libsndfile's error), ``sample_rate`` (recorded below ``min_source_rate``, 22.05 kHz
by default: nothing above half its rate, which the codec's 10 kHz mel range would learn as dull),
``too_short`` (shorter than one crop) or ``silent`` (every crop below ``min_rms_dbfs``). Rejected tracks
are tried again when a build is resumed.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf
import torch
from tqdm import tqdm

from dataset_tools.crops import crop_offsets, load_mono, normalize_loudness, rms_dbfs, stable_hash
from dataset_tools.sources import DatasetError, Track
from moodbgm.errors import MoodbgmError
from moodbgm.files import atomic_path, read_json, write_json
from moodbgm.generate.spectrogram import SpectrogramCodec, SpectrogramParams, save_png
from moodbgm.types import EMOTIONS

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: captions from emotion, style and tempo only; rejects.jsonl
_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class BuildOptions:
    """How crops are drawn and processed. ``width`` is in image columns (512: 5.12 s)."""

    crops_per_track: int = 8
    width: int = 512
    seed: int = 0
    min_rms_dbfs: float = -40.0
    target_lufs: float = -20.0
    min_source_rate: int = 22_050  # Hz; 0 accepts any
    params: SpectrogramParams = field(default_factory=SpectrogramParams)

    def __post_init__(self) -> None:
        if self.crops_per_track < 1:
            raise ValueError(f"crops_per_track must be >= 1, got {self.crops_per_track}")
        if self.width < 8:
            raise ValueError(f"width must be >= 8 columns, got {self.width}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not -120 < self.min_rms_dbfs < 0 or not -70 < self.target_lufs < 0:
            raise ValueError("need -120 < min_rms_dbfs < 0 and -70 < target_lufs < 0")
        if self.min_source_rate < 0:
            raise ValueError(f"min_source_rate must be >= 0, got {self.min_source_rate}")

    @property
    def crop_samples(self) -> int:
        return self.width * self.params.hop_length

    @property
    def crop_seconds(self) -> float:
        return self.params.seconds_for(self.width)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["params"] = self.params.to_dict()
        return d


REJECT_KINDS = ("error", "sample_rate", "too_short", "silent")


@dataclass(frozen=True)
class Reject:
    """A track left out of the data set: ``kind`` is one of ``REJECT_KINDS``, ``reason`` says why."""

    source: str
    kind: str
    reason: str

    def __post_init__(self) -> None:
        if self.kind not in REJECT_KINDS:
            raise ValueError(f"unknown reject kind {self.kind!r}")


@dataclass(frozen=True)
class TrackResult:
    source: str
    records: tuple[dict[str, Any], ...]
    rejected: tuple[int, ...]  # crop indices below the RMS threshold
    reused: int  # crops whose PNG already existed
    reject: Reject | None = None  # the whole track left out

    @property
    def too_short(self) -> bool:
        return self.reject is not None and self.reject.kind == "too_short"


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    tracks: int
    images: int
    rejected_silent: int
    too_short: int
    reused: int
    emotions: dict[str, int]
    rejects: tuple[Reject, ...] = ()


def track_key(source: str) -> str:
    """File-name stem for a track: readable slug + hash of its id (unique, filesystem-safe)."""
    slug = _SLUG.sub("-", Path(source).stem.lower()).strip("-")[:40] or "track"
    return f"{slug}-{stable_hash(source):016x}"[: len(slug) + 9]


def _record(track: Track, name: str, offset: int, options: BuildOptions) -> dict[str, Any]:
    return {
        "file_name": f"images/{name}",
        "text": track.caption,
        "emotion": track.emotion,
        "source": track.source,
        "offset": round(offset / options.params.sample_rate, 4),
        "genre": track.genre,
        "style": track.style,
        "bpm": track.bpm,
    }


@functools.lru_cache(maxsize=2)
def _codec(params: SpectrogramParams) -> SpectrogramCodec:
    """One codec per params and process (building one inverts a 512x512 Gram matrix, ~1 s)."""
    return SpectrogramCodec(params)


def process_track(track: Track, out_dir: Path, options: BuildOptions) -> TrackResult:
    """Crops of one track (see the module doc); writes its PNGs and its result file.

    A track that cannot be used (undecodable, low sample rate, too short, silent) comes back with
    ``reject`` set and no records; nothing of it is written.
    """
    key = track_key(track.source)
    result_path = out_dir / ".work" / f"{key}.json"
    if result_path.is_file():
        done = read_json(result_path)
        if all((out_dir / r["file_name"]).is_file() for r in done["records"]):
            return TrackResult(track.source, tuple(done["records"]), tuple(done["rejected"]),
                               len(done["records"]))  # fmt: skip
    p = options.params
    try:
        audio, source_rate = load_mono(track.path, p.sample_rate)
    except (MoodbgmError, sf.LibsndfileError, OSError) as e:
        return _rejected(track, "error", f"{type(e).__name__}: {e}")
    if source_rate < options.min_source_rate:
        top = source_rate / 2000
        reason = f"recorded at {source_rate} Hz (< {options.min_source_rate} Hz): nothing above {top:g} kHz"
        return _rejected(track, "sample_rate", reason)
    offsets = crop_offsets(
        audio.shape[0], options.crop_samples, options.crops_per_track, options.seed, track.source
    )
    if not offsets:
        return _rejected(track, "too_short", f"{audio.shape[0] / p.sample_rate:.2f} s is shorter than one "
                         f"crop ({options.crop_seconds:.2f} s)")  # fmt: skip
    records: list[dict[str, Any]] = []
    rejected: list[int] = []
    reused = 0
    for k, offset in enumerate(offsets):
        name = f"{key}-{k:03d}.png"
        if (out_dir / "images" / name).is_file():
            reused += 1
            records.append(_record(track, name, offset, options))
            continue
        crop = audio[offset : offset + options.crop_samples]
        if rms_dbfs(crop) < options.min_rms_dbfs:
            rejected.append(k)
            continue
        crop = normalize_loudness(crop - crop.mean(), p.sample_rate, options.target_lufs)
        save_png(_codec(p).audio_to_image(crop, p.sample_rate), out_dir / "images" / name)
        records.append(_record(track, name, offset, options))
    if not records:
        reason = f"all {len(offsets)} crops below {options.min_rms_dbfs:g} dBFS (silent or DC only)"
        return _rejected(track, "silent", reason, tuple(rejected))
    write_json(result_path, {"source": track.source, "records": records, "rejected": rejected})
    return TrackResult(track.source, tuple(records), tuple(rejected), reused)


def _rejected(track: Track, kind: str, reason: str, silent_crops: tuple[int, ...] = ()) -> TrackResult:
    logger.warning("%s: left out (%s): %s", track.source, kind, reason)
    return TrackResult(track.source, (), silent_crops, 0, Reject(track.source, kind, reason))


def _worker_init() -> None:
    torch.set_num_threads(1)  # one core per worker; also keeps float sums identical to the serial path


def _check_manifest(out_dir: Path, options: BuildOptions) -> None:
    manifest = out_dir / "dataset.json"
    if manifest.is_file():
        old = read_json(manifest).get("options")
        if old != options.to_dict():
            raise DatasetError(
                f"{out_dir} holds a data set built with other options ({old}); build into a new folder"
            )


def build_dataset(tracks: list[Track], out_dir: Path, options: BuildOptions, workers: int = 1) -> BuildResult:
    """Build (or finish building) the data set of ``tracks`` in ``out_dir``; see the module doc."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not tracks:
        raise DatasetError("no tracks to build a data set from")
    out_dir = Path(out_dir)
    _check_manifest(out_dir, options)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    ordered = sorted(tracks, key=lambda t: t.source)
    results: dict[str, TrackResult] = {}
    bar = tqdm(total=len(ordered), desc="dataset", unit="track")
    try:
        if workers == 1:
            threads = torch.get_num_threads()
            _worker_init()
            try:
                for t in ordered:
                    results[t.source] = process_track(t, out_dir, options)
                    bar.update()
            finally:
                torch.set_num_threads(threads)
        else:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")  # no fork after torch has started threads
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
                futures = {pool.submit(process_track, t, out_dir, options): t.source for t in ordered}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.update()
    finally:
        bar.close()

    records = [r for t in ordered for r in results[t.source].records]
    rejects = tuple(r.reject for t in ordered if (r := results[t.source]).reject is not None)
    with atomic_path(out_dir / "metadata.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    with atomic_path(out_dir / "rejects.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in rejects),
                       encoding="utf-8")  # fmt: skip
    emotions = Counter(r["emotion"] for r in records)
    result = BuildResult(
        out_dir=out_dir,
        tracks=len(ordered),
        images=len(records),
        rejected_silent=sum(len(r.rejected) for r in results.values()),
        too_short=sum(r.too_short for r in results.values()),
        reused=sum(r.reused for r in results.values()),
        emotions={e: emotions.get(e, 0) for e in EMOTIONS},
        rejects=rejects,
    )
    if rejects:
        logger.warning(
            "%d of %d tracks left out; see %s", len(rejects), len(ordered), out_dir / "rejects.jsonl"
        )
    if missing := [e for e in EMOTIONS if not emotions.get(e)]:
        logger.warning("data set has no images for: %s", ", ".join(missing))
    write_json(
        out_dir / "dataset.json",
        {
            "format_version": FORMAT_VERSION,
            "spectrogram": options.params.to_dict(),
            "options": options.to_dict(),
            "crop_seconds": options.crop_seconds,
            "tracks": result.tracks,
            "images": result.images,
            "rejected_silent": result.rejected_silent,
            "too_short": result.too_short,
            "rejected_tracks": {k: sum(r.kind == k for r in rejects) for k in REJECT_KINDS},
            "emotions": result.emotions,
            "caption_template": "moodbgm.generate.prompts.caption",
        },
    )
    logger.info("data set %s: %d images from %d tracks (%d silent crops rejected, %d reused)",
                out_dir, result.images, result.tracks, result.rejected_silent, result.reused)  # fmt: skip
    return result


def load_manifest(data_dir: Path) -> tuple[SpectrogramParams, dict[str, Any]]:
    """The spectrogram params and manifest of a built data set (``DatasetError`` when absent)."""
    path = Path(data_dir) / "dataset.json"
    if not path.is_file():
        raise DatasetError(
            f"{data_dir}: no dataset.json; build the data set with `python -m dataset_tools build`"
        )
    manifest = read_json(path)
    return SpectrogramParams.from_dict(manifest["spectrogram"]), manifest
