"""Discriminator gradient penalties: WGAN-GP (the report's) and R1."""

from __future__ import annotations

from collections.abc import Callable

import torch

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
    (the default) or :func:`functional_image_penalty`, compiled under ``trainer.compile=true``.
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
    """One discriminator pass, then one ``autograd.grad`` per scale through that pass."""
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
    """The same penalty with ``torch.func.grad``, in a form ``torch.compile`` can take whole.

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


def _scale_total(scale, reduction: str) -> torch.Tensor:
    """One scale's patch logits reduced per sample and summed over the batch."""
    pred = scale[-1] if isinstance(scale, (list, tuple)) else scale
    return pred.sum() if reduction == "sum" else pred.flatten(1).mean(1).sum()


def _scale_penalty(grad: torch.Tensor, mode: str) -> torch.Tensor:
    squared_norm = grad.flatten(1).pow(2).sum(dim=1)
    if mode == "wgan-gp":
        return (squared_norm.add(1e-12).sqrt() - 1).pow(2).mean()
    return squared_norm.mean()
