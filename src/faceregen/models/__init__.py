"""Build the networks from the ``model`` config group and run the generator end to end."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from hydra.utils import instantiate
from torch import nn

from faceregen.errors import FaceregenError


@dataclass
class Networks:
    """The three trainable networks; ``style_encoder`` is None for the pix2pixHD baseline."""

    generator: nn.Module
    style_encoder: nn.Module | None
    discriminator: nn.Module

    def generator_parameters(self) -> Iterator[nn.Parameter]:
        """Generator and style encoder parameters: one optimiser trains both."""
        yield from self.generator.parameters()
        if self.style_encoder is not None:
            yield from self.style_encoder.parameters()


def build_networks(model_cfg) -> Networks:
    """Instantiate ``model.generator``, ``model.style_encoder`` (partial) and
    ``model.discriminator``.

    One switch for the style path: the generator uses AdaIN exactly when a style encoder is
    configured, and the encoder gets the generator's ``num_style_params``. (A stored config
    that still has ``generator.use_style`` loads: the argument given here replaces it.)
    """
    encoder_cfg = model_cfg.get("style_encoder")
    generator = instantiate(model_cfg.generator, use_style=encoder_cfg is not None)
    style_encoder = None
    if encoder_cfg is not None:
        style_encoder = instantiate(encoder_cfg)(num_style_params=generator.num_style_params)
    discriminator = instantiate(model_cfg.discriminator)
    return Networks(generator=generator, style_encoder=style_encoder, discriminator=discriminator)


def generate(generator: nn.Module, style_encoder: nn.Module | None, label_onehot: torch.Tensor,
             ref_image: torch.Tensor | None = None,
             ref_label_onehot: torch.Tensor | None = None) -> torch.Tensor:
    """Label map (+ reference image and its label map when there is an encoder) -> image."""
    style = None
    if style_encoder is not None:
        if ref_image is None or ref_label_onehot is None:
            raise FaceregenError(
                "this model transfers a reference's appearance: give a reference image and "
                "its label map")
        style = style_encoder(ref_image, ref_label_onehot)
    return generator(label_onehot, style)
