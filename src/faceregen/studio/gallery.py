"""A small gallery of the checkpoint's own dataset faces, read once at start-up.

The faces come from the prepared dataset named by the checkpoint's ``data.root`` (manifest.csv,
images/, labels/). They are decoded with the same readers as uploads and held in memory, so a
request never names a file: it names a face id, which must be one of the gallery's.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from faceregen.errors import FaceregenError

DEFAULT_GALLERY_SIZE = 12
SPLIT_PREFERENCE = ("test", "val", "train")  # unseen faces first; small sets may have no test


def encode_png(image: np.ndarray, compress_level: int = 1) -> bytes:
    """uint8 H×W (an index map, mode L) or H×W×3 as PNG bytes; level 1 is fast and lossless."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG",
                                                      compress_level=compress_level)
    return buffer.getvalue()


@dataclass
class GalleryFace:
    """One dataset face: its photo and label map, decoded, and both as PNG for the page."""

    face_id: int
    split: str
    photo: np.ndarray
    label: np.ndarray
    photo_png: bytes
    label_png: bytes


@dataclass
class Gallery:
    """Faces by id, in display order, and a line for the page when there are none."""

    faces: dict[int, GalleryFace]
    message: str

    def get(self, face_id: int) -> GalleryFace:
        if face_id not in self.faces:
            raise KeyError(face_id)
        return self.faces[face_id]


def load_gallery(root: str | Path | None, count: int = DEFAULT_GALLERY_SIZE) -> Gallery:
    """The first ``count`` faces of ``root`` (test split first); empty with a reason if absent.

    A missing or unreadable dataset is not an error: the studio works on uploads alone.
    """
    from faceregen.data.dataset import read_manifest
    from faceregen.regen.inputs import read_label_map, read_photo

    if count <= 0:
        return Gallery({}, "the gallery is switched off (--gallery 0)")
    if root is None:
        return Gallery({}, "no gallery: the checkpoint's config names no dataset (data.root)")
    root = Path(root)
    if not (root / "manifest.csv").is_file():
        return Gallery({}, f"no gallery: the checkpoint's dataset {root} is not on this "
                           "machine; upload a reference photo and a mask instead")
    try:
        rows = read_manifest(root)
        order = {split: rank for rank, split in enumerate(SPLIT_PREFERENCE)}
        rows = sorted(rows, key=lambda row: (order.get(row["split"], len(order)), row["id"]))
        faces = {}
        for row in rows[:count]:
            photo = read_photo(root / row["image"])
            label = read_label_map(root / row["label"])
            faces[row["id"]] = GalleryFace(row["id"], row["split"], photo, label,
                                           encode_png(photo), encode_png(label))
    except FaceregenError as exc:
        return Gallery({}, f"no gallery: {exc}")
    if not faces:
        return Gallery({}, f"no gallery: {root / 'manifest.csv'} lists no faces")
    return Gallery(faces, f"{len(faces)} faces of {root}")
