"""Sample grids: one row per example, columns colour mask | reference | generated | target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from faceregen.images import image_grid, to_hwc
from faceregen.masks import colorize
from faceregen.utils import atomic_path


def sample_grid(label: torch.Tensor, reference: torch.Tensor, generated: torch.Tensor,
                target: torch.Tensor) -> np.ndarray:
    """uint8 H×W×3 grid of the batch: label maps [B,H,W], images [B,3,H,W] in [-1,1] or uint8."""
    masks = [colorize(m) for m in label.cpu().numpy().astype(np.uint8)]
    photos = [to_hwc(images) for images in (reference, generated, target)]
    return image_grid([[mask] + [column[i] for column in photos]
                       for i, mask in enumerate(masks)])


def save_png(array: np.ndarray, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
