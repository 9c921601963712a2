"""`faceregen export`: the EMA generator and style encoder as one safetensors file.

A training checkpoint is a pickle (loaded with weights_only=True, but still a pickle, and it
carries the discriminator and optimiser states nobody needs for inference). The export holds
only tensors plus the resolved config as JSON metadata, so it can be shared and opened without
unpickling anything; `faceregen regen --ckpt model.safetensors` reads it.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from omegaconf import OmegaConf

from faceregen import __version__
from faceregen.errors import FaceregenError

EXPORT_FORMAT = "faceregen-export-v1"
GENERATOR_PREFIX = "generator."
STYLE_ENCODER_PREFIX = "style_encoder."


def export_checkpoint(ckpt_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Write the checkpoint's EMA weights and resolved config to ``out_path`` atomically."""
    from safetensors.torch import save_file

    from faceregen.checkpoint import load_checkpoint, strip_compile_prefix
    from faceregen.utils import atomic_path

    ckpt_path, out_path = Path(ckpt_path), Path(out_path)
    if out_path.suffix != ".safetensors":
        raise FaceregenError(f"{out_path}: an export file must end in .safetensors")
    if not out_path.parent.is_dir():
        raise FaceregenError(f"{out_path}: output folder {out_path.parent} does not exist")
    if out_path.resolve() == ckpt_path.resolve():
        raise FaceregenError(f"{out_path}: output would overwrite the checkpoint")
    state = load_checkpoint(ckpt_path)
    if state.get("generator_ema") is None:
        raise FaceregenError(f"{ckpt_path}: the checkpoint has no EMA generator weights")
    tensors = {}
    groups = [(GENERATOR_PREFIX, state["generator_ema"])]
    if state.get("style_encoder_ema") is not None:
        groups.append((STYLE_ENCODER_PREFIX, state["style_encoder_ema"]))
    for prefix, weights in groups:
        for name, tensor in strip_compile_prefix(weights).items():
            tensors[prefix + name] = tensor.detach().cpu().contiguous().clone()
    metadata = {
        "format": EXPORT_FORMAT,
        "faceregen_version": __version__,
        "step": str(int(state["step"])),
        "config": json.dumps(state["config"]),
        "source_checkpoint": ckpt_path.name,
    }
    with atomic_path(out_path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return out_path


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


def load_exported_regenerator(path: str | os.PathLike, device="cpu"):
    """A Regenerator rebuilt from an export's config and weights (same as load_regenerator)."""
    from faceregen.checkpoint import Regenerator, load_state
    from faceregen.models import build_networks

    path = Path(path)
    device = torch.device(device)
    metadata, tensors = read_export(path)
    try:
        config = OmegaConf.create(json.loads(metadata["config"]))
        step = int(metadata.get("step", 0))
    except (KeyError, ValueError) as exc:
        raise FaceregenError(f"{path}: export metadata is damaged ({exc})") from None

    def group(prefix: str) -> dict[str, torch.Tensor]:
        return {name[len(prefix):]: t for name, t in tensors.items() if name.startswith(prefix)}

    networks = build_networks(config.model)
    load_state(networks.generator, group(GENERATOR_PREFIX), "generator", path)
    style_encoder = networks.style_encoder
    if style_encoder is not None:
        load_state(style_encoder, group(STYLE_ENCODER_PREFIX), "style encoder", path)
        style_encoder = style_encoder.to(device).eval()
    generator = networks.generator.to(device).eval()
    return Regenerator(generator, style_encoder, config, step, device)


def main(argv: list[str]) -> None:
    from faceregen.regen import find_latest_checkpoint

    parser = argparse.ArgumentParser(
        prog="faceregen export",
        description="Write a checkpoint's EMA generator and style encoder weights, with the "
                    "resolved config as JSON metadata, to a pickle-free safetensors file. "
                    "`faceregen regen --ckpt FILE.safetensors` reads it.")
    parser.add_argument("--ckpt", type=Path,
                        help="training checkpoint (default: newest last.pt under "
                             "$FACEREGEN_RUNS, default checkpoints/)")
    parser.add_argument("--out", type=Path, required=True, help="output .safetensors file")
    args = parser.parse_args(argv)
    print(export_checkpoint(args.ckpt or find_latest_checkpoint(), args.out))
