"""Reference label maps predicted by the face parser, for a reference photo given without one.

The parser is the one `faceregen eval` trains on the checkpoint's prepared dataset, so it knows
the faces the model was trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from faceregen.errors import FaceregenError
from faceregen.images import from_hwc
from faceregen.regen.inputs import fit_photo, placement_for
from faceregen.regen.model import Regenerator


def default_parser_path(regenerator: Regenerator) -> Path:
    """The parser `faceregen eval` trains for the checkpoint's prepared dataset."""
    from faceregen.evaluation.evaluators import default_evaluator_path

    return default_evaluator_path(str(regenerator.config.data.root), "parser")


def parse_photo(parser, photo: np.ndarray) -> np.ndarray:
    """Predict a uint8 H×W label map for a uint8 H×W×3 photo, letterboxed like the model input."""
    placement = placement_for(photo.shape[0], photo.shape[1], parser.image_size)
    fitted = from_hwc(fit_photo(photo, placement))[None]
    device = next(parser.network.parameters()).device
    with torch.no_grad():
        logits = parser.network(fitted.to(device))
    label = logits.argmax(1)[0].to(torch.uint8).cpu().numpy()
    inner = label[placement.top:placement.top + placement.inner_height,
                  placement.left:placement.left + placement.inner_width]
    return np.asarray(Image.fromarray(np.ascontiguousarray(inner)).resize(
        (photo.shape[1], photo.shape[0]), Image.Resampling.NEAREST))


def load_reference_parser(path: Path, device) -> Callable[[np.ndarray], np.ndarray]:
    """A function photo (uint8 H×W×3) -> labels (uint8 H×W) backed by the trained face parser."""
    from faceregen.evaluation.evaluators import load_evaluator

    parser = load_evaluator(path, "parser", device)
    return lambda photo: parse_photo(parser, photo)


class ReferenceMasks:
    """Predicts reference label maps with the trained face parser, loaded on first need."""

    def __init__(self, regenerator: Regenerator, parser_path: Path | None, device):
        self.parser_path = parser_path or default_parser_path(regenerator)
        self.device = device
        self.parse: Callable[[np.ndarray], np.ndarray] | None = None

    def predict(self, ref_path: Path, ref_image: np.ndarray) -> np.ndarray:
        if self.parse is None:
            if not self.parser_path.is_file():
                raise FaceregenError(
                    f"{ref_path}: no --ref-mask given and no face parser at {self.parser_path} "
                    "to predict it; give --ref-mask, pass --parser, or train one with "
                    "`faceregen evaluators train --kind parser --data <prepared data root>`")
            self.parse = load_reference_parser(self.parser_path, self.device)
        return self.parse(ref_image)
