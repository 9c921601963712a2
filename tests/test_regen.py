"""`faceregen regen`: inputs as people have them, editing, folder mode and every user error."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

import faceregen.config  # noqa: F401  (registers the config schemas)
from faceregen import regen
from faceregen.checkpoint import find_latest_checkpoint
from faceregen.cli import main as cli_main
from faceregen.labels import LABEL_NAMES, PALETTE
from faceregen.regen import load_regenerator, references

SIZE = 32  # data.size of the tests' tiny config


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_cfg, tiny_checkpoint):
    return tiny_checkpoint(tmp_path_factory.mktemp("run") / "last.pt", tiny_cfg())


@pytest.fixture(scope="module")
def baseline_ckpt(tmp_path_factory, tiny_cfg, tiny_checkpoint):
    return tiny_checkpoint(tmp_path_factory.mktemp("base") / "last.pt", tiny_cfg("model=pix2pixhd"))


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Run in an empty folder: no checkpoints/ or data/ of the developer leak in."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FACEREGEN_RUNS", str(tmp_path / "no-runs"))


def face_label(height: int = 40, width: int = 40) -> np.ndarray:
    """A crude face: skin ellipse, hair on top, two eyes, nose, lips and a mouth."""
    rows, cols = np.mgrid[0:height, 0:width]
    y, x = rows / height, cols / width
    label = np.zeros((height, width), np.uint8)
    label[((x - 0.5) / 0.42) ** 2 + ((y - 0.55) / 0.45) ** 2 < 1] = 1
    label[(y < 0.25) & (label == 1)] = 13
    label[(abs(y - 0.45) < 0.04) & (abs(x - 0.35) < 0.06)] = 4
    label[(abs(y - 0.45) < 0.04) & (abs(x - 0.65) < 0.06)] = 5
    label[(abs(y - 0.58) < 0.06) & (abs(x - 0.5) < 0.05)] = 2
    label[(abs(y - 0.72) < 0.02) & (abs(x - 0.5) < 0.12)] = 11
    label[(abs(y - 0.76) < 0.02) & (abs(x - 0.5) < 0.12)] = 12
    return label


def face_photo(label: np.ndarray, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (len(LABEL_NAMES), 3), dtype=np.uint8)
    return colours[label]


def save_index(label, path):
    Image.fromarray(label).save(path)
    return path


def save_colour(label, path):
    Image.fromarray(PALETTE[label]).save(path)
    return path


@pytest.fixture
def files(tmp_path):
    label = face_label()
    Image.fromarray(face_photo(label)).save(tmp_path / "ref.png")
    return {
        "mask": save_index(label, tmp_path / "mask.png"),
        "ref": tmp_path / "ref.png",
        "ref_mask": save_index(label, tmp_path / "ref_mask.png"),
        "label": label,
    }


def run_cli(*args: str) -> None:
    cli_main(["regen", *[str(a) for a in args]])


def expect_user_error(capsys, *args: str) -> str:
    """Run, expect exit 2 and exactly one `error:` line (no traceback); return that line."""
    with pytest.raises(SystemExit) as excinfo:
        run_cli(*args)
    assert excinfo.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def regen_image(ckpt, mask, ref, ref_mask, out, *extra) -> np.ndarray:
    run_cli("--mask", mask, "--ref", ref, "--ref-mask", ref_mask, "--ckpt", ckpt, "--out", out,
            "--device", "cpu", *extra)
    return np.asarray(Image.open(out))


# ----------------------------------------------------------------------------- input kinds


def test_index_and_colour_masks_give_the_same_face(ckpt, files, tmp_path):
    colour_mask = save_colour(files["label"], tmp_path / "mask_colour.png")
    from_index = regen_image(ckpt, files["mask"], files["ref"], files["ref_mask"],
                             tmp_path / "a.png")
    from_colour = regen_image(ckpt, colour_mask, files["ref"], colour_mask, tmp_path / "b.png")
    assert from_index.shape == (40, 40, 3) and from_index.dtype == np.uint8
    np.testing.assert_array_equal(from_index, from_colour)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
def test_reference_formats(ckpt, files, tmp_path, suffix):
    ref = tmp_path / f"ref_any{suffix}"
    Image.fromarray(face_photo(files["label"])).resize((120, 120)).save(ref)
    out = regen_image(ckpt, files["mask"], ref, files["ref_mask"], tmp_path / "out.png")
    assert out.shape == (40, 40, 3)


def test_rgba_reference_is_composited_on_white(ckpt, files, tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :3] = face_photo(files["label"])
    rgba[..., 3] = np.where(files["label"] > 0, 255, 0)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "ref_rgba.png")
    photo = regen.read_photo(tmp_path / "ref_rgba.png")
    assert photo.shape == (40, 40, 3)
    assert (photo[files["label"] == 0] == 255).all()
    np.testing.assert_array_equal(photo[files["label"] > 0], rgba[..., :3][files["label"] > 0])
    out = regen_image(ckpt, files["mask"], tmp_path / "ref_rgba.png", files["ref_mask"],
                      tmp_path / "out.png")
    assert out.shape == (40, 40, 3)


def test_greyscale_and_16_bit_references(ckpt, files, tmp_path):
    grey = (np.arange(40 * 40).reshape(40, 40) % 256).astype(np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    photo = regen.read_photo(tmp_path / "grey.png")
    assert photo.shape == (40, 40, 3) and (photo == grey[..., None]).all()

    deep = (grey.astype(np.uint16) * 257)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as image:
        assert image.mode in ("I;16", "I")
    np.testing.assert_array_equal(regen.read_photo(tmp_path / "deep.png"), photo)
    for name in ("grey.png", "deep.png"):
        out = regen_image(ckpt, files["mask"], tmp_path / name, files["ref_mask"],
                          tmp_path / f"out_{name}")
        assert out.shape == (40, 40, 3)


def test_exif_rotated_reference_is_read_upright(ckpt, files, tmp_path):
    upright = np.asarray(Image.fromarray(face_photo(files["label"])).resize((40, 60)))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the stored pixels must be turned 90 degrees clockwise
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    stored.save(tmp_path / "rotated.png", exif=exif)
    Image.fromarray(upright).save(tmp_path / "upright.png")
    np.testing.assert_array_equal(regen.read_photo(tmp_path / "rotated.png"), upright)
    ref_mask = save_index(np.asarray(Image.fromarray(files["label"]).resize((40, 60))),
                          tmp_path / "ref_mask_tall.png")
    a = regen_image(ckpt, files["mask"], tmp_path / "rotated.png", ref_mask, tmp_path / "a.png")
    b = regen_image(ckpt, files["mask"], tmp_path / "upright.png", ref_mask, tmp_path / "b.png")
    np.testing.assert_array_equal(a, b)


def test_non_square_inputs_come_back_at_the_mask_size(ckpt, tmp_path):
    mask = save_index(face_label(50, 30), tmp_path / "tall.png")
    ref_label = face_label(36, 60)
    ref = tmp_path / "wide.jpg"
    Image.fromarray(face_photo(ref_label)).resize((120, 72)).save(ref)
    ref_mask = save_index(ref_label, tmp_path / "wide_mask.png")
    out = regen_image(ckpt, mask, ref, ref_mask, tmp_path / "out.png")
    assert out.shape == (50, 30, 3)


def test_letterbox_round_trip_is_exact_at_model_size():
    photo = np.random.default_rng(0).integers(0, 256, (SIZE, 20, 3), dtype=np.uint8)
    placement = regen.placement_for(SIZE, 20, SIZE)
    fitted = regen.fit_photo(photo, placement)
    assert fitted.shape == (SIZE, SIZE, 3)
    assert (fitted[:, 0] == photo[:, 0]).all() and (fitted[:, -1] == photo[:, -1]).all()
    np.testing.assert_array_equal(regen.restore_photo(fitted, placement), photo)
    label = face_label(SIZE, 20)
    fitted_label = regen.fit_label(label, placement)
    assert set(np.unique(fitted_label)) <= set(np.unique(label))


def test_default_output_is_beside_the_mask_and_compare(ckpt, files, capsys):
    run_cli("--mask", files["mask"], "--ref", files["ref"], "--ref-mask", files["ref_mask"],
            "--ckpt", ckpt, "--compare")
    out = files["mask"].with_name("mask_regen.png")
    assert capsys.readouterr().out.strip() == str(out)
    compare = np.asarray(Image.open(out.with_name("mask_regen_compare.png")))
    assert compare.shape == (40, 120, 3)
    np.testing.assert_array_equal(compare[:, :40], PALETTE[files["label"]])
    np.testing.assert_array_equal(compare[:, 80:], np.asarray(Image.open(out)))
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp.png")]


def test_newest_last_pt_under_runs_is_the_default(ckpt, files, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    for name, mtime in (("old", 1_000_000), ("new", 2_000_000)):
        (runs / name / "checkpoints").mkdir(parents=True)
        target = runs / name / "checkpoints" / "last.pt"
        target.write_bytes(ckpt.read_bytes())
        os.utime(target, (mtime, mtime))
    assert find_latest_checkpoint(runs) == runs / "new" / "checkpoints" / "last.pt"
    monkeypatch.setenv("FACEREGEN_RUNS", str(runs))
    run_cli("--mask", files["mask"], "--ref", files["ref"], "--ref-mask", files["ref_mask"])
    assert files["mask"].with_name("mask_regen.png").is_file()


def test_reference_mask_is_predicted_by_the_parser(ckpt, files, tmp_path, monkeypatch):
    parser_file = tmp_path / "parser.pt"
    parser_file.write_bytes(b"stub")
    seen = []

    def fake_parser(path, device):
        seen.append(path)
        return lambda photo: files["label"]

    monkeypatch.setattr(references, "load_reference_parser", fake_parser)
    run_cli("--mask", files["mask"], "--ref", files["ref"], "--ckpt", ckpt, "--parser",
            parser_file, "--out", tmp_path / "parsed.png")
    run_cli("--mask", files["mask"], "--ref", files["ref"], "--ref-mask", files["ref_mask"],
            "--ckpt", ckpt, "--out", tmp_path / "given.png")
    assert seen == [parser_file]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "parsed.png")),
                                  np.asarray(Image.open(tmp_path / "given.png")))


def test_reference_mask_from_the_default_parser_path(ckpt, files, tmp_path):
    from faceregen.evaluation.evaluators import load_evaluator, save_evaluator
    from faceregen.models.networks import UNetParser

    architecture = {"channels": 4, "depth": 2}
    data_root = tmp_path / "data" / "synthetic" / f"prepared-{SIZE}"
    save_evaluator(data_root / "evaluators" / "parser.pt", "parser", UNetParser(**architecture),
                   architecture, image_size=SIZE, data_root=data_root, steps=0, metrics={})
    evaluator = load_evaluator(data_root / "evaluators" / "parser.pt", "parser")
    tall = np.asarray(Image.fromarray(face_photo(files["label"])).resize((40, 56)))
    predicted = regen.parse_photo(evaluator, tall)
    assert predicted.shape == (56, 40) and predicted.dtype == np.uint8 and predicted.max() < 19
    run_cli("--mask", files["mask"], "--ref", files["ref"], "--ckpt", ckpt,
            "--out", tmp_path / "parsed.png")
    assert np.asarray(Image.open(tmp_path / "parsed.png")).shape == (40, 40, 3)


def test_baseline_needs_no_reference(baseline_ckpt, files, tmp_path):
    run_cli("--mask", files["mask"], "--ckpt", baseline_ckpt, "--out", tmp_path / "b.png")
    assert np.asarray(Image.open(tmp_path / "b.png")).shape == (40, 40, 3)


def test_regenerate_arrays_is_a_plain_function(ckpt, files):
    regenerator = load_regenerator(ckpt, "cpu")
    ref = face_photo(files["label"])
    result = regen.regenerate_arrays(regenerator, files["label"], ref, files["label"])
    assert result.shape == (40, 40, 3) and result.dtype == np.uint8
    other = regen.regenerate_arrays(regenerator, files["label"], 255 - ref, files["label"])
    assert not np.array_equal(result, other)  # the reference's appearance reaches the output


# ----------------------------------------------------------------------------- editing


def test_edit_label_changes_exactly_the_named_parts():
    label = face_label()
    other = face_label()
    other[(other == 11) | (other == 12)] = 1
    other[26:34, 18:22] = 10  # an open mouth, narrower than the lips it replaces
    other[26, 18:22] = 11
    other[5:9, 5:9] = 4  # an eye elsewhere: not a named part, must not be copied
    parts = regen.parse_parts("mouth,u_lip,l_lip")
    assert parts == [10, 11, 12]
    edited = regen.edit_label(label, other, parts)
    named_in_label, named_in_other = np.isin(label, parts), np.isin(other, parts)
    np.testing.assert_array_equal(edited[named_in_other], other[named_in_other])
    vacated = named_in_label & ~named_in_other
    assert vacated.any() and not np.isin(edited[vacated], parts).any()
    assert (edited[vacated] == 1).all()  # the lips sit in skin: the nearest kept label
    untouched = ~named_in_label & ~named_in_other
    np.testing.assert_array_equal(edited[untouched], label[untouched])


def test_edit_through_the_cli_feeds_the_edited_label(ckpt, files, tmp_path):
    other = files["label"].copy()
    other[26:34, 14:26] = 10
    save_index(other, tmp_path / "open_mouth.png")
    regen_image(ckpt, files["mask"], files["ref"], files["ref_mask"], tmp_path / "e.png",
                "--edit-from", tmp_path / "open_mouth.png", "--parts", "mouth", "--compare")
    compare = np.asarray(Image.open(tmp_path / "e_compare.png"))
    expected = regen.edit_label(files["label"], other, [10])
    np.testing.assert_array_equal(compare[:, :40], PALETTE[expected])


def test_unknown_part_names_list_the_valid_ones(ckpt, files, capsys):
    line = expect_user_error(capsys, "--mask", files["mask"], "--ref", files["ref"],
                             "--ref-mask", files["ref_mask"], "--ckpt", ckpt,
                             "--edit-from", files["mask"], "--parts", "mouth,lips")
    assert "lips" in line and "u_lip" in line and "cloth" in line


# ----------------------------------------------------------------------------- folder mode


def test_folder_mode_into_the_mask_folder_never_overwrites_an_input(ckpt, tmp_path, capsys):
    """masks/a.png's output masks/a_regen.png is itself an input mask of the same job set."""
    masks, refs = tmp_path / "masks", tmp_path / "refs"
    masks.mkdir()
    refs.mkdir()
    label = face_label()
    for stem in ("a", "a_regen"):
        save_index(label, masks / f"{stem}.png")
        Image.fromarray(face_photo(label)).save(refs / f"{stem}.png")
    before = (masks / "a_regen.png").read_bytes()
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("mask,ref,ref_mask\n" + "".join(
        f"masks/{stem}.png,refs/{stem}.png,masks/{stem}.png\n" for stem in ("a", "a_regen")))
    for mode in (["--pairs", pairs],
                 ["--mask-dir", masks, "--ref-dir", refs, "--ref-mask-dir", masks]):
        with pytest.raises(SystemExit) as excinfo:
            run_cli(*mode, "--out-dir", masks, "--ckpt", ckpt)
        assert excinfo.value.code == 2
        assert "a_regen.png: output would overwrite an input file" in capsys.readouterr().err
        assert (masks / "a_regen.png").read_bytes() == before


def test_folder_mode_continues_past_a_bad_pair(ckpt, tmp_path, capsys):
    masks, refs, out_dir = tmp_path / "masks", tmp_path / "refs", tmp_path / "out"
    masks.mkdir()
    refs.mkdir()
    for index, stem in enumerate(("a", "b", "c")):
        label = face_label(40 + 4 * index, 40)
        save_colour(label, masks / f"{stem}.png")
        save_index(label, refs / f"{stem}_mask.png")
        Image.fromarray(face_photo(label, seed=index)).save(refs / f"{stem}.jpg")
    (refs / "b.jpg").write_bytes(b"not a jpeg")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("mask,ref,ref_mask\n" + "".join(
        f"masks/{s}.png,refs/{s}.jpg,refs/{s}_mask.png\n" for s in "abc"))
    with pytest.raises(SystemExit) as excinfo:
        run_cli("--pairs", pairs, "--out-dir", out_dir, "--ckpt", ckpt, "--batch-size", "2")
    assert excinfo.value.code == 2
    captured = capsys.readouterr()
    assert sorted(p.name for p in out_dir.iterdir()) == ["a_regen.png", "c_regen.png"]
    assert np.asarray(Image.open(out_dir / "c_regen.png")).shape == (48, 40, 3)
    assert "1 pair(s) failed" in captured.err and "b.jpg" in captured.err
    assert "wrote 2 face(s)" in captured.out

    (refs / "b.jpg").unlink()
    for stem in "ac":
        (refs / f"{stem}_mask.png").rename(tmp_path / f"{stem}_mask.png")
    ref_masks = tmp_path / "ref_masks"
    ref_masks.mkdir()
    for stem in "ac":
        (tmp_path / f"{stem}_mask.png").rename(ref_masks / f"{stem}.png")
    with pytest.raises(SystemExit) as excinfo:
        run_cli("--mask-dir", masks, "--ref-dir", refs, "--ref-mask-dir", ref_masks,
                "--out-dir", tmp_path / "out2", "--ckpt", ckpt, "--compare")
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert "no reference named b.*" in err
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == [
        "a_regen.png", "a_regen_compare.png", "c_regen.png", "c_regen_compare.png"]


# ----------------------------------------------------------------------------- user errors


def test_missing_and_unreadable_files(ckpt, files, tmp_path, capsys):
    missing = tmp_path / "nope.png"
    line = expect_user_error(capsys, "--mask", missing, "--ref", files["ref"], "--ref-mask",
                             files["ref_mask"], "--ckpt", ckpt)
    assert str(missing) in line
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 definitely not a jpeg")
    line = expect_user_error(capsys, "--mask", files["mask"], "--ref", broken, "--ref-mask",
                             files["ref_mask"], "--ckpt", ckpt)
    assert str(broken) in line
    line = expect_user_error(capsys, "--mask", files["mask"], "--ref", files["ref"],
                             "--ref-mask", files["ref_mask"], "--ckpt", tmp_path / "none.pt")
    assert "none.pt" in line


def test_mask_with_unknown_colours(ckpt, files, tmp_path, capsys):
    rgb = PALETTE[files["label"]].copy()
    rgb[:20] = (123, 77, 250)
    Image.fromarray(rgb).save(tmp_path / "odd.png")
    line = expect_user_error(capsys, "--mask", tmp_path / "odd.png", "--ref", files["ref"],
                             "--ref-mask", files["ref_mask"], "--ckpt", ckpt)
    assert "odd.png" in line and "palette" in line


def test_reference_and_its_mask_of_different_aspect(ckpt, files, tmp_path, capsys):
    save_index(face_label(40, 64), tmp_path / "wide_mask.png")
    line = expect_user_error(capsys, "--mask", files["mask"], "--ref", files["ref"],
                             "--ref-mask", tmp_path / "wide_mask.png", "--ckpt", ckpt)
    assert "wide_mask.png" in line and "aspect" in line


def test_bad_checkpoints(ckpt, files, tmp_path, capsys):
    common = ["--mask", files["mask"], "--ref", files["ref"], "--ref-mask", files["ref_mask"]]
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    assert "foreign.pt" in expect_user_error(capsys, *common, "--ckpt", foreign)

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > pwned.txt",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "faceregen-checkpoint-v1", "x": Payload()}, evil)
    assert "evil.pt" in expect_user_error(capsys, *common, "--ckpt", evil)
    assert not (tmp_path / "pwned.txt").exists()

    state = torch.load(ckpt, weights_only=True)
    state["config"]["model"]["generator"]["ngf"] = 16
    torch.save(state, tmp_path / "mismatch.pt")
    line = expect_user_error(capsys, *common, "--ckpt", tmp_path / "mismatch.pt")
    assert "mismatch.pt" in line and "does not match" in line

    line = expect_user_error(capsys, *common)
    assert "no-runs" in line and "faceregen train" in line


def test_bad_output_paths(ckpt, files, tmp_path, capsys):
    common = ["--mask", files["mask"], "--ref", files["ref"], "--ref-mask", files["ref_mask"],
              "--ckpt", ckpt]
    missing_dir = tmp_path / "no_such_dir" / "out.png"
    line = expect_user_error(capsys, *common, "--out", missing_dir)
    assert str(missing_dir) in line and "does not exist" in line
    line = expect_user_error(capsys, *common, "--out", files["ref"])
    assert str(files["ref"]) in line and "overwrite" in line
    assert regen.read_photo(files["ref"]).shape == (40, 40, 3)


def test_missing_reference_mask_without_parser(ckpt, files, capsys):
    line = expect_user_error(capsys, "--mask", files["mask"], "--ref", files["ref"],
                             "--ckpt", ckpt)
    assert "--ref-mask" in line and "ref.png" in line
