"""pix2pixHD discriminator feature-matching loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def feature_matching_loss(fake_features, real_features) -> torch.Tensor:
    """L1 between the discriminator's intermediate features of fake and real inputs.

    Both arguments are ``MultiScaleDiscriminator`` outputs; the last element of each scale (the
    patch prediction) is left out and the real features are detached. Each term is weighted
    4 / (n_layers + 1) / num_D as in pix2pixHD, n_layers + 1 being the number of intermediate
    features per scale. lambda_feat is applied by the caller.
    """
    num_scales = len(fake_features)
    loss = fake_features[0][0].new_zeros(())
    for fake_scale, real_scale in zip(fake_features, real_features):
        num_intermediate = len(fake_scale) - 1
        weight = 4.0 / num_intermediate / num_scales
        for fake, real in zip(fake_scale[:-1], real_scale[:-1]):
            loss = loss + weight * F.l1_loss(fake, real.detach())
    return loss
