"""Synthetic raw set: CelebAMask-HQ's exact layout, drawn geometry == merged masks, determinism."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceregen.cli import main as cli_main
from faceregen.data import celebamask as layout
from faceregen.data.synth import split_orig_indices, synthesize, synthesize_face
from faceregen.errors import FaceregenError
from faceregen.labels import ATTRIBUTE_NAMES, LABEL_NAMES, PART_NAMES


def merge(masks: dict[str, np.ndarray], shape) -> np.ndarray:
    """CelebAMask-HQ's g_mask.py merge, written out independently of prepare."""
    label = np.zeros(shape, np.uint8)
    for index, part in enumerate(PART_NAMES, start=1):
        if part in masks:
            label[masks[part] != 0] = index
    return label


def test_layout_and_file_names(synthetic_dataset):
    raw, num, size = synthetic_dataset.raw, synthetic_dataset.num, synthetic_dataset.photo_size
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        ["CelebA-HQ-img", "CelebAMask-HQ-mask-anno", "CelebAMask-HQ-attribute-anno.txt",
         "CelebA-HQ-to-CelebA-mapping.txt", "synth.json"])
    assert sorted(p.name for p in (raw / "CelebA-HQ-img").iterdir()) == sorted(
        f"{k}.jpg" for k in range(num))
    assert [p.name for p in (raw / "CelebAMask-HQ-mask-anno").iterdir()] == ["0"]
    for path in (raw / "CelebAMask-HQ-mask-anno" / "0").iterdir():
        stem, part = path.stem[:5], path.stem[6:]
        assert path.suffix == ".png" and path.stem[5] == "_" and part in PART_NAMES
        assert int(stem) < num and stem == f"{int(stem):05d}"
    with Image.open(raw / "CelebA-HQ-img" / "0.jpg") as photo:
        assert photo.format == "JPEG" and photo.size == (size, size)
    with Image.open(raw / "CelebAMask-HQ-mask-anno" / "0" / "00000_skin.png") as mask:
        values = np.unique(np.asarray(mask))
        assert mask.size == (size // 2, size // 2) and set(values) <= {0, 255}
    assert layout.part_mask_path(Path("r"), 2001, "l_eye") == Path(
        "r/CelebAMask-HQ-mask-anno/1/02001_l_eye.png")


def test_annotation_files(synthetic_dataset):
    raw, num = synthetic_dataset.raw, synthetic_dataset.num
    lines = (raw / "CelebAMask-HQ-attribute-anno.txt").read_text().splitlines()
    assert lines[0] == str(num) and lines[1].split() == list(ATTRIBUTE_NAMES)
    for k, line in enumerate(lines[2:]):
        fields = line.split()
        assert fields[0] == f"{k}.jpg" and len(fields) == 41
        assert set(fields[1:]) <= {"1", "-1"}
    mapping = (raw / "CelebA-HQ-to-CelebA-mapping.txt").read_text().splitlines()
    assert mapping[0] == "idx orig_idx orig_file" and len(mapping) == num + 1
    idx, orig, name = mapping[1].split()
    assert idx == "0" and name == f"{int(orig) + 1:06d}.jpg"


def test_masks_on_disk_merge_to_the_drawn_label_map(synthetic_dataset):
    raw = synthetic_dataset.raw
    for k in range(synthetic_dataset.num):
        _, drawn, _, _ = synthesize_face(k, seed=0, size=synthetic_dataset.photo_size)
        masks = {}
        for part in PART_NAMES:
            path = layout.part_mask_path(raw, k, part)
            if path.exists():
                masks[part] = np.asarray(Image.open(path))
        assert (merge(masks, drawn.shape) == drawn).all()


def test_parts_and_attributes_follow_the_drawing():
    """Over a modest sample every class occurs, and drawn attributes match the label map."""
    seen = np.zeros(len(LABEL_NAMES), int)
    column = {name: i for i, name in enumerate(ATTRIBUTE_NAMES)}
    checks = {"Eyeglasses": "eye_g", "Wearing_Hat": "hat", "Wearing_Earrings": "ear_r",
              "Wearing_Necklace": "neck_l", "Mouth_Slightly_Open": "mouth"}
    for k in range(100):
        _, label, masks, attributes = synthesize_face(k, seed=3, size=64)
        assert (merge(masks, label.shape) == label).all()
        present = set(np.unique(label).tolist())
        seen[list(present)] += 1
        for attribute, part in checks.items():
            assert (attributes[column[attribute]] == 1) == (LABEL_NAMES.index(part) in present)
        assert set(attributes) <= {-1, 1}
    shares = dict(zip(LABEL_NAMES, seen / 100))
    assert all(share > 0 for share in shares.values()), shares
    assert shares["skin"] == 1 and shares["hair"] > 0.8 and shares["cloth"] == 1
    assert 0.03 < shares["hat"] < 0.3 and 0.05 < shares["eye_g"] < 0.35
    assert 0.25 < shares["mouth"] < 0.65


def test_same_seed_same_bytes_and_workers_do_not_matter(tmp_path):
    first = synthesize(tmp_path / "a", num=4, size=32, seed=7, workers=1, progress=False)
    second = synthesize(tmp_path / "b", num=4, size=32, seed=7, workers=2, progress=False)
    other = synthesize(tmp_path / "c", num=4, size=32, seed=8, workers=1, progress=False)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for path in files:
        assert (first / path).read_bytes() == (second / path).read_bytes(), path
    assert (first / "CelebA-HQ-img/0.jpg").read_bytes() != (other / "CelebA-HQ-img/0.jpg"
                                                            ).read_bytes()
    rewritten = synthesize(first, num=4, size=32, seed=8, workers=1, progress=False,
                           overwrite=True)
    assert sorted(p.relative_to(rewritten) for p in rewritten.rglob("*") if p.is_file()) == sorted(
        p.relative_to(other) for p in other.rglob("*") if p.is_file())


def test_synth_never_overwrites_a_folder_it_did_not_start(tmp_path, capsys):
    """`data synth --out` on an existing dataset (a slip for `prepare --root`) changes nothing."""
    real = tmp_path / "CelebAMask-HQ"
    (real / "CelebA-HQ-img").mkdir(parents=True)
    (real / "CelebA-HQ-img" / "0.jpg").write_bytes(b"a real photo")
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["data", "synth", "--out", str(real), "--num", "2", "--size", "32"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(real) in err[0] and "--overwrite" in err[0]
    assert [p.name for p in real.rglob("*")] == ["CelebA-HQ-img", "0.jpg"]
    assert (real / "CelebA-HQ-img" / "0.jpg").read_bytes() == b"a real photo"

    done = synthesize(tmp_path / "done", num=2, size=32, seed=0, workers=1, progress=False)
    with pytest.raises(FaceregenError, match="already"):
        synthesize(done, num=2, size=32, seed=0, workers=1, progress=False)
    with pytest.raises(FaceregenError, match="not an unfinished synthetic set"):
        synthesize(done, num=3, size=32, seed=0, workers=1, progress=False)


def test_an_interrupted_synth_is_finished_by_the_same_command(tmp_path):
    whole = synthesize(tmp_path / "whole", num=3, size=32, seed=0, workers=1, progress=False)
    cut = synthesize(tmp_path / "cut", num=3, size=32, seed=0, workers=1, progress=False)
    (cut / layout.ATTRIBUTE_FILE).unlink()           # killed before the last file
    (cut / "CelebA-HQ-img" / "2.jpg").unlink()
    synthesize(cut, num=3, size=32, seed=0, workers=1, progress=False)
    for path in whole.rglob("*"):
        if path.is_file():
            assert (cut / path.relative_to(whole)).read_bytes() == path.read_bytes()


def test_mapping_gives_roughly_80_10_10():
    orig = split_orig_indices(2000, seed=0)
    splits = layout.assign_splits(list(range(2000)), "celeba", dict(enumerate(orig)))
    shares = {name: list(splits.values()).count(name) / 2000 for name in ("train", "val", "test")}
    assert shares["train"] == pytest.approx(0.8, abs=0.03)
    assert shares["val"] == pytest.approx(0.1, abs=0.02)
    assert shares["test"] == pytest.approx(0.1, abs=0.02)
    assert len(set(orig)) == len(orig)


def test_threshold_attributes_leave_a_visible_gap():
    """Shape values never fall near an attribute's threshold, and the file says which side."""
    from faceregen.data.synth import SHAPE_ATTRIBUTES, face_attributes, sample_face, sample_look

    value_of = {"Smiling": "smile", "Narrow_Eyes": "eye_open", "Bushy_Eyebrows": "brow_thickness",
                "Arched_Eyebrows": "brow_arch", "Big_Lips": "lip_scale", "Big_Nose": "nose_width"}
    assert set(value_of) == set(SHAPE_ATTRIBUTES)
    rng = np.random.default_rng(0)
    faces = [sample_face(rng, 256) for _ in range(400)]
    for name, attribute in SHAPE_ATTRIBUTES.items():
        low, high = sorted([attribute.without, attribute.with_])
        assert low[1] < attribute.threshold < high[0]
        values = np.array([getattr(face, value_of[name]) for face in faces])
        in_low = (values >= low[0]) & (values <= low[1])
        in_high = (values >= high[0]) & (values <= high[1])
        assert (in_low | in_high).all(), name
        with_share = (in_high if attribute.with_ == high else in_low).mean()
        assert abs(with_share - attribute.share) < 0.08, (name, with_share)
    face, label = faces[0], np.zeros((8, 8), np.uint8)
    look = sample_look(face, rng)
    for name, attribute in SHAPE_ATTRIBUTES.items():
        for value_range, expected in ((attribute.with_, 1), (attribute.without, -1)):
            for value in value_range:
                changed = dataclasses.replace(face, **{value_of[name]: value})
                attributes = face_attributes(changed, look, label)
                assert attributes[ATTRIBUTE_NAMES.index(name)] == expected, (name, value)
