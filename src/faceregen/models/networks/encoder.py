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

    regional = False  # one style per reference (RegionalStyleEncoder: one per label class too)

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
        return self.encode(ref_image, ref_label_onehot)[0]

    def encode(self, ref_image: torch.Tensor, ref_label_onehot: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The style vector [B, num_style_params] and the 64-channel features at 1/4 (after
        SFT1 and the skip), which :class:`RegionalStyleEncoder` pools per region."""
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
        quarter = h
        h = self.sft2(self.image_down(h), cond2)
        pooled = h.mean(dim=(2, 3), keepdim=True)
        return self.head(pooled).flatten(1), quarter


def region_average(features: torch.Tensor, label_onehot: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean feature of every label class (SEAN's region-wise average pooling).

    ``features`` [B, C, h, w] at a lower resolution than ``label_onehot`` [B, K, H, W]; each
    feature pixel weighs by the fraction of its H/h x W/w footprint that the class covers
    (area downsampling of the one-hot map), so a class of a single full-size pixel still counts.
    When h divides H this is exactly the masked mean at full resolution of the features upsampled
    by repetition. Returns means [B, K, C] (0 for absent classes) and presence [B, K] (bool).
    """
    weights = F.adaptive_avg_pool2d(label_onehot.to(features.dtype), features.shape[-2:])
    area = weights.sum(dim=(2, 3))                                        # [B, K]
    sums = torch.einsum("bkhw,bchw->bkc", weights, features)
    return sums / area.clamp_min(1e-12)[..., None], area > 0


class RegionalStyleEncoder(StyleEncoder):
    """:class:`StyleEncoder` plus one style vector per label class of the reference.

    Output [B, 1 + K, num_style_params]: row 0 is the global style (the report's path, exactly
    the parent's output); row 1 + k is the style of class k, predicted from the reference's
    features averaged over its class-k pixels only (:func:`region_average` of the 1/4 features
    after a 3x3 conv), or the global style when the reference shows no class-k pixel. A row
    holds nothing of the other regions, so a region's look can only come from its own row,
    which is what mixing references per region needs (a row built on the global style would
    carry every region's colours and leave the generator free to read them anywhere). The head
    is one linear map shared by all classes plus a learned per-class bias, N(0, 0.02) and 0 at
    the start (AdaIN near instance norm, as the global head starts).
    """

    regional = True

    def __init__(self, label_classes: int, image_channels: int, num_style_params: int,
                 sft_mode: str, second_conv_skip: bool):
        super().__init__(label_classes, image_channels, num_style_params, sft_mode,
                         second_conv_skip)
        self.label_classes = label_classes
        self.region_features = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.LeakyReLU(0.2))
        nn.init.kaiming_normal_(self.region_features[0].weight, a=0.2, nonlinearity="leaky_relu")
        nn.init.zeros_(self.region_features[0].bias)
        self.region_head = init_weights(nn.Linear(64, num_style_params))
        self.region_bias = nn.Parameter(torch.zeros(label_classes, num_style_params))

    def forward(self, ref_image: torch.Tensor, ref_label_onehot: torch.Tensor) -> torch.Tensor:
        global_style, quarter = self.encode(ref_image, ref_label_onehot)
        means, present = region_average(self.region_features(quarter), ref_label_onehot)
        codes = self.region_head(means) + self.region_bias
        regions = torch.where(present[..., None], codes.to(global_style.dtype),
                              global_style[:, None])
        return torch.cat([global_style[:, None], regions], dim=1)
