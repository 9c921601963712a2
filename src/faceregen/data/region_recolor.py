"""Region recolouring: the training augmentation of the regional style model.

With probability ``probability`` per region, a training face's region (its hair, say) takes the
colour statistics of the same region of another face of the split: per RGB channel, the region's
pixels are shifted and scaled to the donor region's mean and standard deviation, which keeps the
shading and texture and changes the colour. The reference photo gets the same change (the very
same pixels when the face is its own reference), so the pair stays consistent: the region's
colour in the target can only come from the same region of the reference. That is the
situation of mixing references per region at test time, which plain reconstruction pairs never
show when a face's colours go together (on real photos hair, brows and skin tones correlate).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from faceregen.data.dataset import FaceDataset
from faceregen.errors import FaceregenError
from faceregen.labels import LABEL_NAMES

MAX_SCALE = 3.0  # a flat region (std near 0) is not stretched to a noisy donor's std beyond this


def region_ids(names: Sequence[str]) -> list[int]:
    unknown = [name for name in names if name not in LABEL_NAMES]
    if unknown:
        raise FaceregenError(f"data.region_recolor_regions: unknown region(s) "
                             f"{', '.join(unknown)}; valid names: {', '.join(LABEL_NAMES)}")
    return [LABEL_NAMES.index(name) for name in names]


def channel_statistics(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per channel of [N, 3] pixels on the 0..255 scale."""
    return pixels.mean(axis=0), pixels.std(axis=0)


def recolor_region(image: torch.Tensor, label: torch.Tensor, region: int,
                   target_mean: np.ndarray, target_std: np.ndarray) -> torch.Tensor:
    """``image`` ([3, H, W], uint8 or float in [-1, 1]) with the pixels of class ``region`` in
    ``label`` moved to the given channel statistics (0..255 scale); unchanged without any."""
    mask = (label == region).numpy()
    if not mask.any():
        return image
    scale255 = image.dtype != torch.uint8
    values = image.numpy().astype(np.float32)
    if scale255:
        values = (values + 1) * 127.5
    pixels = values[:, mask].T                                             # [N, 3]
    mean, std = channel_statistics(pixels)
    gain = np.minimum(target_std / np.maximum(std, 1.0), MAX_SCALE)
    values[:, mask] = np.clip((pixels - mean) * gain + target_mean, 0, 255).T
    if scale255:
        return torch.from_numpy(values / 127.5 - 1).to(image.dtype)
    return torch.from_numpy(np.rint(values).astype(np.uint8))


class RegionRecolor(Dataset):
    """A :class:`FaceDataset` whose items have regions recoloured after other faces' regions.

    Draws come from (``seed``, the item's augment seed) for keyed items, so a resumed run
    recolours the same way; a plain position draws from torch's global generator, as the
    dataset's own augmentation does.
    """

    def __init__(self, faces: FaceDataset, probability: float, regions: Sequence[str],
                 seed: int):
        if not 0 <= probability <= 1:
            raise FaceregenError(f"data.region_recolor={probability}: must be in [0, 1]")
        self.faces = faces
        self.probability = float(probability)
        self.regions = region_ids(regions)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.faces)

    def donor_statistics(self, position: int, region: int
                         ) -> tuple[np.ndarray, np.ndarray] | None:
        image, label = self.faces.load(position)
        mask = np.asarray(label) == region
        if not mask.any():
            return None
        return channel_statistics(np.asarray(image, dtype=np.float32)[mask])

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        item = self.faces[key]
        if isinstance(key, tuple):
            position, augment_seed = key
            rng = np.random.default_rng([self.seed, int(augment_seed) % 2**63])
        else:
            position = key
            rng = np.random.default_rng(int(torch.randint(2**62, ())))
        if len(self.faces) < 2:
            return item
        own_reference = item["ref_image"] is item["image"]
        image, ref_image = item["image"], item["ref_image"]
        for region in self.regions:
            if rng.random() >= self.probability:
                continue
            donor = int(rng.integers(len(self.faces) - 1))
            donor += donor >= position
            statistics = self.donor_statistics(donor, region)
            if statistics is None:
                continue
            image = recolor_region(image, item["label"], region, *statistics)
            if not own_reference:
                ref_image = recolor_region(ref_image, item["ref_label"], region, *statistics)
        return {**item, "image": image, "ref_image": image if own_reference else ref_image}
