"""Reading inputs as people have them and fitting them to the model's square canvas.

Letterbox, not crop: the longer side is resized to the model size and the shorter side is
padded by replicating the edge pixels, for photos and label maps alike, so that the padded
strip of a reference carries the label of what it shows. The padding is cut off the result,
which is then resized to the mask's original size. Transparent photos are composited on white;
16-bit photos are scaled to 8 bits; greyscale is replicated to RGB; EXIF orientation is applied.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceregen.errors import FaceregenError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".webp")
# Pillow decoders for files from strangers (the studio's uploads): the formats of the suffixes
# above, all decoded by Pillow itself; never EPS and the like, which run external programs.
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
RGBA_BACKGROUND = (255, 255, 255)
# Reference photo and reference mask aspect ratios (w/h) may differ by this fraction.
MAX_ASPECT_MISMATCH = 0.02


def photo_to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL image to uint8 H×W×3: 16-bit and float greys rescaled, alpha composited on white."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = float(values.max()) if values.size else 0.0
        if image.mode.startswith("I;16") or peak > 255:
            values = values * (255.0 / 65535.0)
        elif image.mode == "F" and peak <= 1.0:
            values = values * 255.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*RGBA_BACKGROUND, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def decode_photo(source: str | os.PathLike | BinaryIO, name: str,
                 formats: Sequence[str] | None = None) -> np.ndarray:
    """A photo from a path or an open binary file as uint8 H×W×3, upright (EXIF applied).

    ``formats`` restricts the Pillow decoders tried (None: all); ``name`` names it in errors.
    """
    try:
        with Image.open(source, formats=formats) as image:
            image.load()
            return photo_to_rgb(ImageOps.exif_transpose(image))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError,
            SyntaxError) as exc:
        raise FaceregenError(f"{name}: cannot read image ({exc})") from None


def read_photo(path: str | os.PathLike) -> np.ndarray:
    """Read a photo as uint8 H×W×3, upright (EXIF orientation applied)."""
    path = Path(path)
    if not path.is_file():
        raise FaceregenError(f"{path}: image file not found")
    return decode_photo(path, str(path))


def read_label_map(path: str | os.PathLike) -> np.ndarray:
    """Read an index or colour mask as uint8 H×W labels (unknown colours are an error)."""
    from faceregen.masks import read_mask

    path = Path(path)
    if not path.is_file():
        raise FaceregenError(f"{path}: mask file not found")
    return read_mask(path)


def photo_from_bytes(data: bytes, name: str,
                     formats: Sequence[str] | None = UPLOAD_FORMATS) -> np.ndarray:
    """`read_photo` for an upload held in memory; only the common photo formats by default."""
    return decode_photo(io.BytesIO(data), name, formats)


def label_map_from_bytes(data: bytes, name: str,
                         formats: Sequence[str] | None = UPLOAD_FORMATS) -> np.ndarray:
    """`read_label_map` for an upload held in memory (index or colour mask, same rules)."""
    from faceregen.masks import read_mask

    return read_mask(io.BytesIO(data), name, formats)


@dataclass(frozen=True)
class Placement:
    """Where an H×W input sits inside the size×size model canvas (letterbox)."""

    height: int
    width: int
    size: int
    top: int
    left: int
    inner_height: int
    inner_width: int


def placement_for(height: int, width: int, size: int) -> Placement:
    """Resize the longer side to ``size``, keep the aspect ratio, centre the result."""
    scale = size / max(height, width)
    inner_height = min(size, max(1, round(height * scale)))
    inner_width = min(size, max(1, round(width * scale)))
    return Placement(height, width, size, (size - inner_height) // 2,
                     (size - inner_width) // 2, inner_height, inner_width)


def _pad(array: np.ndarray, placement: Placement) -> np.ndarray:
    rows = (placement.top, placement.size - placement.top - placement.inner_height)
    cols = (placement.left, placement.size - placement.left - placement.inner_width)
    pad = (rows, cols) + ((0, 0),) * (array.ndim - 2)
    return np.pad(array, pad, mode="edge")


def fit_photo(photo: np.ndarray, placement: Placement) -> np.ndarray:
    """uint8 H×W×3 -> size×size×3: antialiased resize, edge-replicated padding."""
    resized = Image.fromarray(photo).resize((placement.inner_width, placement.inner_height),
                                            Image.Resampling.LANCZOS)
    return _pad(np.asarray(resized), placement)


def fit_label(label: np.ndarray, placement: Placement) -> np.ndarray:
    """uint8 H×W -> size×size: nearest-neighbour resize (no invented classes), edge padding."""
    resized = Image.fromarray(label).resize((placement.inner_width, placement.inner_height),
                                            Image.Resampling.NEAREST)
    return _pad(np.asarray(resized), placement)


def restore_photo(generated: np.ndarray, placement: Placement) -> np.ndarray:
    """Undo `fit_photo`: cut the padding off and resize back to the input's H×W."""
    inner = generated[placement.top:placement.top + placement.inner_height,
                      placement.left:placement.left + placement.inner_width]
    if inner.shape[:2] == (placement.height, placement.width):
        return np.ascontiguousarray(inner)
    resized = Image.fromarray(np.ascontiguousarray(inner)).resize(
        (placement.width, placement.height), Image.Resampling.LANCZOS)
    return np.asarray(resized)


def check_same_aspect(first_shape: Sequence[int], second_shape: Sequence[int], first_name: str,
                      second_name: str) -> None:
    """Two images that must overlay pixel for pixel need the same aspect ratio."""
    first_aspect = first_shape[1] / first_shape[0]
    second_aspect = second_shape[1] / second_shape[0]
    if abs(first_aspect / second_aspect - 1.0) > MAX_ASPECT_MISMATCH:
        raise FaceregenError(
            f"{second_name}: aspect ratio {second_shape[1]}x{second_shape[0]} does not match "
            f"{first_name} ({first_shape[1]}x{first_shape[0]}); they must overlay exactly")
