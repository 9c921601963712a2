"""Per-region references: `--region-ref REGIONS=IMAGE[:MASK]` and the styles they give.

A regional model (model=style_regional) keeps one style per label class of a reference. A
region reference replaces the styles of the named classes by those of another photo, so that
the hair can come from one face and the skin from another; classes that photo does not show
keep the main reference's style. A global model has one style per reference and refuses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faceregen.errors import FaceregenError
from faceregen.labels import LABEL_NAMES

FORMAT = "REGIONS=IMAGE[:MASK]"


@dataclass(frozen=True)
class RegionReference:
    """Classes whose style comes from ``image`` (with its label map ``mask``, predicted by the
    face parser when None); ``text`` is how the user wrote it, for messages."""

    classes: tuple[int, ...]
    image: Path
    mask: Path | None
    text: str


@dataclass
class PreparedRegionReference:
    """A region reference read and fitted to the model's size."""

    classes: tuple[int, ...]
    image: np.ndarray
    label: np.ndarray


def parse_region_names(text: str, where: str) -> tuple[int, ...]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise FaceregenError(f"{where}: no region named before '='; name one or more of: "
                             + ", ".join(LABEL_NAMES))
    unknown = [name for name in names if name not in LABEL_NAMES]
    if unknown:
        raise FaceregenError(f"{where}: unknown region name(s) {', '.join(unknown)}; valid "
                             f"names: {', '.join(LABEL_NAMES)}")
    return tuple(sorted({LABEL_NAMES.index(name) for name in names}))


def parse_region_reference(text: str, base: Path | None = None,
                           where: str = "--region-ref") -> RegionReference:
    """``"skin,nose=c.jpg:c_mask.png"`` -> a RegionReference; paths relative to ``base``.

    The last ':' separates the mask unless the whole text after '=' names an existing file (a
    path that itself holds a ':').
    """
    where = f"{where} {text}"
    regions, equals, paths = text.partition("=")
    if not equals or not paths.strip():
        raise FaceregenError(f"{where}: expected {FORMAT}, e.g. hair=b.jpg or "
                             "skin,nose=c.jpg:c_mask.png")
    classes = parse_region_names(regions, where)
    paths = paths.strip()
    root = base or Path()
    image, mask = paths, ""
    if ":" in paths and not (root / paths).is_file():
        image, _, mask = paths.rpartition(":")
    if not image:
        raise FaceregenError(f"{where}: no image path after '='")
    return RegionReference(classes, root / image, root / mask if mask else None, text)


def check_disjoint(references: Sequence[RegionReference]) -> None:
    """Each class may come from one region reference only."""
    seen: dict[int, str] = {}
    for reference in references:
        for k in reference.classes:
            if k in seen:
                raise FaceregenError(f"--region-ref {reference.text}: region {LABEL_NAMES[k]} "
                                     f"is already taken from {seen[k]}")
            seen[k] = reference.text


def supports_regions(regenerator) -> bool:
    return bool(getattr(regenerator.style_encoder, "regional", False))


def require_regional(regenerator, checkpoint: str | Path | None) -> None:
    """Refuse region references for a model without per-region styles."""
    if not supports_regions(regenerator):
        name = regenerator.config.model.get("name", "unknown")
        raise FaceregenError(
            f"--region-ref: {checkpoint or 'the checkpoint'} is model '{name}', which has one "
            "style per reference; per-region references need a model trained with "
            "model=style_regional")


@torch.no_grad()
def with_donor_regions(regenerator, style: torch.Tensor, donor_images: torch.Tensor,
                       donor_labels: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """Per-region styles ``style`` [B, 1 + K, P] with the rows of ``classes`` taken from the
    donor references (one per sample) wherever a donor shows that class."""
    from faceregen.models import classes_present, mix_region_styles

    donor = regenerator.encode_style(donor_images, donor_labels)
    present = classes_present(donor_labels, regenerator.label_classes)
    return mix_region_styles(style, donor, classes, present)


@torch.no_grad()
def mixed_styles(regenerator, ref_images: torch.Tensor, ref_labels: torch.Tensor,
                 region_references: Sequence[Sequence[PreparedRegionReference]]) -> torch.Tensor:
    """Per-region styles [B, 1 + K, P] of the main references with the region references'
    classes mixed in (``region_references[i]`` for sample i).

    Each region reference is encoded on its own, as the studio encodes an upload: a batch of
    several takes other convolution paths, whose rounding would make the two differ.
    """
    from faceregen.images import from_hwc

    styles = regenerator.encode_style(ref_images, ref_labels)
    for i, references in enumerate(region_references):
        for reference in references:
            styles[i:i + 1] = with_donor_regions(
                regenerator, styles[i:i + 1], from_hwc(reference.image[None]),
                torch.from_numpy(reference.label[None]).long(), reference.classes)
    return styles
