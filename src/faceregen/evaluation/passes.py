"""The passes over a test split: pairing faces with references, generating, scoring.

Reconstruction pairs face k with itself; mask swap pairs label j with reference perm[j], a
seeded derangement, so that no face is its own reference; region mixing keeps mask swap's
pairs and gives each of hair, skin and cloth a reference of its own (seeded), which a regional
model uses for those regions and a global model ignores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from faceregen.errors import FaceregenError
from faceregen.evaluation import metrics
from faceregen.evaluation.evaluators import Evaluator
from faceregen.evaluation.scoring import (
    COLOR_REGION_CLASSES,
    MIXED_REGION_ATTRIBUTES,
    MIXED_REGIONS,
    AttributeGroups,
    ProtocolAccumulator,
    mixed_reference_colors,
)
from faceregen.evaluation.statistics import (
    FeatureSpace,
    RealStatistics,
    load_cached_stats,
    save_stats,
    statistics_of,
    stats_path,
)
from faceregen.evaluation.train_evaluators import attribute_indices
from faceregen.images import to_unit_range
from faceregen.labels import LABEL_NAMES


def swap_pairing(n: int, seed: int) -> list[int]:
    """A uniformly drawn derangement of range(n) from ``seed``: reference index per label index.

    Rejection sampling of permutations (about e tries); no face is paired with itself.
    """
    if n < 2:
        raise FaceregenError(f"mask swap needs at least 2 test images, got {n}")
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm.tolist()


def region_mixing_pairing(references: list[int], seed: int) -> dict[str, list[int]]:
    """For every label j, one reference per MIXED_REGIONS entry: faces other than j and its
    global reference ``references[j]``, drawn with numpy ``default_rng(seed)``, different from
    each other when the split has enough faces (n >= 5)."""
    n = len(references)
    if n < 3:
        raise FaceregenError(f"region mixing needs at least 3 test images, got {n}")
    rng = np.random.default_rng(seed)
    chosen: dict[str, list[int]] = {name: [] for name in MIXED_REGIONS}
    for j, ref in enumerate(references):
        others = [k for k in range(n) if k not in (j, ref)]
        draws = rng.choice(others, size=len(MIXED_REGIONS), replace=len(others) < len(chosen))
        for name, k in zip(chosen, draws.tolist()):
            chosen[name].append(int(k))
    return chosen


class ProtocolPairs(Dataset):
    """Item i: label map, photo and attributes of face i with the reference face refs[i] (and,
    for region mixing, ``<region>_image``, ``_label``, ``_attributes`` of each region's own
    reference ``region_references[region][i]``)."""

    def __init__(self, faces: Dataset, references: list[int],
                 region_references: dict[str, list[int]] | None = None):
        self.faces = faces
        self.references = references
        self.region_references = region_references or {}

    def __len__(self) -> int:
        return len(self.references)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        face = self.faces[i]
        ref = face if self.references[i] == i else self.faces[self.references[i]]
        item = {"label": face["label"], "target": face["image"],
                "label_attributes": face["attributes"], "ref_image": ref["image"],
                "ref_label": ref["label"], "ref_attributes": ref["attributes"]}
        for name, indices in self.region_references.items():
            region_ref = self.faces[indices[i]]
            item.update({f"{name}_image": region_ref["image"], f"{name}_label": region_ref["label"],
                         f"{name}_attributes": region_ref["attributes"]})
        return item


@dataclass
class EvalContext:
    evaluators: dict[str, Evaluator]
    groups: AttributeGroups
    spaces: list[FeatureSpace]
    device: torch.device
    batch_size: int
    num_workers: int
    num_examples: int
    progress: bool


def loader_for(dataset: Dataset, ctx: EvalContext) -> DataLoader:
    return DataLoader(dataset, batch_size=ctx.batch_size, num_workers=ctx.num_workers)


@torch.no_grad()
def real_pass(faces: Dataset, ctx: EvalContext, description: str,
              spaces: list[FeatureSpace]) -> ProtocolAccumulator:
    """The evaluators and feature extractors on real photos (each its own reference)."""
    acc = ProtocolAccumulator(ctx.groups, spaces, with_target=False)
    pairs = ProtocolPairs(faces, list(range(len(faces))))
    for batch in tqdm(loader_for(pairs, ctx), desc=description, disable=not ctx.progress):
        expected = ctx.groups.expected(batch["label_attributes"], batch["ref_attributes"])
        acc.update(batch["target"].to(ctx.device), batch["label"], expected, ctx.evaluators)
    return acc


@torch.no_grad()
def generated_pass(regen, pairs: ProtocolPairs, ctx: EvalContext, description: str
                   ) -> tuple[ProtocolAccumulator, dict[str, torch.Tensor]]:
    """Regenerate every pair, score it, keep the first ``num_examples`` for the grid."""
    with_target = all(ref == i for i, ref in enumerate(pairs.references))
    acc = ProtocolAccumulator(ctx.groups, ctx.spaces, with_target=with_target)
    regions = list(pairs.region_references)
    examples: dict[str, list[torch.Tensor]] = {}
    kept = 0
    for batch in tqdm(loader_for(pairs, ctx), desc=description, disable=not ctx.progress):
        ref_colors = ref_attributes = None
        if regions:
            generated = generate_mixed(regen, batch, regions).float()
            ref_colors, ref_attributes = mixed_references(batch, regions, ctx.device)
        else:
            generated = regen(batch["label"], batch["ref_image"], batch["ref_label"]).float()
        expected = ctx.groups.expected(batch["label_attributes"],
                                       ref_attributes if regions else batch["ref_attributes"])
        acc.update(generated, batch["label"], expected, ctx.evaluators,
                   target=batch["target"].to(ctx.device),
                   ref_image=batch["ref_image"].to(ctx.device), ref_label=batch["ref_label"],
                   ref_colors=ref_colors)
        if kept < ctx.num_examples:
            take = min(ctx.num_examples - kept, generated.shape[0])
            for key, value in (("label", batch["label"]), ("ref_image", batch["ref_image"]),
                               *((f"{name}_image", batch[f"{name}_image"]) for name in regions),
                               ("generated", generated), ("target", batch["target"])):
                examples.setdefault(key, []).append(value[:take].cpu())
            kept += take
    return acc, {k: torch.cat(v) for k, v in examples.items()}


def generate_mixed(regen, batch: dict[str, torch.Tensor], regions: list[str]) -> torch.Tensor:
    """Region mixing: a regional model takes each region's style from that region's reference
    (`faceregen regen --region-ref` does the same); a global model uses the global one only."""
    from faceregen.regen.regions import supports_regions, with_donor_regions

    if not supports_regions(regen):
        return regen(batch["label"], batch["ref_image"], batch["ref_label"])
    style = regen.encode_style(batch["ref_image"], batch["ref_label"])
    for name in regions:
        style = with_donor_regions(regen, style, batch[f"{name}_image"], batch[f"{name}_label"],
                                   [LABEL_NAMES.index(c) for c in MIXED_REGIONS[name]])
    return regen(batch["label"], style=style)


def mixed_references(batch: dict[str, torch.Tensor], regions: list[str], device: torch.device
                     ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """What region mixing expects: the reference colours (each mixed region's from its own
    reference) and the reference attributes (hair colours from the hair reference, skin
    attributes from the skin reference, the rest from the global reference)."""
    def colors(image: torch.Tensor, label: torch.Tensor):
        return metrics.region_mean_lab(to_unit_range(image.to(device)), label,
                                       COLOR_REGION_CLASSES)

    ref_colors = mixed_reference_colors(
        colors(batch["ref_image"], batch["ref_label"]),
        {name: colors(batch[f"{name}_image"], batch[f"{name}_label"]) for name in regions})
    attributes = batch["ref_attributes"].clone()
    for name in regions:
        columns = attribute_indices(list(MIXED_REGION_ATTRIBUTES[name]))
        attributes[:, columns] = batch[f"{name}_attributes"][:, columns]
    return ref_colors, attributes


def real_statistics(faces: Dataset, split: str, ctx: EvalContext, data_root: Path,
                    size: int, use_cache: bool, description: str,
                    ) -> tuple[ProtocolAccumulator, dict[str, RealStatistics | None]]:
    """Evaluator scores on real photos and their statistics in every feature space.

    Statistics of cacheable spaces are read from / written to ``<root>/fid_stats``; only the
    spaces without a cache file are computed.
    """
    stats: dict[str, RealStatistics | None] = {}
    to_compute = []
    for space in ctx.spaces:
        if space.extract is None:
            stats[space.key] = None
            continue
        cached = None
        if use_cache and space.cache_tag:
            path = stats_path(data_root, split, size, len(faces), space.cache_tag)
            cached = load_cached_stats(path, data_root)
        if cached is not None:
            print(f"{space.key}: real {split} statistics from {path}", flush=True)
            stats[space.key] = cached
        else:
            to_compute.append(space)
    acc = real_pass(faces, ctx, description, to_compute)
    for space in to_compute:
        computed = statistics_of(acc.features[space.key]) if len(faces) >= 2 else None
        stats[space.key] = computed
        if use_cache and space.cache_tag and computed is not None:
            save_stats(stats_path(data_root, split, size, len(faces), space.cache_tag),
                       computed, data_root)
    return acc, stats


def reference_distances(faces: Dataset, split: str, ctx: EvalContext, data_root: Path,
                            size: int, use_cache: bool,
                            real_stats: dict[str, RealStatistics | None]) -> dict[str, Any]:
    """GT distances: statistics of real ``split`` photos against the real test statistics."""
    _, reference = real_statistics(faces, split, ctx, data_root, size, use_cache,
                                   f"real {split} photos (GT distances)")
    out = {}
    for space in ctx.spaces:
        if space.unavailable_reason is not None:
            continue
        ours, theirs = reference.get(space.key), real_stats.get(space.key)
        if ours is not None and theirs is not None:
            out[space.key] = metrics.frechet_distance(ours.mu, ours.sigma, theirs.mu,
                                                      theirs.sigma)
    return out
