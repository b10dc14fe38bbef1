"""The evaluator's figure: music gain in the mix over time, section loudness, cue agreement."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from devtools.music_eval.cues import CUE_NAMES
from devtools.music_eval.ducking import FRAME_RATE
from devtools.music_eval.evaluate import MusicReport


def render(report: MusicReport, out: Path, title: str) -> Path:
    fig, (ax1, ax2, ax3) = plt.subplots(
        3, 1, figsize=(11, 8), gridspec_kw={"height_ratios": [2.2, 1.5, 1.6]}, constrained_layout=True
    )
    end = report.sections[-1].end
    for s in report.sections:
        for ax in (ax1, ax2):
            ax.axvline(s.start, color="0.8", lw=0.8)
    # 1. what the mix did to the music
    if report.music_gain_db is not None and report.duck is not None:
        g = report.music_gain_db - report.duck.bed_gain_db
        t = np.arange(len(g)) / FRAME_RATE
        for a, b in report.speech:
            ax1.axvspan(a, b, color="tab:blue", alpha=0.12, lw=0)
        ax1.plot(t, g, color="k", lw=1, label="music gain in the mix (re bed level)")
        if report.duck_setting_db is not None:
            ax1.axhline(-report.duck_setting_db, color="tab:green", ls="--", lw=1, label="duck setting")
        for p in report.duck.pauses:
            if p.pump:
                ax1.axvspan(p.start, p.end, color="tab:red", alpha=0.35, lw=0)
        d = report.duck
        ax1.set_title(
            f"{title}: duck {d.depth_db:.1f} dB (set {report.duck_setting_db}), {d.pumps} pumps "
            f"(red), under-speech spread {d.under_speech_spread_db:.1f} dB; speech shaded"
        )
        ax1.set_ylim(-max(20.0, (report.duck_setting_db or 0) + 6), 4)
        ax1.legend(loc="lower right", fontsize=8)
    else:
        ax1.set_title(f"{title}: no mix")
    ax1.set_ylabel("dB")
    ax1.set_xlim(0, end)
    # 2. section loudness before ducking
    for s in report.sections:
        if math.isfinite(s.lufs):
            ax2.plot([s.start, s.end], [s.lufs, s.lufs], color="tab:purple", lw=3)
        ax2.text(
            (s.start + s.end) / 2,
            1.02,
            s.emotion,
            transform=ax2.get_xaxis_transform(),
            ha="center",
            fontsize=8,
        )
    for s, j in zip(report.sections[1:], report.jumps_lu, strict=True):
        if math.isfinite(j):
            ax2.annotate(f"{j:+.1f}", (s.start, s.lufs), fontsize=7, color="tab:red" if abs(j) > 3 else "0.3")
    c = report.cadence
    ax2.axvline(c.onset, color="tab:orange" if c.is_tonic else "tab:red", ls=":", lw=1.5)
    ax2.set_ylabel("bgm LUFS")
    ax2.set_xlim(0, end)
    ax2.set_xlabel(
        f"s  (final chord at {c.onset:.1f} s: {'tonic' if c.is_tonic else 'not tonic'}, "
        f"release {c.release_s:.1f} s)"
    )
    # 3. cue agreement
    grid = np.array(
        [[{True: 1.0, False: 0.0, None: np.nan}[s.cues[c]] for c in CUE_NAMES] for s in report.sections]
    ).T
    ax3.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax3.set_yticks(range(len(CUE_NAMES)), CUE_NAMES, fontsize=8)
    ax3.set_xticks(range(len(report.sections)), [s.emotion for s in report.sections], fontsize=8)
    ax3.set_title(f"cue agreement {report.agreement:.0%} (green agrees, red not, white not judged)")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
