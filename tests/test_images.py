"""uint8 <-> [-1, 1] conversion and image grids: the one place every command converts images."""

from __future__ import annotations

import numpy as np
import torch

from faceregen.images import from_hwc, image_grid, to_float, to_hwc, to_uint8, to_unit_range


def test_every_8_bit_value_survives_the_round_trip():
    values = torch.arange(256, dtype=torch.uint8)
    as_float = to_float(values)
    assert as_float.dtype == torch.float32
    assert as_float.min() == -1.0 and as_float.max() == 1.0
    assert torch.equal(to_uint8(as_float), values)


def test_to_uint8_rounds_and_clips():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0 / 255, 1.0, 2.0])
    assert to_uint8(x).tolist() == [0, 0, 128, 128, 255, 255]  # 127.5 -> 128, 128.0 -> 128


def test_passthrough_of_the_other_form():
    floats = torch.rand(2, 3, 4, 4) * 2 - 1
    assert to_float(floats) is floats
    pixels = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    assert to_uint8(pixels) is pixels


def test_unit_range_maps_and_clips():
    x = torch.tensor([-1.0, 0.0, 1.0, 3.0]).reshape(1, 1, 2, 2)
    assert to_unit_range(x).flatten().tolist() == [0.0, 0.5, 1.0, 1.0]


def test_hwc_layouts_are_inverse():
    pixels = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    images = from_hwc(pixels)
    assert images.shape == (2, 3, 5, 7)
    np.testing.assert_array_equal(to_hwc(images), pixels)
    np.testing.assert_array_equal(to_hwc(images[0]), pixels[0])


def test_image_grid_places_tiles_in_rows_with_white_gutters():
    tile = np.zeros((4, 6, 3), dtype=np.uint8)
    rows = [[tile, tile + 10, tile + 20], [tile + 30, tile + 40, tile + 50]]
    grid = image_grid(rows, padding=2)
    assert grid.shape == (2 + 2 * (4 + 2), 2 + 3 * (6 + 2), 3)
    for r, row in enumerate(rows):
        for c, expected in enumerate(row):
            top, left = 2 + r * 6, 2 + c * 8
            np.testing.assert_array_equal(grid[top:top + 4, left:left + 6], expected)
    assert (grid[:2] == 255).all() and (grid[:, :2] == 255).all()


def test_from_hwc_gives_a_view_and_a_copy_the_same_strides():
    """``image[None]`` (a batch-stride-0 view) and ``np.stack([image])`` become the same tensor,
    strides included: oneDNN rounds differently for a stride-0 batch."""
    import numpy as np

    from faceregen.images import from_hwc

    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    view, stacked = from_hwc(image[None]), from_hwc(np.stack([image]))
    assert view.stride() == stacked.stride() and torch.equal(view, stacked)
