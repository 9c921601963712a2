"""Checkpoint files: one dict of plain containers and tensors, loadable with weights_only=True.

Layout (CONVENTIONS.md): ``format``, ``faceregen_version``, ``step``, ``config`` (the resolved
training config), ``generator``, ``style_encoder``, ``discriminator``, ``generator_ema``,
``style_encoder_ema``, ``optimizer_g``, ``optimizer_d``, ``scheduler_g``, ``scheduler_d``,
``scaler``, ``rng``. ``style_encoder*`` are None for the pix2pixHD baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from faceregen import __version__
from faceregen.errors import FaceregenError
from faceregen.utils import atomic_path, torch_load

FORMAT = "faceregen-checkpoint-v1"


def strip_compile_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``_orig_mod.`` prefix that torch.compile adds to parameter names."""
    return {k.replace("_orig_mod.", ""): v for k, v in state.items()}


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` atomically: a crash mid-write leaves the previous file intact."""
    state = {"format": FORMAT, "faceregen_version": __version__, **state}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a faceregen checkpoint on the CPU (no arbitrary unpickling) and check its format."""
    path = Path(path)
    if not path.is_file():
        raise FaceregenError(f"{path}: checkpoint not found")
    state = torch_load(path, "faceregen checkpoint")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise FaceregenError(f"{path}: not a faceregen checkpoint (expected format {FORMAT})")
    return state


def load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str,
               path: str | Path) -> None:
    """Load a state dict, turning a shape or key mismatch into a message naming the mismatch."""
    own = module.state_dict()
    state = strip_compile_prefix(state)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise FaceregenError(
            f"{path}: {what} does not match the model config "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise FaceregenError(
                f"{path}: {what} does not match the model config: {key} has shape "
                f"{tuple(value.shape)} in the checkpoint, {tuple(own[key].shape)} in the model")
    module.load_state_dict(state)


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
    def __call__(self, label: torch.Tensor, ref_image: torch.Tensor | None = None,
                 ref_label: torch.Tensor | None = None) -> torch.Tensor:
        """label, ref_label: long [B,H,W]; ref_image: [B,3,H,W] in [-1,1] -> [B,3,H,W] in [-1,1]."""
        from faceregen.masks import one_hot
        from faceregen.models import generate

        label_onehot = one_hot(label.to(self.device), self.label_classes)
        ref_onehot = None
        if self.style_encoder is not None:
            if ref_image is None or ref_label is None:
                raise FaceregenError("this model needs a reference image and its label map")
            ref_image = ref_image.to(self.device)
            ref_onehot = one_hot(ref_label.to(self.device), self.label_classes)
        return generate(self.generator, self.style_encoder, label_onehot, ref_image, ref_onehot)


def load_regenerator(path: str | Path, device: str | torch.device = "cpu") -> Regenerator:
    """Rebuild the networks from the config stored in the checkpoint and load the EMA weights."""
    from faceregen.models import build_networks

    device = torch.device(device)
    state = load_checkpoint(path)
    config = OmegaConf.create(state["config"])
    networks = build_networks(config.model)
    load_state(networks.generator, state["generator_ema"], "generator", path)
    style_encoder = networks.style_encoder
    if style_encoder is not None:
        if state.get("style_encoder_ema") is None:
            raise FaceregenError(f"{path}: the config has a style encoder but the checkpoint none")
        load_state(style_encoder, state["style_encoder_ema"], "style encoder", path)
        style_encoder = style_encoder.to(device).eval()
    generator = networks.generator.to(device).eval()
    return Regenerator(generator, style_encoder, config, int(state["step"]), device)
