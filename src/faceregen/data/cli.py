"""`faceregen data synth|prepare`: argparse front end over `synthesize` and `prepare`."""

from __future__ import annotations

import argparse
import os
import time

from faceregen.data.celebamask import SPLIT_SCHEMES
from faceregen.data.prepare import IMAGE_FORMATS, prepare
from faceregen.data.synth import synthesize


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faceregen data",
                                     description="synthesise or prepare CelebAMask-HQ-layout data")
    commands = parser.add_subparsers(dest="command", required=True)
    default_workers = os.cpu_count() or 1

    synth = commands.add_parser("synth", help="write a synthetic set in CelebAMask-HQ's layout")
    synth.add_argument("--out", required=True, help="raw dataset folder to write")
    synth.add_argument("--num", type=int, default=2000, help="number of faces")
    synth.add_argument("--size", type=int, default=256, help="photo size (masks are half)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--workers", type=int, default=default_workers)
    synth.add_argument("--overwrite", action="store_true",
                       help="replace what --out holds (by default it must be empty, or an "
                            "interrupted synth of the same settings, which is finished)")

    prep = commands.add_parser("prepare", help="merge masks, resize, write manifest.csv")
    prep.add_argument("--root", required=True, help="raw CelebAMask-HQ-layout folder")
    prep.add_argument("--out", required=True, help="prepared dataset folder to write")
    prep.add_argument("--size", type=int, required=True, help="output size in pixels")
    prep.add_argument("--split", choices=SPLIT_SCHEMES, default="celeba")
    prep.add_argument("--workers", type=int, default=default_workers)
    prep.add_argument("--skip-bad", action="store_true",
                      help="skip faces with bad input files and list them at the end")
    prep.add_argument("--image-format", choices=IMAGE_FORMATS, default="png")
    return parser


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    if args.command == "synth":
        root = synthesize(args.out, num=args.num, size=args.size, seed=args.seed,
                          workers=args.workers, overwrite=args.overwrite)
        print(f"wrote {args.num} synthetic faces ({args.size}px) to {root} "
              f"in {time.perf_counter() - start:.1f} s")
        return
    result = prepare(args.root, args.out, size=args.size, split=args.split,
                     workers=args.workers, skip_bad=args.skip_bad,
                     image_format=args.image_format)
    if result.already_done:
        print(f"{result.out} is already prepared ({result.count} faces); nothing to do")
        return
    splits = ", ".join(f"{name} {count}" for name, count in result.splits.items())
    print(f"prepared {result.count} faces ({splits}) in {result.out} "
          f"in {time.perf_counter() - start:.1f} s")
    if result.skipped:
        print(f"skipped {len(result.skipped)}:")
        for problem in result.skipped:
            print(f"  {problem}")
