"""Train the evaluator networks on a prepared dataset's train split and measure them.

The parser learns photo -> 19-class label map (cross-entropy with frequency-balanced class
weights), the classifier photo -> attributes (BCE, plus the same cross-entropy on its parser
trunk's segmentation). Both use horizontal flips (the dataset
swaps left/right classes) and Adam with a one-cycle schedule, and are scored on the val and
test splits of real photos: pixel accuracy and mean IoU for the parser, mean attribute
accuracy (TP+TN)/all for the classifier. The scores are stored in the checkpoint and in a
JSON file beside it.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from faceregen.errors import FaceregenError
from faceregen.evaluation import metrics
from faceregen.evaluation.evaluators import (
    KINDS,
    build_evaluator,
    default_evaluator_path,
    save_evaluator,
)
from faceregen.labels import ATTRIBUTE_NAMES, LABEL_NAMES, NUM_CLASSES
from faceregen.utils import atomic_path, resolve_device


def open_split(data_root: str | Path, split: str, flip: bool = False) -> Dataset:
    """The prepared dataset's ``split`` (each item its own reference)."""
    from faceregen.data import FaceDataset

    return FaceDataset(data_root, split, flip=flip, reference="same")


def attribute_indices(names: list[str] | None) -> list[int]:
    """Positions of ``names`` among the 40 CelebA attributes (all 40 when None)."""
    if names is None:
        return list(range(len(ATTRIBUTE_NAMES)))
    unknown = [name for name in names if name not in ATTRIBUTE_NAMES]
    if unknown:
        raise FaceregenError(f"unknown attribute names {unknown}; see faceregen.labels")
    return [ATTRIBUTE_NAMES.index(name) for name in names]


def class_weights(dataset: Dataset, max_images: int = 500, max_ratio: float = 10.0
                  ) -> torch.Tensor:
    """Cross-entropy weights ~ frequency^-1/2 (from up to ``max_images`` label maps), capped at
    ``max_ratio`` x the smallest and normalised so that the mean weight per pixel is 1.

    Without them the parser learns background, skin and hair first and the small parts (eyes,
    brows, lips: a few pixels at 64 px) only after many more steps.
    """
    counts = torch.zeros(NUM_CLASSES, dtype=torch.float64)
    for position in range(min(len(dataset), max_images)):
        counts += torch.bincount(dataset[position]["label"].flatten(), minlength=NUM_CLASSES)
    frequency = counts / counts.sum()
    weights = frequency.clamp_min(1e-12).rsqrt()
    weights = weights.clamp_max(weights.min() * max_ratio)
    return (weights / (weights * frequency).sum()).float()


@contextlib.contextmanager
def fixed_cpu_threads(count: int | None, device: torch.device) -> Iterator[None]:
    """Run the block with ``count`` CPU threads (then restore the caller's count).

    On the CPU the threads split the sums of each convolution's gradient, so the order of the
    floating-point additions, and with it every weight of a trained evaluator, depends on the
    thread count (30 parser steps with one and with two threads end up to 1.1 apart in a
    weight), and evaluators trained apart have scored the same generated faces 1.5 points
    apart. A fixed count gives every checkout the same evaluators on the same torch build and
    CPU kind. None leaves the count alone; off the CPU it does nothing.
    """
    if count is None or device.type != "cpu":
        yield
        return
    if count < 1:
        raise FaceregenError(f"evaluators.cpu_threads={count}: must be at least 1")
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def endless(loader: DataLoader):
    while True:
        yield from loader


@torch.no_grad()
def parser_confusion(parser: nn.Module, images: torch.Tensor, labels: torch.Tensor
                     ) -> torch.Tensor:
    """Confusion counts of the parser's argmax on ``images`` against ``labels``."""
    prediction = parser(images).argmax(1)
    return metrics.confusion_matrix(prediction, labels.to(prediction.device), NUM_CLASSES)


def segmentation_summary(confusion: torch.Tensor) -> dict[str, Any]:
    iou = metrics.per_class_iou(confusion)
    return {
        "pixel_accuracy": metrics.pixel_accuracy(confusion),
        "mean_iou": metrics.mean_iou(confusion),
        "per_class_iou": {name: (None if math.isnan(v) else v)
                          for name, v in zip(LABEL_NAMES, iou.tolist())},
    }


def attribute_summary(predicted: torch.Tensor, expected: torch.Tensor,
                      names: list[str]) -> dict[str, Any]:
    """Accuracy over all entries plus per-attribute accuracy and positive rate (bool [N, A])."""
    counts = metrics.attribute_confusion(predicted, expected)
    per_attribute = (predicted == expected).double().mean(0).tolist()
    positive_rate = expected.double().mean(0).tolist()
    return {
        "accuracy": metrics.attribute_accuracy(counts),
        "counts": counts,
        "per_attribute_accuracy": dict(zip(names, per_attribute)),
        "positive_rate": dict(zip(names, positive_rate)),
    }


@torch.no_grad()
def validate(kind: str, network: nn.Module, dataset: Dataset, *, names: list[str],
             batch_size: int, device: torch.device, num_workers: int = 0,
             progress: bool = True,
             inputs: Callable[[dict], torch.Tensor] | None = None) -> dict[str, Any]:
    """Score an evaluator on one split; ``inputs`` turns a batch into the network's input
    (default: the real photo)."""
    network.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    columns = attribute_indices(names) if kind == "attributes" else []
    confusion = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long)
    predicted, expected = [], []
    for batch in tqdm(loader, desc=f"validate {kind}", disable=not progress, leave=False):
        images = (inputs(batch) if inputs else batch["image"]).to(device)
        if kind == "parser":
            confusion += parser_confusion(network, images, batch["label"])
        else:
            predicted.append((network(images) > 0).cpu())
            expected.append(batch["attributes"][:, columns] > 0.5)
    summary = (segmentation_summary(confusion) if kind == "parser"
               else attribute_summary(torch.cat(predicted), torch.cat(expected), names))
    return {"n_images": len(dataset), **summary}


def fit(kind: str, network: nn.Module, train_set: Dataset, *, steps: int, batch_size: int,
        lr: float, weight_decay: float, columns: list[int], device: torch.device, seed: int,
        num_workers: int = 0, progress: bool = True,
        inputs: Callable[[dict], torch.Tensor] | None = None) -> None:
    """The evaluators' training recipe: AdamW with a one-cycle schedule, frequency-balanced
    cross-entropy on the label map (the classifier adds BCE on the attributes ``columns``).
    ``inputs`` turns a batch into the network's input (default: the photo)."""
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps,
                                                   pct_start=0.15)
    weights = class_weights(train_set).to(device)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True,
                        drop_last=len(train_set) >= batch_size, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(seed))
    network.train()
    bar = tqdm(range(steps), desc=f"train {kind} evaluator", disable=not progress)
    batches = endless(loader)
    for step in bar:
        batch = next(batches)
        images = (inputs(batch) if inputs else batch["image"]).to(device)
        labels = batch["label"].to(device)
        if kind == "parser":
            loss = F.cross_entropy(network(images), labels, weight=weights)
        else:  # attributes, with the trunk's auxiliary segmentation loss
            targets = batch["attributes"][:, columns].to(device)
            logits, segmentation = network(images, return_segmentation=True)
            loss = (F.binary_cross_entropy_with_logits(logits, targets)
                    + F.cross_entropy(segmentation, labels, weight=weights))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()


def train_from_settings(kind: str, data_root: str | Path, settings: DictConfig, *,
                        out_path: str | Path, device: str = "auto", seed: int = 0,
                        cpu_threads: int | None = None, num_workers: int = 0,
                        progress: bool = True) -> dict[str, Any]:
    """:func:`train_evaluator` with the options of an ``evaluators.<kind>`` config node (steps,
    batch_size, lr, architecture, optional names and weight_decay)."""
    names = settings.get("names")
    return train_evaluator(
        kind, data_root, out_path=out_path, steps=int(settings.steps),
        batch_size=int(settings.batch_size), lr=float(settings.lr),
        architecture=OmegaConf.to_container(settings.architecture, resolve=True),
        attribute_names=list(names) if names else None,
        weight_decay=float(settings.get("weight_decay", 0.0)), device=device, seed=seed,
        cpu_threads=cpu_threads, num_workers=num_workers, progress=progress)


def train_evaluator(kind: str, data_root: str | Path, *, out_path: str | Path | None = None,
                    steps: int = 600, batch_size: int = 16, lr: float = 2e-3,
                    architecture: dict[str, Any] | None = None,
                    attribute_names: list[str] | None = None, device: str = "auto",
                    weight_decay: float = 0.0, seed: int = 0, cpu_threads: int | None = None,
                    num_workers: int = 0, validation_splits=("val", "test"),
                    progress: bool = True) -> dict[str, Any]:
    """Train one evaluator, save it (default ``<root>/evaluators/<kind>.pt``), return its scores.

    ``architecture`` holds the network's constructor arguments (``channels``, ``depth``); the
    classifier's attribute count follows ``attribute_names`` (all 40 when None). On the CPU,
    ``cpu_threads`` fixes the thread count of training and validation
    (:func:`fixed_cpu_threads`), so that the same command trains the same weights whatever the
    caller's thread count.
    """
    if kind not in KINDS:
        raise FaceregenError(f"unknown evaluator kind '{kind}' (choose from {', '.join(KINDS)})")
    data_root = Path(data_root)
    out_path = Path(out_path) if out_path else default_evaluator_path(data_root, kind)
    device = resolve_device(device)
    names = list(attribute_names) if attribute_names else list(ATTRIBUTE_NAMES)
    columns = attribute_indices(names)
    architecture = dict(architecture or {})
    if kind == "attributes":
        architecture["num_attributes"] = len(names)
    train_set = open_split(data_root, "train", flip=True)
    sample = train_set[0]
    image_size = int(sample["image"].shape[-1])

    with torch.random.fork_rng(devices=[]), fixed_cpu_threads(cpu_threads, device):
        torch.manual_seed(seed)
        network = build_evaluator(kind, architecture).to(device)
        fit(kind, network, train_set, steps=steps, batch_size=batch_size, lr=lr,
            weight_decay=weight_decay, columns=columns, device=device, seed=seed,
            num_workers=num_workers, progress=progress)

    scores = {}
    for split in validation_splits:
        try:
            dataset = open_split(data_root, split)
        except FaceregenError:  # the split has no faces (e.g. no val split in `index`)
            continue
        with fixed_cpu_threads(cpu_threads, device):
            scores[split] = validate(kind, network, dataset, names=names,
                                     batch_size=batch_size, device=device,
                                     num_workers=num_workers, progress=progress)
    save_evaluator(out_path, kind, network, architecture, image_size=image_size,
                   data_root=data_root, steps=steps, metrics=scores,
                   attribute_names=names if kind == "attributes" else None)
    report = {"kind": kind, "path": str(out_path), "data_root": str(data_root),
              "steps": steps, "image_size": image_size, "architecture": architecture,
              "metrics": scores}
    with atomic_path(out_path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{kind} evaluator saved to {out_path}: {headline(kind, scores)}", flush=True)
    return report


def headline(kind: str, scores: dict[str, Any]) -> str:
    """One line of the scores that matter: per split, pixel acc/mIoU or attribute accuracy."""
    parts = []
    for split, score in scores.items():
        if kind == "parser":
            parts.append(f"{split} pixel accuracy {100 * score['pixel_accuracy']:.2f}%, "
                         f"mIoU {100 * score['mean_iou']:.2f}% (n={score['n_images']})")
        else:
            parts.append(f"{split} attribute accuracy {100 * score['accuracy']:.2f}% "
                         f"(n={score['n_images']})")
    return "; ".join(parts) or "no validation split"
