"""FaceDataset items, flip label swap, crop, reference pairing; ensure_dataset."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from faceregen.data import FaceDataset, ensure_dataset
from faceregen.errors import FaceregenError
from faceregen.images import to_float
from faceregen.labels import flip_permutation


def test_item_contents(synthetic_dataset):
    dataset = FaceDataset(synthetic_dataset.root, "all")
    assert len(dataset) == synthetic_dataset.num
    item = dataset[3]
    size = synthetic_dataset.size
    assert item["label"].shape == (size, size) and item["label"].dtype == torch.int64
    assert 0 <= item["label"].min() and item["label"].max() <= 18
    assert item["image"].shape == (3, size, size) and item["image"].dtype == torch.float32
    assert -1 <= item["image"].min() and item["image"].max() <= 1
    assert item["attributes"].shape == (40,) and set(item["attributes"].tolist()) <= {0.0, 1.0}
    assert item["index"] == 3 and item["ref_index"] == 3
    assert torch.equal(item["ref_image"], item["image"])
    assert torch.equal(item["ref_label"], item["label"])


def test_splits_partition_the_set(synthetic_dataset):
    ids = set()
    for split in ("train", "val", "test"):
        try:
            ids |= {row["id"] for row in FaceDataset(synthetic_dataset.root, split).rows}
        except FaceregenError as exc:  # a 12-face set may have an empty val or test split
            assert "no faces in split" in str(exc)
    assert ids == set(range(synthetic_dataset.num))


def test_flip_swaps_left_and_right_labels(synthetic_dataset):
    plain = FaceDataset(synthetic_dataset.root, "all")
    flipping = FaceDataset(synthetic_dataset.root, "all", flip=True)
    perm = torch.from_numpy(flip_permutation())
    outcomes = set()
    torch.manual_seed(0)
    for _ in range(12):
        reference, item = plain[5], flipping[5]
        flipped = bool(not torch.equal(item["label"], reference["label"]))
        outcomes.add(flipped)
        if flipped:
            assert torch.equal(item["label"], perm[reference["label"].flip(-1)])
            assert torch.equal(item["image"], reference["image"].flip(-1))
    assert outcomes == {True, False}


def test_crop_keeps_size_and_aligns_label(synthetic_dataset):
    plain = FaceDataset(synthetic_dataset.root, "all")
    full = FaceDataset(synthetic_dataset.root, "all", crop=True, crop_scale=(1.0, 1.0))
    assert torch.equal(full[0]["label"], plain[0]["label"])
    cropped = FaceDataset(synthetic_dataset.root, "all", crop=True, crop_scale=(0.5, 0.6))
    torch.manual_seed(1)
    item = cropped[0]
    assert item["image"].shape == plain[0]["image"].shape
    assert set(item["label"].unique().tolist()) <= set(plain[0]["label"].unique().tolist())
    assert not torch.equal(item["label"], plain[0]["label"])


def test_a_seeded_key_fixes_the_flip_and_crop(synthetic_dataset):
    dataset = FaceDataset(synthetic_dataset.root, "all", flip=True, crop=True)
    torch.manual_seed(0)
    first = dataset[(2, 1234)]
    torch.manual_seed(99)  # the global generator plays no part
    again = dataset[(2, 1234)]
    assert torch.equal(first["image"], again["image"])
    assert torch.equal(first["label"], again["label"])
    others = [dataset[(2, seed)]["image"] for seed in range(8)]
    assert any(not torch.equal(first["image"], other) for other in others)


def test_raw_items_are_the_stored_bytes_of_the_same_sample(synthetic_dataset):
    root = synthetic_dataset.root
    raw = FaceDataset(root, "all", flip=True, crop=True, raw=True)[(4, 7)]
    plain = FaceDataset(root, "all", flip=True, crop=True)[(4, 7)]
    assert raw["image"].dtype == torch.uint8 and raw["label"].dtype == torch.uint8
    assert torch.equal(to_float(raw["image"]), plain["image"])
    assert torch.equal(raw["label"].long(), plain["label"])
    assert to_float(plain["image"]) is plain["image"]


def test_random_reference_is_another_face_and_deterministic(synthetic_dataset):
    first = FaceDataset(synthetic_dataset.root, "all", reference="random", seed=4)
    second = FaceDataset(synthetic_dataset.root, "all", reference="random", seed=4)
    pairs = [first[i]["ref_index"] for i in range(len(first))]
    assert pairs == [second[i]["ref_index"] for i in range(len(second))]
    assert all(ref != first.rows[i]["id"] for i, ref in enumerate(pairs))
    assert len(set(pairs)) > 3
    item = first[0]
    plain = FaceDataset(synthetic_dataset.root, "all")[pairs[0]]
    assert torch.equal(item["ref_label"], plain["label"])


def test_dataloader_batches(synthetic_dataset):
    dataset = FaceDataset(synthetic_dataset.root, "all", flip=True, crop=True)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert batch["label"].shape == (4, 32, 32) and batch["ref_image"].shape == (4, 3, 32, 32)
    assert batch["index"].tolist() == [0, 1, 2, 3]


def test_missing_or_malformed_dir(synthetic_dataset, tmp_path):
    with pytest.raises(FaceregenError, match="nowhere"):
        FaceDataset(tmp_path / "nowhere", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FaceregenError, match="manifest.csv"):
        FaceDataset(tmp_path / "empty", "train")
    broken = shutil.copytree(synthetic_dataset.root, tmp_path / "broken")
    lines = (broken / "manifest.csv").read_text().splitlines()
    lines[3] = lines[3].replace(",-1", ",7", 1)
    (broken / "manifest.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(FaceregenError, match="manifest.csv:4"):
        FaceDataset(broken, "all")
    with pytest.raises(FaceregenError, match="split"):
        FaceDataset(synthetic_dataset.root, "training")


def data_config(tmp_path, synthesize: bool):
    return OmegaConf.create({
        "name": "synthetic", "raw_root": str(tmp_path / "raw"),
        "root": str(tmp_path / "prepared-16"), "size": 16, "split": "celeba",
        "synthesize": synthesize, "synth_num": 6, "synth_size": 32, "synth_seed": 0,
        "num_workers": 1,
    })


def test_ensure_dataset_synthesises_once(tmp_path, caplog):
    cfg = data_config(tmp_path, synthesize=True)
    with caplog.at_level(logging.INFO, logger="faceregen.data"):
        root = ensure_dataset(cfg)
    assert root == tmp_path / "prepared-16" and (root / "manifest.csv").exists()
    assert len([r for r in caplog.records if r.name == "faceregen.data"]) == 1
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="faceregen.data"):
        assert ensure_dataset(cfg) == root
    assert not caplog.records
    assert len(FaceDataset(root, "all")) == 6
    cfg.synth_num = 8  # another synthetic set than the one on disk: never reused in silence
    with pytest.raises(FaceregenError, match="holds 6 synthetic faces but data.synth_num is 8"):
        ensure_dataset(cfg)


def test_ensure_dataset_without_synthesis_names_the_command(tmp_path):
    with pytest.raises(FaceregenError) as info:
        ensure_dataset(data_config(tmp_path, synthesize=False))
    message = str(info.value)
    assert "prepared-16" in message and "faceregen data prepare --root" in message
    assert np.char.count(message, "\n") == 0
