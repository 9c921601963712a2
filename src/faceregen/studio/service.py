"""The studio's work on one request: decode uploads within limits, edit, regenerate.

The model is loaded once. Requests run one at a time under a lock: a torch model on a CPU or
one GPU gains nothing from racing requests, and serialising them bounds memory to one
request's images (and a few references, kept with their style while the user paints).
Uploads are data: they are decoded by Pillow's own decoders for the common photo formats only
(:data:`faceregen.regen.inputs.UPLOAD_FORMATS`), after their header has shown a size within
the pixel limit, and nothing from a request is used as a path.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from faceregen.errors import FaceregenError
from faceregen.labels import LABEL_NAMES, PALETTE
from faceregen.regen.editing import edit_label, parse_parts
from faceregen.regen.generate import (
    fit_reference,
    generate_prepared,
    prepare_pair,
    reference_style,
)
from faceregen.regen.inputs import UPLOAD_FORMATS, label_map_from_bytes, photo_from_bytes
from faceregen.regen.jobs import compare_image
from faceregen.regen.model import Regenerator
from faceregen.regen.references import ReferenceMasks
from faceregen.regen.regions import parse_region_names, supports_regions
from faceregen.studio.gallery import Gallery, load_gallery

DEFAULT_MAX_UPLOAD_BYTES = 32 * 1024 * 1024  # one request, all files together
DEFAULT_MAX_PIXELS = 4096 * 4096  # one image
REFERENCE_CACHE_SIZE = 8  # references kept decoded, with their style, by upload content
MAX_REGION_REFERENCES = 3  # region_ref_1 .. region_ref_3 (a regional model only)


class StudioError(FaceregenError):
    """A request the studio refuses: ``status`` is the HTTP status, the message says why."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """Per-request input limits: bytes of the whole upload, pixels of each image."""

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass
class Reference:
    """A decoded reference photo, its label map and its style vector (None: the baseline),
    with the classes its fitted label map shows (what a region reference can give)."""

    image: np.ndarray
    label: np.ndarray
    style: torch.Tensor | None
    present: torch.Tensor | None = None


@dataclass(frozen=True)
class RegionUpload:
    """``region_ref_<i>_regions`` (e.g. "hair" or "skin,nose"), the photo ``region_ref_<i>``
    and its optional mask ``region_ref_<i>_mask``; ``field`` names it in errors."""

    field: str
    regions: str
    photo: bytes
    mask: bytes | None = None


@dataclass
class Uploads:
    """A regeneration request's files (bytes as uploaded) and fields."""

    mask: bytes
    ref: bytes | None = None
    ref_mask: bytes | None = None
    edit_from: bytes | None = None
    parts: str | None = None
    region_refs: tuple[RegionUpload, ...] = ()


def check_image_header(data: bytes, name: str, max_pixels: int) -> None:
    """Refuse what is not an image of an allowed format, or is too large, before decoding it."""
    if not data:
        raise StudioError(f"{name}: the upload is empty")
    try:
        with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as image:
            width, height = image.size
    except Image.DecompressionBombError as exc:  # Pillow's own, far larger, limit
        raise StudioError(f"{name}: more pixels than the studio's limit of {max_pixels} "
                          f"({exc})", status=413) from None
    except (OSError, ValueError, SyntaxError):
        raise StudioError(f"{name}: not an image in one of the formats "
                          f"{', '.join(UPLOAD_FORMATS)}") from None
    if width * height > max_pixels:
        raise StudioError(f"{name}: {width}x{height} is {width * height} pixels, more than the "
                          f"studio's limit of {max_pixels} pixels per image", status=413)


class Studio:
    """A loaded model with its gallery and reference parser, used by one request at a time."""

    def __init__(self, regenerator: Regenerator, checkpoint: Path | str,
                 parser_path: Path | None = None, limits: Limits | None = None,
                 gallery: Gallery | None = None, bf16: bool = False):
        self.regenerator = regenerator
        self.bf16 = bf16
        self.checkpoint = Path(checkpoint)
        self.limits = limits or Limits()
        self.reference_masks = ReferenceMasks(regenerator, parser_path, regenerator.device)
        if gallery is None:
            gallery = load_gallery(regenerator.config.data.get("root"))
        self.gallery = gallery
        self.lock = threading.Lock()
        self.references: OrderedDict[tuple, Reference] = OrderedDict()
        # The label map of the last regeneration, as decoded from the upload (before any
        # edit): tests compare it with what the page painted.
        self.last_mask: np.ndarray | None = None
        self.requests_served = 0

    @property
    def needs_reference(self) -> bool:
        return self.regenerator.style_encoder is not None

    def health(self) -> dict:
        config = self.regenerator.config
        return {
            "model": str(config.model.get("name", "unknown")),
            "checkpoint": self.checkpoint.name,
            "step": self.regenerator.step,
            "size": self.regenerator.size,
            "device": str(self.regenerator.device),
            "precision": "bf16" if self.bf16 else "fp32",
            "needs_reference": self.needs_reference,
            "supports_regions": supports_regions(self.regenerator),
            "max_region_references": MAX_REGION_REFERENCES,
            "parser": self.reference_masks.parser_path.is_file(),
            "classes": [{"id": index, "name": name, "color": "#" + bytes(colour).hex()}
                        for index, (name, colour) in enumerate(zip(LABEL_NAMES, PALETTE))],
            "limits": {"max_upload_bytes": self.limits.max_upload_bytes,
                       "max_pixels": self.limits.max_pixels},
            "gallery": {"count": len(self.gallery.faces), "message": self.gallery.message},
            "requests_served": self.requests_served,
        }

    def decode_mask(self, data: bytes, name: str) -> np.ndarray:
        """An index or colour mask upload as uint8 labels (the rules of `faceregen regen`)."""
        check_image_header(data, name, self.limits.max_pixels)
        return label_map_from_bytes(data, name)

    def decode_photo(self, data: bytes, name: str) -> np.ndarray:
        check_image_header(data, name, self.limits.max_pixels)
        return photo_from_bytes(data, name)

    def edit(self, label: np.ndarray, edit_from: bytes | None, parts: str | None) -> np.ndarray:
        """``--edit-from``/``--parts``: take the named parts of another mask (both or neither)."""
        if (edit_from is None) != (parts is None):
            raise StudioError("edit_from and parts go together: upload the other face's mask "
                              "as edit_from and name the parts, e.g. parts=mouth,u_lip,l_lip")
        if edit_from is None:
            return label
        part_ids = parse_parts(parts)
        return edit_label(label, self.decode_mask(edit_from, "edit_from"), part_ids)

    def reference_label(self, ref_image: np.ndarray) -> np.ndarray:
        """The reference's label map predicted by the face parser, as `regen` does it."""
        parser_path = self.reference_masks.parser_path
        if not parser_path.is_file():
            raise StudioError(
                f"ref_mask: no reference mask uploaded and no face parser at {parser_path} to "
                "predict it; upload the reference's mask as ref_mask, start the studio with "
                "--parser PATH, or train one with `faceregen evaluators train --kind parser "
                "--data <prepared data root>`", status=422)
        return self.reference_masks.predict(Path("ref"), ref_image)

    def mask(self, mask: bytes, edit_from: bytes | None = None,
             parts: str | None = None) -> np.ndarray:
        """A mask upload decoded (and edited): what the page paints on."""
        with self.lock:
            return self.edit(self.decode_mask(mask, "mask"), edit_from, parts)

    def parse(self, ref: bytes) -> np.ndarray:
        """The predicted label map of a reference photo upload, at the photo's size."""
        with self.lock:
            return self.reference_label(self.decode_photo(ref, "ref"))

    def autocast(self):
        """bfloat16 autocast when asked for (``--bf16``): about twice as fast on CPUs with
        bf16 instructions, at the price of visible rounding (docs/studio.md#speed)."""
        return torch.autocast(self.regenerator.device.type, dtype=torch.bfloat16,
                              enabled=self.bf16)

    def reference(self, ref: bytes | None, ref_mask: bytes | None, name: str = "ref"
                  ) -> Reference:
        """A reference photo, its label map (uploaded or predicted) and its style, computed once
        per distinct upload: while the user paints, every stroke sends the same reference."""
        if ref is None:
            raise StudioError("ref: this model transfers a reference's appearance; upload a "
                              "reference photo as ref")
        key = (hashlib.sha256(ref).digest(),
               hashlib.sha256(ref_mask).digest() if ref_mask is not None else None)
        if key in self.references:
            self.references.move_to_end(key)
            return self.references[key]
        image = self.decode_photo(ref, name)
        if ref_mask is not None:
            label = self.decode_mask(ref_mask, f"{name}_mask" if name != "ref" else "ref_mask")
        else:
            label = self.reference_label(image)
        mask_name = (f"{name}_mask" if name != "ref" else "ref_mask") if ref_mask is not None \
            else f"the predicted mask of {name}"
        with self.autocast():
            style = reference_style(self.regenerator, image, label, name, mask_name)
        present = None
        if supports_regions(self.regenerator):
            from faceregen.models import classes_present

            fitted = fit_reference(image, label, self.regenerator.size, name, mask_name)[1]
            present = classes_present(torch.from_numpy(fitted[None]).long(),
                                      self.regenerator.label_classes)
        self.references[key] = Reference(image, label, style, present)
        while len(self.references) > REFERENCE_CACHE_SIZE:
            self.references.popitem(last=False)
        return self.references[key]

    def regenerate(self, uploads: Uploads) -> tuple[np.ndarray, np.ndarray, Reference | None]:
        """The face for an upload set at the mask's size, the (edited) label map it was made
        from, and the reference (None for the pix2pixHD baseline, which uses none).

        The work is `faceregen regen`'s: `prepare_pair` and `generate_prepared`, with the
        reference's style from `reference_style` (the same computation, kept between strokes).
        """
        with self.lock:
            label = self.decode_mask(uploads.mask, "mask")
            self.last_mask = label
            label = self.edit(label, uploads.edit_from, uploads.parts)
            reference = None
            if self.needs_reference:
                reference = self.reference(uploads.ref, uploads.ref_mask)
            pair = prepare_pair(label, None, None, self.regenerator.size)
            style = reference.style if reference is not None else None
            if uploads.region_refs:
                style = self.mix_regions(style, uploads.region_refs)
            with self.autocast():
                face = generate_prepared(self.regenerator, [pair], style)[0]
            self.requests_served += 1
            return face, label, reference

    def mix_regions(self, style: torch.Tensor | None, uploads: tuple[RegionUpload, ...]
                    ) -> torch.Tensor:
        """The main reference's per-region styles with each region upload's classes taken
        from that photo (`faceregen regen --region-ref`); a global model refuses them."""
        from faceregen.models import mix_region_styles

        first = uploads[0].field
        if not supports_regions(self.regenerator):
            raise StudioError(
                f"{first}: model '{self.regenerator.config.model.get('name', 'unknown')}' has "
                "one style per reference; per-region references need a model trained with "
                "model=style_regional")
        if len(uploads) > MAX_REGION_REFERENCES:
            raise StudioError(f"{first}: at most {MAX_REGION_REFERENCES} region references")
        taken: dict[int, str] = {}
        for upload in uploads:
            classes = parse_region_names(upload.regions, f"{upload.field}_regions")
            for k in classes:
                if k in taken:
                    raise StudioError(f"{upload.field}_regions: region {LABEL_NAMES[k]} is "
                                      f"already taken from {taken[k]}")
                taken[k] = upload.field
            donor = self.reference(upload.photo, upload.mask, upload.field)
            style = mix_region_styles(style, donor.style, classes, donor.present)
        return style

    def compare(self, uploads: Uploads) -> np.ndarray:
        """colour mask | reference | face, as `regen --compare` writes it."""
        face, label, reference = self.regenerate(uploads)
        return compare_image(label, reference.image if reference is not None else None, face)
