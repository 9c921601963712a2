"""Images between their stored form (uint8, 0..255) and the networks' form (float, [-1, 1]).

Every command converts through these functions, so a photo read by the trainer, `regen` and
`eval` becomes the same tensor, and a generated image is rounded to 8 bits the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 values (any shape) as float32 in [-1, 1]; a float tensor passes through unchanged."""
    if images.dtype != torch.uint8:
        return images
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Values in [-1, 1] (any shape) rounded to uint8 0..255, clipped; uint8 passes through."""
    if images.dtype == torch.uint8:
        return images
    return ((images.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clipped: the range of PSNR, SSIM and Inception inputs."""
    return ((images + 1.0) / 2.0).clamp(0.0, 1.0)


def to_hwc(images: torch.Tensor) -> np.ndarray:
    """[B,3,H,W] (or [3,H,W]) in [-1, 1] -> uint8 numpy [B,H,W,3] (or [H,W,3]) for PIL."""
    return to_uint8(images).movedim(-3, -1).cpu().numpy()


def from_hwc(images: np.ndarray) -> torch.Tensor:
    """uint8 numpy [..., H, W, 3] -> float tensor [..., 3, H, W] in [-1, 1].

    Always a fresh array with numpy's canonical strides: a view such as ``image[None]`` has a
    stride of 0 in its batch dimension, which sends oneDNN's convolutions down another path
    with other rounding (the studio's cached style then differed from regen's by 1e-7).
    """
    return to_float(torch.from_numpy(np.array(images, order="C", copy=True)).movedim(-1, -3))


def image_grid(rows: Sequence[Sequence[np.ndarray]], padding: int = 2) -> np.ndarray:
    """Tiles of equal size (uint8 H×W×3), one list per row, as one image with white gutters."""
    from torchvision.utils import make_grid

    tiles = [torch.from_numpy(np.ascontiguousarray(tile)).permute(2, 0, 1)
             for row in rows for tile in row]
    grid = make_grid(torch.stack(tiles), nrow=len(rows[0]), padding=padding, pad_value=255)
    return grid.permute(1, 2, 0).numpy()
