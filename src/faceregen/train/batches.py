"""The trainer's data: the augmented train split and an endless, resumable stream of batches."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from faceregen.data import FaceDataset
from faceregen.data.region_recolor import RegionRecolor
from faceregen.errors import FaceregenError
from faceregen.train.distributed import DistInfo


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def training_set(root: Path, dcfg: DictConfig, seed: int) -> Dataset:
    """The train split with the configured augmentation, as raw uint8 items (see FaceDataset),
    wrapped in :class:`RegionRecolor` when ``data.region_recolor`` is above 0."""
    faces = FaceDataset(root, "train", flip=dcfg.flip, crop=dcfg.crop,
                        crop_scale=tuple(dcfg.crop_scale), reference=dcfg.reference, seed=seed,
                        raw=True)
    probability = float(dcfg.get("region_recolor") or 0.0)
    if probability <= 0:
        return faces
    return RegionRecolor(faces, probability, list(dcfg.region_recolor_regions), seed)


class EpochBatches:
    """An endless stream of batches: a fresh seeded shuffle every epoch, resumable mid-epoch.

    One DataLoader serves every epoch: its sampler yields the keys of one epoch after another,
    so the workers keep loading ahead across the epoch boundary, where a loader rebuilt every
    epoch stalled the step while its workers started again (120 ms on an H200 at 128 px).
    Every draw comes from the keys, so the batches are those of a loader per epoch.
    """

    def __init__(self, dataset: Dataset, batch_size: int, num_workers: int, seed: int,
                 info: DistInfo, pin_memory: bool):
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.info = info
        self.pin_memory = pin_memory
        self.epoch = 0
        self.batch_in_epoch = 0
        per_rank = len(dataset) // info.world_size
        self.batches_per_epoch = per_rank // batch_size
        if self.batches_per_epoch == 0:
            raise FaceregenError(
                f"the training split has {len(dataset)} images, fewer than one batch of "
                f"{batch_size} per process; lower data.batch_size")
        self._iterator: Iterator | None = None

    def _epoch_seed(self, epoch: int) -> int:
        """One seed per (run seed, epoch): the epoch's shuffle and its samples' augment seeds."""
        return self.seed * 100_003 + epoch

    def epoch_keys(self, epoch: int) -> list[tuple[int, int]]:
        """This rank's keys of one epoch as (position, augment seed), a whole number of batches.

        The seed is a function of run seed, epoch and place in the epoch's order, not of the
        worker that loads it, so a resumed run draws the same flips and crops.
        """
        epoch_seed = self._epoch_seed(epoch)
        g = torch.Generator().manual_seed(epoch_seed)
        order = torch.randperm(len(self.dataset), generator=g).tolist()
        per_rank = self.batches_per_epoch * self.batch_size
        keys = [(position, epoch_seed * 1_000_003 + place)
                for place, position in enumerate(order)]
        return keys[self.info.rank::self.info.world_size][:per_rank]

    def _start(self) -> None:
        g = torch.Generator().manual_seed(
            self._epoch_seed(self.epoch) * 7919 + self.batch_in_epoch + self.info.rank)
        loader = DataLoader(
            self.dataset, batch_size=self.batch_size,
            sampler=_EndlessKeys(self, self.epoch, self.batch_in_epoch),
            num_workers=self.num_workers, pin_memory=self.pin_memory, drop_last=True,
            worker_init_fn=_seed_worker, generator=g)
        self._iterator = iter(loader)

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._iterator is None:
            self._start()
        batch = next(self._iterator)
        self.batch_in_epoch += 1
        if self.batch_in_epoch >= self.batches_per_epoch:
            self.epoch += 1
            self.batch_in_epoch = 0
        return batch

    def close(self) -> None:
        """Stop the loader's workers (they would otherwise wait for the next epoch)."""
        self._iterator = None

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self._iterator = None


class _EndlessKeys:
    """The sampler of :class:`EpochBatches`: its keys from (epoch, batch) on, epoch after epoch."""

    def __init__(self, batches: EpochBatches, epoch: int, batch_in_epoch: int):
        self.batches = batches
        self.epoch = epoch
        self.skip = batch_in_epoch * batches.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, skip = self.epoch, self.skip
        while True:
            yield from self.batches.epoch_keys(epoch)[skip:]
            epoch, skip = epoch + 1, 0


def sample_batch(root: Path, num_samples: int) -> dict[str, torch.Tensor]:
    """A fixed batch of validation faces for the progress images (train faces when the split
    has fewer than two): the first half reconstructs each face from its own photo, the second
    half takes the next face's photo as the reference."""
    try:
        dataset = FaceDataset(root, "val")
    except FaceregenError:
        dataset = None
    if dataset is None or len(dataset) < 2:
        dataset = FaceDataset(root, "train")
    n = min(num_samples, len(dataset))
    items = [dataset[i] for i in range(n)]
    batch = {k: torch.stack([it[k] for it in items])
             for k in ("label", "image", "ref_image", "ref_label")}
    half = n // 2
    if half:
        order = torch.arange(n)
        order[half:] = torch.roll(order[half:], 1)
        batch["ref_image"] = batch["image"][order]
        batch["ref_label"] = batch["label"][order]
    return batch
