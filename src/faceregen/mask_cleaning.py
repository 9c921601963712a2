"""Labels of colour masks that went through JPEG or resizing: snap, then clean the fringe.

A lossy colour mask is right inside its regions and wrong along their edges: JPEG keeps luma
at full resolution but averages chroma over 2x2 pixels and quantises both, so an edge pixel
shows a mix of its two sides, which can sit near a third palette colour (hair (0,0,204) fading
into background (0,0,0) passes through the lower lip's (0,0,153)). :func:`clean_color_mask`
trusts the pixels that clearly show one palette colour, suspects those that a mix of two
neighbouring classes explains as well as their own, and gives every other pixel a label found
clearly in its neighbourhood.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from faceregen.labels import PALETTE

# A pixel farther than this (Euclidean, RGB) from every palette colour is "off-palette".
MAX_COLOR_DISTANCE = 60.0
# A pixel clearly shows a palette colour when it is within CLEAR_DISTANCE of it and at least
# CLEAR_MARGIN nearer to it than to any other (palette colours are at least 51 apart). JPEG
# keeps the inside of flat regions within a few levels of their colour.
CLEAR_DISTANCE = 36.0
CLEAR_MARGIN = 30.0
# Classes found clearly within this radius are a pixel's neighbours, for the mix test.
NEIGHBOUR_RADIUS = 4
# A clear pixel of class c in a thin stretch of c (no 3x3 square of c covers it) is suspected
# when a mix of two other neighbouring classes is within BLEND_TOLERANCE of explaining its
# colour as well as c does. JPEG's luma rings at edges: a mix's luma may overshoot either
# side's by LUMA_RINGING levels.
BLEND_TOLERANCE = 10.0
LUMA_RINGING = 8.0
# Unclear pixels take a class found clearly in their 3x3 window, else 5x5, ... up to this.
MAX_FILL_RADIUS = 2
# Colours are compared in YCbCr with luma counted LUMA_WEIGHT-fold in the square: at an edge
# JPEG's luma still says which side a pixel is on, its chroma is half the neighbour's.
LUMA_WEIGHT = 16.0
# JPEG's RGB -> YCbCr (ITU-R BT.601, full range), without the offsets.
YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5],
                  [0.5, -0.418688, -0.081312]], dtype=np.float32)


@dataclass
class CleanedMask:
    """A colour mask's labels and what cleaning them took (pixel counts)."""

    labels: np.ndarray
    unclear: int      # not clearly one palette colour, or a suspected mix: decided again
    unresolved: int   # unclear, no clear class within MAX_FILL_RADIUS: nearest colour kept
    foreign: int      # of those, farther than MAX_COLOR_DISTANCE from every palette colour
    off_palette: int  # every pixel farther than MAX_COLOR_DISTANCE, resolved or not


def palette_distances(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest palette index, its RGB distance and the second-nearest distance per pixel of an
    H x W x 3 image, computed once per distinct colour."""
    rgb = np.asarray(rgb)[..., :3].astype(np.int32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    colors, inverse = np.unique(packed.ravel(), return_inverse=True)
    unique_rgb = np.stack([(colors >> 16) & 255, (colors >> 8) & 255, colors & 255], axis=1)
    diff = unique_rgb[:, None, :].astype(np.float32) - PALETTE[None, :, :].astype(np.float32)
    dist = np.sqrt((diff**2).sum(axis=2))
    nearest = dist.argmin(axis=1)
    first = dist[np.arange(len(colors)), nearest]
    second = np.partition(dist, 1, axis=1)[:, 1]
    shape = packed.shape
    return (nearest.astype(np.uint8)[inverse].reshape(shape), first[inverse].reshape(shape),
            second[inverse].reshape(shape))


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """True where ``mask`` is true anywhere in the (2 radius + 1)^2 window."""
    height, width = mask.shape
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy:dy + height, dx:dx + width]
    return out


def _thin(region: np.ndarray) -> np.ndarray:
    """Pixels of ``region`` that no 3x3 square inside the region covers (the image border
    counts as inside)."""
    inside = ~_dilate(~region, 1)
    return region & ~_dilate(inside, 1)


def _weighted_ycbcr(colors: np.ndarray) -> np.ndarray:
    """[..., 3] RGB -> YCbCr with luma scaled so that Euclidean distance weighs it LUMA_WEIGHT."""
    out = colors.astype(np.float32) @ YCBCR.T
    out[..., 0] *= np.sqrt(LUMA_WEIGHT)
    return out


def _mix_error(pixels: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How far [M, 3] pixels (weighted YCbCr) are from a JPEG mix of colours a and b: luma
    anywhere between theirs (give or take LUMA_RINGING), chroma anywhere on the segment between
    theirs (JPEG mixes the two with different weights)."""
    ringing = LUMA_RINGING * np.sqrt(LUMA_WEIGHT)
    low, high = min(a[0], b[0]) - ringing, max(a[0], b[0]) + ringing
    luma_gap = np.maximum(0, np.maximum(low - pixels[:, 0], pixels[:, 0] - high))
    direction = b[1:] - a[1:]
    t = np.clip((pixels[:, 1:] - a[1:]) @ direction / max(float(direction @ direction), 1e-6),
                0, 1)
    chroma_gap = np.linalg.norm(pixels[:, 1:] - (a[1:] + t[:, None] * direction), axis=1)
    return np.sqrt(luma_gap**2 + chroma_gap**2)


def clean_color_mask(rgb: np.ndarray) -> CleanedMask:
    """Labels of an H x W x 3 colour mask that may have been resized or saved as JPEG.

    1. Each pixel's nearest palette colour; a pixel is clear when it is near one palette colour
       and not near two (CLEAR_DISTANCE, CLEAR_MARGIN).
    2. A clear pixel in a thin stretch of its class is suspected, and made unclear, when a mix
       of two other classes found clearly nearby explains its colour about as well: JPEG's edge
       mixes can land on a third palette colour and draw a line of a class that is not there.
    3. Each unclear pixel takes, among the classes found clearly in its 3x3 window (then 5x5,
       up to MAX_FILL_RADIUS), its nearest palette colour's class if that is one of them, else
       the one nearest in luma-weighted YCbCr: the side of the edge it is on, never a class
       that is not there.
    Unclear pixels with no clear class within reach keep their nearest palette colour. A mask
    whose pixels are all exactly palette colours is returned as it is.
    """
    rgb = np.asarray(rgb)[..., :3]
    nearest, distance, second = palette_distances(rgb)
    off_palette = distance > MAX_COLOR_DISTANCE
    if not distance.any():
        return CleanedMask(labels=nearest, unclear=0, unresolved=0, foreign=0, off_palette=0)
    clear = (distance <= CLEAR_DISTANCE) & (second - distance >= CLEAR_MARGIN)
    colors = _weighted_ycbcr(rgb)
    palette = _weighted_ycbcr(PALETTE)
    present = [int(k) for k in np.unique(nearest[clear])]
    near = {k: _dilate(clear & (nearest == k), NEIGHBOUR_RADIUS) for k in present}

    suspected = np.zeros_like(clear)
    for c in present:
        candidates = clear & _thin(nearest == c)
        others = [k for k in present if k != c]
        if not candidates.any() or len(others) < 2:
            continue
        own_error = np.linalg.norm(colors[candidates] - palette[c], axis=1)
        explained = np.zeros(len(own_error), dtype=bool)
        for a, b in combinations(others, 2):
            both = (near[a] & near[b])[candidates]
            if both.any():
                mix = _mix_error(colors[candidates][both], palette[a], palette[b])
                explained[both] |= mix <= own_error[both] + BLEND_TOLERANCE
        rows, cols = np.nonzero(candidates)
        suspected[rows[explained], cols[explained]] = True
    clear &= ~suspected

    labels, unclear = nearest.copy(), ~clear
    todo = unclear.copy()
    present = np.unique(nearest[clear]).astype(np.int64)
    for radius in range(1, MAX_FILL_RADIUS + 1):
        if not todo.any() or not present.size:
            break
        found_near = np.stack([_dilate(clear & (nearest == k), radius)[todo] for k in present],
                              1)                                                  # [M, K]
        gap = np.linalg.norm(colors[todo][:, None] - palette[present][None], axis=2)
        gap[present[None, :] == nearest[todo][:, None]] = -1.0  # its own colour's class first
        gap[~found_near] = np.inf
        found = found_near.any(1)
        rows, cols = np.nonzero(todo)
        labels[rows[found], cols[found]] = present[gap[found].argmin(1)].astype(np.uint8)
        todo[rows[found], cols[found]] = False
    return CleanedMask(labels=labels, unclear=int(unclear.sum()), unresolved=int(todo.sum()),
                       foreign=int((todo & off_palette).sum()),
                       off_palette=int(off_palette.sum()))
