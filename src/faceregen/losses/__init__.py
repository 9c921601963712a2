"""Losses as small functions (and one frozen module): the trainer weights and sums them."""

from faceregen.losses.feature_matching import feature_matching_loss
from faceregen.losses.gan import GAN_MODES, SCALE_REDUCTIONS, gan_loss
from faceregen.losses.gradient_penalty import GP_MODES, GP_REDUCTIONS, gradient_penalty
from faceregen.losses.perceptual import (
    VGG_INPUTS,
    VGGPerceptualLoss,
    check_vgg_weights,
    hub_cache_file,
    load_vgg19_features,
)
from faceregen.losses.reconstruction import class_balanced_l1

__all__ = ["GAN_MODES", "GP_MODES", "GP_REDUCTIONS", "SCALE_REDUCTIONS", "VGG_INPUTS",
           "VGGPerceptualLoss", "check_vgg_weights", "class_balanced_l1",
           "feature_matching_loss", "gan_loss", "gradient_penalty", "hub_cache_file",
           "load_vgg19_features"]
