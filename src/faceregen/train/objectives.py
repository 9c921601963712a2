"""The generator and discriminator objectives of the report, as dicts of named terms.

The dict keys are the TensorBoard tags; the trainer sums the values. Both objectives of a step
see the networks as they are at the start of the step, as in pix2pixHD, so the discriminator's
outputs on the fakes are the same for both: :func:`discriminate` runs the discriminator once
over the fakes and once over the reals, the discriminator loss and the generator's adversarial
and feature-matching terms all read those two passes, and the caller back-propagates each loss
into its own network's parameters only (``backward(inputs=...)``). pix2pixHD's code runs the
discriminator three times per sample (detached fake, real, fake again for G) and
back-propagates L_G into the discriminator's weights as well; this runs it twice, with the same
gradients, and L_G's backward crosses only the fake pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from faceregen.losses.feature_matching import feature_matching_loss
from faceregen.losses.gan import gan_loss
from faceregen.losses.gradient_penalty import ImagePenalty, gradient_penalty
from faceregen.losses.reconstruction import class_balanced_l1

Features = list[list[torch.Tensor]]


def discriminate(discriminator: torch.nn.Module, label_onehot: torch.Tensor,
                 fake: torch.Tensor, real: torch.Tensor) -> tuple[Features, Features]:
    """The discriminator's per-scale features of (label, fake) and (label, real).

    Two passes rather than one over both batches: the generator's backward then crosses the
    fake pass alone instead of the whole concatenated batch (the discriminator normalises per
    sample, so the outputs are the same). The fakes keep their graph to the generator: the
    discriminator loss and the generator's terms are both computed from these outputs.
    """
    return (discriminator(torch.cat([label_onehot, fake], 1)),
            discriminator(torch.cat([label_onehot, real], 1)))


def discriminator_objective(discriminator: torch.nn.Module, label_onehot: torch.Tensor,
                            fake: torch.Tensor, real: torch.Tensor, fake_features: Features,
                            real_features: Features, loss_cfg: DictConfig,
                            apply_penalty: bool, penalty_scale: float = 1.0,
                            image_penalty: ImagePenalty | None = None
                            ) -> dict[str, torch.Tensor]:
    """L_D = 0.5 (L_real + L_fake) + lambda_gp L_gp.

    The penalty is added only on its scheduled steps, scaled by the interval; it needs its own
    pass over interpolated images, hence the discriminator and the images. ``image_penalty``:
    see :func:`gradient_penalty` (None: eager).
    """
    reduction = loss_cfg.adv_scale_reduction
    terms = {
        "loss_d/fake": 0.5 * gan_loss(fake_features, False, mode=loss_cfg.gan_mode,
                                      scale_reduction=reduction),
        "loss_d/real": 0.5 * gan_loss(real_features, True, mode=loss_cfg.gan_mode,
                                      scale_reduction=reduction),
    }
    if apply_penalty and loss_cfg.lambda_gp > 0:
        # Second-order gradients in reduced precision are too noisy: the penalty runs in fp32.
        with torch.autocast(device_type=real.device.type, enabled=False):
            penalty = gradient_penalty(discriminator, real.float(), fake.detach().float(),
                                       label_onehot.float(), mode=loss_cfg.gp_mode,
                                       reduction=loss_cfg.gp_reduction,
                                       image_penalty=image_penalty)
        terms["loss_d/gp"] = loss_cfg.lambda_gp * penalty_scale * penalty
    return terms


def generator_objective(label_onehot: torch.Tensor, fake: torch.Tensor, real: torch.Tensor,
                        fake_features: Features, real_features: Features,
                        perceptual: torch.nn.Module | None,
                        loss_cfg: DictConfig) -> dict[str, torch.Tensor]:
    """L_G = L_adv + lambda_feat L_fm + lambda_vgg L_vgg (+ lambda_l1 L_1
    + lambda_l1_class L_1,class).

    ``fake_features`` and ``real_features`` are the :func:`discriminate` outputs of the step;
    ``label_onehot`` (the label map the fakes were drawn from) weights the class-balanced L1.
    """
    terms = {"loss_g/adv": gan_loss(fake_features, True, mode=loss_cfg.gan_mode,
                                    for_discriminator=False,
                                    scale_reduction=loss_cfg.adv_scale_reduction)}
    if loss_cfg.lambda_feat > 0:
        terms["loss_g/feat"] = loss_cfg.lambda_feat * feature_matching_loss(fake_features,
                                                                            real_features)
    if perceptual is not None and loss_cfg.lambda_vgg > 0:
        terms["loss_g/vgg"] = loss_cfg.lambda_vgg * perceptual(fake, real)
    if loss_cfg.lambda_l1 > 0:
        terms["loss_g/l1"] = loss_cfg.lambda_l1 * F.l1_loss(fake, real)
    if loss_cfg.lambda_l1_class > 0:
        terms["loss_g/l1_class"] = loss_cfg.lambda_l1_class * class_balanced_l1(fake, real,
                                                                                label_onehot)
    return terms


def compile_for_shared_pass(module_or_function, mode: str | None = None):
    """``torch.compile`` for the networks of a step that :func:`backward_separately` runs.

    Its first backward keeps the graph for the second (``retain_graph``), which compiled
    backward graphs that donate their saved buffers refuse; donation is turned off, for the
    whole process, before the first compiled call. ``mode``: torch.compile's.
    """
    from torch._functorch import config as functorch_config  # not imported by ``import torch``

    functorch_config.donated_buffer = False
    return torch.compile(module_or_function, mode=mode)


def backward_separately(loss_d: torch.Tensor, d_params: list[torch.Tensor],
                        loss_g: torch.Tensor, g_params: list[torch.Tensor]) -> None:
    """Gradients of ``loss_d`` into the discriminator only and of ``loss_g`` into the generator
    (and style encoder) only, through the one shared discriminator pass.

    The first backward keeps the graph for the second; neither computes the weight gradients
    of the other network's layers.
    """
    loss_d.backward(inputs=d_params, retain_graph=True)
    loss_g.backward(inputs=g_params)
