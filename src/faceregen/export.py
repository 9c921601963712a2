"""`faceregen export`: the EMA generator and style encoder as one safetensors file.

A training checkpoint is a pickle (loaded with weights_only=True, but still a pickle, and it
carries the discriminator and optimiser states nobody needs for inference). The export holds
only tensors plus the resolved config as JSON metadata, so it can be shared and opened without
unpickling anything; :mod:`faceregen.regen.model` reads it (`regen --ckpt model.safetensors`).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from faceregen import __version__
from faceregen.checkpoint import find_latest_checkpoint, load_checkpoint, strip_compile_prefix
from faceregen.errors import FaceregenError
from faceregen.models.allowlist import check_stored_config
from faceregen.regen.model import EXPORT_FORMAT, GENERATOR_PREFIX, STYLE_ENCODER_PREFIX
from faceregen.utils import atomic_path, remove_stale_temporaries


def export_checkpoint(ckpt_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Write the checkpoint's EMA weights and resolved config to ``out_path`` atomically."""
    from safetensors.torch import save_file

    ckpt_path, out_path = Path(ckpt_path), Path(out_path)
    if out_path.suffix != ".safetensors":
        raise FaceregenError(f"{out_path}: an export file must end in .safetensors")
    if not out_path.parent.is_dir():
        raise FaceregenError(f"{out_path}: output folder {out_path.parent} does not exist")
    if out_path.resolve() == ckpt_path.resolve():
        raise FaceregenError(f"{out_path}: output would overwrite the checkpoint")
    remove_stale_temporaries(out_path.parent)
    state = load_checkpoint(ckpt_path)
    if state.get("generator_ema") is None:
        raise FaceregenError(f"{ckpt_path}: the checkpoint has no EMA generator weights")
    if state.get("config") is None:
        raise FaceregenError(f"{ckpt_path}: the checkpoint has no config")
    check_stored_config(state["config"], str(ckpt_path))
    try:
        config_json = json.dumps(state["config"])
    except (TypeError, ValueError) as exc:
        raise FaceregenError(f"{ckpt_path}: the stored config is not plain data ({exc})") from None
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
        "config": config_json,
        "source_checkpoint": ckpt_path.name,
    }
    with atomic_path(out_path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return out_path


def main(argv: list[str]) -> None:
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
