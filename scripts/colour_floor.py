"""What the region colour error of `faceregen eval` scores for a softened copy of each real photo.

    python scripts/colour_floor.py [--data data/synthetic/prepared-64] [--split test]

A generator that drew every region in exactly the right colour but with slightly soft edges
would still not score 0: a region's mean colour takes in its neighbours' colours at its
boundary, and a region a few pixels thick (the lips at 64 px) is mostly boundary. This scores
each photo of the split against itself blurred (a 3x3 box filter; 2x average pooling then
bilinear upsampling), per region of the colour error, with the photo's own label map for both:
the floor below which a region's colour error says little.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from faceregen.cli import user_errors
from faceregen.evaluation import metrics
from faceregen.evaluation.scoring import COLOR_REGION_CLASSES, COLOR_REGIONS
from faceregen.evaluation.train_evaluators import open_split
from faceregen.images import to_unit_range


def box3(image: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


def down_up(image: torch.Tensor) -> torch.Tensor:
    return F.interpolate(F.avg_pool2d(image, 2), scale_factor=2, mode="bilinear",
                         align_corners=False)


BLURS = {"3x3 box filter": box3, "2x down, bilinear up": down_up}


@torch.no_grad()
def colour_floor(faces, batch_size: int = 64) -> dict[str, list[float]]:
    """Per blur, the mean CIELAB distance of each COLOR_REGIONS region (faces lacking the
    region left out), photo against its blurred copy."""
    sums = {name: torch.zeros(len(COLOR_REGIONS), dtype=torch.float64) for name in BLURS}
    counts = torch.zeros(len(COLOR_REGIONS), dtype=torch.float64)
    for batch in DataLoader(faces, batch_size=batch_size):
        image, label = to_unit_range(batch["image"]), batch["label"]
        sharp = metrics.region_mean_lab(image, label, COLOR_REGION_CLASSES)
        present = sharp[1] > 0  # the blurred copy has the same label map, so the same regions
        for name, blur in BLURS.items():
            soft = metrics.region_mean_lab(blur(image).clamp(0, 1), label, COLOR_REGION_CLASSES)
            distance = metrics.region_color_distance(*sharp, *soft)
            sums[name] += torch.where(present, distance, 0).sum(0)
        counts += present.sum(0)
    return {name: (total / counts).tolist() for name, total in sums.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/synthetic/prepared-64"),
                        help="a prepared dataset")
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    faces = open_split(args.data, args.split)
    floors = colour_floor(faces)
    print(f"region colour error of each photo against itself blurred, {len(faces)} "
          f"{args.split} faces of {args.data}\n")
    print("| blur | " + " | ".join(COLOR_REGIONS) + " |")
    print("|---|" + "---|" * len(COLOR_REGIONS))
    for name, values in floors.items():
        print(f"| {name} | " + " | ".join(f"{value:.2f}" for value in values) + " |")


if __name__ == "__main__":
    with user_errors():
        main(sys.argv[1:])
