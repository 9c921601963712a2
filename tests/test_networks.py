"""Properties of the generator, style encoder, discriminator and build_networks (tiny sizes)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra.errors import ConfigCompositionException
from torch import nn

import faceregen.config  # noqa: F401  (registers the config schemas)
from faceregen.errors import FaceregenError
from faceregen.models import Networks, build_networks, generate
from faceregen.models.networks import (
    AdaIN,
    GlobalGenerator,
    MultiScaleDiscriminator,
    SFTLayer,
    StyleEncoder,
    init_weights,
)
from faceregen.models.networks.generator import LabelSkip, RegionalGenerator

LABELS = 19
# The generator options as pix2pixHD and the report have them (today's defaults).
PIX2PIXHD = {"decoder_norm": "instance", "block_second_shift": True}


def one_hot_labels(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, LABELS, (batch, height // 8, width // 8), generator=g)
    onehot = F.one_hot(coarse, LABELS).permute(0, 3, 1, 2).float()
    return F.interpolate(onehot, size=(height, width), mode="nearest")


def images(batch: int, height: int, width: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=g) * 2 - 1


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- generator and encoder shapes ---------------------------------------------------------------

@pytest.mark.parametrize("height,width,n_downsample,upsample,use_style", [
    (32, 32, 2, "transpose", True),
    (64, 64, 3, "resize", True),
    (96, 96, 3, "transpose", False),
    (32, 64, 2, "resize", False),
    (64, 96, 3, "transpose", True),
    (96, 32, 2, "resize", True),
])
def test_generator_output_shape(height, width, n_downsample, upsample, use_style):
    generator = GlobalGenerator(LABELS, 3, ngf=8, n_downsample=n_downsample, n_blocks=2,
                                use_style=use_style, upsample=upsample, **PIX2PIXHD)
    encoder = (StyleEncoder(LABELS, 3, generator.num_style_params, sft_mode="plus_one",
                            second_conv_skip=True) if use_style else None)
    label = one_hot_labels(2, height, width)
    out = generate(generator, encoder, label, images(2, height, width), label)
    assert out.shape == (2, 3, height, width)
    assert out.abs().max() <= 1
    if use_style:
        assert generator.num_style_params == 2 * 2 * 2 * 8 * 2 ** n_downsample
    else:
        assert generator.num_style_params == 0


def test_size_not_divisible_by_downsampling_fails_with_message():
    generator = GlobalGenerator(LABELS, 3, ngf=8, n_downsample=3, n_blocks=1, use_style=False,
                                upsample="transpose", **PIX2PIXHD)
    with pytest.raises(FaceregenError, match=r"36x32 .*2\*\*n_downsample = 8"):
        generator(one_hot_labels(1, 36, 32))


def test_style_generator_without_style_fails_clearly():
    generator = GlobalGenerator(LABELS, 3, ngf=8, n_downsample=2, n_blocks=1, use_style=True,
                                upsample="transpose", **PIX2PIXHD)
    with pytest.raises(FaceregenError, match="needs a style vector"):
        generator(one_hot_labels(1, 32, 32))
    with pytest.raises(FaceregenError, match="reference"):
        generate(generator, StyleEncoder(LABELS, 3, generator.num_style_params,
                                         sft_mode="plus_one", second_conv_skip=True),
                 one_hot_labels(1, 32, 32))


def test_zero_style_equals_the_instance_norm_baseline():
    """AdaIN with mean 0 and sigma 1 + 0 is InstanceNorm: same weights, same output."""
    torch.manual_seed(0)
    styled = GlobalGenerator(LABELS, 3, ngf=8, n_downsample=2, n_blocks=2, use_style=True,
                             upsample="transpose", **PIX2PIXHD)
    baseline = GlobalGenerator(LABELS, 3, ngf=8, n_downsample=2, n_blocks=2, use_style=False,
                               upsample="transpose", **PIX2PIXHD)
    baseline.load_state_dict(styled.state_dict())
    label = one_hot_labels(2, 32, 32)
    zero_style = torch.zeros(2, styled.num_style_params)
    torch.testing.assert_close(styled(label, zero_style), baseline(label), atol=1e-6, rtol=0)


def test_style_vector_layout():
    """Block k, norm j uses style[:, 4Ck + 2C(j-1) : ...] as (mean, sigma - 1)."""
    generator = GlobalGenerator(LABELS, 3, ngf=4, n_downsample=2, n_blocks=3, use_style=True,
                                upsample="transpose", **PIX2PIXHD)
    c = generator.bottleneck_channels
    style = torch.randn(2, generator.num_style_params, dtype=torch.float64)
    generator.double()
    captured = {}
    generator.blocks[1].norm2.register_forward_hook(lambda m, i, o: captured.update(out=o))
    generator(one_hot_labels(2, 32, 32).double(), style)
    offset = 4 * c * 1 + 2 * c
    mean, std_offset = style[:, offset:offset + c], style[:, offset + c:offset + 2 * c]
    var, mu = torch.var_mean(captured["out"], dim=(2, 3), correction=0)
    torch.testing.assert_close(mu, mean, atol=1e-6, rtol=0)
    # small pre-norm variance (N(0, 0.02) convs): eps=1e-5 shrinks sigma by a few 1e-4 relative
    torch.testing.assert_close(var.sqrt(), (1 + std_offset).abs(), atol=0, rtol=2e-3)


def test_style_encoder_output_and_initial_sigma_near_one():
    encoder = StyleEncoder(LABELS, 3, num_style_params=64, sft_mode="plus_one",
                           second_conv_skip=True)
    style = encoder(images(2, 32, 32), one_hot_labels(2, 32, 32))
    assert style.shape == (2, 64)
    assert style.abs().max() < 0.5  # (mean, sigma - 1) start near zero: sigma near 1
    assert not torch.allclose(style[0], style[1])  # and already depend on the reference


def test_style_encoder_rejects_tiny_references():
    encoder = StyleEncoder(LABELS, 3, num_style_params=16, sft_mode="plus_one",
                           second_conv_skip=True)
    with pytest.raises(FaceregenError, match="at least 32x32"):
        encoder(images(1, 16, 16), one_hot_labels(1, 16, 16))


def test_second_conv_skip_changes_the_graph():
    torch.manual_seed(0)
    with_skip = StyleEncoder(LABELS, 3, num_style_params=32, sft_mode="plus_one",
                             second_conv_skip=True)
    without_skip = StyleEncoder(LABELS, 3, num_style_params=32, sft_mode="plus_one",
                                second_conv_skip=False)
    # the skip is a 1x1 conv from the second conv's 32 channels to 64, with bias
    assert count(with_skip) - count(without_skip) == 32 * 64 + 64
    missing = without_skip.load_state_dict(with_skip.state_dict(), strict=False)
    assert set(missing.unexpected_keys) == {"skip_projection.weight", "skip_projection.bias"}
    ref, label = images(2, 32, 32), one_hot_labels(2, 32, 32)
    assert not torch.allclose(with_skip(ref, label), without_skip(ref, label))


# --- AdaIN, SFT, init ---------------------------------------------------------------------------

def test_adain_output_has_the_predicted_statistics():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 8, 8, generator=g) * 3 + 2
    mean = torch.randn(3, 5, generator=g)
    std = torch.rand(3, 5, generator=g) * 2 + 0.1
    out = AdaIN()(x, mean, std)
    var, mu = torch.var_mean(out, dim=(2, 3), correction=0)
    torch.testing.assert_close(mu, mean, atol=1e-4, rtol=0)
    torch.testing.assert_close(var.sqrt(), std, atol=1e-4, rtol=0)


def test_sft_plus_one_is_the_identity_at_initialisation():
    encoder = StyleEncoder(LABELS, 3, num_style_params=16, sft_mode="plus_one",
                           second_conv_skip=True)
    features, cond = torch.randn(2, 64, 8, 8), torch.randn(2, 64, 8, 8)
    for sft in (encoder.sft1, encoder.sft2):
        assert torch.equal(sft(features, cond), features)
    report = StyleEncoder(LABELS, 3, num_style_params=16, sft_mode="report",
                          second_conv_skip=True)
    assert not torch.allclose(report.sft1(features, cond), features)


def test_sft_report_mode_starts_from_the_reports_init():
    """sft_mode=report: every SFT conv N(0, 0.02) with zero bias (the trunk keeps Kaiming, std
    sqrt(2 / 1.04 / fan_in)), so gamma starts near 0 and the layer nearly zeroes its input."""
    torch.manual_seed(0)
    encoder = StyleEncoder(LABELS, 3, num_style_params=16, sft_mode="report",
                           second_conv_skip=True)
    for sft in (encoder.sft1, encoder.sft2):
        convs = [m for m in sft.modules() if isinstance(m, nn.Conv2d)]
        assert len(convs) == 4
        for conv in convs:  # 64 x 64 weights each
            assert abs(conv.weight.std().item() - 0.02) < 0.002
            assert torch.all(conv.bias == 0)
    trunk = encoder.image_down[0][0]  # conv4 64 -> 64, fan_in 1024
    assert abs(trunk.weight.std().item() - (2 / 1.04 / 1024) ** 0.5) < 0.003
    features, cond = torch.randn(2, 64, 8, 8), torch.randn(2, 64, 8, 8)
    gamma = encoder.sft1.gamma(cond)
    assert gamma.abs().mean() < 0.05
    out = encoder.sft1(features, cond)
    assert (out - encoder.sft1.beta(cond)).abs().mean() < 0.05 * features.abs().mean()


def test_sft_formula():
    sft = SFTLayer(4, 3, 8, mode="report")
    features, cond = torch.randn(2, 4, 5, 5), torch.randn(2, 3, 5, 5)
    gamma, beta = sft.gamma(cond), sft.beta(cond)
    torch.testing.assert_close(sft(features, cond), features * gamma + beta)
    sft.mode = "plus_one"
    torch.testing.assert_close(sft(features, cond), features * (1 + gamma) + beta)


def test_init_covers_transposed_convs_and_affine_norms():
    torch.manual_seed(0)
    generator = GlobalGenerator(LABELS, 3, ngf=32, n_downsample=2, n_blocks=1, use_style=False,
                                upsample="transpose", **PIX2PIXHD)
    transposed = [m for m in generator.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert transposed
    for module in transposed:
        assert abs(module.weight.std().item() - 0.02) < 0.002
        assert torch.all(module.bias == 0)
    norm = init_weights(nn.Sequential(nn.InstanceNorm2d(512, affine=True), nn.BatchNorm2d(512)))
    for module in norm:
        assert abs(module.weight.mean().item() - 1) < 0.005
        assert abs(module.weight.std().item() - 0.02) < 0.005


# --- closed-form parameter counts ---------------------------------------------------------------

def generator_param_count(labels, out, ngf, n_downsample, n_blocks):
    """c7s1: 49*L*ngf + ngf. Each down (c -> 2c, 3x3) and its mirrored up (2c -> c): 18c^2 + 2c
    and 18c^2 + c. Each residual block: 2 * (9C^2 + C), C = ngf * 2**n_downsample (AdaIN and
    InstanceNorm have no parameters). Last c7s1: 49*ngf*out + out."""
    total = 49 * labels * ngf + ngf + 49 * ngf * out + out
    for i in range(n_downsample):
        c = ngf * 2 ** i
        total += (18 * c * c + 2 * c) + (18 * c * c + c)
    big = ngf * 2 ** n_downsample
    return total + n_blocks * 2 * (9 * big * big + big)


def discriminator_param_count(in_channels, ndf, n_layers, num_D):
    """Per scale, conv4 layers with biases: in -> c_0 = ndf, c_{n-1} -> c_n = min(ndf 2^n, 512)
    for n = 1..n_layers (the last one stride 1), c_{n_layers} -> 1: sum 16 a b + b."""
    channels = [in_channels] + [min(ndf * 2 ** n, 512) for n in range(n_layers + 1)] + [1]
    per_scale = sum(16 * a * b + b for a, b in zip(channels[:-1], channels[1:]))
    return num_D * per_scale


@pytest.mark.parametrize("ngf,n_downsample,n_blocks,upsample", [
    (8, 2, 1, "transpose"), (16, 3, 2, "resize")])
def test_generator_parameter_count(ngf, n_downsample, n_blocks, upsample):
    for use_style in (True, False):
        generator = GlobalGenerator(LABELS, 3, ngf, n_downsample, n_blocks, use_style, upsample,
                                    **PIX2PIXHD)
        assert count(generator) == generator_param_count(LABELS, 3, ngf, n_downsample, n_blocks)
    if (ngf, n_downsample, n_blocks) == (8, 2, 1):
        assert generator_param_count(LABELS, 3, 8, 2, 1) == (
            49 * 19 * 8 + 8 + 49 * 8 * 3 + 3
            + (18 * 64 + 16) + (18 * 64 + 8) + (18 * 256 + 32) + (18 * 256 + 16)
            + 2 * (9 * 32 * 32 + 32))


@pytest.mark.parametrize("ndf,n_layers,num_D", [(8, 3, 2), (64, 4, 1)])
def test_discriminator_parameter_count(ndf, n_layers, num_D):
    discriminator = MultiScaleDiscriminator(LABELS, 3, ndf, n_layers, num_D)
    assert count(discriminator) == discriminator_param_count(LABELS + 3, ndf, n_layers, num_D)
    if (ndf, n_layers) == (64, 4):  # channels 64, 128, 256, 512, 512 (capped), 1
        assert count(discriminator) == (
            16 * 22 * 64 + 64 + 16 * 64 * 128 + 128 + 16 * 128 * 256 + 256
            + 16 * 256 * 512 + 512 + 16 * 512 * 512 + 512 + 16 * 512 + 1)


# --- discriminator ------------------------------------------------------------------------------

def conv_out(size, stride):
    return (size + 2 * 2 - 4) // stride + 1


@pytest.mark.parametrize("height,width", [(32, 32), (64, 48)])
def test_discriminator_scales_and_features(height, width):
    n_layers, num_D = 3, 3
    discriminator = MultiScaleDiscriminator(LABELS, 3, ndf=8, n_layers=n_layers, num_D=num_D)
    x = torch.cat([one_hot_labels(2, height, width), images(2, height, width)], dim=1)
    outputs = discriminator(x)
    assert len(outputs) == num_D
    h, w = height, width
    for scale in outputs:  # full resolution first, then halved (ceil, AvgPool 3/2/1)
        assert len(scale) == n_layers + 2
        assert [f.shape[1] for f in scale] == [8, 16, 32, 64, 1]
        eh, ew = h, w
        for stride in (2,) * n_layers + (1, 1):
            eh, ew = conv_out(eh, stride), conv_out(ew, stride)
        assert scale[-1].shape == (2, 1, eh, ew)
        h, w = (h + 1) // 2, (w + 1) // 2


# --- build_networks from the composed configs ---------------------------------------------------

@pytest.mark.parametrize("extra,styled", [
    ([], True),
    (["+experiment=synthetic_baseline"], False),
    (["model.generator.upsample=resize", "model.style_encoder.sft_mode=report",
      "model.style_encoder.second_conv_skip=false"], True),
])
def test_build_networks_from_composed_config(extra, styled, tiny_cfg):
    cfg = tiny_cfg(*extra)
    nets = build_networks(cfg.model)
    assert isinstance(nets, Networks)
    assert isinstance(nets.generator, GlobalGenerator)
    assert isinstance(nets.discriminator, MultiScaleDiscriminator)
    assert len(nets.discriminator.discriminators) == 2
    label, ref = one_hot_labels(1, 32, 32), images(1, 32, 32)
    if styled:
        assert isinstance(nets.style_encoder, StyleEncoder)
        # the residual block's two AdaINs (4C) and the decoder's (decoder_norm=adain at every
        # upsampling norm: C/2 means and sigma offsets, then C/4), C = 32 at the tiny size
        assert nets.generator.decoder_adain_sizes == [32, 16]
        assert nets.style_encoder.num_style_params == nets.generator.num_style_params == 4 * 32 + 48
        assert nets.style_encoder.head.out_channels == nets.generator.num_style_params
    else:
        assert nets.style_encoder is None and nets.generator.num_style_params == 0
    assert generate(nets.generator, nets.style_encoder, label, ref, label).shape == (1, 3, 32, 32)
    expected = count(nets.generator) + (count(nets.style_encoder) if styled else 0)
    assert sum(p.numel() for p in nets.generator_parameters()) == expected


def test_use_style_is_not_a_second_switch(tiny_cfg):
    """The generator uses AdaIN exactly when model.style_encoder is set; the old key is refused."""
    with pytest.raises(ConfigCompositionException, match="use_style"):
        tiny_cfg("model.generator.use_style=false")


# --- decoder_norm and block_second_shift (the mean2 finding) --------------------------------------

def perturbed(generator: GlobalGenerator, style: torch.Tensor, which: str,
              delta: torch.Tensor) -> torch.Tensor:
    """``style`` with ``delta`` [B, C] added to every block's AdaIN mean 1 or mean 2."""
    c = generator.bottleneck_channels
    offset = {"mean1": 0, "mean2": 2 * c}[which]
    style = style.clone()
    for block in range(len(generator.blocks)):
        start = 4 * c * block + offset
        style[:, start:start + c] += delta
    return style


def test_second_shift_is_a_per_channel_constant_on_the_skip_path():
    """Each block's mean 2 is added after its last norm, on the skip path; the next block's
    first AdaIN normalises it away inside that block, so the blocks' output moves by exactly
    the sum of the perturbations, the same at every pixel."""
    torch.manual_seed(0)
    generator = GlobalGenerator(LABELS, 3, ngf=4, n_downsample=2, n_blocks=3, use_style=True,
                                upsample="resize", **PIX2PIXHD).double()
    label = one_hot_labels(2, 32, 32).double()
    style = torch.randn(2, generator.num_style_params, dtype=torch.float64) * 0.3
    delta = torch.randn(2, generator.bottleneck_channels, dtype=torch.float64)
    captured = []
    generator.blocks[-1].register_forward_hook(lambda m, i, o: captured.append(o))
    generator(label, style)
    generator(label, perturbed(generator, style, "mean2", delta))
    change = captured[1] - captured[0]
    expected = (3 * delta)[:, :, None, None].expand_as(change)
    torch.testing.assert_close(change, expected, atol=1e-9, rtol=0)


def test_instance_norm_in_the_decoder_removes_the_second_shift():
    """The mean-2 finding end to end: with InstanceNorm (or AdaIN) after the first upsampling,
    perturbing every block's mean 2 changes the image by a small fraction of what the same
    perturbation of mean 1 does (what is left leaks through the zero padding of the upsampling
    conv, a border one pixel wide); with LayerNorm or no norm there, as much as mean 1."""
    label = one_hot_labels(2, 128, 128)
    ratios = {}
    for norm in ("instance", "adain", "layer", "none"):
        torch.manual_seed(0)
        generator = GlobalGenerator(LABELS, 3, ngf=4, n_downsample=1, n_blocks=2,
                                    use_style=True, upsample="resize", decoder_norm=norm,
                                    block_second_shift=True)
        style = torch.randn(2, generator.num_style_params) * 0.3
        delta = torch.randn(2, generator.bottleneck_channels)
        with torch.no_grad():
            base = generator(label, style)
            effect = {which: (generator(label, perturbed(generator, style, which, delta))
                              - base).abs().mean().item() for which in ("mean1", "mean2")}
        assert effect["mean1"] > 1e-3
        ratios[norm] = effect["mean2"] / effect["mean1"]
    assert ratios["instance"] < 0.15 and ratios["adain"] < 0.15, ratios
    assert ratios["layer"] > 0.7 and ratios["none"] > 0.7, ratios


@pytest.mark.parametrize("decoder_norm,module", [
    ("instance", nn.InstanceNorm2d), ("layer", nn.GroupNorm), ("group", nn.GroupNorm),
    ("adain", AdaIN), ("none", nn.Identity)])
def test_decoder_norm_replaces_only_the_first_upsampling_norm(decoder_norm, module):
    torch.manual_seed(0)
    generator = GlobalGenerator(LABELS, 3, ngf=8, n_downsample=2, n_blocks=1, use_style=True,
                                upsample="resize", decoder_norm=decoder_norm,
                                block_second_shift=True)
    first, second = generator.decoder[2], generator.decoder[6]  # up, conv, NORM, ReLU, ...
    assert type(first) is module and type(second) is nn.InstanceNorm2d
    if decoder_norm in ("layer", "group"):  # one mean per sample / per group of 8 channels
        assert first.num_groups == {"layer": 1, "group": 8}[decoder_norm]
        assert first.num_channels == 16 and first.affine
    # the decoder's AdaIN takes (mean, sigma - 1) for its 16 channels from the style's end
    c = generator.bottleneck_channels
    extra = 2 * 16 if decoder_norm == "adain" else 0
    assert generator.num_style_params == 4 * c + extra
    label = one_hot_labels(2, 32, 32)
    style = torch.randn(2, generator.num_style_params) * 0.3
    assert generator(label, style).shape == (2, 3, 32, 32)
    if decoder_norm == "adain":
        captured = {}
        first.register_forward_hook(lambda m, i, o: captured.update(out=o))
        generator(label, style)
        var, mu = torch.var_mean(captured["out"], dim=(2, 3), correction=0)
        torch.testing.assert_close(mu, style[:, 4 * c:4 * c + 16], atol=1e-5, rtol=0)


@pytest.mark.parametrize("decoder_norm,module", [("adain", AdaIN), ("layer", nn.GroupNorm)])
def test_decoder_norm_layers_all_replaces_every_upsampling_norm(decoder_norm, module):
    """decoder_norm_layers="all": every upsampling's norm is decoder_norm; with adain the style
    ends with (mean, sigma - 1) for C/2 then C/4 channels, in forward order, and each AdaIN's
    output has the means its slice gives. The same weights with "first" ignore the last slice."""
    torch.manual_seed(0)
    kwargs = dict(ngf=8, n_downsample=2, n_blocks=1, use_style=True, upsample="resize",
                  decoder_norm=decoder_norm, block_second_shift=True, label_skips=True)
    generator = GlobalGenerator(LABELS, 3, decoder_norm_layers="all", **kwargs)
    first, second = generator.decoder[3], generator.decoder[8]  # up, skip, conv, NORM, ReLU, ...
    assert type(first) is module and type(second) is module
    c = generator.bottleneck_channels
    label = one_hot_labels(2, 32, 32)
    if decoder_norm != "adain":
        assert generator.num_style_params == 4 * c
        assert generator(label, torch.randn(2, 4 * c)).shape == (2, 3, 32, 32)
        return
    assert generator.decoder_adain_sizes == [2 * 16, 2 * 8]
    assert generator.num_style_params == 4 * c + 2 * 16 + 2 * 8
    style = torch.randn(2, generator.num_style_params) * 0.3
    captured = []
    for norm in (first, second):
        norm.register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        generator(label, style)
    for out, start, width in zip(captured, (4 * c, 4 * c + 32), (16, 8)):
        torch.testing.assert_close(out.mean(dim=(2, 3)), style[:, start:start + width],
                                   atol=1e-5, rtol=0)
    first_only = GlobalGenerator(LABELS, 3, decoder_norm_layers="first", **kwargs)
    first_only.load_state_dict(generator.state_dict())
    assert first_only.num_style_params == 4 * c + 2 * 16
    plain_second = style[:, :4 * c + 32].clone()
    neutral = torch.cat([plain_second, torch.zeros(2, 16)], dim=1)  # zero mean, sigma 1
    with torch.no_grad():
        torch.testing.assert_close(generator(label, neutral), first_only(label, plain_second))
    with pytest.raises(FaceregenError, match="decoder_norm_layers"):
        GlobalGenerator(LABELS, 3, decoder_norm_layers="last", **kwargs)


def test_without_the_second_shift_the_style_has_three_quarters():
    """block_second_shift=false: per block [mean 1 | sigma-1 1 | sigma-1 2]; mean 2 is zero,
    which is the full generator with those entries of the style set to zero."""
    torch.manual_seed(0)
    kwargs = dict(ngf=4, n_downsample=2, n_blocks=2, use_style=True, upsample="resize",
                  decoder_norm="instance")
    full = GlobalGenerator(LABELS, 3, block_second_shift=True, **kwargs)
    short = GlobalGenerator(LABELS, 3, block_second_shift=False, **kwargs)
    short.load_state_dict(full.state_dict())
    c = full.bottleneck_channels
    assert short.num_style_params == 3 * c * 2 and full.num_style_params == 4 * c * 2
    style = torch.randn(2, short.num_style_params)
    padded = []
    for block in style.split(3 * c, dim=1):
        padded += [block[:, :2 * c], torch.zeros(2, c), block[:, 2 * c:]]
    label = one_hot_labels(2, 32, 32)
    torch.testing.assert_close(short(label, style), full(label, torch.cat(padded, 1)))


@pytest.mark.parametrize("upsample", ["resize", "transpose"])
def test_label_skips_feed_the_label_map_to_every_decoder_conv(upsample):
    """Each decoder conv gets the label map, area-resized to its input, as extra channels: with
    the output conv's feature weights zeroed, the image is tanh(conv7x7(label map)) exactly."""
    torch.manual_seed(0)
    generator = GlobalGenerator(LABELS, 3, ngf=8, n_downsample=2, n_blocks=1, use_style=False,
                                upsample=upsample, label_skips=True, **PIX2PIXHD)
    convs = [m for m in generator.decoder if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [c.in_channels for c in convs] == [32 + LABELS, 16 + LABELS, 8 + LABELS]
    plain = GlobalGenerator(LABELS, 3, ngf=8, n_downsample=2, n_blocks=1, use_style=False,
                            upsample=upsample, **PIX2PIXHD)
    assert count(generator) - count(plain) == LABELS * sum(  # weights per input channel
        c.weight.numel() // c.in_channels for c in convs)

    label = one_hot_labels(2, 32, 32)
    out_conv = convs[-1]
    with torch.no_grad():
        out_conv.weight[:, :8] = 0
        expected = torch.tanh(F.conv2d(F.pad(label, (3, 3, 3, 3), mode="reflect"),
                                       out_conv.weight[:, 8:], out_conv.bias))
        torch.testing.assert_close(generator(label), expected)

    # each skip sees the label map at its conv's input resolution
    seen = []
    for module in generator.decoder:
        if isinstance(module, LabelSkip):
            module.register_forward_hook(lambda m, inputs, out: seen.append(out[:, -LABELS:]))
    generator(label)
    expected_sizes = {"resize": [16, 32, 32], "transpose": [8, 16, 32]}[upsample]
    assert [s.shape[-1] for s in seen] == expected_sizes
    torch.testing.assert_close(seen[0], F.adaptive_avg_pool2d(label, expected_sizes[0]))


@pytest.mark.parametrize("convs, widths", [("all", [32 + LABELS, 16 + LABELS, 8 + LABELS]),
                                             ("upsampling", [32 + LABELS, 16 + LABELS, 8]),
                                             ("output", [32, 16, 8 + LABELS])])
def test_label_skip_convs_choose_which_decoder_convs_read_the_label_map(convs, widths):
    torch.manual_seed(0)
    generator = GlobalGenerator(LABELS, 3, ngf=8, n_downsample=2, n_blocks=1, use_style=False,
                                upsample="resize", label_skips=True, label_skip_convs=convs,
                                **PIX2PIXHD)
    decoder_convs = [m for m in generator.decoder if isinstance(m, nn.Conv2d)]
    assert [c.in_channels for c in decoder_convs] == widths
    assert generator(one_hot_labels(2, 32, 32)).shape == (2, 3, 32, 32)


def test_label_skips_work_with_style_and_the_regional_generator():
    kwargs = dict(ngf=8, n_downsample=2, n_blocks=1, use_style=True, upsample="resize",
                  decoder_norm="adain", block_second_shift=True, label_skips=True)
    label = one_hot_labels(2, 32, 32)
    generator = GlobalGenerator(LABELS, 3, **kwargs)
    style = torch.randn(2, generator.num_style_params) * 0.3
    regional = RegionalGenerator(LABELS, 3, **kwargs)
    regional.load_state_dict(generator.state_dict())
    rows = style[:, None].expand(2, 1 + LABELS, -1)
    torch.testing.assert_close(regional(label, rows), generator(label, style))


def test_generator_options_are_checked():
    kwargs = dict(ngf=4, n_downsample=2, n_blocks=1, upsample="resize", block_second_shift=True)
    with pytest.raises(FaceregenError, match="decoder_norm must be one of"):
        GlobalGenerator(LABELS, 3, use_style=True, decoder_norm="batch", **kwargs)
    with pytest.raises(FaceregenError, match="needs a style encoder"):
        GlobalGenerator(LABELS, 3, use_style=False, decoder_norm="adain", **kwargs)
    with pytest.raises(FaceregenError, match="label_skip_convs must be one of"):
        GlobalGenerator(LABELS, 3, use_style=False, decoder_norm="instance", label_skips=True,
                        label_skip_convs="encoder", **kwargs)


def test_a_checkpoint_from_before_the_generator_options_loads_as_it_was_trained(
        tiny_cfg, tiny_checkpoint, tmp_path):
    """A stored config without decoder_norm / block_second_shift (written before they existed)
    builds the network of that time, whatever the schema's defaults become; it compares equal
    to today's config of the same network (so that a run resumes)."""
    from omegaconf import OmegaConf

    from faceregen.checkpoint import load_checkpoint, save_checkpoint
    from faceregen.models import LEGACY_GENERATOR_ARGUMENTS, with_legacy_arguments
    from faceregen.regen import load_model

    cfg = tiny_cfg("model.generator.decoder_norm=instance",  # the network of that time
                   "model.generator.label_skips=false",
                   "model.generator.decoder_norm_layers=first")
    path = tiny_checkpoint(tmp_path / "new.pt", cfg)
    state = load_checkpoint(path)
    for key in LEGACY_GENERATOR_ARGUMENTS:
        del state["config"]["model"]["generator"][key]
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "faceregen_version")},
                    tmp_path / "old.pt")
    old = load_model(tmp_path / "old.pt")
    assert old.generator.decoder_norm == "instance"
    assert all(block.second_shift for block in old.generator.blocks)
    label = one_hot_labels(1, 32, 32).argmax(1)
    ref = images(1, 32, 32)
    torch.testing.assert_close(old(label, ref, label), load_model(path)(label, ref, label))
    assert with_legacy_arguments(state["config"]["model"]) == OmegaConf.to_container(cfg.model)

    # a stored value is kept: only missing arguments are filled in
    layer = tiny_cfg("model.generator.decoder_norm=layer",
                     "model.generator.block_second_shift=false")
    nets = build_networks(OmegaConf.create(OmegaConf.to_container(layer)).model)
    assert nets.generator.decoder_norm == "layer"
    assert nets.style_encoder.num_style_params == nets.generator.num_style_params == 3 * 32


def test_decoder_adain_parameters_come_from_the_encoder(tiny_cfg):
    """build_networks sizes the encoder's head for the decoder AdaIN too (C/2 means + sigmas)."""
    nets = build_networks(tiny_cfg("model.generator.decoder_norm=adain",
                                   "model.generator.decoder_norm_layers=first").model)
    assert nets.style_encoder.num_style_params == nets.generator.num_style_params == 4 * 32 + 32
    label, ref = one_hot_labels(1, 32, 32), images(1, 32, 32)
    assert generate(nets.generator, nets.style_encoder, label, ref, label).shape == (1, 3, 32, 32)
    with pytest.raises(FaceregenError, match="needs a style encoder"):
        build_networks(tiny_cfg("+experiment=synthetic_baseline",
                                "model.generator.decoder_norm=adain").model)


def test_padded_first_convolutions_compute_the_same_function_and_its_double_backward():
    """trainer.align_channels: the discriminator with 8-aligned first convolutions gives the same
    outputs, gradients and penalty gradients (the double backward), with the same state_dict."""
    from faceregen.losses.gradient_penalty import gradient_penalty
    from faceregen.models.networks.layout import ChannelPaddedConv2d, use_gpu_friendly_layers

    torch.manual_seed(0)
    plain = MultiScaleDiscriminator(19, 3, ndf=8, n_layers=2, num_D=2)
    padded = MultiScaleDiscriminator(19, 3, ndf=8, n_layers=2, num_D=2)
    padded.load_state_dict(plain.state_dict())
    counts = use_gpu_friendly_layers([padded], align_channels=True, layout_keeping_norm=False)
    assert counts == {"padded_convolutions": 2, "layout_keeping_norms": 0}
    assert isinstance(padded.discriminators[0].layers[0][0], ChannelPaddedConv2d)
    assert padded.state_dict().keys() == plain.state_dict().keys()
    label = F.one_hot(torch.randint(0, 19, (2, 32, 32)), 19).permute(0, 3, 1, 2).float()
    real, fake = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    for fmt in (torch.contiguous_format, torch.channels_last):
        grads = []
        for network in (plain, padded):
            network.to(memory_format=fmt).zero_grad()
            torch.manual_seed(1)
            x = torch.cat([label, fake], 1).contiguous(memory_format=fmt)
            outputs = network(x)
            loss = sum(o[-1].square().mean() for o in outputs)
            loss = loss + gradient_penalty(network, real.contiguous(memory_format=fmt),
                                           fake.contiguous(memory_format=fmt),
                                           label.contiguous(memory_format=fmt))
            loss.backward()
            grads.append([outputs[0][-1]] + [p.grad for p in network.parameters()])
        for a, b in zip(*grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_layout_keeping_instance_norm_equals_torchs_and_keeps_channels_last():
    from faceregen.models.networks.layout import use_gpu_friendly_layers

    torch.manual_seed(0)
    x = torch.randn(2, 16, 9, 7) * 3 + 1
    layer = nn.InstanceNorm2d(16)
    expected = layer(x)
    assert use_gpu_friendly_layers([layer], align_channels=False,
                                   layout_keeping_norm=True)["layout_keeping_norms"] == 1
    last = x.contiguous(memory_format=torch.channels_last)
    out = layer(last)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    low = layer(last.bfloat16())
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), expected, rtol=0.02, atol=0.03)
    affine = nn.InstanceNorm2d(16, affine=True)
    nn.init.normal_(affine.weight)
    nn.init.normal_(affine.bias)
    reference = affine(x)
    use_gpu_friendly_layers([affine], align_channels=False, layout_keeping_norm=True)
    torch.testing.assert_close(affine(x), reference, rtol=1e-5, atol=1e-5)
