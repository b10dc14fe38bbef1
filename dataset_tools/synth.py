"""An offline labelled corpus: the composer renders music for every emotion and style.

``synthesize(out_dir, per_emotion)`` writes ``per_emotion`` tracks for each (emotion, style) pair as
FLAC at 44.1 kHz, plus ``metadata.csv`` in the ``build`` input format (file, emotion, moods, tags,
genre, bpm, style, title). The moods are ones the mood table maps back to the emotion, so the
labels survive a round trip through ``emotion_for``; the tempo is the composer's.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from dataset_tools.moods import emotion_for
from moodbgm.files import atomic_path
from moodbgm.generate.base import STYLES, GenerateOptions
from moodbgm.types import EMOTIONS, Section, Timeline

logger = logging.getLogger(__name__)

SYNTH_MOODS: dict[str, tuple[str, ...]] = {
    "anger": ("angry", "aggressive"),
    "disgust": ("weird", "dark"),
    "fear": ("suspense", "scary"),
    "joy": ("happy", "hopeful"),
    "neutral": ("peaceful", "laid back"),
    "sadness": ("sad", "sentimental"),
    "surprise": ("quirky", "funny"),
}
"""Mood tags written for each emotion (all map back to it)."""

assert all(emotion_for(m) == e for e, m in SYNTH_MOODS.items())

FIELDS = ("file", "emotion", "moods", "tags", "genre", "bpm", "style", "title")
SYNTH_SAMPLE_RATE = 44_100


@dataclass(frozen=True)
class SynthResult:
    metadata: Path
    tracks: int


def synthesize(
    out_dir: Path,
    per_emotion: int = 1,
    duration: float = 8.0,
    styles: tuple[str, ...] = STYLES,
    seed: int = 0,
) -> SynthResult:
    """Render the corpus into ``out_dir`` (see the module doc); existing audio files are kept."""
    if per_emotion < 1 or duration <= 0 or seed < 0:
        raise ValueError("need per_emotion >= 1, duration > 0, seed >= 0")
    if unknown := [s for s in styles if s not in STYLES]:
        raise ValueError(f"unknown styles {unknown}; expected some of {STYLES}")
    from moodbgm.generate.composer import ComposerGenerator, RenderOptions

    composer = ComposerGenerator(render_options=RenderOptions(sample_rate=SYNTH_SAMPLE_RATE))
    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    jobs = [(e, s, i) for e in EMOTIONS for s in styles for i in range(per_emotion)]
    for emotion, style, i in tqdm(jobs, desc="synth", unit="track"):
        options = GenerateOptions(style=style, seed=seed * 1000 + i)
        timeline = Timeline(duration, (Section(0.0, duration, emotion),))
        score = composer.compose(timeline, duration, options)
        name = f"audio/{emotion}-{style}-{i:03d}.flac"
        if not (out_dir / name).is_file():
            audio = composer.renderer.render(score, duration)
            with atomic_path(out_dir / name) as tmp:
                sf.write(str(tmp), audio, SYNTH_SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        rows.append(
            {
                "file": name,
                "emotion": emotion,
                "moods": ", ".join(SYNTH_MOODS[emotion]),
                "tags": "synthetic, composer",
                "genre": "",
                "bpm": str(round(score.sections[0].plan.tempo, 1)),
                "style": style,
                "title": f"{emotion} {style} #{i}",
            }
        )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(out_dir / "metadata.csv") as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    logger.info("synthetic corpus: %d tracks in %s", len(rows), out_dir)
    return SynthResult(out_dir / "metadata.csv", len(rows))
