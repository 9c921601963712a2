"""Does a model take a geometry attribute from the reference photo instead of the label map?

    python scripts/attribute_leak.py CKPT [CKPT ...] [--attributes Eyeglasses Smiling]

In the mask-swap protocol (the evaluation's pairing: label map of face j, reference photo of
face perm[j]) a geometry attribute should follow the label map. For each attribute this scores
the model's faces with the attribute evaluator and splits the false alarms (label map without
the attribute, classifier says present) and the misses by whether the reference has it. A model
that copies the attribute from the reference has many more false alarms when the reference has
it; one that draws it from nowhere has them either way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from faceregen.cli import user_errors
from faceregen.config import config_dir
from faceregen.errors import FaceregenError
from faceregen.evaluation.cli import evaluator_defaults
from faceregen.evaluation.evaluators import default_evaluator_path, load_evaluator
from faceregen.evaluation.passes import ProtocolPairs, swap_pairing
from faceregen.evaluation.runner import resolve_data_root
from faceregen.evaluation.train_evaluators import open_split
from faceregen.labels import ATTRIBUTE_NAMES
from faceregen.regen import load_model


def fraction(hits: torch.Tensor, of: torch.Tensor) -> str:
    return f"{int((hits & of).sum())}/{int(of.sum())}"


@torch.no_grad()
def main(argv: list[str] | None = None) -> None:
    eval_defaults = OmegaConf.load(config_dir() / "eval.yaml")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--attributes", nargs="+", default=list(
        evaluator_defaults().geometry_attributes), help="default: the geometry attributes")
    parser.add_argument("--data", type=Path, default=None,
                        help="prepared dataset (default: the first checkpoint's)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--swap-seed", type=int, default=int(eval_defaults.swap_seed))
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    unknown = [name for name in args.attributes if name not in ATTRIBUTE_NAMES]
    if unknown:
        raise FaceregenError(f"unknown attributes {unknown}; see faceregen.labels")

    models = [load_model(path) for path in args.checkpoints]
    data_root = resolve_data_root(OmegaConf.create({"data_root": args.data}), models[0].config)
    evaluator = load_evaluator(default_evaluator_path(data_root, "attributes"), "attributes")
    missing = [name for name in args.attributes if name not in evaluator.attribute_names]
    if missing:
        raise FaceregenError(f"{evaluator.path}: does not classify {missing}")
    columns = [evaluator.attribute_names.index(name) for name in args.attributes]
    faces = open_split(data_root, args.split)
    pairs = ProtocolPairs(faces, swap_pairing(len(faces), args.swap_seed))
    attribute_columns = [ATTRIBUTE_NAMES.index(name) for name in args.attributes]
    present, ref_present, said = [], [], [[] for _ in models]
    for batch in DataLoader(pairs, batch_size=args.batch_size):  # one pass for all models
        present.append(batch["label_attributes"][:, attribute_columns] > 0.5)
        ref_present.append(batch["ref_attributes"][:, attribute_columns] > 0.5)
        for model, model_said in zip(models, said):
            generated = model(batch["label"], batch["ref_image"], batch["ref_label"]).float()
            model_said.append(evaluator.network(generated)[:, columns] > 0)
    present, ref_present = torch.cat(present), torch.cat(ref_present)

    print(f"mask swap on the {args.split} split of {data_root} ({len(faces)} faces, "
          f"swap seed {args.swap_seed}); false alarms and misses, by the reference\n")
    print("| checkpoint | attribute | false alarms, reference has it | false alarms, reference "
          "has not | misses, reference has it | misses, reference has not |")
    print("|---|---|---|---|---|---|")
    for path, model_said in zip(args.checkpoints, said):
        model_said = torch.cat(model_said)
        for k, name in enumerate(args.attributes):
            absent, has = ~present[:, k], present[:, k]
            print(f"| {path} | {name} | {fraction(model_said[:, k], absent & ref_present[:, k])} | "
                  f"{fraction(model_said[:, k], absent & ~ref_present[:, k])} | "
                  f"{fraction(~model_said[:, k], has & ref_present[:, k])} | "
                  f"{fraction(~model_said[:, k], has & ~ref_present[:, k])} |")

if __name__ == "__main__":
    with user_errors():
        main(sys.argv[1:])
