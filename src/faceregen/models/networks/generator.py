"""pix2pixHD global generator whose residual blocks optionally use AdaIN.

Style-parameter layout (the ``style`` argument of :meth:`GlobalGenerator.forward`, shape
[B, num_style_params], C = bottleneck channels = ngf * 2**n_downsample)::

    block 0: [mean of norm 1 (C) | std offset of norm 1 (C) | mean of norm 2 (C) | std offset 2 (C)]
    block 1: same, and so on for the n_blocks residual blocks, in forward order;
    then, with decoder_norm="adain": [mean (C/2) | std offset (C/2)] of the decoder's first norm,
    and with decoder_norm_layers="all" [mean (C/4) | std offset (C/4)] of the second, and so on.

Without ``block_second_shift`` a block has no "mean of norm 2": [mean 1 | std offset 1 |
std offset 2] (3C). Each AdaIN uses sigma = 1 + std offset, so a zero style vector means
"instance norm, unit std, zero mean" and a style encoder whose head starts near zero starts
with sigma near 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from faceregen.errors import FaceregenError
from faceregen.models.networks.init import init_weights
from faceregen.models.networks.normalization import AdaIN, SpatialAdaIN

UPSAMPLE_MODES = ("transpose", "resize")
# The normalisation after the decoder's first upsampling conv, the first one the residual
# blocks' output meets. "instance" (pix2pixHD) removes every per-channel constant, so the
# blocks' second AdaIN shift (a per-channel constant added on the skip path) barely reaches the
# image; "layer" (MUNIT's decoder: one mean and std per sample over C, H, W, per-channel affine)
# and "group" (DECODER_GROUPS groups) keep most of them; "adain" is instance norm with a mean
# and std from the style encoder; "none" keeps everything.
DECODER_NORMS = ("instance", "layer", "group", "adain", "none")
# Which upsampling norms decoder_norm replaces: the first only (the others stay InstanceNorm),
# or every one. An InstanceNorm at full resolution standardises each channel over the whole
# image, so a colour that only the style knows (a background's, a shirt's) has to survive it
# as a pattern of normalised values, which also shift with the regions' areas; with "all" and
# adain the style sets those channels' statistics again just before the output convolution.
DECODER_NORM_LAYERS = ("first", "all")
DECODER_GROUPS = 8
# Which decoder convolutions read the label map with label_skips: every one, the upsampling
# ones only, or the output c7s1 only.
LABEL_SKIP_CONVS = ("all", "upsampling", "output")
# Which style the decoder's AdaINs take in the regional generator: the reference's global style
# (one mean and std per channel for the whole image), or every pixel its own class's style at
# each decoder resolution, as the residual blocks do (SEAN's per-region modulation at every
# scale). "regional" lets a region's colour reach the output from its own row only.
DECODER_STYLES = ("global", "regional")


class LabelSkip(nn.Module):
    """Appends the label map, area-resized to the features' size, as extra input channels.

    pix2pixHD's generator sees the label map once, at its input; after the bottleneck the
    decoder must redraw small parts (lips, brows: a few pixels at 64 px) from coarse features.
    U-Net's skips and SPADE's per-layer label modulation give the decoder the layout again at
    every resolution; this is the cheapest form of that, a skip of the label map alone. Without
    parameters: the convolution after it has ``label_classes`` more input channels.
    """

    def forward(self, features: torch.Tensor, label_onehot: torch.Tensor) -> torch.Tensor:
        label = F.adaptive_avg_pool2d(label_onehot.to(features.dtype), features.shape[-2:])
        return torch.cat([features, label], dim=1)


class ResnetBlock(nn.Module):
    """conv3x3-norm-ReLU-conv3x3-norm plus the input, reflection padding.

    norm = AdaIN (parameters passed to forward) when ``use_style``, else InstanceNorm without
    affine parameters (the pix2pixHD baseline). ``second_shift=False`` drops the second AdaIN's
    predicted mean (it is 0): that mean is a per-channel constant on the skip path, which an
    instance-normalised decoder removes again.
    """

    def __init__(self, channels: int, use_style: bool, second_shift: bool):
        super().__init__()
        self.channels = channels
        self.use_style = use_style
        self.second_shift = second_shift
        self.conv1 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3))
        self.conv2 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3))
        if use_style:
            self.norm1, self.norm2 = AdaIN(), AdaIN()
        else:
            self.norm1 = nn.InstanceNorm2d(channels, affine=False)
            self.norm2 = nn.InstanceNorm2d(channels, affine=False)
        self.act = nn.ReLU()

    @property
    def num_style_params(self) -> int:
        if not self.use_style:
            return 0
        return (4 if self.second_shift else 3) * self.channels

    def _norm(self, norm: nn.Module, x: torch.Tensor, params: torch.Tensor | None) -> torch.Tensor:
        if params is None:
            return norm(x)
        mean, std_offset = params.chunk(2, dim=1)
        return norm(x, mean, 1 + std_offset)

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        params1 = params2 = None
        if self.use_style:
            params1, params2 = style.split(2 * self.channels, dim=1)
            if not self.second_shift:  # params2 holds the std offsets only
                params2 = torch.cat([torch.zeros_like(params2), params2], dim=1)
        h = self.act(self._norm(self.norm1, self.conv1(x), params1))
        h = self._norm(self.norm2, self.conv2(h), params2)
        return x + h


def decoder_norm_layer(kind: str, channels: int) -> nn.Module:
    """The decoder's first normalisation (see DECODER_NORMS)."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(DECODER_GROUPS, channels), channels)
    if kind == "adain":
        return AdaIN()
    return nn.Identity()


class GlobalGenerator(nn.Module):
    """pix2pixHD's global generator: label map (one-hot) -> image in [-1, 1].

    c7s1-ngf, ``n_downsample`` stride-2 3x3 convs doubling channels, ``n_blocks`` residual blocks,
    mirrored upsampling (``"transpose"``: ConvTranspose2d 3x3 s2; ``"resize"``: nearest x2 then
    conv3x3, free of checkerboard artefacts), c7s1-``out_channels``, tanh. InstanceNorm without
    affine and ReLU after every conv outside the blocks except the last; ``decoder_norm``
    replaces the first upsampling's InstanceNorm, or every one's with ``decoder_norm_layers=
    "all"`` (DECODER_NORMS, DECODER_NORM_LAYERS), ``block_second_shift=False``
    drops the blocks' second AdaIN mean (:class:`ResnetBlock`). ``label_skips=True`` feeds the
    label map again to the decoder convolutions ``label_skip_convs`` names (:class:`LabelSkip`;
    not in pix2pixHD or the report). ``decoder_styles`` is the regional generator's
    (DECODER_STYLES); this class takes only "global".
    """

    regional = False  # one style per sample (RegionalGenerator: one per label class)

    def __init__(self, label_classes: int, out_channels: int, ngf: int, n_downsample: int,
                 n_blocks: int, use_style: bool, upsample: str, decoder_norm: str,
                 block_second_shift: bool, label_skips: bool = False,
                 label_skip_convs: str = "all", decoder_norm_layers: str = "first",
                 decoder_styles: str = "global"):
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise FaceregenError(
                f"model.generator.upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        if decoder_norm not in DECODER_NORMS:
            raise FaceregenError(f"model.generator.decoder_norm must be one of {DECODER_NORMS}, "
                                 f"got {decoder_norm!r}")
        if label_skip_convs not in LABEL_SKIP_CONVS:
            raise FaceregenError(f"model.generator.label_skip_convs must be one of "
                                 f"{LABEL_SKIP_CONVS}, got {label_skip_convs!r}")
        if decoder_norm_layers not in DECODER_NORM_LAYERS:
            raise FaceregenError(f"model.generator.decoder_norm_layers must be one of "
                                 f"{DECODER_NORM_LAYERS}, got {decoder_norm_layers!r}")
        if decoder_styles not in DECODER_STYLES:
            raise FaceregenError(f"model.generator.decoder_styles must be one of "
                                 f"{DECODER_STYLES}, got {decoder_styles!r}")
        if decoder_styles == "regional" and not self.regional:
            raise FaceregenError("model.generator.decoder_styles=regional needs the regional "
                                 "generator (model=style_regional)")
        if decoder_styles == "regional" and decoder_norm != "adain":
            raise FaceregenError(f"model.generator.decoder_styles=regional needs "
                                 f"decoder_norm=adain (no other decoder norm takes a style); "
                                 f"with decoder_norm={decoder_norm} set decoder_styles=global")
        if decoder_norm == "adain" and not use_style:
            raise FaceregenError("model.generator.decoder_norm=adain needs a style encoder "
                                 "(model.style_encoder); the baseline has none")
        if decoder_norm != "instance" and n_downsample < 1:
            raise FaceregenError("model.generator.decoder_norm needs n_downsample >= 1: without "
                                 "upsampling the decoder has no normalisation")
        self.label_classes = label_classes
        self.n_downsample = n_downsample
        self.use_style = use_style
        self.decoder_norm = decoder_norm

        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(label_classes, ngf, 7),
            nn.InstanceNorm2d(ngf, affine=False), nn.ReLU()]
        channels = ngf
        for _ in range(n_downsample):
            layers += [nn.Conv2d(channels, channels * 2, 3, stride=2, padding=1),
                       nn.InstanceNorm2d(channels * 2, affine=False), nn.ReLU()]
            channels *= 2
        self.encoder = nn.Sequential(*layers)
        self.bottleneck_channels = channels

        self.blocks = nn.ModuleList(ResnetBlock(channels, use_style, block_second_shift)
                                    for _ in range(n_blocks))
        # One (mean, std offset) pair of C/2, C/4, ... values per decoder AdaIN, in forward order.
        self.decoder_adain_sizes: list[int] = []

        # With label_skips a LabelSkip sits just before each convolution (after the nearest
        # upsampling, so the label map joins at the conv's own resolution) and widens its input;
        # label_skip_convs picks the upsampling convs, the output conv or both.
        def skip(convs: str) -> tuple[list[nn.Module], int]:
            if label_skips and label_skip_convs in ("all", convs):
                return [LabelSkip()], label_classes
            return [], 0

        layers = []
        for index in range(n_downsample):
            marker, extra = skip("upsampling")
            if upsample == "transpose":
                layers += [*marker, nn.ConvTranspose2d(channels + extra, channels // 2, 3,
                                                       stride=2, padding=1, output_padding=1)]
            else:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), *marker,
                           nn.Conv2d(channels + extra, channels // 2, 3, padding=1)]
            norm = decoder_norm if index == 0 or decoder_norm_layers == "all" else "instance"
            layers += [decoder_norm_layer(norm, channels // 2), nn.ReLU()]
            if norm == "adain":
                self.decoder_adain_sizes.append(2 * (channels // 2))
            channels //= 2
        marker, extra = skip("output")
        layers += [*marker, nn.ReflectionPad2d(3), nn.Conv2d(channels + extra, out_channels, 7),
                   nn.Tanh()]
        self.decoder = nn.Sequential(*layers)
        self.label_skips = label_skips
        init_weights(self)

    @property
    def decoder_style_params(self) -> int:
        return sum(self.decoder_adain_sizes)

    @property
    def num_style_params(self) -> int:
        """n_blocks * 2 norms * (mean, std) * bottleneck channels (less the second means
        without ``block_second_shift``), plus the decoder AdaIN's; 0 without style."""
        return sum(block.num_style_params for block in self.blocks) + self.decoder_style_params

    def forward(self, label_onehot: torch.Tensor, style: torch.Tensor | None = None
                ) -> torch.Tensor:
        self._check_labels(label_onehot)
        if self.use_style:
            if style is None:
                raise FaceregenError(
                    "this generator uses AdaIN and needs a style vector from the style encoder "
                    "(a reference image and its label map)")
            if style.shape[-1] != self.num_style_params:
                raise FaceregenError(
                    f"style vector has {style.shape[-1]} values, the generator needs "
                    f"{self.num_style_params}")
            *block_styles, decoder_style = style.reshape(style.shape[0], -1).split(
                [b.num_style_params for b in self.blocks] + [self.decoder_style_params], dim=1)
        else:
            block_styles, decoder_style = [None] * len(self.blocks), None

        h = self.encoder(label_onehot)
        for block, block_style in zip(self.blocks, block_styles):
            h = block(h, block_style)
        return self._decode(h, decoder_style, label_onehot)

    def _check_labels(self, label_onehot: torch.Tensor) -> None:
        height, width = label_onehot.shape[-2:]
        divisor = 2 ** self.n_downsample
        if height % divisor or width % divisor:
            raise FaceregenError(
                f"input size {height}x{width} is not divisible by 2**n_downsample = {divisor}; "
                f"use an image size that is a multiple of {divisor}")
        if label_onehot.shape[1] != self.label_classes:
            raise FaceregenError(
                f"the generator expects {self.label_classes} label channels, "
                f"got {label_onehot.shape[1]}")

    def _decode(self, h: torch.Tensor, decoder_style: torch.Tensor | None,
                label_onehot: torch.Tensor) -> torch.Tensor:
        if self.decoder_norm != "adain" and not self.label_skips:
            return self.decoder(h)
        adain_styles = iter(decoder_style.split(self.decoder_adain_sizes, dim=-1)
                            if decoder_style is not None else ())
        for layer in self.decoder:
            if isinstance(layer, AdaIN):
                params = next(adain_styles)
                if params.dim() == 3:  # one row per class: per-pixel maps at this resolution
                    params = class_style_maps(class_weights(label_onehot, h), params)
                mean, std_offset = params.chunk(2, dim=1)
                h = layer(h, mean, 1 + std_offset)
            elif isinstance(layer, LabelSkip):
                h = layer(h, label_onehot)
            else:
                h = layer(h)
        return h


def class_weights(label_onehot: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The one-hot label map averaged down to ``like``'s H x W: each pixel's share of every
    class, [B, K, H, W] (exactly one-hot at full size)."""
    return F.adaptive_avg_pool2d(label_onehot.to(like.dtype), like.shape[-2:])


def class_style_maps(weights: torch.Tensor, class_styles: torch.Tensor) -> torch.Tensor:
    """Per-pixel style maps [B, P, H, W] from one style row per class ([B, K, P]): each pixel
    gets its class's row, area-weighted by :func:`class_weights` where it covers several."""
    return torch.einsum("bkhw,bkp->bphw", weights, class_styles.to(weights.dtype))


class RegionalGenerator(GlobalGenerator):
    """:class:`GlobalGenerator` whose residual blocks take one style per label class.

    ``style`` is [B, 1 + K, num_style_params] (:class:`~faceregen.models.networks.encoder.
    RegionalStyleEncoder`'s output): row 0 the global style, row 1 + k the style of class k.
    Each block's AdaIN parameters become maps: every bottleneck pixel gets the style of its
    class in the target label map (:func:`class_style_maps`), and the blocks' AdaINs modulate
    with them pixel by pixel (:class:`SpatialAdaIN`). The decoder's AdaINs
    (``decoder_norm=adain``) take the global style, or with ``decoder_styles="regional"`` the
    class rows too, at each decoder resolution. Same constructor, weights and style layout per
    row as the parent, so a style whose rows all equal one global style gives the parent's
    output.
    """

    regional = True

    def __init__(self, label_classes: int, out_channels: int, ngf: int, n_downsample: int,
                 n_blocks: int, use_style: bool, upsample: str, decoder_norm: str,
                 block_second_shift: bool, label_skips: bool = False,
                 label_skip_convs: str = "all", decoder_norm_layers: str = "first",
                 decoder_styles: str = "global"):
        if not use_style:
            raise FaceregenError("the regional generator needs a style encoder "
                                 "(model.style_encoder); use GlobalGenerator without one")
        super().__init__(label_classes, out_channels, ngf, n_downsample, n_blocks, use_style,
                         upsample, decoder_norm, block_second_shift, label_skips,
                         label_skip_convs, decoder_norm_layers, decoder_styles)
        for block in self.blocks:
            block.norm1, block.norm2 = SpatialAdaIN(), SpatialAdaIN()
        self.decoder_styles = decoder_styles
        if decoder_styles == "regional":
            for index, layer in enumerate(self.decoder):
                if isinstance(layer, AdaIN):
                    self.decoder[index] = SpatialAdaIN(layer.eps)

    def forward(self, label_onehot: torch.Tensor, style: torch.Tensor | None = None
                ) -> torch.Tensor:
        self._check_labels(label_onehot)
        expected = (1 + self.label_classes, self.num_style_params)
        if style is None or style.dim() != 3 or tuple(style.shape[1:]) != expected:
            got = None if style is None else tuple(style.shape)
            raise FaceregenError(
                f"the regional generator needs per-region styles [B, {expected[0]}, "
                f"{expected[1]}] from a regional style encoder, got {got}")
        *block_styles, region_decoder_style = style[:, 1:].split(
            [b.num_style_params for b in self.blocks] + [self.decoder_style_params], dim=2)
        decoder_style = (region_decoder_style if self.decoder_styles == "regional" else
                         style[:, 0, self.num_style_params - self.decoder_style_params:])

        h = self.encoder(label_onehot)
        weights = class_weights(label_onehot, h)
        for block, region_style in zip(self.blocks, block_styles):
            h = block(h, class_style_maps(weights, region_style))
        return self._decode(h, decoder_style, label_onehot)
