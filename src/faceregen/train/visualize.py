"""Sample grids: one row per example, columns colour mask | reference | generated | target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from faceregen.masks import colorize
from faceregen.utils import atomic_path


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B,3,H,W] in [-1,1] -> [B,H,W,3] uint8."""
    images = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).cpu().numpy()


def sample_grid(label: torch.Tensor, reference: torch.Tensor, generated: torch.Tensor,
                target: torch.Tensor) -> np.ndarray:
    """Stack the four columns side by side for every row of the batch, 2 px white gutters."""
    rows = []
    masks = np.stack([colorize(m) for m in label.cpu().numpy().astype(np.uint8)])
    for columns in zip(masks, to_uint8(reference), to_uint8(generated), to_uint8(target)):
        h = columns[0].shape[0]
        gutter = np.full((h, 2, 3), 255, np.uint8)
        row = [columns[0]]
        for c in columns[1:]:
            row += [gutter, c]
        rows.append(np.concatenate(row, 1))
    gap = np.full((2, rows[0].shape[1], 3), 255, np.uint8)
    out = [rows[0]]
    for r in rows[1:]:
        out += [gap, r]
    return np.concatenate(out, 0)


def save_png(array: np.ndarray, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
