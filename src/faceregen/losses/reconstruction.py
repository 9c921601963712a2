"""Pixel reconstruction losses against the target photo."""

from __future__ import annotations

import torch

from faceregen.models.networks.encoder import region_average


def class_balanced_l1(fake: torch.Tensor, real: torch.Tensor,
                      label_onehot: torch.Tensor) -> torch.Tensor:
    """L1 averaged within each label class first, then over the classes present in a sample.

    A plain L1 weighs every pixel alike, so at 64 px an eye (a dozen pixels) counts for about
    1/300 of the background's share and the generator can leave it out; here each class present
    counts alike, as in the mIoU the parser is scored by. With every present class the same
    size it equals the plain L1. ``label_onehot`` is (B, classes, H, W) one-hot; the mean runs
    over colour channels, then pixels of a class, then present classes, then samples.
    """
    error = (fake.float() - real.float()).abs().mean(1, keepdim=True)
    class_means, present = region_average(error, label_onehot)           # [B, K, 1], [B, K]
    present = present.float()
    return ((class_means[..., 0] * present).sum(1) / present.sum(1).clamp(min=1)).mean()
