"""Run-time forms of two layers that compute the same function in GPU-friendlier shapes.

cuDNN's fast NHWC convolution kernels want input channels in multiples of 8; the first
convolutions here read 19 label channels (generator, style encoder) or 22 (discriminator:
labels and colours) and fall back to slow kernels, above all in the penalty's float32 double
backward. torch's InstanceNorm2d returns NCHW for a channels_last input, so each normalised
layer leaves channels_last and the next convolution converts back.

:func:`use_gpu_friendly_layers` swaps such layers, in place, for forms with the same parameters
(the same state_dict keys and tensors, so checkpoints do not change): a convolution that pads
its input and weight with zero channels, and an instance norm from ``var_mean`` that keeps the
input's memory layout. Both are off by default (``trainer.align_channels``,
``trainer.layout_keeping_norm``); docs/speed.md says what they have been measured to do.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class ChannelPaddedConv2d(nn.Conv2d):
    """A Conv2d that pads its input channels to a multiple of ``multiple`` with zeros, and its
    weight to match with zero rows, so it computes the same output with aligned shapes."""

    multiple: int = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extra = -self.in_channels % self.multiple
        if extra == 0 or self.groups != 1:
            return super().forward(x)
        fmt = (torch.channels_last
               if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
               else torch.contiguous_format)
        zeros = x.new_zeros(x.shape[0], extra, *x.shape[2:]).contiguous(memory_format=fmt)
        weight = F.pad(self.weight, (0, 0, 0, 0, 0, extra))
        return self._conv_forward(torch.cat([x, zeros], 1), weight, self.bias)


class LayoutKeepingInstanceNorm2d(nn.InstanceNorm2d):
    """InstanceNorm2d (no running statistics) from ``var_mean`` in float32: the output keeps the
    input's memory layout, and reduced-precision inputs are normalised in float32, as
    :class:`~faceregen.models.networks.normalization.AdaIN` does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        var, mean = torch.var_mean(x32, dim=(2, 3), keepdim=True, correction=0)
        out = (x32 - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            out = out * self.weight[:, None, None] + self.bias[:, None, None]
        return out.to(x.dtype)


def _swap(module: nn.Module, wanted: Callable[[nn.Module], bool],
          new_class: type[nn.Module]) -> int:
    """Give every submodule for which ``wanted`` holds the class ``new_class`` (a subclass of its
    own with no state of its own), keeping its parameters; returns how many were swapped."""
    swapped = 0
    for child in module.modules():
        if wanted(child):
            child.__class__ = new_class
            swapped += 1
    return swapped


def use_gpu_friendly_layers(modules: list[nn.Module | None], *, align_channels: bool,
                            layout_keeping_norm: bool) -> dict[str, int]:
    """Swap, in place, the layers of ``modules`` named above; returns the counts swapped."""
    counts = {"padded_convolutions": 0, "layout_keeping_norms": 0}
    for module in modules:
        if module is None:
            continue
        if align_channels:
            counts["padded_convolutions"] += _swap(
                module, lambda m: type(m) is nn.Conv2d
                and m.in_channels % ChannelPaddedConv2d.multiple != 0 and m.groups == 1,
                ChannelPaddedConv2d)
        if layout_keeping_norm:
            counts["layout_keeping_norms"] += _swap(
                module, lambda m: type(m) is nn.InstanceNorm2d and not m.track_running_stats,
                LayoutKeepingInstanceNorm2d)
    return counts
