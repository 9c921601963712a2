"""The inference model: EMA generator and style encoder from a checkpoint or an export.

A training checkpoint (``.pt``, see :mod:`faceregen.checkpoint`) carries everything a run needs
to resume; an export (``.safetensors``, written by ``faceregen export``) holds only the EMA
weights and the resolved config as JSON metadata, so it opens without unpickling anything.
Both rebuild the networks from their stored config, once it has passed the allowlist of
:mod:`faceregen.models.allowlist` (a file never chooses what Python runs), and give the same
:class:`Regenerator`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from faceregen.checkpoint import load_checkpoint, load_state
from faceregen.errors import FaceregenError
from faceregen.models.allowlist import check_stored_config

EXPORT_FORMAT = "faceregen-export-v1"
GENERATOR_PREFIX = "generator."
STYLE_ENCODER_PREFIX = "style_encoder."


@dataclass
class Regenerator:
    """The EMA generator (and style encoder) of a checkpoint, ready to regenerate faces."""

    generator: torch.nn.Module
    style_encoder: torch.nn.Module | None
    config: DictConfig
    step: int
    device: torch.device

    @property
    def size(self) -> int:
        return int(self.config.data.size)

    @property
    def label_classes(self) -> int:
        return int(self.config.model.generator.label_classes)

    @torch.no_grad()
    def encode_style(self, ref_image: torch.Tensor, ref_label: torch.Tensor
                     ) -> torch.Tensor | None:
        """The AdaIN parameters [B,P] of references (None for the baseline): one reference's
        style serves any number of label maps, so the studio computes it once per reference."""
        from faceregen.masks import one_hot

        if self.style_encoder is None:
            return None
        return self.style_encoder(ref_image.to(self.device),
                                  one_hot(ref_label.to(self.device), self.label_classes))

    @torch.no_grad()
    def __call__(self, label: torch.Tensor, ref_image: torch.Tensor | None = None,
                 ref_label: torch.Tensor | None = None,
                 style: torch.Tensor | None = None) -> torch.Tensor:
        """label, ref_label: long [B,H,W]; ref_image: [B,3,H,W] in [-1,1] -> [B,3,H,W] in [-1,1].

        ``style`` (from :meth:`encode_style`) replaces the reference when given.
        """
        from faceregen.masks import one_hot
        from faceregen.models import generate

        label_onehot = one_hot(label.to(self.device), self.label_classes)
        if style is not None and self.style_encoder is not None:
            return self.generator(label_onehot, style.to(self.device))
        ref_onehot = None
        if self.style_encoder is not None:
            if ref_image is None or ref_label is None:
                raise FaceregenError("this model needs a reference image and its label map")
            ref_image = ref_image.to(self.device)
            ref_onehot = one_hot(ref_label.to(self.device), self.label_classes)
        return generate(self.generator, self.style_encoder, label_onehot, ref_image, ref_onehot)


def build_regenerator(config: DictConfig, generator_state: dict[str, torch.Tensor],
                      style_encoder_state: dict[str, torch.Tensor] | None, step: int,
                      device: str | torch.device, path: Path) -> Regenerator:
    """Networks from ``config.model`` with the given EMA weights, in eval mode on ``device``."""
    from faceregen.models import build_networks

    size = OmegaConf.select(config, "data.size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise FaceregenError(f"{path}: the stored config's data.size is {size!r}, not an image "
                             "size")
    device = torch.device(device)
    networks = build_networks(config.model)
    load_state(networks.generator, generator_state, "generator", path)
    style_encoder = networks.style_encoder
    if style_encoder is not None:
        if style_encoder_state is None:
            raise FaceregenError(f"{path}: the config has a style encoder but the file none")
        load_state(style_encoder, style_encoder_state, "style encoder", path)
        style_encoder = style_encoder.to(device).eval()
    generator = networks.generator.to(device).eval()
    return Regenerator(generator, style_encoder, config, step, device)


def load_regenerator(path: str | os.PathLike, device: str | torch.device = "cpu") -> Regenerator:
    """A Regenerator from a training checkpoint's stored config and EMA weights."""
    path = Path(path)
    state = load_checkpoint(path)
    for key in ("config", "generator_ema", "step"):
        if state.get(key) is None:
            raise FaceregenError(f"{path}: the checkpoint has no {key}")
    check_stored_config(state["config"], str(path))
    return build_regenerator(OmegaConf.create(state["config"]), state["generator_ema"],
                             state.get("style_encoder_ema"), int(state["step"]), device, path)


def read_export(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """The metadata and tensors of an export file; anything else is a clear user error."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FaceregenError(f"{path}: export file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise FaceregenError(f"{path}: not a readable safetensors file ({exc})") from None
    if metadata.get("format") != EXPORT_FORMAT:
        raise FaceregenError(
            f"{path}: not a faceregen export (expected format {EXPORT_FORMAT} in its metadata)")
    return metadata, tensors


def load_exported_regenerator(path: str | os.PathLike,
                              device: str | torch.device = "cpu") -> Regenerator:
    """A Regenerator from an export's config and weights (the same as from its checkpoint)."""
    path = Path(path)
    metadata, tensors = read_export(path)
    try:
        stored = json.loads(metadata["config"])
        step = int(metadata.get("step", 0))
    except (KeyError, ValueError) as exc:
        raise FaceregenError(f"{path}: export metadata is damaged ({exc})") from None
    check_stored_config(stored, str(path))
    config = OmegaConf.create(stored)

    def group(prefix: str) -> dict[str, torch.Tensor] | None:
        found = {name[len(prefix):]: t for name, t in tensors.items() if name.startswith(prefix)}
        return found or None

    return build_regenerator(config, group(GENERATOR_PREFIX) or {},
                             group(STYLE_ENCODER_PREFIX), step, device, path)


class GroupInstanceNorm(torch.nn.Module):
    """``InstanceNorm2d(affine=False)`` computed as ``group_norm`` with a group per channel.

    The same function; on the CPU it keeps a channels_last tensor in that layout and runs about
    twice as fast, where InstanceNorm converts the tensor back to NCHW and is slower still.
    """

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.group_norm(x, x.shape[1], eps=self.eps)


def use_channels_last(regenerator: Regenerator) -> Regenerator:
    """Lay the networks out for faster CPU inference (the studio's default on the CPU).

    channels_last weights (oneDNN's fast path for convolutions, above all the 19-channel input
    and the transposed convolutions) and InstanceNorm as :class:`GroupInstanceNorm`. About a
    quarter faster at 512 px on a 2-core CPU (docs/speed.md). The networks compute the same
    function; float rounding differs, which moves about 0.1 % of the uint8 pixel values by one.
    `faceregen regen` and `eval` keep the plain layout, so their figures stay exactly
    reproducible.
    """

    def replace_norms(module: torch.nn.Module) -> None:
        for name, child in module.named_children():
            if (isinstance(child, torch.nn.InstanceNorm2d) and not child.affine
                    and not child.track_running_stats):
                setattr(module, name, GroupInstanceNorm(child.eps))
            else:
                replace_norms(child)

    for network in (regenerator.generator, regenerator.style_encoder):
        if network is not None:
            replace_norms(network)
            network.to(memory_format=torch.channels_last)
    return regenerator


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> Regenerator:
    """A Regenerator from a training checkpoint (.pt) or a `faceregen export` file."""
    if Path(path).suffix == ".safetensors":
        return load_exported_regenerator(path, device)
    return load_regenerator(path, device)
