"""Losses on hand-made inputs and functions with known gradients; VGG weight lookup offline."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from faceregen import pretrained
from faceregen.errors import FaceregenError
from faceregen.losses import (
    VGGPerceptualLoss,
    check_vgg_weights,
    class_balanced_l1,
    feature_matching_loss,
    gan_loss,
    gradient_penalty,
    load_vgg19_features,
    perceptual,
)

# --- class-balanced L1 ----------------------------------------------------------------------------


def one_hot_map(labels: torch.Tensor, classes: int = 19) -> torch.Tensor:
    return F.one_hot(labels, classes).permute(0, 3, 1, 2).float()


def test_class_balanced_l1_equals_the_plain_l1_on_equal_classes():
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[:, :4, 4:], labels[:, 4:, :4], labels[:, 4:, 4:] = 3, 7, 18  # four equal quadrants
    fake, real = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    assert class_balanced_l1(fake, real, one_hot_map(labels)).item() == pytest.approx(
        F.l1_loss(fake, real).item(), rel=1e-6)


def test_class_balanced_l1_against_a_direct_loop():
    torch.manual_seed(0)
    labels = torch.randint(0, 5, (3, 6, 6))
    labels[1] = 2  # one sample with a single class
    fake, real = torch.randn(3, 3, 6, 6), torch.randn(3, 3, 6, 6)
    per_sample = []
    for b in range(3):
        error = (fake[b] - real[b]).abs().mean(0)
        classes = labels[b].unique()
        per_sample.append(sum(error[labels[b] == c].mean() for c in classes) / len(classes))
    expected = torch.stack(per_sample).mean()
    assert class_balanced_l1(fake, real, one_hot_map(labels)).item() == pytest.approx(
        expected.item(), rel=1e-6)


def test_class_balanced_l1_weighs_a_small_class_like_a_large_one():
    labels = torch.zeros(1, 10, 10, dtype=torch.long)
    labels[0, 0, 0] = 4  # a one-pixel eye in a 99-pixel background
    real = torch.zeros(1, 3, 10, 10)
    fake = real.clone().requires_grad_(True)
    class_balanced_l1(fake, real + 1, one_hot_map(labels)).backward()
    eye, background = fake.grad[0, :, 0, 0], fake.grad[0, :, 5, 5]
    assert torch.allclose(eye, eye.new_full((3,), -1 / 6))  # 1/2 class * 1/3 channel * 1/1 px
    assert torch.allclose(eye, 99 * background)


# --- adversarial --------------------------------------------------------------------------------

FEATURE = torch.zeros(1, 2, 3, 3)  # intermediate features: ignored by gan_loss
PREDS = [[FEATURE, torch.full((2, 1, 3, 3), 0.5)], [FEATURE, torch.full((2, 1, 2, 2), -1.0)]]


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


@pytest.mark.parametrize("mode,real,fake,generator", [
    # per scale 0.5 and -1, averaged over the two scales
    ("lsgan", ((0.5 - 1) ** 2 + (-1 - 1) ** 2) / 2, (0.5 ** 2 + 1 ** 2) / 2,
     ((0.5 - 1) ** 2 + (-1 - 1) ** 2) / 2),
    ("bce", (softplus(-0.5) + softplus(1.0)) / 2, (softplus(0.5) + softplus(-1.0)) / 2,
     (softplus(-0.5) + softplus(1.0)) / 2),
    ("hinge", (0.5 + 2.0) / 2, (1.5 + 0.0) / 2, -(0.5 - 1.0) / 2),
])
def test_gan_loss_hand_made(mode, real, fake, generator):
    assert gan_loss(PREDS, True, mode) == pytest.approx(real)
    assert gan_loss(PREDS, False, mode) == pytest.approx(fake)
    assert gan_loss(PREDS, True, mode, for_discriminator=False) == pytest.approx(generator)
    flat = [scale[-1] for scale in PREDS]
    assert gan_loss(flat, True, mode) == pytest.approx(real)


@pytest.mark.parametrize("mode", ["lsgan", "bce", "hinge"])
def test_gan_loss_summed_over_scales_is_pix2pixhds(mode):
    """pix2pixHD's GANLoss adds the scales' losses: with the two scales of PREDS, scale by scale
    by hand, and twice the mean."""
    target = {"lsgan": lambda p: (p - 1) ** 2, "bce": lambda p: softplus(-p),
              "hinge": lambda p: max(0.0, 1 - p)}[mode]
    assert gan_loss(PREDS, True, mode, scale_reduction="sum") == pytest.approx(
        target(0.5) + target(-1.0))
    for real in (True, False):
        mean = gan_loss(PREDS, real, mode, scale_reduction="mean")
        assert gan_loss(PREDS, real, mode, scale_reduction="sum") == pytest.approx(2 * mean)


def test_gan_loss_rejects_unknown_mode_and_fake_hinge_generator():
    with pytest.raises(ValueError, match="lsgan"):
        gan_loss(PREDS, True, "wgan")
    with pytest.raises(ValueError, match="scale reduction"):
        gan_loss(PREDS, True, "lsgan", scale_reduction="max")
    with pytest.raises(ValueError, match="target_is_real"):
        gan_loss(PREDS, False, "hinge", for_discriminator=False)


# --- feature matching ---------------------------------------------------------------------------

def test_feature_matching_weights_and_detach():
    """3 intermediate features per scale, 2 scales, every |fake - real| = 0.5: each term is
    weighted 4 / 3 / 2, so the sum is 4 * 0.5 whatever n_layers and num_D are."""
    real = [[torch.zeros(2, 4, 5, 5, requires_grad=True) for _ in range(3)] + [torch.zeros(2, 1)]
            for _ in range(2)]
    fake = [[torch.full((2, 4, 5, 5), 0.5, requires_grad=True) for _ in range(3)]
            + [torch.full((2, 1), 100.0)] for _ in range(2)]
    loss = feature_matching_loss(fake, real)
    assert loss.item() == pytest.approx(2.0)
    loss.backward()
    assert all(f.grad is None for scale in real for f in scale[:-1])
    assert fake[0][0].grad is not None


def test_feature_matching_on_one_scale_of_two_layers():
    fake = [[torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 3.0), torch.zeros(1)]]
    real = [[torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.zeros(1)]]
    assert feature_matching_loss(fake, real).item() == pytest.approx(4 / 2 * (1 + 3))


# --- gradient penalty ---------------------------------------------------------------------------

class LinearDiscriminator(nn.Module):
    """Scale k outputs a patch map whose per-sample sum is factor_k * (w . image) + (v . label):
    the gradient w.r.t. the image is factor_k * w everywhere."""

    def __init__(self, w: torch.Tensor, label_channels: int, factors=(1.0, 2.0)):
        super().__init__()
        self.w = nn.Parameter(w)
        self.v = nn.Parameter(torch.randn(label_channels))
        self.label_channels = label_channels
        self.factors = factors

    def forward(self, x):
        label, image = x[:, :self.label_channels], x[:, self.label_channels:]
        label_term = (label * self.v[None, :, None, None]).sum(dim=1, keepdim=True) / 4
        outputs = []
        for factor in self.factors:
            patches = factor * image * self.w  # [B, C, H, W]: per-pixel patch scores
            score = patches.sum(dim=1, keepdim=True) + label_term
            outputs.append([torch.zeros(1), score])
        return outputs


def test_gradient_penalty_matches_the_analytic_value():
    torch.manual_seed(0)
    label = F.one_hot(torch.randint(0, 5, (3, 4, 4)), 5).permute(0, 3, 1, 2).float()
    real, fake = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    w = torch.randn(2, 4, 4) * 0.2
    discriminator = LinearDiscriminator(w.clone(), label_channels=5)
    norm = w.norm().item()

    wgan = gradient_penalty(discriminator, real, fake, label, mode="wgan-gp")
    assert wgan.item() == pytest.approx(((norm - 1) ** 2 + (2 * norm - 1) ** 2) / 2, rel=1e-5)
    r1 = gradient_penalty(discriminator, real, None, label, mode="r1")
    assert r1.item() == pytest.approx((norm ** 2 + 4 * norm ** 2) / 2, rel=1e-5)

    # create_graph trains D: d/dw mean_k (a_k |w| - 1)^2 = mean_k 2 a_k (a_k |w| - 1) w / |w|
    wgan.backward()
    expected = sum(2 * a * (a * norm - 1) for a in (1.0, 2.0)) / 2 * w / norm
    torch.testing.assert_close(discriminator.w.grad, expected, rtol=1e-4, atol=1e-6)


def test_gradient_penalty_of_the_patch_mean_matches_the_analytic_value():
    """reduction="mean": the gradient of the mean of P = 16 patches is factor_k * w / P."""
    torch.manual_seed(0)
    label = F.one_hot(torch.randint(0, 5, (3, 4, 4)), 5).permute(0, 3, 1, 2).float()
    real, fake = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    w = torch.randn(2, 4, 4) * 5
    discriminator = LinearDiscriminator(w.clone(), label_channels=5)
    norm, patches = w.norm().item(), 16

    wgan = gradient_penalty(discriminator, real, fake, label, mode="wgan-gp", reduction="mean")
    expected = sum((a * norm / patches - 1) ** 2 for a in (1.0, 2.0)) / 2
    assert wgan.item() == pytest.approx(expected, rel=1e-5)
    r1 = gradient_penalty(discriminator, real, None, label, mode="r1", reduction="mean")
    assert r1.item() == pytest.approx(
        sum((a * norm / patches) ** 2 for a in (1.0, 2.0)) / 2, rel=1e-5)
    summed = gradient_penalty(discriminator, real, None, label, mode="r1", reduction="sum")
    assert summed.item() == pytest.approx(patches ** 2 * r1.item(), rel=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        gradient_penalty(discriminator, real, fake, label, reduction="max")


def test_gradient_penalty_of_the_patch_mean_is_per_sample():
    """Each sample's gradient is its own patches' mean, whatever the rest of the batch holds."""
    from faceregen.models.networks import MultiScaleDiscriminator

    torch.manual_seed(0)
    discriminator = MultiScaleDiscriminator(3, 3, ndf=4, n_layers=2, num_D=1)
    label = torch.zeros(2, 3, 16, 16)
    label[:, 0] = 1
    real = torch.rand(2, 3, 16, 16)
    both = gradient_penalty(discriminator, real, None, label, mode="r1", reduction="mean")
    alone = [gradient_penalty(discriminator, real[i:i + 1], None, label[i:i + 1], mode="r1",
                              reduction="mean") for i in range(2)]
    assert both.item() == pytest.approx((alone[0].item() + alone[1].item()) / 2, rel=1e-5)


def test_gradient_penalty_interpolates_per_sample(monkeypatch):
    """With D(x) = |x|^2 / 2 the gradient is the interpolate itself: check alpha per sample."""
    class Quadratic(nn.Module):
        def forward(self, x):
            return [[(x[:, 1:] ** 2).sum(dim=(1, 2, 3)).view(-1, 1, 1, 1) / 2]]

    alpha = torch.tensor([0.0, 0.25, 1.0]).view(3, 1, 1, 1)
    monkeypatch.setattr(torch, "rand", lambda *a, **k: alpha.clone())
    real, fake = torch.full((3, 1, 2, 2), 1.0), torch.full((3, 1, 2, 2), -1.0)
    label = torch.ones(3, 1, 2, 2)
    penalty = gradient_penalty(Quadratic(), real, fake, label, mode="wgan-gp")
    # interpolate = 2 alpha - 1 per sample, 4 pixels: ||grad|| = 2 |2 alpha - 1|
    norms = [2 * abs(2 * a - 1) for a in (0.0, 0.25, 1.0)]
    assert penalty.item() == pytest.approx(sum((n - 1) ** 2 for n in norms) / 3)


def penalty_and_gradients(discriminator, real, fake, label, image_penalty, **options):
    """The penalty and its gradient for every discriminator parameter (zeros where it has
    none), from the same interpolation draw each time."""
    torch.manual_seed(1)
    params = list(discriminator.parameters())
    value = gradient_penalty(discriminator, real, fake, label, image_penalty=image_penalty,
                             **options)
    grads = torch.autograd.grad(value, params, allow_unused=True)
    return value, [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


@pytest.mark.parametrize("mode,reduction", [("wgan-gp", "sum"), ("r1", "mean")])
@pytest.mark.parametrize("form", ["explicit", "func.grad"])
def test_the_compilable_penalties_equal_the_eager_one(mode, reduction, form):
    """The forms torch.compile takes (the input gradient written out layer by layer, which
    trainer.compile uses, and torch.func.grad per scale, its form before) give the eager
    penalty and the same discriminator gradients, run eagerly and traced (dynamo and
    AOTAutograd, whose differentiation of the traced graph is what trainer.compile relies
    on)."""
    from faceregen.losses.gradient_penalty import (
        explicit_image_penalty,
        functional_image_penalty,
    )
    from faceregen.models.networks import MultiScaleDiscriminator

    compilable = {"explicit": explicit_image_penalty, "func.grad": functional_image_penalty}[form]

    torch.manual_seed(0)
    discriminator = MultiScaleDiscriminator(5, 3, ndf=4, n_layers=2, num_D=2)
    label = one_hot_map(torch.randint(0, 5, (2, 16, 16)), 5)
    real, fake = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1

    inputs, options = (discriminator, real, fake, label), {"mode": mode, "reduction": reduction}
    eager, eager_grads = penalty_and_gradients(*inputs, None, **options)
    traced = torch.compile(compilable, backend="aot_eager")
    for image_penalty in (compilable, traced):
        value, grads = penalty_and_gradients(*inputs, image_penalty, **options)
        assert value.item() == pytest.approx(eager.item(), rel=1e-5)
        scale = max(g.norm() for g in eager_grads)
        for a, b in zip(eager_grads, grads):
            assert (a - b).norm() <= 1e-4 * scale
    torch._dynamo.reset()
    assert eager.item() > 0 and scale > 0


def test_gradient_penalty_on_the_real_discriminator_is_differentiable():
    from faceregen.models.networks import MultiScaleDiscriminator

    discriminator = MultiScaleDiscriminator(19, 3, ndf=8, n_layers=2, num_D=2)
    label = torch.zeros(2, 19, 32, 32)
    label[:, 0] = 1
    penalty = gradient_penalty(discriminator, torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32),
                               label)
    penalty.backward()
    assert penalty.item() > 0
    # every weight is trained by it; only the output biases cannot change an input gradient
    without_grad = {n for n, p in discriminator.named_parameters() if p.grad is None}
    assert without_grad == {f"discriminators.{k}.layers.3.bias" for k in range(2)}


class OddConvolutions(nn.Module):
    """Convolutions of every argument form the penalty's convolutions must handle: tuple
    strides and paddings, dilation, groups, no bias, output sizes that leave input rows over
    (output_padding), and padding="same" (left to autograd)."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.a = nn.Conv2d(in_channels, 6, 3, stride=(2, 1), padding=(1, 2), dilation=(1, 2),
                           bias=False)
        self.b = nn.Conv2d(6, 6, 3, stride=3, padding=1, groups=2)
        self.c = nn.Conv2d(6, 1, 3, padding="same")

    def forward(self, x):
        return [[torch.tanh(self.c(F.leaky_relu(self.b(torch.tanh(self.a(x))), 0.2)))]]


@pytest.mark.parametrize("mode,reduction", [("wgan-gp", "sum"), ("r1", "mean")])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("network", ["multi-scale", "odd convolutions"])
def test_the_eager_penalty_equals_autograds_double_backward(mode, reduction, channels_last,
                                                            network):
    """Transposed-convolution input gradients and masked label channels (the eager penalty)
    give the value and discriminator gradients of autograd's own double backward, in float64:
    on the real discriminator with one-hot labels and on every convolution argument form."""
    from faceregen.losses.gradient_penalty import eager_image_penalty
    from faceregen.models.networks import MultiScaleDiscriminator

    assert_penalty_equals_autograds(
        lambda: (MultiScaleDiscriminator(5, 3, ndf=4, n_layers=3, num_D=2)
                 if network == "multi-scale" else OddConvolutions(8)),
        eager_image_penalty, (21, 21), channels_last, mode=mode, reduction=reduction)


def assert_penalty_equals_autograds(make_discriminator, image_penalty, size, channels_last,
                                    **options):
    """``image_penalty``'s value and discriminator gradients are those of autograd's own double
    backward in float64, on random images with 5 label classes of ``size`` (height, width)."""
    from faceregen.losses.gradient_penalty import autograd_image_penalty

    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    label = one_hot_map(torch.randint(0, 5, (2, *size)), 5).double()
    real, fake = (torch.rand(2, 2, 3, *size, dtype=torch.float64) * 2 - 1).unbind(0)
    label, real, fake = (t.contiguous(memory_format=layout) for t in (label, real, fake))
    discriminator = make_discriminator().double().to(memory_format=layout)

    inputs = (discriminator, real, fake, label)
    reference, reference_grads = penalty_and_gradients(*inputs, autograd_image_penalty, **options)
    value, grads = penalty_and_gradients(*inputs, image_penalty, **options)
    assert value.item() == pytest.approx(reference.item(), rel=1e-12)
    scale = max(g.norm() for g in reference_grads)
    assert scale > 0
    for a, b in zip(reference_grads, grads):
        assert (a - b).norm() <= 1e-10 * scale


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("form", ["default", "explicit", "explicit, compiled",
                                  "func.grad, compiled"])
def test_the_penalty_forms_on_cuda_equal_autograds_double_backward(monkeypatch, form):
    """Every form of the penalty on the GPU's kernels (cuDNN's transposed and backward
    convolutions against autograd's forward ones; compiled, Inductor's Triton kernels too), as
    trainer=gpu runs it: channels_last, float32 without TF32 (with TF32 the compiled and the
    eager penalty differed by 0.16 % on an H200)."""
    from faceregen.losses.gradient_penalty import (
        autograd_image_penalty,
        eager_image_penalty,
        explicit_image_penalty,
        functional_image_penalty,
    )
    from faceregen.models.networks import MultiScaleDiscriminator
    from faceregen.train.objectives import compile_for_shared_pass

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(0)
    layout = torch.channels_last
    discriminator = MultiScaleDiscriminator(19, 3, ndf=16, n_layers=3, num_D=3).cuda().to(
        memory_format=layout)
    label = one_hot_map(torch.randint(0, 19, (4, 64, 64)), 19).cuda().contiguous(
        memory_format=layout)
    real, fake = ((torch.rand(4, 3, 64, 64, device="cuda") * 2 - 1).contiguous(
        memory_format=layout) for _ in range(2))
    image_penalty = {"default": eager_image_penalty, "explicit": explicit_image_penalty,
                     "explicit, compiled": compile_for_shared_pass(explicit_image_penalty),
                     "func.grad, compiled": compile_for_shared_pass(functional_image_penalty),
                     }[form]

    reference, reference_grads = penalty_and_gradients(discriminator, real, fake, label,
                                                       autograd_image_penalty)
    value, grads = penalty_and_gradients(discriminator, real, fake, label, image_penalty)
    torch._dynamo.reset()
    assert value.item() == pytest.approx(reference.item(), rel=1e-4)
    scale = max(g.norm() for g in reference_grads)
    for a, b in zip(reference_grads, grads):
        assert (a - b).norm() <= 1e-3 * a.norm() + 1e-4 * scale


def test_the_eager_penalty_differentiates_with_ordinary_convolutions():
    """In the penalty's second differentiation autograd's own double backward runs forward
    convolutions (the weight gradient as a convolution of transposed tensors, its stride turned
    into a dilation: a slow fallback kernel in cuDNN) on a zero-filled contiguous gradient of
    all input channels. The eager penalty runs there only the convolutions' ordinary backward,
    on channels_last data when the inputs are channels_last."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from faceregen.losses.gradient_penalty import autograd_image_penalty
    from faceregen.models.networks import MultiScaleDiscriminator

    class Convolutions(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (torch.ops.aten.convolution,
                                       torch.ops.aten.convolution_backward):
                self.calls.append((func.overloadpacket.__name__, args))
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    channels_last = torch.channels_last
    discriminator = MultiScaleDiscriminator(5, 3, ndf=4, n_layers=2, num_D=2).to(
        memory_format=channels_last)
    label = one_hot_map(torch.randint(0, 5, (2, 16, 16)), 5).contiguous(
        memory_format=channels_last)
    real, fake = (torch.rand(2, 3, 16, 16).contiguous(memory_format=channels_last)
                  for _ in range(2))

    def second_differentiation(image_penalty):
        penalty = gradient_penalty(discriminator, real, fake, label, image_penalty=image_penalty)
        with Convolutions() as convolutions:
            penalty.backward()
        return convolutions.calls

    autograds = second_differentiation(autograd_image_penalty)
    assert any(name == "convolution" for name, _ in autograds)  # what the check looks for
    calls = second_differentiation(None)
    assert calls and all(name == "convolution_backward" for name, _ in calls)
    # The convolutions that see the discriminator's input: data and gradients channels_last.
    first_layer = [args for _, args in calls if tuple(args[2].shape[:2]) == (4, 8)]
    assert len(first_layer) == 4  # two scales, each differentiated through twice
    for args in first_layer:
        for tensor in args[:2]:
            assert tensor.is_contiguous(memory_format=channels_last)


def odd_discriminator(label_classes: int, variant: str) -> nn.Module:
    """A three-scale discriminator in one of the forms the explicit penalty must differentiate:
    as built, with the run-time layer forms of models/networks/layout.py, or with affine
    instance norms and a second convolution of tuple stride, padding and dilation without a
    bias."""
    from faceregen.models.networks import MultiScaleDiscriminator
    from faceregen.models.networks.layout import use_gpu_friendly_layers

    discriminator = MultiScaleDiscriminator(label_classes, 3, ndf=4, n_layers=3, num_D=3)
    if variant == "layer forms":
        use_gpu_friendly_layers([discriminator], align_channels=True, layout_keeping_norm=True)
    if variant == "odd layers":
        for module in discriminator.modules():
            for name, child in module.named_children():
                if isinstance(child, nn.InstanceNorm2d):
                    norm = nn.InstanceNorm2d(child.num_features, affine=True)
                    nn.init.normal_(norm.weight, 1.0, 0.3)
                    nn.init.normal_(norm.bias, 0.0, 0.3)
                    setattr(module, name, norm)
        discriminator.discriminators[0].layers[1][0] = nn.Conv2d(
            4, 8, 3, stride=(2, 1), padding=(1, 2), dilation=(1, 2), bias=False)
    return discriminator


@pytest.mark.parametrize("mode,reduction", [("wgan-gp", "sum"), ("r1", "mean")])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("variant", ["as built", "layer forms", "odd layers"])
def test_the_explicit_penalty_equals_autograds_double_backward(mode, reduction, channels_last,
                                                               variant):
    """The input gradient written out layer by layer gives autograd's value and discriminator
    gradients in float64: three scales (two downsamplings to differentiate), an input size
    that leaves rows and columns over at every strided convolution, both layouts, and every
    layer form it knows."""
    from faceregen.losses.gradient_penalty import explicit_image_penalty

    assert_penalty_equals_autograds(lambda: odd_discriminator(5, variant), explicit_image_penalty,
                                    (23, 27), channels_last, mode=mode, reduction=reduction)


@pytest.mark.parametrize("form", ["default", "explicit"])
@pytest.mark.parametrize("variant,channels_last", [("as built", False), ("as built", True),
                                                   ("layer forms", True), ("odd layers", False)])
def test_the_penalty_gradient_matches_finite_differences(form, variant, channels_last):
    """The eager penalty's and the explicit one's discriminator gradients against central
    differences of their value (torch.autograd.gradcheck, float64): ground truth that does not
    rest on autograd's own double backward, on the plain layers in both layouts, on the
    run-time forms of models/networks/layout.py (channel-padded convolutions, layout-keeping
    instance norm), and on affine norms with a dilated convolution."""
    from faceregen.losses.gradient_penalty import eager_image_penalty, explicit_image_penalty

    image_penalty = {"default": eager_image_penalty, "explicit": explicit_image_penalty}[form]
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    discriminator = odd_discriminator(3, variant).double().to(memory_format=layout)
    label = one_hot_map(torch.randint(0, 3, (2, 13, 13)), 3).double()
    real, fake = (torch.rand(2, 2, 3, 13, 13, dtype=torch.float64) * 2 - 1).unbind(0)
    label, real, fake = (t.contiguous(memory_format=layout) for t in (label, real, fake))

    def penalty(*weights):  # the weights are the discriminator's own, perturbed in place
        torch.manual_seed(1)  # the same interpolation draw at every evaluation
        return gradient_penalty(discriminator, real, fake, label, image_penalty=image_penalty)

    assert torch.autograd.gradcheck(penalty, tuple(discriminator.parameters()), fast_mode=True)


def backward_graph_convolutions(image_penalty) -> dict[str, int]:
    """The convolutions in the backward graph that torch.compile builds for ``image_penalty``
    (the penalty's second differentiation), by kind."""
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.aot_autograd import make_boxed_func

    from faceregen.models.networks import MultiScaleDiscriminator

    counts: dict[str, int] = {}

    def census(graph, example_inputs):
        for node in graph.graph.nodes:
            if node.target is torch.ops.aten.convolution_backward.default:
                kind = "backward"
            elif node.target is torch.ops.aten.convolution.default:
                kind = ("transposed" if node.args[6] else "forward") + (
                    ", dilated" if any(d > 1 for d in node.args[5]) else "")
            else:
                continue
            counts[kind] = counts.get(kind, 0) + 1
        return make_boxed_func(graph)

    torch.manual_seed(0)
    discriminator = MultiScaleDiscriminator(5, 3, ndf=4, n_layers=2, num_D=2)
    label = one_hot_map(torch.randint(0, 5, (2, 16, 16)), 5)
    real, fake = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    compiled = torch.compile(image_penalty, backend=aot_autograd(
        fw_compiler=lambda graph, example_inputs: make_boxed_func(graph), bw_compiler=census))
    gradient_penalty(discriminator, real, fake, label, image_penalty=compiled).backward()
    torch._dynamo.reset()
    return counts


def test_the_compiled_explicit_penalty_differentiates_with_ordinary_convolutions():
    """What the explicit form is for: in the backward graph torch.compile builds for it, only
    the convolutions' ordinary backward, where its form through torch.func.grad has the
    forward convolutions (dilated among them) of autograd's double-backward formulas."""
    from faceregen.losses.gradient_penalty import explicit_image_penalty, functional_image_penalty

    before = backward_graph_convolutions(functional_image_penalty)
    assert before.get("forward, dilated", 0) > 0  # what the check looks for
    # Two scales of four convolutions and four transposed ones, less each scale's last
    # convolution, whose output gives the gradient's seed only its shape.
    assert backward_graph_convolutions(explicit_image_penalty) == {"backward": 14}


@pytest.mark.parametrize("layer", [nn.ReLU(), nn.Conv2d(4, 8, 4, stride=2, padding=2,
                                                        padding_mode="reflect")])
def test_the_explicit_penalty_refuses_layers_it_cannot_differentiate(layer):
    from faceregen.losses.gradient_penalty import explicit_image_penalty
    from faceregen.models.networks import MultiScaleDiscriminator

    discriminator = MultiScaleDiscriminator(3, 3, ndf=4, n_layers=2, num_D=1)
    discriminator.discriminators[0].layers[1][isinstance(layer, nn.ReLU) * 2] = layer
    label = one_hot_map(torch.randint(0, 3, (1, 16, 16)), 3)
    with pytest.raises(TypeError, match="cannot differentiate"):
        gradient_penalty(discriminator, torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), label,
                         image_penalty=explicit_image_penalty)


# --- perceptual loss ----------------------------------------------------------------------------

@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub cache and a download that fails at once: no test touches the network."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))

    def no_network(*args, **kwargs):
        raise OSError("no network in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(pretrained, "download_file", no_network)
    return hub


@pytest.fixture(scope="module")
def random_vgg():
    return VGGPerceptualLoss(weights="random")


def test_missing_imagenet_weights_fail_with_instructions(offline_hub, tmp_path):
    missing = tmp_path / "nowhere" / "vgg19.pth"
    for call in (lambda: check_vgg_weights("imagenet", missing),
                 lambda: VGGPerceptualLoss("imagenet", path=str(missing))):
        with pytest.raises(FaceregenError) as exc:
            call()
        message = str(exc.value)
        cache_file = offline_hub / "checkpoints" / "vgg19-dcbb9e9d.pth"
        assert str(missing) in message
        assert str(cache_file) in message
        assert "loss.vgg.path=" in message and "loss.vgg.weights=random" in message
        assert "no network in tests" in message


def test_unknown_weights_name_is_a_user_error():
    with pytest.raises(FaceregenError, match="imagenet"):
        check_vgg_weights("pretrained")


def test_random_weights_need_no_file_and_warn(caplog, offline_hub):
    assert check_vgg_weights("random", None) is None
    with caplog.at_level(logging.WARNING, logger="faceregen.losses"):
        first = load_vgg19_features("random")
    assert any("random" in r.getMessage() and r.name == "faceregen.losses"
               for r in caplog.records)
    second = load_vgg19_features("random")  # fixed seed: the same loss in every run and resume
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))


def tiny_features() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))


def save_state(path, seed):
    torch.manual_seed(seed)
    state = {f"features.{k}": v for k, v in tiny_features().state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def test_weight_lookup_order_path_then_hub_cache(offline_hub, tmp_path, monkeypatch):
    monkeypatch.setattr(perceptual, "_vgg19_features_layers", tiny_features)
    cached = save_state(offline_hub / "checkpoints" / "vgg19-dcbb9e9d.pth", seed=1)
    configured = save_state(tmp_path / "mine.pth", seed=2)

    assert check_vgg_weights("imagenet", tmp_path / "mine.pth") == tmp_path / "mine.pth"
    loaded = load_vgg19_features("imagenet", tmp_path / "mine.pth")
    assert torch.equal(loaded[0].weight, configured["features.0.weight"])

    assert check_vgg_weights("imagenet", None) == offline_hub / "checkpoints" / "vgg19-dcbb9e9d.pth"
    loaded = load_vgg19_features("imagenet", None)
    assert torch.equal(loaded[0].weight, cached["features.0.weight"])


def test_bad_weight_files_are_user_errors(offline_hub, tmp_path, monkeypatch):
    monkeypatch.setattr(perceptual, "_vgg19_features_layers", tiny_features)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(FaceregenError, match="not a loadable VGG19 weight file"):
        load_vgg19_features("imagenet", garbage)
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(FaceregenError, match="not a torchvision vgg19 state_dict"):
        load_vgg19_features("imagenet", wrong)
    bare_tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(1), bare_tensor)
    with pytest.raises(FaceregenError, match="not a torchvision vgg19 state_dict"):
        load_vgg19_features("imagenet", bare_tensor)


def test_perceptual_loss_is_frozen_and_batched(random_vgg):
    assert not any(p.requires_grad for p in random_vgg.parameters())
    random_vgg.train()
    assert not random_vgg.training and not any(m.training for m in random_vgg.modules())

    torch.manual_seed(0)
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    fake = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    assert random_vgg(real, real).item() == 0
    loss = random_vgg(fake, real)
    # the batch goes through at once and equals the mean of the per-sample losses
    per_sample = [random_vgg(fake[i:i + 1], real[i:i + 1]) for i in range(2)]
    assert loss.item() == pytest.approx(sum(p.item() for p in per_sample) / 2, rel=1e-5)
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in random_vgg.parameters())


def test_perceptual_loss_layers_and_normalisation(random_vgg):
    """relu1_1 .. relu5_1 of vgg19().features, weights 1/32 .. 1, ImageNet normalisation."""
    ends = [type(block[-1]).__name__ for block in random_vgg.slices]
    assert ends == ["ReLU"] * 5
    assert [len(block) for block in random_vgg.slices] == [2, 5, 5, 9, 9]
    assert random_vgg.layer_weights == (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = random_vgg.slices[0](((image + 1) / 2 - mean) / std)
    torch.testing.assert_close(random_vgg._features(image)[0], expected)


def test_perceptual_loss_raw_input_feeds_the_image_unchanged(random_vgg):
    """input_mode="raw" (pix2pixHD, SPADE): the same VGG sees [-1, 1] as it is."""
    raw = VGGPerceptualLoss(weights="random", input_mode="raw")
    assert raw.input_mode == "raw" and random_vgg.input_mode == "imagenet"
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(raw._features(image)[0], raw.slices[0](image))
    torch.testing.assert_close(raw._features(image)[0], random_vgg.slices[0](image))
    with pytest.raises(FaceregenError, match="loss.vgg.input"):
        VGGPerceptualLoss(weights="random", input_mode="bgr")
