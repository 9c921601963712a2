"""Discriminator gradient penalties: WGAN-GP (the report's) and R1."""

from __future__ import annotations

import torch

GP_MODES = ("wgan-gp", "r1")
# How a scale's patch logits become the per-sample scalar whose gradient is penalised.
GP_REDUCTIONS = ("sum", "mean")


def gradient_penalty(discriminator, real_image: torch.Tensor, fake_image: torch.Tensor | None,
                     label_onehot: torch.Tensor, mode: str = "wgan-gp",
                     reduction: str = "sum") -> torch.Tensor:
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
    image = image.requires_grad_(True)
    outputs = discriminator(torch.cat([label_onehot.detach(), image], dim=1))

    penalties = []
    for scale in outputs:
        pred = scale[-1] if isinstance(scale, (list, tuple)) else scale
        # Samples are independent, so the gradient of the batch total holds each sample's own.
        total = pred.sum() if reduction == "sum" else pred.flatten(1).mean(1).sum()
        (grad,) = torch.autograd.grad(total, image, create_graph=True)
        squared_norm = grad.flatten(1).pow(2).sum(dim=1)
        if mode == "wgan-gp":
            penalties.append((squared_norm.add(1e-12).sqrt() - 1).pow(2).mean())
        else:
            penalties.append(squared_norm.mean())
    return torch.stack(penalties).mean()
