"""`faceregen regen --region-ref`: per-region references with a regional model, their pairs-file
form, the export, and the user errors (a global model refuses them)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from faceregen.cli import main as cli_main
from faceregen.labels import LABEL_NAMES
from faceregen.regen import references
from faceregen.regen.regions import parse_region_reference

HAIR, SKIN = LABEL_NAMES.index("hair"), LABEL_NAMES.index("skin")


@pytest.fixture(scope="module")
def regional_ckpt(tmp_path_factory, tiny_cfg, tiny_checkpoint):
    return tiny_checkpoint(tmp_path_factory.mktemp("regional") / "last.pt",
                           tiny_cfg("model=style_regional"))


@pytest.fixture(scope="module")
def global_ckpt(tmp_path_factory, tiny_cfg, tiny_checkpoint):
    return tiny_checkpoint(tmp_path_factory.mktemp("global") / "last.pt", tiny_cfg())


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FACEREGEN_RUNS", str(tmp_path / "no-runs"))


def face_label(size: int = 40, hair: bool = True) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size] / size
    label = np.zeros((size, size), np.uint8)
    label[((cols - 0.5) / 0.42) ** 2 + ((rows - 0.55) / 0.45) ** 2 < 1] = SKIN
    if hair:
        label[(rows < 0.3) & (label == SKIN)] = HAIR
    label[(abs(rows - 0.72) < 0.03) & (abs(cols - 0.5) < 0.12)] = LABEL_NAMES.index("u_lip")
    label[rows > 0.9] = LABEL_NAMES.index("cloth")
    return label


def write_face(folder, name: str, seed: int, hair: bool = True):
    """A photo with random colours per class and its index mask: (photo path, mask path)."""
    label = face_label(hair=hair)
    colours = np.random.default_rng(seed).integers(0, 256, (len(LABEL_NAMES), 3), np.uint8)
    Image.fromarray(colours[label]).save(folder / f"{name}.png")
    Image.fromarray(label).save(folder / f"{name}_mask.png")
    return folder / f"{name}.png", folder / f"{name}_mask.png"


@pytest.fixture
def faces(tmp_path):
    return {name: write_face(tmp_path, name, seed)
            for name, seed in (("a", 1), ("b", 2), ("c", 3))} | {
        "bald": write_face(tmp_path, "bald", 4, hair=False)}


def regen(ckpt, out, mask, ref, *extra) -> np.ndarray:
    cli_main(["regen", "--mask", str(mask), "--ref", str(ref[0]), "--ref-mask", str(ref[1]),
              "--ckpt", str(ckpt), "--out", str(out), "--device", "cpu", *map(str, extra)])
    return np.asarray(Image.open(out))


def region_arg(regions: str, face) -> str:
    return f"{regions}={face[0]}:{face[1]}"


def test_region_references_change_the_face_and_compare_shows_them(regional_ckpt, faces,
                                                                    tmp_path):
    a, b, c = faces["a"], faces["b"], faces["c"]
    plain = regen(regional_ckpt, tmp_path / "plain.png", a[1], a)
    mixed = regen(regional_ckpt, tmp_path / "mixed.png", a[1], a,
                  "--region-ref", region_arg("hair", b), "--region-ref",
                  region_arg("skin,nose", c), "--compare")
    assert mixed.shape == plain.shape == (40, 40, 3)
    assert not np.array_equal(mixed, plain)
    compare = np.asarray(Image.open(tmp_path / "mixed_compare.png"))
    assert compare.shape == (40, 40 * 5, 3)  # mask | reference | two region references | face
    assert not list(tmp_path.glob("*.tmp*"))


def test_every_region_from_one_reference_is_that_reference(regional_ckpt, faces, tmp_path):
    a, b = faces["a"], faces["b"]
    alone = regen(regional_ckpt, tmp_path / "alone.png", b[1], b)
    mixed = regen(regional_ckpt, tmp_path / "all.png", b[1], a,
                  "--region-ref", region_arg(",".join(LABEL_NAMES), b))
    np.testing.assert_array_equal(mixed, alone)


def test_a_region_the_reference_lacks_keeps_the_main_references_style(regional_ckpt, faces,
                                                                       tmp_path):
    a = faces["a"]
    plain = regen(regional_ckpt, tmp_path / "plain.png", a[1], a)
    from_bald = regen(regional_ckpt, tmp_path / "from_bald.png", a[1], a,
                      "--region-ref", region_arg("hair", faces["bald"]))
    np.testing.assert_array_equal(from_bald, plain)
    from_b = regen(regional_ckpt, tmp_path / "from_b.png", a[1], a,
                   "--region-ref", region_arg("hair", faces["b"]))
    assert not np.array_equal(from_b, plain)


def test_a_region_references_mask_is_predicted_when_omitted(regional_ckpt, faces, tmp_path,
                                                             monkeypatch):
    parser_file = tmp_path / "parser.pt"
    parser_file.write_bytes(b"stub")
    monkeypatch.setattr(references, "load_reference_parser",
                        lambda path, device: (lambda photo: face_label()))
    a, b = faces["a"], faces["b"]
    given = regen(regional_ckpt, tmp_path / "given.png", a[1], a,
                  "--region-ref", region_arg("hair", b))
    predicted = regen(regional_ckpt, tmp_path / "predicted.png", a[1], a,
                      "--region-ref", f"hair={b[0]}", "--parser", parser_file)
    np.testing.assert_array_equal(given, predicted)


def test_pairs_file_with_region_references_matches_single_runs(regional_ckpt, faces,
                                                               tmp_path, capsys):
    a, b, c = faces["a"], faces["b"], faces["c"]
    single = regen(regional_ckpt, tmp_path / "single.png", a[1], a,
                   "--region-ref", region_arg("hair", b), "--region-ref", region_arg("skin", c))
    with open(tmp_path / "pairs.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["mask", "ref", "ref_mask", "region_refs"])
        writer.writerow(["a_mask.png", "a.png", "a_mask.png",
                         "hair=b.png:b_mask.png;skin=c.png:c_mask.png"])
        writer.writerow(["b_mask.png", "b.png", "b_mask.png", ""])
    cli_main(["regen", "--pairs", str(tmp_path / "pairs.csv"), "--out-dir",
              str(tmp_path / "out"), "--ckpt", str(regional_ckpt), "--device", "cpu",
              "--batch-size", "2"])
    assert "wrote 2 face(s)" in capsys.readouterr().out
    alone = regen(regional_ckpt, tmp_path / "b_alone.png", b[1], b)
    for name, expected in (("a_mask_a_regen.png", single), ("b_mask_b_regen.png", alone)):
        # a batch of two rounds differently from a batch of one: a value may move by one level
        difference = np.abs(np.asarray(Image.open(tmp_path / "out" / name)).astype(int)
                            - expected.astype(int))
        assert difference.max() <= 1 and (difference > 0).mean() < 0.01, name
    a_alone = regen(regional_ckpt, tmp_path / "a_alone.png", a[1], a).astype(int)
    assert (np.abs(a_alone - single.astype(int)) > 1).any()  # the region column was used


def test_the_export_of_a_regional_model_takes_region_references(regional_ckpt, faces,
                                                                 tmp_path):
    cli_main(["export", "--ckpt", str(regional_ckpt), "--out", str(tmp_path / "r.safetensors")])
    a, b = faces["a"], faces["b"]
    extra = ("--region-ref", region_arg("hair", b))
    np.testing.assert_array_equal(
        regen(tmp_path / "r.safetensors", tmp_path / "st.png", a[1], a, *extra),
        regen(regional_ckpt, tmp_path / "pt.png", a[1], a, *extra))


def test_region_reference_parsing(tmp_path):
    parsed = parse_region_reference("skin, nose=c.jpg:c_mask.png")
    assert parsed.classes == (SKIN, LABEL_NAMES.index("nose"))
    assert parsed.image.name == "c.jpg" and parsed.mask.name == "c_mask.png"
    assert parse_region_reference("hair=b.jpg").mask is None
    odd = tmp_path / "x:y.png"
    odd.write_bytes(b"")
    assert parse_region_reference("hair=x:y.png", base=tmp_path).image == odd


def test_region_reference_user_errors(regional_ckpt, global_ckpt, faces, tmp_path, user_error):
    a, b = faces["a"], faces["b"]
    base = ["regen", "--mask", a[1], "--ref", a[0], "--ref-mask", a[1], "--device", "cpu",
            "--out", tmp_path / "o.png"]
    message = user_error([*base, "--ckpt", global_ckpt, "--region-ref", region_arg("hair", b)])
    assert "--region-ref" in message and "model=style_regional" in message
    assert str(global_ckpt) in message
    message = user_error([*base, "--ckpt", regional_ckpt, "--region-ref", f"hiar={b[0]}"])
    assert "hiar" in message and "unknown region" in message and "hair" in message
    message = user_error([*base, "--ckpt", regional_ckpt, "--region-ref",
                          f"hair={tmp_path / 'missing.png'}"])
    assert "missing.png" in message and "not found" in message
    message = user_error([*base, "--ckpt", regional_ckpt, "--region-ref", str(b[0])])
    assert "REGIONS=IMAGE[:MASK]" in message
    message = user_error([*base, "--ckpt", regional_ckpt, "--region-ref",
                          region_arg("hair", b), "--region-ref", region_arg("hair,skin", a)])
    assert "hair" in message and "already" in message
    assert not (tmp_path / "o.png").exists()
