"""Generation on in-memory arrays: fit to the model, run a batch, bring results back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from faceregen.errors import FaceregenError
from faceregen.images import from_hwc, to_hwc
from faceregen.regen.inputs import (
    Placement,
    check_same_aspect,
    fit_label,
    fit_photo,
    placement_for,
    restore_photo,
)
from faceregen.regen.model import Regenerator


@dataclass
class PreparedPair:
    """One mask (and reference) brought to the model's size, ready to be batched."""

    label: np.ndarray
    placement: Placement
    ref_image: np.ndarray | None
    ref_label: np.ndarray | None


def prepare_pair(mask: np.ndarray, ref_image: np.ndarray | None, ref_mask: np.ndarray | None,
                 size: int, ref_name: str = "the reference",
                 ref_mask_name: str = "the reference mask") -> PreparedPair:
    """Letterbox a mask, a reference photo and the reference's mask to size×size."""
    placement = placement_for(mask.shape[0], mask.shape[1], size)
    fitted_ref = fitted_ref_label = None
    if ref_image is not None:
        if ref_mask is None:
            raise FaceregenError(f"{ref_name}: no label map for the reference")
        check_same_aspect(ref_image.shape, ref_mask.shape, ref_name, ref_mask_name)
        ref_placement = placement_for(ref_image.shape[0], ref_image.shape[1], size)
        fitted_ref = fit_photo(ref_image, ref_placement)
        fitted_ref_label = fit_label(ref_mask, ref_placement)
    return PreparedPair(fit_label(mask, placement), placement, fitted_ref, fitted_ref_label)


def generate_prepared(regenerator: Regenerator,
                      pairs: Sequence[PreparedPair]) -> list[np.ndarray]:
    """Run one batch through the model; each result is uint8 at its mask's original size."""
    labels = torch.from_numpy(np.stack([pair.label for pair in pairs])).long()
    ref_images = ref_labels = None
    if regenerator.style_encoder is not None:
        if any(pair.ref_image is None for pair in pairs):
            raise FaceregenError("this model transfers a reference's appearance: give --ref")
        ref_images = from_hwc(np.stack([pair.ref_image for pair in pairs]))
        ref_labels = torch.from_numpy(np.stack([pair.ref_label for pair in pairs])).long()
    generated = to_hwc(regenerator(labels, ref_images, ref_labels))
    return [restore_photo(image, pair.placement) for image, pair in zip(generated, pairs)]


def regenerate_arrays(regenerator: Regenerator, mask: np.ndarray,
                      ref_image: np.ndarray | None = None,
                      ref_mask: np.ndarray | None = None) -> np.ndarray:
    """The whole regeneration of one face on in-memory arrays (what bench.py times).

    mask, ref_mask: uint8 H×W labels; ref_image: uint8 H×W×3. Returns uint8 H×W×3 at the
    mask's size. Returning a numpy array makes the call synchronous on a GPU as well.
    """
    return generate_prepared(regenerator, [prepare_pair(mask, ref_image, ref_mask,
                                                        regenerator.size)])[0]
