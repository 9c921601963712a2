"""`faceregen evaluators train`: train the evaluator networks of `faceregen eval`.

Defaults come from configs/evaluators/default.yaml, the file `faceregen eval` uses, so both
paths train the same networks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def evaluator_defaults() -> DictConfig:
    from faceregen.config import config_dir

    return OmegaConf.load(config_dir() / "evaluators" / "default.yaml")


def parser() -> argparse.ArgumentParser:
    defaults = evaluator_defaults()
    ap = argparse.ArgumentParser(
        prog="faceregen evaluators",
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
    train.add_argument("--cpu-threads", type=int, default=defaults.get("cpu_threads"),
                       help="CPU threads while training (default %(default)s; the weights "
                            "depend on it, so keep it fixed to get the same evaluators)")
    train.add_argument("--num-workers", type=int, default=0)
    train.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return ap


def main(argv: list[str]) -> None:
    from faceregen.data.prepare import require_prepared
    from faceregen.evaluation.evaluators import default_evaluator_path
    from faceregen.evaluation.train_evaluators import train_from_settings

    args = parser().parse_args(argv)
    require_prepared(args.data, str(args.data))
    defaults = evaluator_defaults()
    kinds = ["parser", "attributes"] if args.kind == "all" else [args.kind]
    for kind in kinds:
        given = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                 "architecture": {"channels": args.channels, "depth": args.depth}}
        if kind == "attributes" and args.attributes:
            given["names"] = [name.strip() for name in args.attributes.split(",")
                              if name.strip()]
        settings = OmegaConf.merge(defaults[kind], drop_unset(given))
        out_path = (args.out / f"{kind}.pt" if args.out
                    else default_evaluator_path(args.data, kind))
        train_from_settings(kind, args.data, settings, out_path=out_path,
                            device=args.device, seed=args.seed, cpu_threads=args.cpu_threads,
                            num_workers=args.num_workers,
                            progress=not args.no_progress)


def drop_unset(options: dict) -> dict:
    """The command-line options that were given (not None, not 0), nested dicts included."""
    kept = {}
    for key, value in options.items():
        if isinstance(value, dict):
            value = drop_unset(value)
        if value:
            kept[key] = value
    return kept
