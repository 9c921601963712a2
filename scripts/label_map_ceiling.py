"""How well each geometry attribute can be read from the label map alone.

    python scripts/label_map_ceiling.py data/synthetic/prepared-64 [--steps N]

A generator sees the label map, not the photo it was cut from: where the label map (nearest-
sampled at the dataset's size) no longer decides an attribute, say lips a pixel thicker, no
generator can draw it, however good. This trains the attribute classifier's network with the
one-hot label map as its input instead of the photo, with the evaluator's recipe and settings
(`fit` and `evaluators.attributes`: AdamW with a one-cycle schedule, horizontal flips, the
auxiliary segmentation loss), and prints, per geometry attribute that varies in the test split,
its accuracy beside the photo classifier's (the GT row's). Where the label map reads an
attribute worse than the photo does, the label-map figure is about as far as a generator's faces
can take the photo classifier on it; where it reads it as well or better, the label map is not
what holds a generator back.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from faceregen.cli import user_errors
from faceregen.errors import FaceregenError
from faceregen.evaluation.cli import evaluator_defaults
from faceregen.evaluation.evaluators import (
    build_evaluator,
    default_evaluator_path,
    load_evaluator,
)
from faceregen.evaluation.train_evaluators import (
    fit,
    fixed_cpu_threads,
    open_split,
    validate,
)
from faceregen.labels import ATTRIBUTE_NAMES, NUM_CLASSES


def one_hot(labels: torch.Tensor) -> torch.Tensor:
    return F.one_hot(labels, NUM_CLASSES).permute(0, 3, 1, 2).float()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="prepared dataset root")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps (default: the attribute evaluator's)")
    parser.add_argument("--split", default="test", help="the split to score (default test)")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    train_set, test_set = (open_split(args.data, "train", flip=True),
                           open_split(args.data, args.split))
    photo = load_evaluator(default_evaluator_path(args.data, "attributes"), "attributes")
    if tuple(photo.attribute_names) != tuple(ATTRIBUTE_NAMES):
        raise FaceregenError(f"{photo.path}: not a classifier of all 40 attributes")
    defaults = evaluator_defaults()
    recipe, cpu = defaults.attributes, torch.device("cpu")
    with torch.random.fork_rng(devices=[]), fixed_cpu_threads(defaults.get("cpu_threads"), cpu):
        torch.manual_seed(int(defaults.seed))
        network = build_evaluator("attributes", {**recipe.architecture,
                                                 "in_channels": NUM_CLASSES})
        fit("attributes", network, train_set, steps=args.steps or int(recipe.steps),
            batch_size=int(recipe.batch_size), lr=float(recipe.lr),
            weight_decay=float(recipe.get("weight_decay", 0.0)),
            columns=list(range(len(ATTRIBUTE_NAMES))), device=cpu, seed=int(defaults.seed),
            inputs=lambda batch: one_hot(batch["label"]), progress=False)
        scores = {source: validate("attributes", net, test_set, names=list(ATTRIBUTE_NAMES),
                                   batch_size=16, device=cpu, progress=False, inputs=read)
                  for source, net, read in (
                      ("label_map", network, lambda batch: one_hot(batch["label"])),
                      ("photo", photo.network, None))}
    rate = scores["photo"]["positive_rate"]
    rows = {name: {source: scores[source]["per_attribute_accuracy"][name] for source in scores}
            for name in defaults.geometry_attributes if 0 < rate[name] < 1}
    print(f"{args.split} split of {args.data} ({len(test_set)} faces)\n")
    print("| attribute | from the label map (%) | from the photo (%) |\n|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {100 * row['label_map']:.1f} | {100 * row['photo']:.1f} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    with user_errors():
        main(sys.argv[1:])
