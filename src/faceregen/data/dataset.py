"""`FaceDataset`: a prepared directory (manifest.csv, images/, labels/) as training pairs.

Augmentation draws come from the item's key (position and augment seed) or, for a plain
position, from torch's RNG, which the DataLoader seeds per worker; the pairing of a face with a
random reference comes from an RNG seeded by (seed, index), so it is the same in every epoch
and every worker.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from faceregen.data.prepare import MANIFEST, MANIFEST_HEADER
from faceregen.errors import FaceregenError
from faceregen.images import to_float
from faceregen.labels import NUM_CLASSES, flip_permutation

SPLITS = ("train", "val", "test", "all")
REFERENCES = ("same", "random")
FLIP_PERMUTATION = flip_permutation().astype(np.uint8)


def read_manifest(root: Path) -> list[dict]:
    """Rows of ``root/manifest.csv`` with ``id`` as int and attributes as a float32 array."""
    path = root / MANIFEST
    if not root.is_dir():
        raise FaceregenError(f"{root}: prepared dataset folder not found")
    if not path.exists():
        raise FaceregenError(f"{path}: missing; is {root} a prepared dataset "
                             "(faceregen data prepare ...)?")
    rows = []
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header != MANIFEST_HEADER:
            raise FaceregenError(f"{path}:1: not a faceregen manifest header")
        for number, fields in enumerate(reader, start=2):
            try:
                if len(fields) != len(MANIFEST_HEADER):
                    raise ValueError(f"expected {len(MANIFEST_HEADER)} fields")
                values = np.array([int(v) for v in fields[4:]], dtype=np.float32)
                if not np.isin(values, (-1, 1)).all():
                    raise ValueError("attributes must be -1 or 1")
                rows.append({"id": int(fields[0]), "split": fields[1], "image": fields[2],
                             "label": fields[3], "attributes": (values + 1) / 2})
            except ValueError as exc:
                raise FaceregenError(f"{path}:{number}: malformed row ({exc})") from None
    return rows


class FaceDataset(Dataset):
    """Items: label map, photo, a reference photo with its label map, attributes, ids.

    ``reference="same"`` uses the item itself, with the same flip and crop, as its reference
    (reconstruction training). ``reference="random"`` pairs another face of the split, which
    gets its own independent flip and crop.
    Flipping mirrors photo and label together and swaps the l/r eye, brow and ear classes.

    An item is addressed by its position, or by ``(position, augment_seed)``: the seed then
    decides the flip and crop, so that the same key gives the same sample in any worker
    process (the trainer's loader keys each sample by epoch and place, which makes resuming
    exact with worker processes too). A plain position draws from torch's global generator.

    Photos are float in [-1, 1] and label maps int64; ``raw=True`` keeps both as the uint8
    they are stored as, a quarter and an eighth of the bytes that loader workers hand over and
    that travel to the GPU. The trainer reads raw items and converts on the device with
    `faceregen.images.to_float`.
    """

    def __init__(self, root: str | os.PathLike, split: str, *, flip: bool = False,
                 crop: bool = False, crop_scale: tuple[float, float] = (0.8, 1.0),
                 reference: str = "same", seed: int = 0, raw: bool = False):
        if split not in SPLITS:
            raise FaceregenError(f"split must be one of {SPLITS}, got '{split}'")
        if reference not in REFERENCES:
            raise FaceregenError(f"reference must be one of {REFERENCES}, got '{reference}'")
        low, high = crop_scale
        if not 0 < low <= high <= 1:
            raise FaceregenError(f"crop_scale must satisfy 0 < low <= high <= 1, got {crop_scale}")
        self.root = Path(root)
        rows = read_manifest(self.root)
        self.rows = [row for row in rows if split == "all" or row["split"] == split]
        if not self.rows:
            raise FaceregenError(f"{self.root / MANIFEST}: no faces in split '{split}'")
        self.split = split
        self.flip = flip
        self.crop = crop
        self.crop_scale = (float(low), float(high))
        self.reference = reference
        self.seed = seed
        self.raw = raw

    def __len__(self) -> int:
        return len(self.rows)

    def load(self, position: int) -> tuple[Image.Image, Image.Image]:
        row = self.rows[position]
        image_path, label_path = self.root / row["image"], self.root / row["label"]
        try:
            with Image.open(image_path) as img:
                image = img.convert("RGB")
            with Image.open(label_path) as img:
                label = img.copy() if img.mode == "L" else img.convert("L")
        except (OSError, ValueError) as exc:
            raise FaceregenError(f"cannot read prepared face {row['id']} ({exc})") from None
        if image.size != label.size:
            raise FaceregenError(f"{label_path}: size {label.size} differs from {image_path} "
                                 f"{image.size}")
        return image, label

    def augment(self, image: Image.Image, label: Image.Image,
                generator: torch.Generator | None = None):
        """Random resized crop (same box for photo and label) and horizontal flip."""

        def uniform() -> float:
            return float(torch.rand((), generator=generator))

        width, height = image.size
        if self.crop:
            scale = self.crop_scale[0] + uniform() * (self.crop_scale[1] - self.crop_scale[0])
            side_w, side_h = width * scale**0.5, height * scale**0.5
            left = uniform() * (width - side_w)
            top = uniform() * (height - side_h)
            box = (left, top, left + side_w, top + side_h)
            image = image.resize((width, height), Image.BICUBIC, box=box)
            label = label.resize((width, height), Image.NEAREST, box=box)
        image_array = np.array(image)  # writable copies: torch.from_numpy wants them
        label_array = np.array(label)
        if self.flip and uniform() < 0.5:
            image_array = image_array[:, ::-1]
            label_array = FLIP_PERMUTATION[label_array[:, ::-1]]
        return image_array, label_array

    def tensors(self, position: int, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.augment(*self.load(position), generator=generator)
        if label.max() >= NUM_CLASSES:
            raise FaceregenError(f"{self.root / self.rows[position]['label']}: label value "
                                 f"{int(label.max())} is not a class (0..{NUM_CLASSES - 1})")
        image_tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        label_tensor = torch.from_numpy(np.ascontiguousarray(label, dtype=np.uint8))
        if self.raw:
            return image_tensor, label_tensor
        return to_float(image_tensor), label_tensor.long()

    def reference_position(self, position: int) -> int:
        if self.reference == "same" or len(self.rows) == 1:
            return position
        rng = np.random.default_rng([self.seed, self.rows[position]["id"]])
        other = int(rng.integers(len(self.rows) - 1))
        return other + (other >= position)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        position, generator = key, None
        if isinstance(key, tuple):
            position, augment_seed = key
            generator = torch.Generator().manual_seed(int(augment_seed))
        image, label = self.tensors(position, generator)
        ref_position = self.reference_position(position)
        if ref_position == position:
            ref_image, ref_label = image, label
        else:
            ref_image, ref_label = self.tensors(ref_position, generator)
        return {
            "label": label,
            "image": image,
            "ref_image": ref_image,
            "ref_label": ref_label,
            "attributes": torch.from_numpy(self.rows[position]["attributes"]),
            "index": self.rows[position]["id"],
            "ref_index": self.rows[ref_position]["id"],
        }
