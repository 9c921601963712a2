"""Write docs/synthetic_samples.png: synthetic photos above their colour label maps.

    python scripts/make_synth_grid.py [--out docs/synthetic_samples.png] [--size 128]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from faceregen.data.synth import synthesize_face
from faceregen.masks import colorize


def make_grid(columns: int, rows: int, size: int, seed: int) -> Image.Image:
    """Each row pair: ``columns`` photos, then their label maps (nearest-upsampled)."""
    tiles = []
    for row in range(rows):
        faces = [synthesize_face(row * columns + col, seed, size) for col in range(columns)]
        photos = np.concatenate([np.asarray(photo) for photo, *_ in faces], axis=1)
        labels = np.concatenate([colorize(label) for _, label, *_ in faces], axis=1)
        labels = np.asarray(Image.fromarray(labels).resize(photos.shape[1::-1], Image.NEAREST))
        tiles += [photos, labels]
    return Image.fromarray(np.concatenate(tiles, axis=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/synthetic_samples.png")
    parser.add_argument("--columns", type=int, default=8)
    parser.add_argument("--rows", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    grid = make_grid(args.columns, args.rows, args.size, args.seed)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out, optimize=True)
    print(f"wrote {args.out} ({grid.width}x{grid.height})")


if __name__ == "__main__":
    main()
