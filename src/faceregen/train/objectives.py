"""The generator and discriminator objectives of SPEC section 4, as dicts of named terms.

The dict keys are the TensorBoard tags; the trainer sums the values. As in pix2pixHD, one step
runs the discriminator three times per sample (fake for D, real, fake for G): the real pass of
the discriminator objective also provides the feature-matching targets of the generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from faceregen.losses.feature_matching import feature_matching_loss
from faceregen.losses.gan import gan_loss
from faceregen.losses.gradient_penalty import gradient_penalty

Features = list[list[torch.Tensor]]


def discriminator_objective(discriminator: torch.nn.Module, label_onehot: torch.Tensor,
                            fake: torch.Tensor, real: torch.Tensor, loss_cfg: DictConfig,
                            apply_penalty: bool, penalty_scale: float = 1.0
                            ) -> tuple[dict[str, torch.Tensor], Features]:
    """L_D = 0.5 (L_real + L_fake) + lambda_gp L_gp, and the detached features of the reals.

    The penalty is added only on its scheduled steps, scaled by the interval.
    """
    n = fake.shape[0]
    preds = discriminator(torch.cat([torch.cat([label_onehot, fake.detach()], 1),
                                     torch.cat([label_onehot, real], 1)], 0))
    pred_fake = [[scale[-1][:n]] for scale in preds]
    pred_real = [[scale[-1][n:]] for scale in preds]
    terms = {
        "loss_d/fake": 0.5 * gan_loss(pred_fake, False, mode=loss_cfg.gan_mode),
        "loss_d/real": 0.5 * gan_loss(pred_real, True, mode=loss_cfg.gan_mode),
    }
    if apply_penalty and loss_cfg.lambda_gp > 0:
        # Second-order gradients in reduced precision are too noisy: the penalty runs in fp32.
        with torch.autocast(device_type=real.device.type, enabled=False):
            penalty = gradient_penalty(discriminator, real.float(), fake.detach().float(),
                                       label_onehot.float(), mode=loss_cfg.gp_mode)
        terms["loss_d/gp"] = loss_cfg.lambda_gp * penalty_scale * penalty
    real_features = [[f[n:].detach() for f in scale] for scale in preds]
    return terms, real_features


def generator_objective(discriminator: torch.nn.Module, label_onehot: torch.Tensor,
                        fake: torch.Tensor, real: torch.Tensor, real_features: Features,
                        perceptual: torch.nn.Module | None, loss_cfg: DictConfig
                        ) -> dict[str, torch.Tensor]:
    """L_G = L_adv + lambda_feat L_fm + lambda_vgg L_vgg (+ lambda_l1 L_1).

    ``real_features`` come from the discriminator objective's pass over the same reals.
    """
    pred_fake = discriminator(torch.cat([label_onehot, fake], 1))
    terms = {"loss_g/adv": gan_loss(pred_fake, True, mode=loss_cfg.gan_mode,
                                    for_discriminator=False)}
    if loss_cfg.lambda_feat > 0:
        terms["loss_g/feat"] = loss_cfg.lambda_feat * feature_matching_loss(pred_fake,
                                                                            real_features)
    if perceptual is not None and loss_cfg.lambda_vgg > 0:
        terms["loss_g/vgg"] = loss_cfg.lambda_vgg * perceptual(fake, real)
    if loss_cfg.lambda_l1 > 0:
        terms["loss_g/l1"] = loss_cfg.lambda_l1 * F.l1_loss(fake, real)
    return terms
