"""`faceregen eval`: score checkpoints on their dataset's test split (docs/evaluation.md).

Rows: ``model`` (``ckpt``), ``baseline`` (``baseline_ckpt``, optional) and ``gt`` (the
evaluators on real test photos). Generated rows run two protocols:

- reconstruction: label_k + reference k -> compared with photo k (PSNR, SSIM, L1 as well);
- mask_swap: label_j + reference perm[j], perm a seeded derangement (no face is its own
  reference).

Each protocol reports attribute accuracy (expected geometry attributes from the label's face,
appearance attributes from the reference's), the parser's pixel accuracy and mean IoU against
the input label map, FID against the real test photos and the parser feature distance.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from faceregen.errors import FaceregenError
from faceregen.evaluation import metrics
from faceregen.evaluation.evaluators import Evaluator, default_evaluator_path, load_evaluator
from faceregen.evaluation.inception import (
    InceptionWeightsUnavailable,
    inception_features,
    load_fid_inception,
)
from faceregen.evaluation.train_evaluators import (
    attribute_indices,
    open_split,
    segmentation_summary,
    train_from_settings,
)
from faceregen.labels import NUM_CLASSES
from faceregen.utils import atomic_path, resolve_device

log = logging.getLogger(__name__)

METRICS_FORMAT = "faceregen-eval-v1"
PROTOCOLS = ("reconstruction", "mask_swap")


# ----------------------------------------------------------------------------- pairing / data


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


class ProtocolPairs(Dataset):
    """Item i: label map, photo and attributes of face i with the reference face refs[i]."""

    def __init__(self, faces: Dataset, references: list[int]):
        self.faces = faces
        self.references = references

    def __len__(self) -> int:
        return len(self.references)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        face = self.faces[i]
        ref = face if self.references[i] == i else self.faces[self.references[i]]
        return {"label": face["label"], "target": face["image"],
                "label_attributes": face["attributes"], "ref_image": ref["image"],
                "ref_label": ref["label"], "ref_attributes": ref["attributes"]}


# ----------------------------------------------------------------------------- evaluators


def evaluator_path(ev_cfg: DictConfig, data_root: Path, kind: str) -> Path:
    configured = ev_cfg.get(f"{kind}_path")
    return Path(configured) if configured else default_evaluator_path(data_root, kind)


def train_command(kind: str, data_root: Path, path: Path) -> str:
    command = f"faceregen evaluators train --kind {kind} --data {shlex.quote(str(data_root))}"
    if path != default_evaluator_path(data_root, kind):
        command += f" --out {shlex.quote(str(path.parent))}"
    return command


def ensure_evaluators(ev_cfg: DictConfig, data_root: Path, device: torch.device,
                      num_workers: int = 0, progress: bool = True) -> dict[str, Evaluator]:
    """Load the parser and the attribute classifier of ``data_root``; train missing ones first
    when ``auto_train`` is on, else stop with the command that trains them."""
    loaded = {}
    for kind in ("parser", "attributes"):
        path = evaluator_path(ev_cfg, data_root, kind)
        if not path.is_file():
            if not ev_cfg.auto_train:
                raise FaceregenError(
                    f"the {kind} evaluator for {data_root} is missing ({path}); train it with "
                    f"`{train_command(kind, data_root, path)}` or set evaluators.auto_train=true")
            settings = ev_cfg[kind]
            print(f"no {kind} evaluator at {path}: training one first on the train split of "
                  f"{data_root} ({settings.steps} steps)", flush=True)
            train_from_settings(kind, data_root, settings, out_path=path, device=str(device),
                                seed=int(ev_cfg.seed), num_workers=num_workers,
                                progress=progress)
        loaded[kind] = load_evaluator(path, kind, device)
    return loaded


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


# ----------------------------------------------------------------------------- feature spaces


@dataclass
class FeatureSpace:
    """A feature extractor for a distribution distance, or why it is unavailable."""

    key: str                      # metrics.json key: fid, fid_random_weights, parser_feature_...
    cache_tag: str | None         # part of the real-statistics file name; None: never cached
    extract: Callable[[torch.Tensor], torch.Tensor] | None
    unavailable_reason: str | None = None
    batch_size: int = 32


def fid_space(fid_cfg: DictConfig, device: torch.device) -> FeatureSpace:
    """The FID Inception space; with missing weights a space that says unavailable."""
    if fid_cfg.weights == "random":
        log.warning("fid.weights=random: Inception with random weights; for tests only, "
                    "reported as fid_random_weights, not FID")
        model = load_fid_inception("random", device=device)
        return FeatureSpace("fid_random_weights", None, lambda x: inception_features(model, x),
                            batch_size=int(fid_cfg.batch_size))
    try:
        model = load_fid_inception(str(fid_cfg.weights), fid_cfg.path,
                                   allow_download=bool(fid_cfg.download), device=device)
    except InceptionWeightsUnavailable as exc:
        log.warning("FID unavailable: %s", exc)
        print(f"warning: FID unavailable: {exc}", file=sys.stderr, flush=True)
        return FeatureSpace("fid", None, None, unavailable_reason=str(exc))
    return FeatureSpace("fid", "inception-pytorch_fid", lambda x: inception_features(model, x),
                        batch_size=int(fid_cfg.batch_size))


def file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha1(path.read_bytes()).hexdigest()[:12]


@torch.no_grad()
def parser_features(parser: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    return parser(images, return_features=True)[1].double().cpu()


def parser_space(parser: Evaluator) -> FeatureSpace:
    """Global-average-pooled bottleneck of the trained parser: a domain feature distance."""
    return FeatureSpace("parser_feature_distance", f"parser-{file_digest(parser.path)}",
                        lambda x: parser_features(parser.network, x))


@dataclass
class RealStatistics:
    """Mean and covariance of real photos in one feature space."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


def stats_path(data_root: Path, split: str, size: int, n: int, tag: str) -> Path:
    return data_root / "fid_stats" / f"{split}_{size}px_n{n}_{tag}.npz"


def load_cached_stats(path: Path, data_root: Path) -> RealStatistics | None:
    if not path.is_file():
        return None
    with np.load(path) as data:
        if str(data["root"]) != str(data_root.resolve()):
            return None
        return RealStatistics(data["mu"], data["sigma"], int(data["n"]))


def save_stats(path: Path, stats: RealStatistics, data_root: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, mu=stats.mu, sigma=stats.sigma, n=stats.n,
                 root=str(data_root.resolve()))


def statistics_of(features: list[torch.Tensor]) -> RealStatistics:
    stacked = torch.cat(features).numpy()
    mu, sigma = metrics.gaussian_statistics(stacked)
    return RealStatistics(mu, sigma, stacked.shape[0])


def distance_to(stats: RealStatistics | None, features: list[torch.Tensor]) -> float | None:
    if stats is None or not features or sum(len(f) for f in features) < 2:
        return None
    own = statistics_of(features)
    return metrics.frechet_distance(own.mu, own.sigma, stats.mu, stats.sigma)


# ----------------------------------------------------------------------------- accumulation


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
    n: int = 0

    @torch.no_grad()
    def update(self, images: torch.Tensor, label: torch.Tensor, expected: torch.Tensor,
               evaluators: dict[str, Evaluator], target: torch.Tensor | None = None) -> None:
        """images, target: [B,3,H,W] in [-1,1] on the evaluators' device; label: [B,H,W]."""
        self.n += images.shape[0]
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
            generated01, target01 = metrics.to_unit_range(images), metrics.to_unit_range(target)
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
        return out


def varying_attributes(expected: torch.Tensor) -> torch.Tensor:
    """Attributes that take both values among the expected entries (constant ones excluded)."""
    rate = expected.double().mean(0)
    return (rate > 0) & (rate < 1)


# ----------------------------------------------------------------------------- the passes


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
    examples: dict[str, list[torch.Tensor]] = {}
    kept = 0
    for batch in tqdm(loader_for(pairs, ctx), desc=description, disable=not ctx.progress):
        generated = regen(batch["label"], batch["ref_image"], batch["ref_label"]).float()
        expected = ctx.groups.expected(batch["label_attributes"], batch["ref_attributes"])
        acc.update(generated, batch["label"], expected, ctx.evaluators,
                   target=batch["target"].to(ctx.device))
        if kept < ctx.num_examples:
            take = min(ctx.num_examples - kept, generated.shape[0])
            for key, value in (("label", batch["label"]), ("ref_image", batch["ref_image"]),
                               ("generated", generated), ("target", batch["target"])):
                examples.setdefault(key, []).append(value[:take].cpu())
            kept += take
    return acc, {k: torch.cat(v) for k, v in examples.items()}


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


# ----------------------------------------------------------------------------- outputs


def first_n(dataset: Dataset, n: int | None) -> Dataset:
    return dataset if n is None or n >= len(dataset) else Subset(dataset, range(n))


def json_ready(value: Any) -> Any:
    """Non-finite floats as strings ("inf", "nan") so that metrics.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def format_cell(value: Any, percent: bool = False, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if not math.isfinite(value):
        return str(value)
    return f"{100 * value:.{digits}f}" if percent else f"{value:.{digits}f}"


TABLE_COLUMNS = (
    ("attribute accuracy (%)", "attribute_accuracy", True, 2),
    ("segmentation accuracy (%)", "segmentation_pixel_accuracy", True, 2),
    ("mIoU (%)", "segmentation_miou", True, 2),
    ("FID", "fid", False, 2),
    ("parser feature distance", "parser_feature_distance", False, 4),
    ("PSNR (dB)", "psnr", False, 2),
    ("SSIM", "ssim", False, 4),
)


def markdown_table(result: dict[str, Any]) -> str:
    """One table per protocol, rows baseline / model / GT as in the report's Table 1."""
    random_fid = result["fid"]["kind"] == "random_weights"
    lines = []
    for protocol in PROTOCOLS:
        title = {"reconstruction": "Reconstruction (label k + reference k vs photo k)",
                 "mask_swap": "Mask swap (label j + reference perm[j], the report's Table 1)"}
        lines += [f"### {title[protocol]}", ""]
        headers = ["row"] + [
            ("FID (random weights; tests only)" if random_fid and key == "fid" else header)
            for header, key, _, _ in TABLE_COLUMNS]
        lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        for row in ("baseline", "model", "gt"):
            if row not in result["rows"]:
                continue
            scores = result["rows"][row]["protocols"]["real" if row == "gt" else protocol]
            cells = [{"gt": "GT", "model": "model", "baseline": "baseline"}[row]]
            for _, key, percent, digits in TABLE_COLUMNS:
                if key == "fid":
                    key = "fid_random_weights" if random_fid else "fid"
                cells.append(format_cell(scores.get(key), percent, digits))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    n = result["dataset"]["n_images"]
    lines.append(f"{n} {result['dataset']['split']} images of {result['dataset']['root']} at "
                 f"{result['dataset']['size']} px. GT: evaluators on the real photos; its FID "
                 "and parser feature distance compare real train photos with the real test "
                 "photos ('-' when gt_reference is null).")
    return "\n".join(lines) + "\n"


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """[3,H,W] in [-1,1] -> H×W×3 uint8."""
    return (metrics.to_unit_range(image.float()) * 255).round().byte().permute(1, 2, 0).numpy()


def example_grid(sections: dict[str, dict[str, dict[str, torch.Tensor]]]) -> Image.Image:
    """Rows: examples of each protocol; columns: mask | reference | model | [baseline] | target.

    ``sections[protocol][row]`` holds the examples kept by :func:`generated_pass`.
    """
    from faceregen.masks import colorize

    rows = []
    for protocol in PROTOCOLS:
        model = sections[protocol]["model"]
        baseline = sections[protocol].get("baseline")
        for i in range(model["label"].shape[0]):
            tiles = [colorize(model["label"][i].numpy()), to_uint8(model["ref_image"][i]),
                     to_uint8(model["generated"][i])]
            if baseline is not None:
                tiles.append(to_uint8(baseline["generated"][i]))
            tiles.append(to_uint8(model["target"][i]))
            rows.append(np.concatenate(tiles, axis=1))
        if protocol != PROTOCOLS[-1] and rows:
            rows.append(np.full((4, rows[-1].shape[1], 3), 255, dtype=np.uint8))
    return Image.fromarray(np.concatenate(rows, axis=0))


COMMAND_KEYS = ("ckpt", "baseline_ckpt", "data_root", "split", "device", "batch_size",
                "max_images", "swap_seed", "gt_reference", "fid.weights", "fid.path",
                "evaluators.auto_train")


def command_line(cfg: DictConfig, run_dir: Path) -> str:
    """The command that produced this run: `faceregen eval` plus Hydra's task overrides.

    When ``evaluate`` is called from Python (no Hydra run writing to ``run_dir``; a Hydra
    config left over from an earlier in-process run does not count), the command is rebuilt
    from the config's main settings.
    """
    from hydra.core.hydra_config import HydraConfig

    try:
        output_dir = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None
    except Exception:  # a partial config from an interrupted in-process run
        output_dir = None
    if output_dir and Path(output_dir).resolve() == Path(run_dir).resolve():
        overrides = list(HydraConfig.get().overrides.task)
    else:
        overrides = [f"{key}={OmegaConf.select(cfg, key)}" for key in COMMAND_KEYS
                     if OmegaConf.select(cfg, key) is not None]
    return shlex.join(["faceregen", "eval", *overrides])


# ----------------------------------------------------------------------------- entry point


def resolve_data_root(cfg: DictConfig, checkpoint_config: DictConfig) -> Path:
    """``data_root`` when given, else the dataset stored in the checkpoint (made if missing)."""
    if cfg.get("data_root"):
        root = Path(cfg.data_root)
        if not (root / "manifest.csv").is_file():
            raise FaceregenError(f"data_root={root}: not a prepared dataset (no manifest.csv)")
        return root
    from faceregen.data import ensure_dataset

    return Path(ensure_dataset(checkpoint_config.data))


def evaluate(cfg: DictConfig, run_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt`` (and ``cfg.baseline_ckpt``); write the outputs into ``run_dir``."""
    from faceregen.regen import load_model

    started = time.time()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(str(cfg.device))
    models = {"model": (str(cfg.ckpt), load_model(cfg.ckpt, device))}
    if cfg.get("baseline_ckpt"):
        models["baseline"] = (str(cfg.baseline_ckpt), load_model(cfg.baseline_ckpt, device))
    data_root = resolve_data_root(cfg, models["model"][1].config)
    sizes = {name: regen.size for name, (_, regen) in models.items()}

    evaluators = ensure_evaluators(cfg.evaluators, data_root, device,
                                   num_workers=int(cfg.num_workers), progress=progress)
    groups = AttributeGroups.from_config(list(cfg.evaluators.geometry_attributes),
                                         list(cfg.evaluators.appearance_attributes),
                                         evaluators["attributes"].attribute_names)
    faces = first_n(open_split(data_root, str(cfg.split)), cfg.get("max_images"))
    if len(faces) < 2:
        raise FaceregenError(f"{data_root}: the {cfg.split} split has {len(faces)} images; "
                             "the evaluation needs at least 2")
    size = int(faces[0]["image"].shape[-1])
    for name, regen_size in sizes.items():
        if regen_size != size:
            raise FaceregenError(f"{models[name][0]} generates {regen_size} px images but "
                                 f"{data_root} holds {size} px photos; pass data_root=")
    for evaluator in evaluators.values():
        if evaluator.image_size != size:
            raise FaceregenError(f"{evaluator.path} was trained on {evaluator.image_size} px "
                                 f"photos, the test photos are {size} px")

    spaces = [fid_space(cfg.fid, device), parser_space(evaluators["parser"])]
    ctx = EvalContext(evaluators, groups, spaces, device, int(cfg.batch_size),
                      int(cfg.num_workers), int(cfg.num_examples), progress)
    use_cache = bool(cfg.fid.cache)
    gt_acc, real_stats = real_statistics(faces, str(cfg.split), ctx, data_root, size, use_cache,
                                         f"real {cfg.split} photos")
    gt_scores = gt_acc.result({})
    for space in spaces:
        gt_scores[space.key] = ("unavailable" if space.unavailable_reason else None)
    if cfg.get("gt_reference"):
        try:
            reference_faces = first_n(open_split(data_root, str(cfg.gt_reference)), len(faces))
        except FaceregenError as exc:  # e.g. an empty split: the GT distances stay '-'
            log.warning("no GT distances: %s", exc)
            reference_faces = []
        if len(reference_faces) >= 2:
            gt_scores.update(reference_distances(reference_faces, str(cfg.gt_reference), ctx,
                                                 data_root, size, use_cache, real_stats))

    pairings = {"reconstruction": list(range(len(faces))),
                "mask_swap": swap_pairing(len(faces), int(cfg.swap_seed))}
    rows: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {protocol: {} for protocol in PROTOCOLS}
    for name, (path, regen) in models.items():
        protocols = {}
        for protocol in PROTOCOLS:
            acc, examples = generated_pass(regen, ProtocolPairs(faces, pairings[protocol]), ctx,
                                           f"{name}: {protocol}")
            protocols[protocol] = acc.result(real_stats)
            sections[protocol][name] = examples
        rows[name] = {"checkpoint": path, "step": regen.step,
                      "model_name": str(regen.config.model.get("name", "")),
                      "protocols": protocols}
    rows["gt"] = {"checkpoint": None, "step": None, "model_name": "real photos",
                  "protocols": {"real": gt_scores}}

    fid_space_ = spaces[0]
    result = {
        "format": METRICS_FORMAT,
        "dataset": {"root": str(data_root), "split": str(cfg.split), "size": size,
                    "n_images": len(faces)},
        "evaluators": {kind: {"path": str(ev.path), "steps": ev.steps,
                              "validation": ev.metrics} for kind, ev in evaluators.items()},
        "attribute_groups": {"geometry": list(cfg.evaluators.geometry_attributes),
                             "appearance": list(cfg.evaluators.appearance_attributes)},
        "swap_pairing": {"seed": int(cfg.swap_seed), "method": "uniform derangement",
                         "references": pairings["mask_swap"]},
        "fid": {"kind": "random_weights" if fid_space_.key == "fid_random_weights"
                else "pytorch_fid",
                "status": "unavailable" if fid_space_.unavailable_reason else "ok",
                "reason": fid_space_.unavailable_reason,
                "gt_reference": cfg.get("gt_reference")},
        "rows": rows,
        "command": command_line(cfg, run_dir),
        "config": OmegaConf.to_container(cfg, resolve=False),
        "seconds": round(time.time() - started, 1),
    }
    write_outputs(run_dir, result, sections)
    return result


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


def write_outputs(run_dir: Path, result: dict[str, Any],
                  sections: dict[str, dict[str, Any]]) -> None:
    """metrics.json, table.md, examples.png, command.txt (all atomic); print the table."""
    write_text(run_dir / "metrics.json", json.dumps(json_ready(result), indent=2) + "\n")
    table = markdown_table(result)
    write_text(run_dir / "table.md", table)
    write_text(run_dir / "command.txt", result["command"] + "\n")
    with atomic_path(run_dir / "examples.png") as tmp:
        example_grid(sections).save(tmp, format="PNG")
    print(table, flush=True)
    print(f"evaluation written to {run_dir}", flush=True)
