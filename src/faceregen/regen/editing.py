"""Mask editing: take named parts from another label map (the report's editing experiment)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from faceregen.errors import FaceregenError
from faceregen.labels import LABEL_NAMES
from faceregen.regen.inputs import check_same_aspect


def parse_parts(text: str) -> list[int]:
    """``"mouth,u_lip,l_lip"`` -> label ids; an unknown name lists the valid ones."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise FaceregenError("--parts is empty; name one or more of: " + ", ".join(LABEL_NAMES))
    unknown = [name for name in names if name not in LABEL_NAMES]
    if unknown:
        raise FaceregenError(
            f"unknown part name(s) {', '.join(unknown)}; valid names: {', '.join(LABEL_NAMES)}")
    return sorted({LABEL_NAMES.index(name) for name in names})


def edit_label(label: np.ndarray, other: np.ndarray, part_ids: Sequence[int]) -> np.ndarray:
    """Copy the named parts of ``other`` into ``label`` (the report's mask-editing experiment).

    Two steps: remove the named parts from ``label`` (each of their pixels takes the label of
    the nearest pixel that is none of the named parts, usually skin), then paste every pixel of
    ``other`` that is a named part. ``other`` is resized (nearest) to ``label``'s size.
    """
    from scipy import ndimage

    label = np.asarray(label, dtype=np.uint8)
    other = np.asarray(other, dtype=np.uint8)
    if other.shape != label.shape:
        check_same_aspect(label.shape, other.shape, "the mask", "the --edit-from mask")
        other = np.asarray(Image.fromarray(other).resize((label.shape[1], label.shape[0]),
                                                         Image.Resampling.NEAREST))
    part_ids = list(part_ids)
    edited = label.copy()
    removed = np.isin(label, part_ids)
    if removed.all():
        edited[:] = 0
    elif removed.any():
        _, (rows, cols) = ndimage.distance_transform_edt(removed, return_indices=True)
        edited[removed] = label[rows[removed], cols[removed]]
    pasted = np.isin(other, part_ids)
    edited[pasted] = other[pasted]
    return edited
