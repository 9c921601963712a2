"""`faceregen evalnets train`: train the evaluator networks of `faceregen eval`.

Defaults come from configs/evaluators/default.yaml, the file `faceregen eval` uses, so both
paths train the same networks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from faceregen.errors import FaceregenError


def evaluator_defaults() -> DictConfig:
    from faceregen.config import config_dir

    return OmegaConf.load(config_dir() / "evaluators" / "default.yaml")


def parser() -> argparse.ArgumentParser:
    defaults = evaluator_defaults()
    ap = argparse.ArgumentParser(
        prog="faceregen evalnets",
        description="Train the evaluator networks (face parser, attribute classifier) on the "
                    "train split of a prepared dataset; prints and saves their validation "
                    "accuracy.")
    sub = ap.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train one or both evaluators")
    train.add_argument("--kind", choices=["parser", "attributes", "all"], default="all")
    train.add_argument("--data", required=True, type=Path,
                       help="prepared dataset root (holds manifest.csv)")
    train.add_argument("--out", type=Path, default=None,
                       help="output folder (default: <data>/evaluators); files <kind>.pt/.json")
    train.add_argument("--steps", type=int, default=None,
                       help=f"training steps (default parser {defaults.parser.steps}, "
                            f"attributes {defaults.attributes.steps})")
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--lr", type=float, default=None)
    train.add_argument("--channels", type=int, default=None, help="network width")
    train.add_argument("--depth", type=int, default=None, help="number of downsamplings")
    train.add_argument("--attributes", default=None,
                       help="comma-separated attribute names for the classifier (default all)")
    train.add_argument("--device", default="auto")
    train.add_argument("--seed", type=int, default=int(defaults.seed))
    train.add_argument("--num-workers", type=int, default=0)
    train.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return ap


def main(argv: list[str]) -> None:
    from faceregen.evaluation.train_evaluators import train_evaluator

    args = parser().parse_args(argv)
    if not (args.data / "manifest.csv").is_file():
        raise FaceregenError(f"{args.data}: not a prepared dataset (no manifest.csv); run "
                             "`faceregen data prepare` first")
    defaults = evaluator_defaults()
    kinds = ["parser", "attributes"] if args.kind == "all" else [args.kind]
    for kind in kinds:
        settings = defaults[kind]
        architecture = OmegaConf.to_container(settings.architecture)
        if args.channels is not None:
            architecture["channels"] = args.channels
        if args.depth is not None:
            architecture["depth"] = args.depth
        names = settings.get("names")
        if kind == "attributes" and args.attributes:
            names = [name.strip() for name in args.attributes.split(",") if name.strip()]
        out_dir = args.out or args.data / "evaluators"
        train_evaluator(
            kind, args.data, out_path=out_dir / f"{kind}.pt",
            steps=args.steps or int(settings.steps),
            batch_size=args.batch_size or int(settings.batch_size),
            lr=args.lr or float(settings.lr), architecture=architecture,
            attribute_names=list(names) if names else None,
            weight_decay=float(settings.get("weight_decay", 0.0)),
            device=args.device,
            seed=args.seed, num_workers=args.num_workers, progress=not args.no_progress)
