"""Spatial-aware style encoder (SFT + AdaIN parameters), as in the report.

::

    ref label (19): conv7→16, s2→32, s2→64 = cond1 (1/4) ; s2→64 x3 = cond2 (1/32)
    ref image (3):  conv7→16
                    s2→32  ("second conv") ─────────────────────┐ pool to 1/4, 1x1 → 64
                    s2→64, SFT1(cond1) ─────────────────────── (+)   [if second_conv_skip]
                    s2→64 x3, SFT2(cond2), global average pool, 1x1 conv → [B, num_style_params]

Every conv is followed by LeakyReLU(0.2) and no normalisation: instance or batch norm would wash
out exactly the colour statistics the encoder has to carry. "s2" is conv 4x4, stride 2, pad 1
(halves even sizes), conv7 uses reflection padding. The label branch and image branch have the
same spatial schedule, so the conditions always match the features they modulate.

Initialisation: the pix2pixHD N(0, 0.02) init would shrink activations about twofold per layer
in this unnormalised stack (the style vector would start around 1e-4 and carry no reference
information), so the trunk convs use Kaiming-normal init for LeakyReLU(0.2), biases zero. The head
keeps N(0, 0.02) with zero bias and predicts, per AdaIN, (mean, sigma - 1) in the layout of
:mod:`faceregen.models.networks.generator`: its outputs start at a few tenths at most and every
AdaIN sigma starts near 1. In ``plus_one`` mode both SFT layers start as the identity; in
``report`` mode their convolutions start from N(0, 0.02) with zero biases, the init the report's
code (pix2pixHD's ``weights_init``) gave every convolution, so that gamma starts near 0 and the
layer starts by nearly zeroing the features, as the report's model did.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from faceregen.errors import FaceregenError
from faceregen.models.networks.init import init_weights
from faceregen.models.networks.normalization import SFTLayer

MIN_SIZE = 32  # five stride-2 convs: the 1/32 condition must be at least 1x1


def _conv7(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(in_channels, out_channels, 7),
                         nn.LeakyReLU(0.2))


def _down(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1),
                         nn.LeakyReLU(0.2))


class StyleEncoder(nn.Module):
    """Reference image + its one-hot label map -> all AdaIN parameters of the generator.

    ``sft_mode``: ``"plus_one"`` (F * (1 + gamma) + beta, identity at init) or ``"report"``
    (F * gamma + beta). ``second_conv_skip``: add the image branch's second-conv features, pooled
    to the SFT1 size and projected to 64 channels by a 1x1 conv, to the SFT1 output (described in
    the report, missing from its code).
    """

    def __init__(self, label_classes: int, image_channels: int, num_style_params: int,
                 sft_mode: str, second_conv_skip: bool):
        super().__init__()
        if num_style_params <= 0:
            raise FaceregenError(
                "the style encoder needs num_style_params > 0 (a generator with use_style=true)")
        if sft_mode not in SFTLayer.MODES:
            raise FaceregenError(
                f"model.style_encoder.sft_mode must be one of {SFTLayer.MODES}, got {sft_mode!r}")
        self.num_style_params = num_style_params
        self.second_conv_skip = second_conv_skip

        self.label_to_cond1 = nn.Sequential(
            _conv7(label_classes, 16), _down(16, 32), _down(32, 64))
        self.label_to_cond2 = nn.Sequential(_down(64, 64), _down(64, 64), _down(64, 64))

        self.image_stem = _conv7(image_channels, 16)
        self.image_second_conv = _down(16, 32)
        self.image_third_conv = _down(32, 64)
        self.sft1 = SFTLayer(64, 64, 64, mode=sft_mode)
        self.skip_projection = nn.Conv2d(32, 64, 1) if second_conv_skip else None
        self.image_down = nn.Sequential(_down(64, 64), _down(64, 64), _down(64, 64))
        self.sft2 = SFTLayer(64, 64, 64, mode=sft_mode)
        self.head = nn.Conv2d(64, num_style_params, 1)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0.2, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)
        init_weights(self.head)
        for sft in (self.sft1, self.sft2):
            if sft_mode == "plus_one":
                sft.reset_to_identity()
            else:
                init_weights(sft)

    def forward(self, ref_image: torch.Tensor, ref_label_onehot: torch.Tensor) -> torch.Tensor:
        height, width = ref_image.shape[-2:]
        if min(height, width) < MIN_SIZE:
            raise FaceregenError(
                f"the style encoder needs references of at least {MIN_SIZE}x{MIN_SIZE} pixels, "
                f"got {height}x{width}")
        if ref_label_onehot.shape[-2:] != ref_image.shape[-2:]:
            raise FaceregenError(
                f"reference image {height}x{width} and its label map "
                f"{tuple(ref_label_onehot.shape[-2:])} differ in size")

        cond1 = self.label_to_cond1(ref_label_onehot)
        cond2 = self.label_to_cond2(cond1)

        second = self.image_second_conv(self.image_stem(ref_image))
        h = self.sft1(self.image_third_conv(second), cond1)
        if self.skip_projection is not None:
            h = h + self.skip_projection(F.adaptive_avg_pool2d(second, h.shape[-2:]))
        h = self.sft2(self.image_down(h), cond2)
        pooled = h.mean(dim=(2, 3), keepdim=True)
        return self.head(pooled).flatten(1)
