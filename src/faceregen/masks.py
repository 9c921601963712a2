"""Label-map I/O shared by every command: index and colour masks, palette snapping, one-hot.

Masks on disk are either index PNGs (mode L/P, values 0..18) or colour images in the label
palette (docs/labels.md). Colour masks that went through resampling or JPEG are cleaned
(:mod:`faceregen.mask_cleaning`): pixels that clearly show a palette colour keep it, the
blended fringe along region edges takes the label of its clear neighbours. A mask with a patch of a
colour far from every palette colour, or one that is mostly fringe (a photo, noise), is
rejected, because silently mapping an unknown colour to some class would corrupt training or
evaluation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from faceregen.errors import FaceregenError
from faceregen.labels import NUM_CLASSES, PALETTE
from faceregen.mask_cleaning import (
    MAX_COLOR_DISTANCE,
    MAX_FILL_RADIUS,
    clean_color_mask,
    palette_distances,
)
from faceregen.utils import atomic_path

logger = logging.getLogger("faceregen.masks")

# Off-palette pixels (farther than MAX_COLOR_DISTANCE from every palette colour) that no clear
# neighbour explains, a patch of a foreign colour: tolerated up to this share of the mask.
MAX_OFF_PALETTE_FRACTION = 0.01
# More pixels than this share without a clear palette colour: a photo or noise, not a label map.
MAX_UNCLEAR_FRACTION = 0.6


def _nearest_palette(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest palette index and its distance per pixel."""
    labels, distance, _ = palette_distances(rgb)
    return labels, distance


def snap_to_palette(
    rgb: np.ndarray, max_distance: float = MAX_COLOR_DISTANCE
) -> tuple[np.ndarray, float]:
    """Map an H×W×3 colour mask to labels; also return the fraction of off-palette pixels.

    Returns ``(labels uint8 H×W, bad_fraction)`` where ``bad_fraction`` is the share of pixels
    farther than ``max_distance`` from every palette colour (they still get the nearest label).
    """
    labels, distance = _nearest_palette(rgb)
    bad_fraction = float((distance > max_distance).mean()) if distance.size else 0.0
    return labels, bad_fraction


def _check_color_mask(rgb: np.ndarray, path: Path | str) -> np.ndarray:
    rgb = np.asarray(rgb)[..., :3]
    cleaned = clean_color_mask(rgb)
    total = cleaned.labels.size
    if cleaned.foreign > MAX_OFF_PALETTE_FRACTION * total:
        bad = _nearest_palette(rgb)[1] > MAX_COLOR_DISTANCE
        bad_colors, counts = np.unique(rgb[bad], axis=0, return_counts=True)
        worst = tuple(int(c) for c in bad_colors[counts.argmax()])
        raise FaceregenError(
            f"{path}: {int(bad.sum())} of {total} pixels are far from every palette colour "
            f"(most common: RGB{worst}, {int(counts.max())} pixels), {cleaned.foreign} of them "
            f"with no clear label within {MAX_FILL_RADIUS} pixels; not a CelebAMask-HQ colour "
            "mask")
    if cleaned.unclear > MAX_UNCLEAR_FRACTION * total:
        raise FaceregenError(
            f"{path}: {cleaned.unclear} of {total} pixels ({cleaned.unclear / total:.0%}) show "
            "no clear palette colour; a photo or noise, not a CelebAMask-HQ colour mask")
    if cleaned.unclear:
        logger.warning(
            "%s: %d of %d pixels (%.1f%%) were not clearly one palette colour (JPEG or "
            "resizing fringe) and took the label of their clear neighbours", path,
            cleaned.unclear, total, 100 * cleaned.unclear / total)
    return cleaned.labels


def read_mask(path: str | os.PathLike | BinaryIO, name: str | None = None,
              formats: Sequence[str] | None = None) -> np.ndarray:
    """Read an index mask or a colour mask as a uint8 H×W label map.

    ``path`` may also be an open binary file (an upload); ``name`` then names it in errors.
    ``formats`` restricts the Pillow decoders tried (None: all), for files from strangers.

    Index masks: mode L/P/I with values 0..18 (a mode-P file's pixel values are its palette
    indices, taken as class ids when they are all below 19, else it is a colour mask); an
    opaque LA image; and a three-channel image whose channels are equal and below 19, as
    OpenCV writes an index map. Such a grey image is never read as a colour mask: every
    palette colour but background's black has distinct channels, so a grey image with larger
    values is neither kind and is refused rather than guessed at.
    """
    if isinstance(path, (str, os.PathLike)):
        path = Path(path)
    name = name or str(path)
    try:
        with Image.open(path, formats=formats) as img:
            img.load()
            mode = img.mode
            if mode == "LA":
                if int(np.asarray(img.getchannel("A")).min()) < 255:
                    raise FaceregenError(f"{name}: a greyscale mask with transparent pixels; "
                                         "save the index mask without an alpha channel")
                img = img.getchannel("L")
                mode = "L"
            if mode in ("L", "P", "I", "I;16"):
                values = np.asarray(img)
                if values.size and int(values.max()) < NUM_CLASSES:
                    return values.astype(np.uint8)
                if mode != "P":
                    raise FaceregenError(
                        f"{name}: index mask has value {int(values.max())}; "
                        f"labels must be 0..{NUM_CLASSES - 1}"
                    )
            rgb = np.asarray(img.convert("RGB"))
    except FaceregenError:
        raise
    except FileNotFoundError:
        raise FaceregenError(f"{name}: mask file not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise FaceregenError(f"{name}: cannot read mask ({exc})") from None
    grey = (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    if grey and rgb.size:
        if int(rgb.max()) < NUM_CLASSES:
            return np.ascontiguousarray(rgb[..., 0])
        raise FaceregenError(
            f"{name}: a grey three-channel image with values up to {int(rgb.max())}: neither "
            f"an index mask (equal channels, 0..{NUM_CLASSES - 1}) nor a colour mask")
    return _check_color_mask(rgb, name)


def colorize(label: np.ndarray) -> np.ndarray:
    """H×W label map to an H×W×3 uint8 image in the label palette."""
    return PALETTE[np.asarray(label)]


def write_color_mask(label: np.ndarray, path: str | os.PathLike) -> None:
    """Write a colour PNG atomically (no half-written file on a crash)."""
    with atomic_path(path) as tmp:
        Image.fromarray(colorize(label)).save(tmp, format="PNG")


def write_index_mask(label: np.ndarray, path: str | os.PathLike) -> None:
    """Write a mode-L index PNG (values 0..18) atomically."""
    label = np.asarray(label)
    if label.size and int(label.max()) >= NUM_CLASSES:
        raise ValueError(f"label values must be < {NUM_CLASSES}, got {int(label.max())}")
    with atomic_path(path) as tmp:
        Image.fromarray(label.astype(np.uint8)).save(tmp, format="PNG")


def one_hot(label, num_classes: int = NUM_CLASSES):
    """LongTensor [B,H,W] or [H,W] -> float one-hot [B,C,H,W] or [C,H,W] on the same device."""
    import torch  # kept local so that the data tools and the CLI start without torch

    squeeze = label.dim() == 2
    if squeeze:
        label = label.unsqueeze(0)
    batch, height, width = label.shape
    out = torch.zeros(batch, num_classes, height, width, device=label.device)
    out.scatter_(1, label.long().unsqueeze(1), 1.0)
    return out[0] if squeeze else out
