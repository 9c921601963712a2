"""Generation on in-memory arrays: fit to the model, run a batch, bring results back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

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
from faceregen.regen.regions import PreparedRegionReference, mixed_styles


@dataclass
class PreparedPair:
    """One mask (and reference) brought to the model's size, ready to be batched."""

    label: np.ndarray
    placement: Placement
    ref_image: np.ndarray | None
    ref_label: np.ndarray | None
    # classes whose style comes from another photo (a regional model only; see regen.regions)
    region_references: list[PreparedRegionReference] = field(default_factory=list)


def fit_reference(ref_image: np.ndarray, ref_mask: np.ndarray | None, size: int,
                  ref_name: str = "the reference",
                  ref_mask_name: str = "the reference mask") -> tuple[np.ndarray, np.ndarray]:
    """Letterbox a reference photo and its mask (which must overlay it) to size×size."""
    if ref_mask is None:
        raise FaceregenError(f"{ref_name}: no label map for the reference")
    check_same_aspect(ref_image.shape, ref_mask.shape, ref_name, ref_mask_name)
    ref_placement = placement_for(ref_image.shape[0], ref_image.shape[1], size)
    return fit_photo(ref_image, ref_placement), fit_label(ref_mask, ref_placement)


def prepare_pair(mask: np.ndarray, ref_image: np.ndarray | None, ref_mask: np.ndarray | None,
                 size: int, ref_name: str = "the reference",
                 ref_mask_name: str = "the reference mask") -> PreparedPair:
    """Letterbox a mask, a reference photo and the reference's mask to size×size."""
    placement = placement_for(mask.shape[0], mask.shape[1], size)
    fitted_ref = fitted_ref_label = None
    if ref_image is not None:
        fitted_ref, fitted_ref_label = fit_reference(ref_image, ref_mask, size, ref_name,
                                                     ref_mask_name)
    return PreparedPair(fit_label(mask, placement), placement, fitted_ref, fitted_ref_label)


def fit_region_reference(classes: Sequence[int], image: np.ndarray, mask: np.ndarray | None,
                         size: int, name: str, mask_name: str) -> PreparedRegionReference:
    """A region reference's photo and label map letterboxed to size×size."""
    fitted_image, fitted_label = fit_reference(image, mask, size, name, mask_name)
    return PreparedRegionReference(tuple(classes), fitted_image, fitted_label)


def reference_style(regenerator: Regenerator, ref_image: np.ndarray, ref_mask: np.ndarray,
                    ref_name: str = "the reference",
                    ref_mask_name: str = "the reference mask") -> torch.Tensor | None:
    """A reference's style [1,P], fitted as `prepare_pair` fits it, for `generate_prepared`'s
    ``style``: the studio computes it once per reference instead of once per stroke."""
    fitted_ref, fitted_ref_label = fit_reference(ref_image, ref_mask, regenerator.size,
                                                 ref_name, ref_mask_name)
    return regenerator.encode_style(from_hwc(fitted_ref[None]),
                                    torch.from_numpy(fitted_ref_label[None]).long())


def generate_prepared(regenerator: Regenerator, pairs: Sequence[PreparedPair],
                      style: torch.Tensor | None = None) -> list[np.ndarray]:
    """Run one batch through the model; each result is uint8 at its mask's original size.

    ``style`` (one reference's, from `reference_style`) stands in for the pairs' references.
    Pairs with region references (a regional model) get their main reference's per-region
    styles with the region references' classes mixed in.
    """
    labels = torch.from_numpy(np.stack([pair.label for pair in pairs])).long()
    if style is None and any(pair.region_references for pair in pairs):
        if any(pair.ref_image is None for pair in pairs):
            raise FaceregenError("region references need a main reference too: give --ref")
        style = mixed_styles(regenerator, from_hwc(np.stack([pair.ref_image for pair in pairs])),
                             torch.from_numpy(np.stack([pair.ref_label for pair in pairs])).long(),
                             [pair.region_references for pair in pairs])
    if style is not None:
        generated = regenerator(labels, style=style.expand(len(pairs), *style.shape[1:]))
    else:
        ref_images = ref_labels = None
        if regenerator.style_encoder is not None:
            if any(pair.ref_image is None for pair in pairs):
                raise FaceregenError("this model transfers a reference's appearance: give --ref")
            ref_images = from_hwc(np.stack([pair.ref_image for pair in pairs]))
            ref_labels = torch.from_numpy(np.stack([pair.ref_label for pair in pairs])).long()
        generated = regenerator(labels, ref_images, ref_labels)
    return [restore_photo(image, pair.placement) for image, pair in zip(to_hwc(generated), pairs)]


def regenerate_arrays(regenerator: Regenerator, mask: np.ndarray,
                      ref_image: np.ndarray | None = None,
                      ref_mask: np.ndarray | None = None) -> np.ndarray:
    """The whole regeneration of one face on in-memory arrays (what bench.py times).

    mask, ref_mask: uint8 H×W labels; ref_image: uint8 H×W×3. Returns uint8 H×W×3 at the
    mask's size. Returning a numpy array makes the call synchronous on a GPU as well.
    """
    return generate_prepared(regenerator, [prepare_pair(mask, ref_image, ref_mask,
                                                        regenerator.size)])[0]
