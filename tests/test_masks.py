"""Mask I/O: index and colour masks, palette snapping, rejection of off-palette masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from faceregen.errors import FaceregenError
from faceregen.labels import NUM_CLASSES, PALETTE
from faceregen.masks import (
    colorize,
    one_hot,
    read_mask,
    snap_to_palette,
    write_color_mask,
    write_index_mask,
)


@pytest.fixture
def label():
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, NUM_CLASSES, (8, 8)).astype(np.uint8)
    return np.kron(blocks, np.ones((6, 6), dtype=np.uint8))  # 48x48, every class likely


def test_colorize_uses_palette(label):
    rgb = colorize(label)
    assert rgb.shape == (*label.shape, 3) and rgb.dtype == np.uint8
    assert (rgb == PALETTE[label]).all()


def test_index_mask_round_trip(label, tmp_path):
    write_index_mask(label, tmp_path / "m.png")
    with Image.open(tmp_path / "m.png") as img:
        assert img.mode == "L"
    assert (read_mask(tmp_path / "m.png") == label).all()
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]  # no temp file left


def test_mode_p_values_are_class_ids(label, tmp_path):
    img = Image.fromarray(label).convert("P")
    img.putdata(label.ravel().tolist())
    img.putpalette(PALETTE.ravel().tolist())
    img.save(tmp_path / "p.png")
    assert (read_mask(tmp_path / "p.png") == label).all()


def test_color_mask_round_trip(label, tmp_path):
    write_color_mask(label, tmp_path / "c.png")
    assert (read_mask(tmp_path / "c.png") == label).all()


def test_noisy_color_mask_snaps_back(label, tmp_path):
    rng = np.random.default_rng(1)
    noisy = colorize(label).astype(np.int16) + rng.integers(-20, 21, (*label.shape, 3))
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(tmp_path / "n.png")
    assert (read_mask(tmp_path / "n.png") == label).all()
    Image.fromarray(colorize(label)).save(tmp_path / "j.jpg", quality=95, subsampling=0)
    snapped, bad = snap_to_palette(np.asarray(Image.open(tmp_path / "j.jpg")))
    assert (snapped == label).mean() > 0.97 and bad < 0.01


def test_far_off_colour_is_rejected(label, tmp_path):
    rgb = colorize(label)
    rgb[:12, :12] = (128, 128, 128)
    Image.fromarray(rgb).save(tmp_path / "bad.png")
    with pytest.raises(FaceregenError) as info:
        read_mask(tmp_path / "bad.png")
    message = str(info.value)
    assert "bad.png" in message and "RGB(128, 128, 128)" in message and "144" in message
    _, bad_fraction = snap_to_palette(rgb)
    assert bad_fraction == pytest.approx(144 / label.size)


def test_unreadable_and_missing_files_name_the_file(tmp_path):
    with pytest.raises(FaceregenError, match="missing.png"):
        read_mask(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(FaceregenError, match="junk.png"):
        read_mask(tmp_path / "junk.png")
    Image.fromarray(np.full((4, 4), 200, np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(FaceregenError, match="big.png"):
        read_mask(tmp_path / "big.png")


def test_one_hot(label):
    batch = torch.from_numpy(np.stack([label, label[::-1].copy()])).long()
    encoded = one_hot(batch)
    assert encoded.shape == (2, NUM_CLASSES, *label.shape) and encoded.dtype == torch.float32
    assert (encoded.sum(1) == 1).all() and (encoded.argmax(1) == batch).all()
    single = one_hot(batch[0])
    assert single.shape == (NUM_CLASSES, *label.shape) and torch.equal(single, encoded[0])


def test_index_mask_saved_as_rgb_or_opaque_la_is_an_index_mask(label, tmp_path):
    """OpenCV writes index maps as three equal channels; they must not snap to background."""
    rgb = np.repeat(label[..., None], 3, axis=2)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "rgb.png"), label)
    Image.fromarray(np.dstack([rgb, np.full(label.shape, 255, np.uint8)])).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "a.png"), label)
    la = Image.fromarray(label).convert("LA")
    la.save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "la.png"), label)


def test_ambiguous_grey_masks_are_refused(label, tmp_path):
    grey = np.repeat((label * 10)[..., None], 3, axis=2)  # grey, values up to 180
    Image.fromarray(grey).save(tmp_path / "grey.png")
    with pytest.raises(FaceregenError, match="grey.png.*neither an index mask"):
        read_mask(tmp_path / "grey.png")
    alpha = np.full(label.shape, 255, np.uint8)
    alpha[0, 0] = 0
    Image.fromarray(np.dstack([label, alpha]), mode="LA").save(tmp_path / "see_through.png")
    with pytest.raises(FaceregenError, match="see_through.png.*transparent"):
        read_mask(tmp_path / "see_through.png")
