"""Evaluator networks trained by faceregen: a UNet face parser and an attribute classifier.

Both read images in [-1,1]. Their checkpoints are single dicts of plain containers and
tensors (``torch.load(weights_only=True)``) that carry the architecture arguments, so a file
rebuilds its own network; the default place is ``<prepared data root>/evaluators/<kind>.pt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from faceregen import __version__
from faceregen.errors import FaceregenError
from faceregen.labels import ATTRIBUTE_NAMES, NUM_CLASSES
from faceregen.utils import atomic_path, torch_load

EVALUATOR_FORMAT = "faceregen-evaluator-v2"
OLD_FORMATS = ("faceregen-evaluator-v1",)
KINDS = ("parser", "attributes")


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNetParser(nn.Module):
    """A light UNet: a full-resolution stem, ``depth`` stride-2 stages (channels doubling),
    and a decoder of nearest-neighbour upsampling, skip concatenation and one conv per level.

    One conv per decoder level keeps training to a couple of minutes on two CPU cores at
    64 px. The bottleneck (deepest stage), globally average-pooled, is the feature vector of
    the parser feature distance.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, channels: int = 12, depth: int = 3,
                 in_channels: int = 3) -> None:
        super().__init__()
        widths = [channels * 2**level for level in range(depth + 1)]
        self.stem = conv_bn_relu(in_channels, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(conv_bn_relu(widths[i], widths[i + 1], stride=2),
                          conv_bn_relu(widths[i + 1], widths[i + 1]))
            for i in range(depth))
        self.up = nn.ModuleList(
            conv_bn_relu(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        self.feature_dim = widths[-1]

    def decode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits [B,19,H,W], full-resolution decoder features, bottleneck features)."""
        x = self.stem(images)
        skips = [x]
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        bottleneck = x
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = block(torch.cat([x, skip], 1))
        return self.head(x), x, bottleneck

    def forward(self, images: torch.Tensor,
                return_features: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits [B,19,H,W] (H, W divisible by 2**depth); with pooled bottleneck features."""
        logits, _, bottleneck = self.decode(images)
        if return_features:
            return logits, bottleneck.mean(dim=(2, 3))
        return logits


class AttributeClassifier(nn.Module):
    """Multi-label classifier that looks at the face part by part.

    A UNet parser trunk segments the photo; each part's soft mask (softmax over the 19 classes)
    pools the full-resolution decoder features and the input colours over that part, and gives
    the part's area. One linear layer maps [pooled features and colours of every part, areas,
    pooled bottleneck] to one logit per attribute. It is trained with an auxiliary
    segmentation loss (``forward(..., return_segmentation=True)``), so the trunk learns where
    the lips, eyes and brows are, and the attributes decided by a few pixels of one part
    (Smiling, Mouth_Slightly_Open, Narrow_Eyes, Big_Lips) become a matter of reading that
    part. A plain CNN with global pooling learnt those near chance level from the 495 training
    faces of the earlier 600-face synthetic set (docs/evaluation.md).
    """

    AREA_SCALE = 10.0  # part areas are fractions of the image; this brings them near unit range

    def __init__(self, num_attributes: int = len(ATTRIBUTE_NAMES), channels: int = 12,
                 depth: int = 3, num_classes: int = NUM_CLASSES, in_channels: int = 3) -> None:
        super().__init__()
        self.trunk = UNetParser(num_classes, channels, depth, in_channels)
        pooled = num_classes * (channels + in_channels + 1) + self.trunk.feature_dim
        self.classifier = nn.Linear(pooled, num_attributes)

    def forward(self, images: torch.Tensor, return_segmentation: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Attribute logits [B, A]; with the trunk's segmentation logits for training."""
        segmentation, features, bottleneck = self.trunk.decode(images)
        parts = segmentation.softmax(dim=1)
        area = parts.sum(dim=(2, 3))
        pooled = torch.einsum("bkhw,bchw->bkc", parts, torch.cat([features, images], 1))
        pooled = pooled / (area[..., None] + 1)
        fraction = area / (images.shape[-2] * images.shape[-1])
        logits = self.classifier(torch.cat(
            [pooled.flatten(1), self.AREA_SCALE * fraction, bottleneck.mean(dim=(2, 3))], 1))
        if return_segmentation:
            return logits, segmentation
        return logits


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
    path.parent.mkdir(parents=True, exist_ok=True)
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
    if state["kind"] != kind:
        raise FaceregenError(f"{path}: holds a '{state['kind']}' evaluator, not '{kind}'")
    network = build_evaluator(kind, state["architecture"])
    try:
        network.load_state_dict(state["state_dict"])
    except RuntimeError as exc:
        raise FaceregenError(f"{path}: weights do not fit the stored architecture "
                             f"({str(exc).splitlines()[0]})") from None
    return Evaluator(kind=kind, network=network.to(device).eval(), path=path,
                     image_size=int(state["image_size"]),
                     attribute_names=list(state["attribute_names"]),
                     metrics=state["metrics"], steps=int(state["steps"]))
