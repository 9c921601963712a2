"""Build the networks from the ``model`` config group and run the generator end to end."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch import nn

from faceregen.errors import FaceregenError

# Generator arguments added after checkpoints were first written, with the value a stored config
# without them meant: the architecture of that time. Deliberately not the schema's defaults,
# which the benchmark may change; an old checkpoint must keep the network it was trained as.
LEGACY_GENERATOR_ARGUMENTS = {"decoder_norm": "instance", "block_second_shift": True,
                              "label_skips": False, "label_skip_convs": "all",
                              "decoder_norm_layers": "first", "decoder_styles": "global"}


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

    def generator_param_groups(self, lr: float, style_encoder_lr_scale: float = 1.0) -> list[dict]:
        """The generator optimiser's parameter groups, in ``generator_parameters`` order.

        One group unless the style encoder trains at its own rate (``lr * style_encoder_lr_scale``):
        an optimiser saved with one group still loads into a run configured the same way.
        """
        if self.style_encoder is None or style_encoder_lr_scale == 1:
            return [{"params": list(self.generator_parameters())}]
        return [{"params": list(self.generator.parameters())},
                {"params": list(self.style_encoder.parameters()),
                 "lr": lr * style_encoder_lr_scale}]


def build_networks(model_cfg) -> Networks:
    """Instantiate ``model.generator``, ``model.style_encoder`` (partial) and
    ``model.discriminator``.

    One switch for the style path: the generator uses AdaIN exactly when a style encoder is
    configured, and the encoder gets the generator's ``num_style_params``. (A stored config
    that still has ``generator.use_style`` loads: the argument given here replaces it; one
    that lacks an argument added later gets LEGACY_GENERATOR_ARGUMENTS.)
    """
    encoder_cfg = model_cfg.get("style_encoder")
    legacy = {key: value for key, value in LEGACY_GENERATOR_ARGUMENTS.items()
              if key not in model_cfg.generator}
    generator = _instantiate(model_cfg.generator, use_style=encoder_cfg is not None, **legacy)
    style_encoder = None
    if encoder_cfg is not None:
        style_encoder = _instantiate(encoder_cfg)(num_style_params=generator.num_style_params)
        if style_encoder.regional != generator.regional:
            kinds = {True: "regional", False: "global"}
            raise FaceregenError(
                f"model.generator is a {kinds[generator.regional]} generator but "
                f"model.style_encoder a {kinds[style_encoder.regional]} encoder: use "
                "RegionalGenerator with RegionalStyleEncoder (model=style_regional), or "
                "GlobalGenerator with StyleEncoder")
    discriminator = _instantiate(model_cfg.discriminator)
    return Networks(generator=generator, style_encoder=style_encoder, discriminator=discriminator)


def _instantiate(node, **kwargs):
    """Hydra's instantiate, but a constructor's FaceregenError (a setting it refuses) comes out
    as itself, the one-line user error, not wrapped in Hydra's InstantiationException."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, FaceregenError):
            raise exc.__cause__ from None
        raise


def with_legacy_arguments(model: dict) -> dict:
    """A stored ``model`` config (plain dict) with the arguments it predates filled in, so that
    it compares equal to today's config of the same networks."""
    generator = model.get("generator")
    if not isinstance(generator, dict):
        return model
    return {**model, "generator": {**LEGACY_GENERATOR_ARGUMENTS, **generator}}


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


def classes_present(label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """bool [B, K]: which classes of ``label`` (long [B, H, W]) have at least one pixel."""
    counts = torch.stack([(label == k).flatten(1).sum(1) for k in range(num_classes)], dim=1)
    return counts > 0


def mix_region_styles(style: torch.Tensor, donor_style: torch.Tensor, classes: Sequence[int],
                      donor_present: torch.Tensor) -> torch.Tensor:
    """Per-region styles [B, 1 + K, P] with the rows of ``classes`` taken from ``donor_style``.

    A class the donor reference does not show (``donor_present`` [B, K] false) keeps the row of
    ``style``: the region then looks as the main reference would make it (its own region style,
    or its global style where it lacks the region too). Row 0, the global style, stays.
    """
    mixed = style.clone()
    for k in classes:
        take = donor_present[:, k].to(style.device)[:, None]
        mixed[:, 1 + k] = torch.where(take, donor_style[:, 1 + k], style[:, 1 + k])
    return mixed
