"""Checkpoint files: one dict of plain containers and tensors, loadable with weights_only=True.

Layout: ``format``, ``faceregen_version``, ``step``, ``config`` (the resolved training config),
``generator``, ``style_encoder``, ``discriminator``, ``generator_ema``, ``style_encoder_ema``,
``optimizer_g``, ``optimizer_d``, ``scheduler_g``, ``scheduler_d``, ``scaler``, ``data`` (the
loader's place in its epoch) and ``rng``. ``style_encoder*`` are None for the pix2pixHD baseline.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from faceregen import __version__
from faceregen.errors import FaceregenError
from faceregen.utils import atomic_path, first_line, torch_load

FORMAT = "faceregen-checkpoint-v1"
LAST = "last.pt"  # the newest checkpoint of a run, beside the step_XXXXXX.pt files


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


def default_runs_dir() -> Path:
    """The training runs folder: ``$FACEREGEN_RUNS`` or ``checkpoints`` (as the paths config)."""
    return Path(os.environ.get("FACEREGEN_RUNS", "checkpoints"))


def find_latest_checkpoint(runs_dir: str | os.PathLike | None = None) -> Path:
    """The newest ``last.pt`` (by modification time) anywhere under the runs folder."""
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    candidates = sorted(runs_dir.rglob(LAST), key=lambda p: p.stat().st_mtime) \
        if runs_dir.is_dir() else []
    if not candidates:
        raise FaceregenError(
            f"no checkpoint found: no {LAST} under {runs_dir}/ (train one with "
            "`faceregen train`, set FACEREGEN_RUNS to your runs folder, or pass --ckpt)")
    return candidates[-1]


def newest_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    """The checkpoint of a run folder with the highest step: ``last.pt`` or a ``step_*.pt``.

    Normally they hold the same state; after a kill between writing ``step_N.pt`` and
    ``last.pt``, the step file is newer. Files are written atomically, so every file here is
    complete; one that still does not load is skipped with a warning.
    """
    import logging

    ckpt_dir = Path(ckpt_dir)
    best: tuple[int, int, Path] | None = None
    for path in [*ckpt_dir.glob("step_*.pt"), ckpt_dir / LAST]:
        if not path.is_file():
            continue
        try:  # mmap: the step without reading the tensors
            step = int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"])
        except Exception as exc:  # any unreadable file is passed over, as torch_load would
            logging.getLogger(__name__).warning("skipping %s: not a loadable checkpoint (%s)",
                                                path, first_line(exc))
            continue
        key = (step, path.name == LAST, path)  # at equal steps, last.pt
        best = key if best is None or key[:2] > best[:2] else best
    return None if best is None else best[2]


def config_differences(stored: Any, current: Any, prefix: str) -> list[str]:
    """Human-readable differences between a stored and the current nested config container."""
    if isinstance(stored, dict) and isinstance(current, dict):
        out = []
        for k in sorted(set(stored) | set(current), key=str):
            out += config_differences(stored.get(k), current.get(k), f"{prefix}.{k}")
        return out
    return [] if stored == current else [f"{prefix}: checkpoint {stored!r}, config {current!r}"]
