"""Per-batch scoring of one row and protocol: attribute accuracy, segmentation, image metrics,
region colours and the features of every distribution distance, summed up in
:class:`ProtocolAccumulator`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from faceregen.errors import FaceregenError
from faceregen.evaluation import metrics
from faceregen.evaluation.evaluators import Evaluator
from faceregen.evaluation.statistics import FeatureSpace, RealStatistics, distance_to
from faceregen.evaluation.train_evaluators import attribute_indices, segmentation_summary
from faceregen.images import to_unit_range
from faceregen.labels import LABEL_NAMES, NUM_CLASSES

# The regions of the region colour error: name -> label classes. Large regions whose colour is
# the reference's to give (the parts of a face that carry its look), lips as one region.
COLOR_REGIONS: dict[str, tuple[str, ...]] = {
    "skin": ("skin",), "hair": ("hair",), "lips": ("u_lip", "l_lip"),
    "background": ("background",), "cloth": ("cloth",)}
COLOR_REGION_CLASSES = [tuple(LABEL_NAMES.index(name) for name in classes)
                        for classes in COLOR_REGIONS.values()]

# The region-mixing protocol: the regions that each take their own reference, the label classes
# whose style that reference gives (skin with the skin-coloured parts), and the appearance
# attributes it decides. Each is scored on its COLOR_REGIONS entry of the same name.
MIXED_REGIONS: dict[str, tuple[str, ...]] = {
    "hair": ("hair",), "skin": ("skin", "nose", "l_ear", "r_ear", "neck"), "cloth": ("cloth",)}
MIXED_REGION_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "hair": ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair"),
    "skin": ("Pale_Skin", "Rosy_Cheeks"), "cloth": ()}


@dataclass
class AttributeGroups:
    """Which classifier outputs are scored, and where each one's expected value comes from."""

    names: list[str]                 # geometry then appearance
    classifier_columns: list[int]    # position of each name among the classifier's outputs
    dataset_columns: list[int]       # position among the dataset's 40 attributes
    from_label: torch.Tensor         # bool per name: geometry (expected from the label's face)

    @classmethod
    def from_config(cls, geometry: list[str], appearance: list[str],
                    classifier_names: list[str]) -> AttributeGroups:
        overlap = sorted(set(geometry) & set(appearance))
        if overlap:
            raise FaceregenError(f"attributes {overlap} are in both the geometry and the "
                                 "appearance list of evaluators")
        names = list(geometry) + list(appearance)
        if not names:
            raise FaceregenError("evaluators.geometry_attributes and appearance_attributes are "
                                 "both empty")
        missing = [name for name in names if name not in classifier_names]
        if missing:
            raise FaceregenError(f"the attribute classifier was not trained on {missing}; "
                                 "retrain it with those attributes or drop them from the lists")
        return cls(names=names,
                   classifier_columns=[classifier_names.index(n) for n in names],
                   dataset_columns=attribute_indices(names),
                   from_label=torch.tensor([True] * len(geometry) + [False] * len(appearance)))

    def expected(self, label_attributes: torch.Tensor, ref_attributes: torch.Tensor
                 ) -> torch.Tensor:
        """bool [B, A]: geometry from the label's face, appearance from the reference."""
        from_label = label_attributes[:, self.dataset_columns] > 0.5
        from_ref = ref_attributes[:, self.dataset_columns] > 0.5
        return torch.where(self.from_label, from_label, from_ref)


@dataclass
class ProtocolAccumulator:
    """Running sums of every metric of one row and protocol, fed batch by batch."""

    groups: AttributeGroups
    spaces: list[FeatureSpace]
    with_target: bool
    confusion: torch.Tensor = field(
        default_factory=lambda: torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long))
    predicted: list[torch.Tensor] = field(default_factory=list)
    expected: list[torch.Tensor] = field(default_factory=list)
    features: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    image_scores: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    # region colours (CIELAB means, pixel counts) of the images and of their references
    colors: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    ref_colors: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    n: int = 0

    @torch.no_grad()
    def update(self, images: torch.Tensor, label: torch.Tensor, expected: torch.Tensor,
               evaluators: dict[str, Evaluator], target: torch.Tensor | None = None,
               ref_image: torch.Tensor | None = None, ref_label: torch.Tensor | None = None,
               ref_colors: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """images, target, ref_image: [B,3,H,W] in [-1,1] on the evaluators' device; label,
        ref_label: [B,H,W]. The region colours of ``images`` are taken inside ``label``'s
        regions, the reference's inside ``ref_label``'s; ``ref_colors`` (means, counts as
        `metrics.region_mean_lab` gives them) replaces the reference's when each region has its
        own reference (:func:`mixed_reference_colors`)."""
        self.n += images.shape[0]
        self.colors.append(metrics.region_mean_lab(to_unit_range(images), label,
                                                   COLOR_REGION_CLASSES))
        if ref_colors is not None:
            self.ref_colors.append(ref_colors)
        elif ref_image is not None and ref_label is not None:
            self.ref_colors.append(metrics.region_mean_lab(to_unit_range(ref_image), ref_label,
                                                           COLOR_REGION_CLASSES))
        prediction = evaluators["parser"].network(images).argmax(1)
        self.confusion += metrics.confusion_matrix(prediction, label.to(prediction.device),
                                                   NUM_CLASSES)
        logits = evaluators["attributes"].network(images)[:, self.groups.classifier_columns]
        self.predicted.append((logits > 0).cpu())
        self.expected.append(expected.cpu())
        for space in self.spaces:
            if space.extract is not None:
                for chunk in images.split(space.batch_size):
                    self.features.setdefault(space.key, []).append(space.extract(chunk))
        if self.with_target and target is not None:
            generated01, target01 = to_unit_range(images), to_unit_range(target)
            for name, fn in (("psnr", metrics.psnr), ("ssim", metrics.ssim),
                             ("l1", metrics.l1_error)):
                self.image_scores.setdefault(name, []).append(fn(generated01, target01).cpu())

    def result(self, real: dict[str, RealStatistics | None]) -> dict[str, Any]:
        predicted, expected = torch.cat(self.predicted), torch.cat(self.expected)
        geometry = self.groups.from_label
        varying = varying_attributes(expected)
        counts = metrics.attribute_confusion(predicted, expected)
        out: dict[str, Any] = {
            "n_images": self.n,
            "attribute_accuracy": metrics.attribute_accuracy(counts),
            "attribute_accuracy_geometry": metrics.attribute_accuracy(
                metrics.attribute_confusion(predicted[:, geometry], expected[:, geometry])),
            "attribute_accuracy_appearance": metrics.attribute_accuracy(
                metrics.attribute_confusion(predicted[:, ~geometry], expected[:, ~geometry])),
            "attribute_accuracy_varying": metrics.attribute_accuracy(
                metrics.attribute_confusion(predicted[:, varying], expected[:, varying])),
            "attribute_counts": counts,
            "per_attribute_accuracy": dict(zip(
                self.groups.names, (predicted == expected).double().mean(0).tolist())),
            # whether an attribute's errors are misses or false alarms
            "per_attribute_counts": {
                name: metrics.attribute_confusion(predicted[:, k], expected[:, k])
                for k, name in enumerate(self.groups.names)},
        }
        seg = segmentation_summary(self.confusion)
        out["segmentation_pixel_accuracy"] = seg["pixel_accuracy"]
        out["segmentation_miou"] = seg["mean_iou"]
        out["per_class_iou"] = seg["per_class_iou"]
        for space in self.spaces:
            if space.unavailable_reason is not None:
                out[space.key] = "unavailable"
                out[f"{space.key}_unavailable_reason"] = space.unavailable_reason
            else:
                out[space.key] = distance_to(real.get(space.key), self.features.get(space.key))
        for name, scores in self.image_scores.items():
            out[name] = torch.cat(scores).mean().item()
        if self.ref_colors:
            ref_means, ref_counts = (torch.cat(t) for t in zip(*self.ref_colors))
            out.update(region_color_summary(metrics.region_color_distance(
                *self.region_colors(), ref_means, ref_counts)))
        return out

    def region_colors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """CIELAB means [N, R, 3] and pixel counts [N, R] of the COLOR_REGIONS of every image
        fed so far, in order."""
        means, counts = zip(*self.colors)
        return torch.cat(means), torch.cat(counts)


def region_color_summary(distance: torch.Tensor) -> dict[str, Any]:
    """The region colour error from per-pair distances [N, R] (NaN: region missing in either
    face of the pair, skipped and counted): the mean per region, and their plain average over
    the regions that have any pair (each region weighs the same, whatever its area)."""
    present = ~torch.isnan(distance)
    per_region = {}
    for index, name in enumerate(COLOR_REGIONS):
        scored = distance[present[:, index], index]
        per_region[name] = scored.mean().item() if scored.numel() else None
    values = [value for value in per_region.values() if value is not None]
    return {"region_color_error": sum(values) / len(values) if values else None,
            "region_color_error_per_region": per_region,
            "region_color_pairs": dict(zip(COLOR_REGIONS, present.sum(0).tolist())),
            "region_color_skipped": dict(zip(COLOR_REGIONS, (~present).sum(0).tolist()))}


def paired_region_colors(means: torch.Tensor, counts: torch.Tensor, references: list[int]
                         ) -> dict[str, Any]:
    """The region colour error of real photos against real references: face i's colours
    against face references[i]'s (the GT row)."""
    index = torch.tensor(references, dtype=torch.long)
    return region_color_summary(metrics.region_color_distance(means, counts, means[index],
                                                              counts[index]))


def mixed_reference_colors(ref_colors: tuple[torch.Tensor, torch.Tensor],
                           region_colors: dict[str, tuple[torch.Tensor, torch.Tensor]]
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference colours of the region-mixing protocol: the global reference's CIELAB means
    and counts [N, R(, 3)], with the column of each mixed region taken from that region's own
    reference (``region_colors[name]``, the same layout)."""
    means, counts = ref_colors[0].clone(), ref_colors[1].clone()
    for name, (region_means, region_counts) in region_colors.items():
        index = list(COLOR_REGIONS).index(name)
        means[:, index] = region_means[:, index]
        counts[:, index] = region_counts[:, index]
    return means, counts


def mixed_region_color_summary(scores: dict[str, Any]) -> dict[str, Any]:
    """``mixed_region_color_error``: the mean of the mixed regions' colour errors, each against
    its own reference (None when no mixed region had a scored pair)."""
    per_region = scores.get("region_color_error_per_region") or {}
    values = [per_region[name] for name in MIXED_REGIONS if per_region.get(name) is not None]
    return {"mixed_region_color_error": sum(values) / len(values) if values else None}


def paired_mixed_region_colors(means: torch.Tensor, counts: torch.Tensor,
                               references: list[int], region_references: dict[str, list[int]]
                               ) -> dict[str, Any]:
    """The GT row of the region-mixing protocol: real photo j against the global reference's
    colours, with each mixed region against its own reference (what ignoring them costs)."""
    def pick(indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.tensor(indices, dtype=torch.long)
        return means[index], counts[index]

    ref_means, ref_counts = mixed_reference_colors(
        pick(references), {name: pick(indices) for name, indices in region_references.items()})
    summary = region_color_summary(metrics.region_color_distance(means, counts, ref_means,
                                                                 ref_counts))
    return {**summary, **mixed_region_color_summary(summary)}


def varying_attributes(expected: torch.Tensor) -> torch.Tensor:
    """Attributes that take both values among the expected entries (constant ones excluded)."""
    rate = expected.double().mean(0)
    return (rate > 0) & (rate < 1)
