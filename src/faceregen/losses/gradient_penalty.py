"""Discriminator gradient penalties: WGAN-GP (the report's) and R1."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

GP_MODES = ("wgan-gp", "r1")
# How a scale's patch logits become the per-sample scalar whose gradient is penalised.
GP_REDUCTIONS = ("sum", "mean")

# (discriminator, image, label_onehot, mode, reduction) -> the penalty of that image batch
ImagePenalty = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, str, str], torch.Tensor]


def gradient_penalty(discriminator, real_image: torch.Tensor, fake_image: torch.Tensor | None,
                     label_onehot: torch.Tensor, mode: str = "wgan-gp",
                     reduction: str = "sum", image_penalty: ImagePenalty | None = None
                     ) -> torch.Tensor:
    """Penalty on the gradient of every discriminator scale with respect to the image.

    ``wgan-gp``: x = alpha * real + (1 - alpha) * fake with alpha ~ U(0, 1) per sample, the label
    channels unchanged; per scale, the patch outputs are reduced per sample (``reduction``), the
    gradient taken w.r.t. x and (||grad||_2 - 1)^2 averaged over samples. ``r1``: zero-centred
    ||grad||_2^2 on the real images (``fake_image`` unused).

    ``reduction="sum"`` (the report's) asks for a unit gradient norm of the *sum* of P patch
    logits, so its strength depends on P (4,489 / 1,225 / 361 patches at the three scales of a
    512 px input); ``"mean"`` asks it of their mean, the gradient of one average patch, which is
    P times smaller for the same discriminator and the same at every image size.

    The per-scale penalties are **averaged** over the scales, so lambda_gp means the same for
    any num_D. The graph is kept (create_graph) so that the penalty trains the discriminator.
    The label channels get no gradient penalty: they are the condition, not the sample. Run it
    outside autocast: in bf16 the discriminator's gradients move by several percent, and on an
    H200 it was no faster (docs/speed.md).

    ``image_penalty`` computes the penalty of the drawn images: :func:`eager_image_penalty`
    (the default) or :func:`explicit_image_penalty`, compiled under ``trainer.compile=true``.
    The draw stays here, outside any compiled code, so that both use torch's random stream
    alike.
    """
    if mode not in GP_MODES:
        raise ValueError(f"gradient penalty mode must be one of {GP_MODES}, got {mode!r}")
    if reduction not in GP_REDUCTIONS:
        raise ValueError(f"gradient penalty reduction must be one of {GP_REDUCTIONS}, "
                         f"got {reduction!r}")
    real_image = real_image.detach()
    if mode == "wgan-gp":
        alpha = torch.rand(real_image.shape[0], 1, 1, 1, device=real_image.device,
                           dtype=real_image.dtype)
        image = alpha * real_image + (1 - alpha) * fake_image.detach()
    else:
        image = real_image
    penalty = image_penalty or eager_image_penalty
    return penalty(discriminator, image, label_onehot.detach(), mode, reduction)


def eager_image_penalty(discriminator, image: torch.Tensor, label_onehot: torch.Tensor,
                        mode: str, reduction: str) -> torch.Tensor:
    """One discriminator pass, then one ``autograd.grad`` per scale through that pass.

    Two choices keep the second differentiation on ordinary convolution kernels; the value
    and the gradients are those of :func:`autograd_image_penalty`. The pass runs under
    :class:`DifferentiableInputGradients`, and the gradient is taken with respect to the whole
    discriminator input and then multiplied by a mask of the image channels. Slicing the image
    channels off would make the second differentiation build a zero-filled gradient of all
    input channels in the contiguous layout, whatever the inputs' layout, and convolve it.
    """
    # Not a leaf: the module hooks of torch's FLOP counter refuse autograd.grad of a leaf.
    inputs = torch.cat([label_onehot, image.detach().requires_grad_(True)], dim=1)
    image_channels = torch.zeros(1, inputs.shape[1], 1, 1, dtype=inputs.dtype,
                                 device=inputs.device)
    image_channels[:, label_onehot.shape[1]:] = 1
    convolutions = DifferentiableInputGradients()
    with convolutions:
        outputs = discriminator(inputs)
    penalties = []
    for scale in outputs:
        with convolutions.input_gradients():
            (grad,) = torch.autograd.grad(_scale_total(scale, reduction), inputs,
                                          create_graph=True)
        penalties.append(_scale_penalty(grad * image_channels, mode))
    return torch.stack(penalties).mean()


def autograd_image_penalty(discriminator, image: torch.Tensor, label_onehot: torch.Tensor,
                           mode: str, reduction: str) -> torch.Tensor:
    """The same penalty through autograd's own double backward of each convolution (the form
    before :func:`eager_image_penalty`): the reference that tests and benchmarks compare with."""
    image = image.detach().requires_grad_(True)
    outputs = discriminator(torch.cat([label_onehot, image], dim=1))
    penalties = []
    for scale in outputs:
        # Samples are independent, so the gradient of the batch total holds each sample's own.
        (grad,) = torch.autograd.grad(_scale_total(scale, reduction), image, create_graph=True)
        penalties.append(_scale_penalty(grad, mode))
    return torch.stack(penalties).mean()


def functional_image_penalty(discriminator, image: torch.Tensor, label_onehot: torch.Tensor,
                             mode: str, reduction: str) -> torch.Tensor:
    """The same penalty with ``torch.func.grad``, in a form ``torch.compile`` can take whole:
    ``trainer.compile``'s form before :func:`explicit_image_penalty`, kept for benchmarks.

    torch.compile cannot differentiate a compiled ``autograd.grad(create_graph=True)``; it can
    trace ``torch.func.grad``, and then differentiates the traced gradient like any other
    graph. Each scale's gradient is taken of a function that runs the whole discriminator: in
    a compiled graph the other scales are dead code and removed, but run eagerly this does
    num_D passes (slower than :func:`eager_image_penalty`, with the same value).
    """
    image = image.detach()
    with torch.no_grad():
        num_scales = len(discriminator(torch.cat([label_onehot, image], dim=1)))

    def scale_total(index: int):
        def total(x: torch.Tensor) -> torch.Tensor:
            return _scale_total(discriminator(torch.cat([label_onehot, x], dim=1))[index],
                                reduction)
        return total

    penalties = [_scale_penalty(torch.func.grad(scale_total(index))(image), mode)
                 for index in range(num_scales)]
    return torch.stack(penalties).mean()


def explicit_image_penalty(discriminator, image: torch.Tensor, label_onehot: torch.Tensor,
                           mode: str, reduction: str) -> torch.Tensor:
    """The same penalty with each scale's input gradient written out layer by layer: the form
    ``trainer.compile=true`` compiles.

    Why: differentiating the penalty then needs first derivatives of plain ops only, and each
    convolution's input gradient is a ``conv_transpose2d``, so torch.compile's backward graph
    holds only ordinary data- and weight-gradient convolutions. Through autograd's formulas
    (:func:`functional_image_penalty`) it holds forward convolutions with the stride turned
    into a dilation, the kernels :class:`DifferentiableInputGradients` avoids in the eager
    step, which does not work under torch.func.grad when compiled. The first layer's input
    gradient is taken for the image channels alone, from the image rows of its weight.

    ``discriminator`` must be a :class:`~faceregen.models.networks.MultiScaleDiscriminator`
    whose scales run their ``layers`` in order, made of the layers that
    :func:`_layer_input_gradient` knows; anything else is a TypeError. Run eagerly it gives
    the same value and gradients too, in one discriminator pass.
    """
    image = image.detach()
    label_channels = label_onehot.shape[1]
    inputs = torch.cat([label_onehot, image], dim=1)
    halvings: list[torch.Tensor] = []  # the input of each downsampling so far
    penalties = []
    for index, scale in enumerate(discriminator.discriminators):
        if index:
            halvings.append(inputs)
            inputs = discriminator.downsample(inputs)
        tape = []
        x = inputs
        for layer in _layers_in_order(scale):
            tape.append((layer, x))
            x = layer(x)
        grad = torch.ones_like(x) if reduction == "sum" else torch.full_like(x, 1 / x[0].numel())
        for layer, layer_input in reversed(tape[1:]):
            grad = _layer_input_gradient(layer, layer_input, grad)
        grad = _layer_input_gradient(tape[0][0], tape[0][1], grad, from_channel=label_channels)
        for halved in reversed(halvings):
            grad = _layer_input_gradient(discriminator.downsample, halved[:, label_channels:],
                                         grad)
        penalties.append(_scale_penalty(grad, mode))
    return torch.stack(penalties).mean()


def _layers_in_order(scale: torch.nn.Module):
    for layer in scale.layers:
        yield from (layer if isinstance(layer, torch.nn.Sequential) else (layer,))


def _layer_input_gradient(layer: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor,
                          from_channel: int = 0) -> torch.Tensor:
    """The gradient at ``layer``'s input ``x`` of a function whose gradient at its output is
    ``grad``, for the input channels from ``from_channel`` on, in differentiable plain ops."""
    if isinstance(layer, torch.nn.Conv2d) and layer.padding_mode == "zeros" \
            and not isinstance(layer.padding, str) and layer.groups == 1:
        return _convolution_input_gradient(grad, layer.weight[:, from_channel:], x.shape,
                                           layer.stride, layer.padding, layer.dilation, 1)
    if from_channel:
        x, grad = x[:, from_channel:], grad[:, from_channel:]
    if isinstance(layer, torch.nn.LeakyReLU):
        return torch.where(x > 0, grad, grad * layer.negative_slope)
    if isinstance(layer, torch.nn.InstanceNorm2d) and not layer.track_running_stats:
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        inv_std = torch.rsqrt(var + layer.eps)
        normalised = (x - mean) * inv_std
        if layer.affine:
            grad = grad * layer.weight[from_channel:, None, None]
        return inv_std * (grad - grad.mean((2, 3), keepdim=True)
                          - normalised * (grad * normalised).mean((2, 3), keepdim=True))
    if isinstance(layer, torch.nn.AvgPool2d):
        return torch.ops.aten.avg_pool2d_backward(
            grad, x, _pair(layer.kernel_size), _pair(layer.stride), _pair(layer.padding),
            layer.ceil_mode, layer.count_include_pad, layer.divisor_override)
    raise TypeError(f"the explicit gradient penalty cannot differentiate {layer!r}: it knows "
                    "zero-padded ungrouped Conv2d, LeakyReLU, InstanceNorm2d without running "
                    "statistics and AvgPool2d")


def _scale_total(scale, reduction: str) -> torch.Tensor:
    """One scale's patch logits reduced per sample and summed over the batch."""
    pred = scale[-1] if isinstance(scale, (list, tuple)) else scale
    return pred.sum() if reduction == "sum" else pred.flatten(1).mean(1).sum()


def _scale_penalty(grad: torch.Tensor, mode: str) -> torch.Tensor:
    # Summed over the non-batch dimensions in place: flattening would copy a channels_last
    # gradient into the contiguous layout, and its derivative would come back in that layout.
    squared_norm = grad.pow(2).sum(dim=tuple(range(1, grad.dim())))
    if mode == "wgan-gp":
        return (squared_norm.add(1e-12).sqrt() - 1).pow(2).mean()
    return squared_norm.mean()


class DifferentiableInputGradients(TorchFunctionMode):
    """Runs every ``conv2d`` under it as :class:`_ConvolutionWithTransposedInputGradient`.

    Why: autograd's own double backward of a convolution takes the weight gradient as a
    *forward* convolution of the transposed input and output gradients, the stride turned into
    a dilation of a kernel as large as the feature map: most likely the slow cuDNN fallback
    kernel that took 18.3 ms of the style model's 100 ms step on an H200, with the penalty on
    every step (docs/speed.md). Here the penalty's input gradient is a
    ``conv_transpose2d``, whose derivatives are the ordinary data- and weight-gradient
    convolutions. Inside :meth:`input_gradients` the convolutions return the input's
    gradient alone, as a graph to differentiate again; outside it, all three gradients,
    as ``conv2d`` does.
    """

    def __init__(self):
        super().__init__()
        self.input_gradient_only = False

    @contextmanager
    def input_gradients(self):
        self.input_gradient_only = True
        try:
            yield
        finally:
            self.input_gradient_only = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.conv2d:
            arguments = _conv2d_arguments(*args, **kwargs)
            if not isinstance(arguments[4], str):  # padding="same" or "valid": autograd's
                return _ConvolutionWithTransposedInputGradient.apply(*arguments, self)
        return func(*args, **kwargs)


def _pair(value):
    """A layer argument's int shorthand as a pair; strings (padding="same") as they are."""
    if isinstance(value, str):
        return value
    return (value, value) if isinstance(value, int) else tuple(value)


def _conv2d_arguments(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """``conv2d``'s arguments in order, its int shorthands as pairs."""
    return input, weight, bias, _pair(stride), _pair(padding), _pair(dilation), groups


def _convolution_input_gradient(grad: torch.Tensor, weight: torch.Tensor, input_shape,
                                stride, padding, dilation, groups: int) -> torch.Tensor:
    """A convolution's input gradient as a differentiable ``conv_transpose2d``, whose own
    derivatives are the ordinary data- and weight-gradient convolutions."""
    # The input size a strided convolution maps onto this output size is ambiguous by up to
    # stride - 1 rows and columns; output_padding names the input's.
    output_padding = tuple(
        size - ((out - 1) * s - 2 * p + d * (k - 1) + 1)
        for size, out, s, p, d, k in zip(input_shape[2:], grad.shape[2:], stride, padding,
                                         dilation, weight.shape[2:]))
    return F.conv_transpose2d(grad, weight, None, stride, padding, output_padding, groups,
                              dilation)


class _ConvolutionWithTransposedInputGradient(torch.autograd.Function):
    """``conv2d`` whose input gradient, under :meth:`DifferentiableInputGradients.input_gradients`,
    is a differentiable ``conv_transpose2d`` (see :class:`DifferentiableInputGradients`)."""

    @staticmethod
    def forward(input, weight, bias, stride, padding, dilation, groups, owner):
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight, bias, stride, padding, dilation, groups, owner = inputs
        ctx.save_for_backward(input, weight)
        ctx.arguments = (bias is not None, stride, padding, dilation, groups, owner)

    @staticmethod
    def backward(ctx, grad):
        input, weight = ctx.saved_tensors
        has_bias, stride, padding, dilation, groups, owner = ctx.arguments
        needs = ctx.needs_input_grad
        if owner.input_gradient_only:
            grad_input = (_convolution_input_gradient(grad, weight, input.shape, stride, padding,
                                                      dilation, groups) if needs[0] else None)
            return grad_input, None, None, None, None, None, None, None
        grad_input, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
            grad, input, weight, [weight.shape[0]] if has_bias else None, stride, padding,
            dilation, False, [0, 0], groups, [needs[0], needs[1], has_bias and needs[2]])
        return grad_input, grad_weight, grad_bias, None, None, None, None, None
