"""``python -m dataset_tools {build,synth,import-epidemic}``: see README.md in this folder.

Exit codes: 0 done, 2 bad input (the message says what), 1 internal failure.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dataset_tools.sources import DatasetError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dataset_tools", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="audio + metadata -> spectrogram/caption data set (imagefolder)")
    b.add_argument("metadata", type=Path, help="metadata .csv or .jsonl (files relative to its folder)")
    b.add_argument("out", type=Path, help="output folder")
    b.add_argument("--crops", type=int, default=8, help="random crops per track (default 8)")
    b.add_argument("--width", type=int, default=512, help="crop width in image columns (512 = 5.12 s)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--min-rms-dbfs", type=float, default=-40.0, help="reject quieter crops (default -40)")
    b.add_argument("--target-lufs", type=float, default=-20.0, help="loudness of every crop (default -20)")
    b.add_argument("--min-source-rate", type=int, default=22_050,
                   help="leave out files recorded below this rate (Hz, default 22050)")  # fmt: skip
    b.add_argument("--workers", type=int, default=1, help="processes (default 1)")

    s = sub.add_parser("synth", help="render a labelled corpus with the composer (offline test data)")
    s.add_argument("out", type=Path)
    s.add_argument("--per-emotion", type=int, default=1, help="tracks per emotion and style")
    s.add_argument("--duration", type=float, default=8.0, help="seconds per track (default 8)")
    s.add_argument("--seed", type=int, default=0)

    e = sub.add_parser("import-epidemic", help="local parquet copy of Chr0my/Epidemic_music -> build input")
    e.add_argument("parquet", type=Path, nargs="+", help="parquet files or folders of them")
    e.add_argument("-o", "--out", type=Path, required=True)
    e.add_argument("--audio-root", type=Path, default=None, help="where file/URL columns resolve")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    try:
        if args.command == "build":
            from dataset_tools.build import BuildOptions, build_dataset
            from dataset_tools.sources import read_metadata

            tracks, skipped = read_metadata(args.metadata)
            options = BuildOptions(
                crops_per_track=args.crops, width=args.width, seed=args.seed,
                min_rms_dbfs=args.min_rms_dbfs, target_lufs=args.target_lufs,
                min_source_rate=args.min_source_rate,
            )  # fmt: skip
            result = build_dataset(tracks, args.out, options, workers=args.workers)
            print(f"{result.images} images from {result.tracks} tracks ({skipped} tracks without an emotion, "
                  f"{len(result.rejects)} tracks left out (rejects.jsonl), "
                  f"{result.rejected_silent} silent crops rejected) -> {result.out_dir}")  # fmt: skip
        elif args.command == "synth":
            from dataset_tools.synth import synthesize

            synth = synthesize(args.out, args.per_emotion, args.duration, seed=args.seed)
            print(f"{synth.tracks} tracks -> {synth.metadata}")
        else:
            from dataset_tools.epidemic import import_epidemic

            imported = import_epidemic(args.parquet, args.out, args.audio_root)
            styles = ", ".join(f"{k} {v}" for k, v in imported.styles.items())
            print(f"{imported.tracks} tracks ({styles}, no style {imported.no_style}) -> {imported.metadata}")
    except (DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
