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


# --- colour masks saved as JPEG -----------------------------------------------------------------

def synthetic_face_label(seed: int = 1, size: int = 256) -> np.ndarray:
    """A face label map from the synthetic set's drawing code (hair, skin, brows, lips, ...)."""
    from faceregen.data.synth import draw_face, sample_face

    rng = np.random.default_rng(seed)
    return np.asarray(draw_face(sample_face(rng, size), size, rng).label).astype(np.uint8)


def near_an_edge(label: np.ndarray, radius: int = 2) -> np.ndarray:
    """Pixels within ``radius`` of a pixel of another class."""
    from faceregen.mask_cleaning import _dilate

    return np.logical_or.reduce([_dilate(label == k, radius) & (label != k)
                                 for k in np.unique(label)])


@pytest.mark.parametrize("quality", [90, 75])
def test_jpeg_color_mask_is_accepted_and_cleaned(quality, tmp_path, caplog):
    """PIL's JPEG (4:2:0 chroma) of a 256 px face mask: 2-4 % of the pixels snap to a wrong
    class (lines of lip colour along the hair, ear colour around the brows). After cleaning at
    most 1 % differ from the original, all but a handful within two pixels of an edge, and the
    uncertain pixels are reported."""
    label = synthetic_face_label()
    Image.fromarray(colorize(label)).save(tmp_path / "m.jpg", quality=quality)
    naive, far = snap_to_palette(np.asarray(Image.open(tmp_path / "m.jpg").convert("RGB")))
    assert far > 0.01  # refused before: more than 1 % of the pixels far from every colour
    with caplog.at_level("WARNING", logger="faceregen.masks"):
        got = read_mask(tmp_path / "m.jpg")
    wrong = got != label
    assert wrong.mean() < 0.01 and wrong.mean() < (naive != label).mean() / 4
    assert (wrong & ~near_an_edge(label)).sum() <= 10
    assert "m.jpg" in caplog.text and "were not clearly one palette colour" in caplog.text


@pytest.mark.parametrize("neighbour", ["background", "neck"])
def test_jpeg_fringe_draws_no_class_that_is_not_there(neighbour, tmp_path):
    """Hair (0,0,204) fading into background (0,0,0) passes through the lower lip's colour
    (0,0,153); JPEG's half-resolution chroma turns a hair edge on the neck (255,153,51) into
    lip colour too. No lip may appear, and each side keeps its class but at the edge."""
    from faceregen.labels import LABEL_NAMES

    label = np.full((64, 64), LABEL_NAMES.index(neighbour), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    label[(yy - 32) ** 2 + (xx - 30) ** 2 < 22 ** 2] = LABEL_NAMES.index("hair")
    Image.fromarray(colorize(label)).save(tmp_path / "hair.jpg", quality=90)
    naive, _ = snap_to_palette(np.asarray(Image.open(tmp_path / "hair.jpg").convert("RGB")))
    lip = LABEL_NAMES.index("l_lip")
    assert (naive == lip).sum() > 10  # the fringe, snapped to the nearest colour
    got = read_mask(tmp_path / "hair.jpg")
    assert set(np.unique(got)) == set(np.unique(label))
    assert ((got != label) & ~near_an_edge(label, 1)).sum() == 0


def test_exact_color_mask_is_not_cleaned():
    from faceregen.mask_cleaning import clean_color_mask

    label = synthetic_face_label(size=64)
    cleaned = clean_color_mask(colorize(label))
    assert (cleaned.labels == label).all() and cleaned.unclear == cleaned.foreign == 0


def test_photo_and_noise_are_refused(tmp_path):
    """A photo (the synthetic set's own rendering, as PNG and as JPEG) and uniform noise are no
    label maps, whatever the cleaning could make of them."""
    from faceregen.data.synth import draw_face, render_photo, sample_face, sample_look

    rng = np.random.default_rng(5)
    face = sample_face(rng, 256)
    photo = render_photo(draw_face(face, 256, rng), sample_look(face, rng), rng, 128)
    photo.save(tmp_path / "photo.png")
    photo.save(tmp_path / "photo.jpg", quality=90)
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3)).astype(np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    for name in ("photo.png", "photo.jpg", "noise.png"):
        with pytest.raises(FaceregenError, match=rf"{name}: .*not a CelebAMask-HQ colour mask"):
            read_mask(tmp_path / name)


def test_mostly_unclear_masks_are_refused(label, tmp_path, monkeypatch):
    """The second test: too many pixels without a clear colour, even when every one of them is
    near some palette colour (so none is foreign): a mask blurred beyond use."""
    from faceregen import masks

    blurred = np.asarray(Image.fromarray(colorize(label)).resize((12, 12), Image.BILINEAR)
                         .resize((48, 48), Image.BILINEAR))
    Image.fromarray(blurred).save(tmp_path / "blurred.png")
    monkeypatch.setattr(masks, "MAX_OFF_PALETTE_FRACTION", 1.0)  # only the second test left
    with pytest.raises(FaceregenError, match=r"blurred.png: .*show no clear palette colour"):
        read_mask(tmp_path / "blurred.png")
