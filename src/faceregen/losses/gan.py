"""Adversarial losses on the multi-scale discriminator's output."""

from __future__ import annotations

import torch
import torch.nn.functional as F

GAN_MODES = ("lsgan", "bce", "hinge")
# How the per-scale losses are combined: "mean" (SPADE, and this project's style model until
# the benchmark decides) or "sum" (pix2pixHD's GANLoss, num_D times stronger at equal weights).
SCALE_REDUCTIONS = ("mean", "sum")


def _predictions(preds) -> list[torch.Tensor]:
    """The patch prediction of each scale: the last element of each scale's feature list."""
    return [p[-1] if isinstance(p, (list, tuple)) else p for p in preds]


def gan_loss(preds, target_is_real: bool, mode: str = "lsgan",
             for_discriminator: bool = True, scale_reduction: str = "mean") -> torch.Tensor:
    """Adversarial loss averaged (``scale_reduction="mean"``) or summed (``"sum"``, pix2pixHD)
    over the discriminator's scales.

    ``preds``: ``MultiScaleDiscriminator`` output (list of per-scale lists; a flat list of
    predictions also works). lsgan: mean squared distance to 1 (real) / 0 (fake); bce: logits
    against 1 / 0; hinge: D side mean(relu(1 - pred)) for reals and mean(relu(1 + pred)) for
    fakes, G side -mean(pred). The generator side calls it with ``target_is_real=True``.
    The report's discriminator loss is 0.5 * (real + fake), summed by the trainer.
    """
    if mode not in GAN_MODES:
        raise ValueError(f"gan mode must be one of {GAN_MODES}, got {mode!r}")
    if scale_reduction not in SCALE_REDUCTIONS:
        raise ValueError(f"scale reduction must be one of {SCALE_REDUCTIONS}, "
                         f"got {scale_reduction!r}")
    losses = []
    for pred in _predictions(preds):
        if mode == "lsgan":
            target = 1.0 if target_is_real else 0.0
            losses.append(F.mse_loss(pred, torch.full_like(pred, target)))
        elif mode == "bce":
            target = torch.ones_like(pred) if target_is_real else torch.zeros_like(pred)
            losses.append(F.binary_cross_entropy_with_logits(pred, target))
        elif for_discriminator:
            margin = 1 - pred if target_is_real else 1 + pred
            losses.append(F.relu(margin).mean())
        else:
            if not target_is_real:
                raise ValueError("the hinge generator loss is only defined for target_is_real")
            losses.append(-pred.mean())
    stacked = torch.stack(losses)
    return stacked.sum() if scale_reduction == "sum" else stacked.mean()
