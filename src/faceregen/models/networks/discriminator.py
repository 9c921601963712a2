"""pix2pixHD multi-scale PatchGAN discriminator."""

from __future__ import annotations

import math

import torch
from torch import nn

from faceregen.models.networks.init import init_weights


class NLayerDiscriminator(nn.Module):
    """pix2pixHD PatchGAN: returns every layer's output, the last one being the patch logits.

    conv4 s2 -> ndf, LeakyReLU 0.2; ``n_layers - 1`` more conv4 s2 with channels doubling (at most
    512), InstanceNorm (no affine), LeakyReLU; one conv4 s1 + norm + LeakyReLU; conv4 s1 -> 1.
    Padding ceil((4 - 1) / 2) = 2 as in pix2pixHD. ``forward`` returns n_layers + 2 tensors.
    """

    def __init__(self, in_channels: int, ndf: int, n_layers: int, max_channels: int = 512):
        super().__init__()
        kernel, padding = 4, math.ceil((4 - 1) / 2)
        layers = [nn.Sequential(nn.Conv2d(in_channels, ndf, kernel, stride=2, padding=padding),
                                nn.LeakyReLU(0.2))]
        channels = ndf
        for _ in range(1, n_layers):
            out = min(channels * 2, max_channels)
            layers.append(nn.Sequential(
                nn.Conv2d(channels, out, kernel, stride=2, padding=padding),
                nn.InstanceNorm2d(out, affine=False), nn.LeakyReLU(0.2)))
            channels = out
        out = min(channels * 2, max_channels)
        layers.append(nn.Sequential(
            nn.Conv2d(channels, out, kernel, stride=1, padding=padding),
            nn.InstanceNorm2d(out, affine=False), nn.LeakyReLU(0.2)))
        layers.append(nn.Conv2d(out, 1, kernel, stride=1, padding=padding))
        self.layers = nn.ModuleList(layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


class MultiScaleDiscriminator(nn.Module):
    """``num_D`` PatchGANs on the (label one-hot ++ image) input, halved each time.

    ``forward(x)`` returns one list per scale ordered from full resolution down
    (``out[0]`` sees the input as given, ``out[k]`` the input average-pooled k times); each list
    holds the intermediate features and ends with the patch prediction.
    """

    def __init__(self, label_classes: int, image_channels: int, ndf: int, n_layers: int,
                 num_D: int):
        super().__init__()
        self.in_channels = label_classes + image_channels
        self.discriminators = nn.ModuleList(
            NLayerDiscriminator(self.in_channels, ndf, n_layers) for _ in range(num_D))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        outputs = []
        for index, discriminator in enumerate(self.discriminators):
            if index:
                x = self.downsample(x)
            outputs.append(discriminator(x))
        return outputs
