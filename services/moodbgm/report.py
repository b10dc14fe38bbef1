"""The timeline chart (``timeline.png``): waveform, phrases and the emotion sections the music follows.

Three stacked lanes share one m:ss time axis: the soundtrack's envelope over the sections' colours,
the phrases (coloured by their own emotion, opacity by confidence, text where it fits), and the
sections with their emotion and confidence. Scene cuts are dashed lines across all lanes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter

from moodbgm.files import atomic_path
from moodbgm.types import EMOTIONS, EmotionScores, Timeline, Transcript

logger = logging.getLogger(__name__)

# Fixed palette, one colour per emotion (the web UI reuses it).
EMOTION_COLORS: dict[str, str] = {
    "anger": "#d62728",
    "disgust": "#6b8e23",
    "fear": "#7b4ea3",
    "joy": "#f2b701",
    "neutral": "#9e9e9e",
    "sadness": "#2f6db5",
    "surprise": "#ff7f0e",
}

WIDTH_PX, HEIGHT_PX, DPI = 1600, 600, 100
_ENVELOPE_BINS = 2400
_FONT = 8.0  # points, for lane labels
_CHAR_PX = _FONT * 0.6 * DPI / 72  # average glyph width of the label font
_TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


def render_timeline_png(
    out_path: Path,
    audio: np.ndarray,
    sample_rate: int,
    transcript: Transcript,
    scores: Sequence[EmotionScores],
    timeline: Timeline,
) -> Path:
    """Draw the chart for ``timeline`` to ``out_path`` (a ``WIDTH_PX`` x ``HEIGHT_PX`` PNG), atomically.

    ``audio`` is mono float at ``sample_rate`` (multi-channel ``(n, c)`` is averaged); ``scores`` holds
    one entry per phrase of ``transcript``.
    """
    if len(scores) != len(transcript.phrases):
        raise ValueError(f"render_timeline_png: {len(transcript.phrases)} phrases but {len(scores)} scores")
    if sample_rate <= 0:
        raise ValueError(f"render_timeline_png: sample_rate must be > 0, got {sample_rate}")
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if samples.ndim != 1:
        raise ValueError(f"render_timeline_png: audio must be (n,) or (n, channels), got {samples.shape}")

    duration = timeline.duration
    # A bare Figure on the Agg canvas: no pyplot, no global backend or figure registry to leak into.
    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(3, 1, height_ratios=(3.2, 1.3, 1.0), hspace=0.08)
    grid.update(left=0.05, right=0.99, top=0.86, bottom=0.09)
    wave_ax = fig.add_subplot(grid[0])
    phrase_ax = fig.add_subplot(grid[1], sharex=wave_ax)
    section_ax = fig.add_subplot(grid[2], sharex=wave_ax)
    lane_px = WIDTH_PX * (0.99 - 0.05) / duration  # pixels per second

    _draw_waveform(wave_ax, samples, sample_rate, timeline)
    _draw_phrases(phrase_ax, transcript, scores, lane_px)
    _draw_sections(section_ax, timeline, lane_px)
    for ax in (wave_ax, phrase_ax, section_ax):
        ax.set_xlim(0.0, duration)
        for cut in timeline.cuts:
            ax.axvline(cut, color="#333333", linestyle=(0, (3, 3)), linewidth=0.8, alpha=0.7, zorder=4)
    for ax in (wave_ax, phrase_ax):
        ax.tick_params(labelbottom=False)
    _format_time_axis(section_ax, duration)

    fig.suptitle(_title(transcript, timeline), x=0.05, y=0.975, ha="left", fontsize=12)
    handles: list[Artist] = [Patch(facecolor=EMOTION_COLORS[e], label=e) for e in EMOTIONS]
    if timeline.cuts:
        handles.append(Line2D([], [], color="#333333", linestyle=(0, (3, 3)), label="scene cut"))
    fig.legend(
        handles=handles, loc="upper right", bbox_to_anchor=(0.99, 0.995), ncol=len(handles), fontsize=9,
        frameon=False, handlelength=1.4, columnspacing=1.2,
    )  # fmt: skip
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    logger.info("timeline chart written to %s", out_path)
    return Path(out_path)


def _title(transcript: Transcript, timeline: Timeline) -> str:
    n, k = len(transcript.phrases), len(timeline.sections)
    c = len(timeline.cuts)
    return (
        f"Emotion timeline  ·  {format_time(timeline.duration)}  ·  {n} phrase{'s' * (n != 1)}"
        f"  ·  {k} section{'s' * (k != 1)}  ·  {c} scene cut{'s' * (c != 1)}"
    )


def envelope(
    samples: np.ndarray, sample_rate: int, bins: int = _ENVELOPE_BINS
) -> tuple[np.ndarray, np.ndarray]:
    """Times (bin centres, s) and the peak absolute amplitude of each of at most ``bins`` bins."""
    if samples.size == 0:
        return np.zeros(0), np.zeros(0)
    bins = min(bins, samples.size)
    edges = np.linspace(0, samples.size, bins + 1).astype(np.int64)
    peaks = np.maximum.reduceat(np.abs(samples), edges[:-1])
    times = (edges[:-1] + edges[1:]) / 2 / sample_rate
    return times, peaks


def _draw_waveform(ax: Axes, samples: np.ndarray, sample_rate: int, timeline: Timeline) -> None:
    for s in timeline.sections:
        ax.axvspan(s.start, s.end, color=EMOTION_COLORS[s.emotion], alpha=0.22, linewidth=0, zorder=0)
    times, peaks = envelope(samples, sample_rate)
    top = float(peaks.max()) if peaks.size else 0.0
    if top > 0:
        level = peaks / top
        ax.fill_between(times, -level, level, color="#3a3a3a", linewidth=0, zorder=2)
    else:
        ax.text(0.5, 0.5, "silent" if samples.size else "no audio", transform=ax.transAxes,
                ha="center", va="center", color="#666666", fontsize=10)  # fmt: skip
    ax.set_ylim(-1.08, 1.08)
    ax.set_yticks([])
    ax.set_ylabel("soundtrack", fontsize=9)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def _draw_phrases(ax: Axes, transcript: Transcript, scores: Sequence[EmotionScores], px_per_s: float) -> None:
    for phrase, sc in zip(transcript.phrases, scores, strict=True):
        width = max(phrase.end - phrase.start, 1.5 / px_per_s)  # at least a visible sliver
        alpha = 0.35 + 0.6 * sc.confidence
        ax.add_patch(
            Rectangle((phrase.start, 0.1), width, 0.8, facecolor=EMOTION_COLORS[sc.label], alpha=alpha,
                      edgecolor="white", linewidth=0.6, zorder=2)
        )  # fmt: skip
        label = fit_label(phrase.text.strip(), width * px_per_s - 6)
        if label:
            ax.text(phrase.start + 3 / px_per_s, 0.5, label, ha="left", va="center", fontsize=_FONT,
                    color="#111111", clip_on=True, zorder=3)  # fmt: skip
    if not transcript.phrases:
        ax.text(0.5, 0.5, "no speech", transform=ax.transAxes, ha="center", va="center",
                color="#666666", fontsize=10)  # fmt: skip
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_ylabel("phrases", fontsize=9)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def _draw_sections(ax: Axes, timeline: Timeline, px_per_s: float) -> None:
    for s in timeline.sections:
        ax.add_patch(
            Rectangle((s.start, 0.0), s.duration, 1.0, facecolor=EMOTION_COLORS[s.emotion],
                      edgecolor="white", linewidth=1.5, zorder=2)
        )  # fmt: skip
        width_px = s.duration * px_per_s - 8
        label = fit_label(f"{s.emotion} {s.confidence:.2f}", width_px, ellipsis=False)
        if label != f"{s.emotion} {s.confidence:.2f}":
            label = fit_label(s.emotion, width_px)
        if label:
            ax.text((s.start + s.end) / 2, 0.5, label, ha="center", va="center", fontsize=9,
                    fontweight="bold", color="#111111", clip_on=True, zorder=3)  # fmt: skip
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_ylabel("music", fontsize=9)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def fit_label(text: str, width_px: float, ellipsis: bool = True, min_chars: int = 3) -> str:
    """``text`` cut to fit ``width_px`` at the label font (with '…'), or '' when too little would fit."""
    room = int(width_px // _CHAR_PX)
    if len(text) <= room:
        return text
    if not ellipsis or room - 1 < min_chars:
        return ""
    return text[: room - 1].rstrip() + "…"


def format_time(seconds: float, _pos: object = None) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour on)."""
    total = round(seconds)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _format_time_axis(ax: Axes, duration: float) -> None:
    step = next((s for s in _TICK_STEPS if duration / s <= 16), _TICK_STEPS[-1])
    ax.xaxis.set_major_locator(FixedLocator(np.arange(0.0, duration + 1e-9, step).tolist()))
    ax.xaxis.set_major_formatter(FuncFormatter(format_time))
    ax.tick_params(axis="x", labelsize=9)
    ax.set_xlabel("time (m:ss)", fontsize=9)
