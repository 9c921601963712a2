"""Evaluator checkpoints: the face parser and attribute classifier that `faceregen eval` uses.

The networks are in :mod:`faceregen.models.networks.evaluators`; both read images in [-1,1].
Their checkpoints are single dicts of plain containers and
tensors (``torch.load(weights_only=True)``) that carry the architecture arguments, so a file
rebuilds its own network; the default place is ``<prepared data root>/evaluators/<kind>.pt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from faceregen import __version__
from faceregen.errors import FaceregenError
from faceregen.models.allowlist import PLAIN
from faceregen.models.networks.evaluators import AttributeClassifier, UNetParser
from faceregen.utils import atomic_path, first_line, make_dirs, torch_load

EVALUATOR_FORMAT = "faceregen-evaluator-v2"
OLD_FORMATS = ("faceregen-evaluator-v1",)
KINDS = ("parser", "attributes")


def build_evaluator(kind: str, architecture: dict[str, Any]) -> nn.Module:
    """The network for ``kind`` from the architecture arguments stored in its checkpoint."""
    if kind == "parser":
        return UNetParser(**architecture)
    if kind == "attributes":
        return AttributeClassifier(**architecture)
    raise FaceregenError(f"unknown evaluator kind '{kind}' (choose from {', '.join(KINDS)})")


def default_evaluator_path(data_root: str | Path, kind: str) -> Path:
    """``<prepared root>/evaluators/<kind>.pt``: evaluators belong to the dataset they learnt."""
    return Path(data_root) / "evaluators" / f"{kind}.pt"


@dataclass
class Evaluator:
    """A loaded evaluator network (eval mode) and what its checkpoint says about it."""

    kind: str
    network: nn.Module
    path: Path
    image_size: int
    attribute_names: list[str]
    metrics: dict[str, Any]
    steps: int


def save_evaluator(path: str | Path, kind: str, network: nn.Module,
                   architecture: dict[str, Any], *, image_size: int, data_root: str | Path,
                   steps: int, metrics: dict[str, Any],
                   attribute_names: list[str] | None = None) -> None:
    """Write the evaluator checkpoint atomically."""
    path = Path(path)
    make_dirs(path.parent)
    state = {
        "format": EVALUATOR_FORMAT,
        "faceregen_version": __version__,
        "kind": kind,
        "architecture": dict(architecture),
        "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
        "image_size": int(image_size),
        "data_root": str(data_root),
        "steps": int(steps),
        "attribute_names": list(attribute_names or []),
        "metrics": metrics,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_evaluator(path: str | Path, kind: str,
                   device: str | torch.device = "cpu") -> Evaluator:
    """Rebuild and load an evaluator checkpoint; a wrong file is a user error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FaceregenError(f"{path}: evaluator checkpoint not found")
    state = torch_load(path, "evaluator checkpoint")
    if isinstance(state, dict) and state.get("format") in OLD_FORMATS:
        raise FaceregenError(
            f"{path}: an evaluator from an older faceregen ({state['format']}); delete it and "
            f"train a new one with `faceregen evaluators train` (`faceregen eval` does so itself)")
    if not isinstance(state, dict) or state.get("format") != EVALUATOR_FORMAT:
        raise FaceregenError(f"{path}: not a faceregen evaluator (expected {EVALUATOR_FORMAT})")
    if state.get("kind") != kind:
        raise FaceregenError(f"{path}: holds a '{state.get('kind')}' evaluator, not '{kind}'")
    architecture = state.get("architecture")
    if not isinstance(architecture, dict) or not all(
            isinstance(k, str) and isinstance(v, PLAIN) for k, v in architecture.items()):
        raise FaceregenError(f"{path}: the stored architecture is not a mapping of plain values")
    try:
        network = build_evaluator(kind, architecture)
    except (TypeError, ValueError) as exc:
        raise FaceregenError(f"{path}: the stored architecture does not fit the {kind} "
                             f"network ({exc})") from None
    try:
        network.load_state_dict(state["state_dict"])
    except RuntimeError as exc:
        raise FaceregenError(f"{path}: weights do not fit the stored architecture "
                             f"({first_line(exc)})") from None
    return Evaluator(kind=kind, network=network.to(device).eval(), path=path,
                     image_size=int(state["image_size"]),
                     attribute_names=list(state["attribute_names"]),
                     metrics=state["metrics"], steps=int(state["steps"]))
