"""Conditional normalisation layers: AdaIN (generator) and SFT (style encoder)."""

from __future__ import annotations

import torch
from torch import nn


class AdaIN(nn.Module):
    """AdaIN(x, y) = sigma_y * (x - mu(x)) / sigma(x) + mu_y, per sample and channel.

    The statistics of ``x`` are over H and W (biased variance, ``eps`` inside the square root).
    ``mean`` and ``std`` are the target statistics, shape [B, C]; the layer has no parameters of
    its own, the style encoder predicts them. Statistics are computed in float32 so that the
    layer stays accurate under float16/bfloat16 autocast.
    """

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        x32 = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        var, mu = torch.var_mean(x32, dim=(2, 3), keepdim=True, correction=0)
        normalized = (x32 - mu) * torch.rsqrt(var + self.eps)
        out = normalized * std[:, :, None, None] + mean[:, :, None, None]
        return out.to(x.dtype)


class SpatialAdaIN(AdaIN):
    """AdaIN whose target ``mean`` and ``std`` are maps [B, C, H, W] instead of [B, C].

    The statistics of ``x`` stay per sample and channel over H and W; the target statistics vary
    per pixel (SEAN's and SPADE's spatially varying modulation). The regional generator builds
    the maps by giving every pixel the style of its label class.
    """

    def forward(self, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        x32 = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        var, mu = torch.var_mean(x32, dim=(2, 3), keepdim=True, correction=0)
        normalized = (x32 - mu) * torch.rsqrt(var + self.eps)
        return (normalized * std + mean).to(x.dtype)


class SFTLayer(nn.Module):
    """Spatial feature transform: a per-pixel affine map of ``features`` predicted from ``cond``.

    gamma = conv1x1(LeakyReLU0.1(conv1x1(cond))), beta likewise (separate branches).
    ``mode="plus_one"``: out = F * (1 + gamma) + beta; the last convolution of each branch starts
    at zero, so the layer is the identity at initialisation and the encoder trains from a working
    feature path. ``mode="report"``: out = F * gamma + beta, the report's form, kept for ablation;
    the style encoder gives it the report's N(0, 0.02) initialisation, with which gamma starts
    near 0 and the layer starts by nearly zeroing ``features``.
    """

    MODES = ("plus_one", "report")

    def __init__(self, feature_channels: int, cond_channels: int, hidden_channels: int = 64,
                 mode: str = "plus_one"):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"SFT mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode
        self.gamma = nn.Sequential(
            nn.Conv2d(cond_channels, hidden_channels, 1), nn.LeakyReLU(0.1),
            nn.Conv2d(hidden_channels, feature_channels, 1))
        self.beta = nn.Sequential(
            nn.Conv2d(cond_channels, hidden_channels, 1), nn.LeakyReLU(0.1),
            nn.Conv2d(hidden_channels, feature_channels, 1))

    def reset_to_identity(self) -> None:
        """Zero the last conv of both branches (called after the network-wide init)."""
        for branch in (self.gamma, self.beta):
            nn.init.zeros_(branch[-1].weight)
            nn.init.zeros_(branch[-1].bias)

    def forward(self, features: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.gamma(cond), self.beta(cond)
        if self.mode == "plus_one":
            return features * (1 + gamma) + beta
        return features * gamma + beta
