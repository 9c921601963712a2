"""Which of a reference's region colours does the style vector carry? A linear probe.

    python scripts/style_probe.py CKPT [CKPT ...] [--train-faces 800]

For every face the style encoder's output for it as the reference (the AdaIN parameters the
generator reads) and the mean CIELAB colour of each region of the region colour error. A ridge
regression from the standardised style to each of L*, a* and b* of each region is fitted on
train-split faces and scored on the test split: R^2 near 1 says the style holds that number
linearly, near 0 (or below) that it does not. A region whose colour the generator gets wrong
(its colour error in `faceregen eval`) and whose R^2 is near 0 is lost in the encoder, or was
never asked for by the generator; one with R^2 near 1 is lost in the generator.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Subset

from faceregen.cli import user_errors
from faceregen.errors import FaceregenError
from faceregen.evaluation import metrics
from faceregen.evaluation.runner import resolve_data_root
from faceregen.evaluation.scoring import COLOR_REGION_CLASSES, COLOR_REGIONS
from faceregen.evaluation.train_evaluators import open_split
from faceregen.images import to_unit_range
from faceregen.regen import load_model


@torch.no_grad()
def styles_and_colours(models, faces, batch_size: int
                       ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each model's styles [N, P] (float64) and the region CIELAB means [N, R, 3] (NaN: region
    missing), in one pass over the faces for all models."""
    styles, colours = [[] for _ in models], []
    for batch in DataLoader(faces, batch_size=batch_size):
        for model, model_styles in zip(models, styles):
            style = model.encode_style(batch["ref_image"], batch["ref_label"])
            model_styles.append(style.reshape(style.shape[0], -1).double().cpu())
        colours.append(metrics.region_mean_lab(to_unit_range(batch["ref_image"]),
                                               batch["ref_label"], COLOR_REGION_CLASSES)[0])
    return [torch.cat(model_styles) for model_styles in styles], torch.cat(colours)


def probe_r2(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
             test_y: torch.Tensor, ridge: float) -> float:
    """Test R^2 of a ridge regression (features standardised on the train set, intercept
    unpenalised); rows with a NaN target are left out of the fit and the score."""
    keep, keep_test = ~torch.isnan(train_y), ~torch.isnan(test_y)
    x, y, xt, yt = train_x[keep], train_y[keep], test_x[keep_test], test_y[keep_test]
    if len(x) < 2 or len(xt) < 2 or float(yt.var()) == 0:
        return float("nan")
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    x, xt = (x - mean) / std, (xt - mean) / std
    y_mean = y.mean()
    weights = torch.linalg.solve(x.T @ x + ridge * torch.eye(x.shape[1], dtype=x.dtype),
                                 x.T @ (y - y_mean))
    residual = yt - (xt @ weights + y_mean)
    return float(1 - residual.pow(2).mean() / yt.var(correction=0))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, default=None,
                        help="prepared dataset (default: the first checkpoint's)")
    parser.add_argument("--train-faces", type=int, default=800,
                        help="train-split faces the probe is fitted on")
    parser.add_argument("--test-split", default="test")
    parser.add_argument("--ridge", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)

    models = [load_model(path) for path in args.checkpoints]
    for path, model in zip(args.checkpoints, models):
        if model.style_encoder is None:
            raise FaceregenError(f"{path}: a model without a style encoder has no style to probe")
    data_root = resolve_data_root(OmegaConf.create({"data_root": args.data}), models[0].config)
    train = open_split(data_root, "train")
    train = Subset(train, range(min(args.train_faces, len(train))))
    test = open_split(data_root, args.test_split)

    print(f"linear probe of the style: fitted on {len(train)} train faces, R^2 on the "
          f"{len(test)} {args.test_split} faces of {data_root} (ridge {args.ridge})\n")
    header = [f"{region} {channel}" for region in COLOR_REGIONS for channel in ("L*", "a*", "b*")]
    print("| checkpoint | " + " | ".join(header) + " |")
    print("|---|" + "---|" * len(header))
    train_styles, train_y = styles_and_colours(models, train, args.batch_size)
    test_styles, test_y = styles_and_colours(models, test, args.batch_size)
    for path, train_x, test_x in zip(args.checkpoints, train_styles, test_styles):
        cells = [probe_r2(train_x, train_y[:, region, channel], test_x,
                          test_y[:, region, channel], args.ridge)
                 for region in range(len(COLOR_REGIONS)) for channel in range(3)]
        print(f"| {path} | " + " | ".join(f"{value:.2f}" for value in cells) + " |")


if __name__ == "__main__":
    with user_errors():
        main(sys.argv[1:])
