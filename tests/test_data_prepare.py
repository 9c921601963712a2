"""`prepare`: merged labels, manifest, resumability, and every bad-input case."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from faceregen.cli import main as cli_main
from faceregen.data import celebamask as layout
from faceregen.data.prepare import MANIFEST_HEADER, prepare
from faceregen.errors import FaceregenError
from faceregen.labels import ATTRIBUTE_NAMES, PART_NAMES


@pytest.fixture
def raw(synthetic_dataset, tmp_path):
    """A private copy of the session's raw set, free to damage."""
    return shutil.copytree(synthetic_dataset.raw, tmp_path / "raw")


def read_rows(root):
    with open(root / "manifest.csv", newline="") as handle:
        return list(csv.reader(handle))


def all_files(root):
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()
            and p.name != "meta.json"}


def test_merged_labels_equal_part_masks(synthetic_dataset, tmp_path):
    """At the mask size, prepare's labels are exactly the masks merged in PART_NAMES order."""
    raw, half = synthetic_dataset.raw, synthetic_dataset.photo_size // 2
    out = tmp_path / "prepared"
    prepare(raw, out, size=half, split="index", progress=False)
    for k in range(synthetic_dataset.num):
        expected = np.zeros((half, half), np.uint8)
        for index, part in enumerate(PART_NAMES, start=1):
            path = layout.part_mask_path(raw, k, part)
            if path.exists():
                expected[np.asarray(Image.open(path)) > 0] = index
        with Image.open(out / "labels" / f"{k}.png") as label:
            assert label.mode == "L"
            assert (np.asarray(label) == expected).all()
        with Image.open(out / "images" / f"{k}.png") as image:
            assert image.size == (half, half) and image.mode == "RGB"


def test_manifest_and_meta(synthetic_dataset):
    root, raw = synthetic_dataset.root, synthetic_dataset.raw
    rows = read_rows(root)
    assert rows[0] == MANIFEST_HEADER and rows[0][4:] == list(ATTRIBUTE_NAMES)
    attribute_lines = (raw / "CelebAMask-HQ-attribute-anno.txt").read_text().splitlines()[2:]
    for row, line in zip(rows[1:], attribute_lines):
        assert row[2] == f"images/{row[0]}.png" and row[3] == f"labels/{row[0]}.png"
        assert (root / row[2]).exists() and (root / row[3]).exists()
        assert row[4:] == line.split()[1:]
    mapping = layout.read_mapping(raw)
    for row in rows[1:]:
        orig = mapping[int(row[0])]
        assert row[1] == ("train" if orig < 162771 else "val" if orig < 182638 else "test")
    meta = json.loads((root / "meta.json").read_text())
    assert meta["size"] == 32 and meta["split"] == "celeba" and meta["count"] == len(rows) - 1
    assert meta["skipped"] == [] and sum(meta["splits"].values()) == meta["count"]


def test_split_schemes(synthetic_dataset, tmp_path):
    prepare(synthetic_dataset.raw, tmp_path / "r", size=16, split="report", progress=False)
    splits = {int(r[0]): r[1] for r in read_rows(tmp_path / "r")[1:]}
    assert splits[1] == "val" and splits[2] == "test" and splits[3] == "train"


def test_finished_run_is_a_no_op(synthetic_dataset, capsys):
    before = all_files(synthetic_dataset.root)
    cli_main(["data", "prepare", "--root", str(synthetic_dataset.raw), "--out",
              str(synthetic_dataset.root), "--size", "32", "--workers", "1"])
    assert "nothing to do" in capsys.readouterr().out
    assert all_files(synthetic_dataset.root) == before


def test_other_settings_in_the_same_out_dir_are_refused(synthetic_dataset):
    with pytest.raises(FaceregenError, match="other settings"):
        prepare(synthetic_dataset.raw, synthetic_dataset.root, size=24, progress=False)


def test_interrupted_run_resumes_to_the_same_result(synthetic_dataset, tmp_path, monkeypatch):
    import faceregen.data.prepare as prepare_module

    out = tmp_path / "resumed"
    real_prepare_face = prepare_module.prepare_face
    calls = []

    def crash_after_five(*args):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(args)
        real_prepare_face(*args)

    monkeypatch.setattr(prepare_module, "prepare_face", crash_after_five)
    with pytest.raises(KeyboardInterrupt):
        prepare(synthetic_dataset.raw, out, size=32, workers=1, progress=False)
    assert not (out / "manifest.csv").exists()
    assert len(list((out / "labels").iterdir())) == 5
    monkeypatch.setattr(prepare_module, "prepare_face", real_prepare_face)
    (out / "images" / "0.png").unlink()  # a half-done face: label written, image not yet
    result = prepare(synthetic_dataset.raw, out, size=32, workers=2, progress=False)
    assert not result.already_done and result.count == synthetic_dataset.num
    assert all_files(out) == all_files(synthetic_dataset.root)
    assert not list(out.rglob("*.tmp*"))


def damage(raw, case: str) -> str:
    """Break face 3 (or the attribute file) one way; return the file name the error must name."""
    if case == "missing photo":
        (raw / "CelebA-HQ-img" / "3.jpg").unlink()
        return "3.jpg"
    if case == "truncated photo":
        path = raw / "CelebA-HQ-img" / "4.jpg"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return "4.jpg"
    if case == "wrong mask size":
        path = layout.part_mask_path(raw, 5, "hair")
        Image.open(path).resize((20, 20)).save(path)
        return "00005_hair.png"
    if case == "malformed attribute line":
        path = raw / "CelebAMask-HQ-attribute-anno.txt"
        lines = path.read_text().splitlines()
        lines[8] = lines[8].rsplit(" ", 1)[0]  # face 6 loses its last value
        path.write_text("\n".join(lines) + "\n")
        return "CelebAMask-HQ-attribute-anno.txt:9"
    raise ValueError(case)


BAD_CASES = ["missing photo", "truncated photo", "wrong mask size", "malformed attribute line"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_stops_with_the_file_named(raw, tmp_path, case):
    name = damage(raw, case)
    with pytest.raises(FaceregenError) as info:
        prepare(raw, tmp_path / "out", size=16, workers=1, progress=False)
    assert name in str(info.value) and "\n" not in str(info.value)


def test_skip_bad_skips_and_lists(raw, tmp_path, synthetic_dataset, capsys):
    names = [damage(raw, case) for case in BAD_CASES]
    cli_main(["data", "prepare", "--root", str(raw), "--out", str(tmp_path / "out"), "--size",
              "16", "--split", "index", "--workers", "2", "--skip-bad"])
    printed = capsys.readouterr().out
    assert "skipped 4" in printed and all(name in printed for name in names)
    ids = [int(r[0]) for r in read_rows(tmp_path / "out")[1:]]
    assert ids == [k for k in range(synthetic_dataset.num) if k not in (3, 4, 5, 6)]
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert len(meta["skipped"]) == 4


def test_cli_bad_input_exits_2_with_one_error_line(raw, tmp_path, capsys):
    damage(raw, "truncated photo")
    with pytest.raises(SystemExit) as info:
        cli_main(["data", "prepare", "--root", str(raw), "--out", str(tmp_path / "out"),
                  "--size", "16", "--workers", "1"])
    assert info.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines()
                   if line.startswith("error:")]
    assert len(error_lines) == 1 and "4.jpg" in error_lines[0]


def test_masks_at_photo_size_are_accepted(raw, tmp_path):
    for path in (raw / "CelebAMask-HQ-mask-anno" / "0").glob("00002_*.png"):
        Image.open(path).resize((64, 64), Image.NEAREST).save(path)
    result = prepare(raw, tmp_path / "out", size=16, split="index", progress=False)
    assert result.count == 12 and not result.skipped
