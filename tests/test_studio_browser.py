"""The studio in a real browser: headless Chromium driven by Playwright against a real server.

Playwright rather than Selenium: it drives the system's Chromium over the DevTools protocol
with no driver binary to match, and it waits for network answers and page conditions
directly. The test skips only when no Chromium is installed (Debian: apt-get install -y
chromium; `.ci/run` does it), and says so.
"""

from __future__ import annotations

import base64
import io
import shutil

import numpy as np
import pytest
from PIL import Image

from faceregen import regen
from faceregen.studio.cli import background_server, load_studio

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
LAUNCH_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync"]
HAT = 14
TIMEOUT_MS = 60_000


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_cfg, tiny_checkpoint, synthetic_dataset):
    ckpt = tiny_checkpoint(tmp_path_factory.mktemp("browser") / "last.pt",
                           tiny_cfg(f"data.root={synthetic_dataset.root}"))
    return load_studio(ckpt, "cpu")


@pytest.fixture(scope="module")
def server(studio):
    with background_server(studio) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium found (install it: apt-get install -y chromium); the studio's "
                    "browser test did not run")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=chromium,
            headless=True, args=LAUNCH_FLAGS, viewport={"width": 1400, "height": 900},
            accept_downloads=True)
        yield context
        context.close()


@pytest.fixture
def page(browser, server):
    """The studio page, loaded, with its first face shown; fails on any page error."""
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.goto(server + "/")
    wait_for_faces(page, 1)
    yield page
    page.close()
    assert not errors, errors


def wait_for_faces(page, count: int) -> None:
    """Until the page has shown ``count`` faces and has no request in flight or waiting."""
    page.wait_for_function(
        f"window.studio && studio.regenCount >= {count} && !studio.inFlight && !studio.dirty",
        timeout=TIMEOUT_MS)
    shown_error = page.locator("#error")
    assert shown_error.is_hidden(), shown_error.text_content()


def page_labels(page) -> np.ndarray:
    width, height, data = page.evaluate(
        "[studio.width, studio.height, Array.from(studio.labels)]")
    return np.array(data, np.uint8).reshape(height, width)


def shown_face(page) -> np.ndarray:
    """The pixels of the face the page shows (the <img> drawn onto a canvas)."""
    url = page.evaluate("""() => {
        const image = document.getElementById('result-image');
        const canvas = document.createElement('canvas');
        canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
        canvas.getContext('2d').drawImage(image, 0, 0);
        return canvas.toDataURL('image/png');
    }""")
    data = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def mask_point(page, x: float, y: float) -> tuple[float, float]:
    """Screen coordinates of mask pixel (x, y)'s centre (the canvas is scaled to fit)."""
    box = page.locator("#mask-canvas").bounding_box()
    width, height = page.evaluate("[studio.width, studio.height]")
    scale = min(box["width"] / width, box["height"] / height)
    left = box["x"] + (box["width"] - width * scale) / 2
    top = box["y"] + (box["height"] - height * scale) / 2
    return left + (x + 0.5) * scale, top + (y + 0.5) * scale


def stroke(page, points: list[tuple[float, float]]) -> None:
    page.mouse.move(*mask_point(page, *points[0]))
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*mask_point(page, *point), steps=8)
    page.mouse.up()


def test_paint_a_stroke_and_the_face_follows(page, studio):
    first_face = next(iter(studio.gallery.faces.values()))
    before = page_labels(page)
    np.testing.assert_array_equal(before, first_face.label)  # index PNG decoded exactly
    np.testing.assert_array_equal(studio.last_mask, before)
    face_before = shown_face(page)

    page.click(f".swatch[data-label='{HAT}']")
    page.locator("#brush-size").fill("3")
    stroke(page, [(6, 8), (16, 10), (25, 8)])
    wait_for_faces(page, 2)

    after = page_labels(page)
    changed = after != before
    assert changed.sum() >= 20
    assert set(np.unique(after[changed])) == {HAT}
    rows, cols = np.nonzero(changed)
    assert rows.min() >= 6 and rows.max() <= 12 and cols.min() >= 4 and cols.max() <= 27
    # The server received exactly the painted label map: no in-between or anti-aliased value.
    np.testing.assert_array_equal(studio.last_mask, after)
    face_after = shown_face(page)
    assert (face_after != face_before).any()
    expected = regen.regenerate_arrays(studio.regenerator, after, first_face.photo,
                                       first_face.label)
    np.testing.assert_array_equal(face_after, expected)


def test_fill_eraser_undo_redo_parts_and_downloads(page, studio, tmp_path):
    faces = list(studio.gallery.faces.values())
    start = page_labels(page)
    count = page.evaluate("studio.regenCount")

    page.click("button[data-tool='fill']")
    page.click(".swatch[data-label='18']")  # cloth
    page.mouse.click(*mask_point(page, 0, 0))
    wait_for_faces(page, count + 1)
    filled = page_labels(page)
    region = (filled != start)
    assert region[0, 0] and (filled[region] == 18).all() and (start[region] == start[0, 0]).all()

    page.click("button[data-tool='eraser']")
    stroke(page, [(16, 16), (17, 16)])
    wait_for_faces(page, count + 2)
    erased = page_labels(page)
    assert (erased[filled != erased] == 0).all() and (filled != erased).any()
    np.testing.assert_array_equal(studio.last_mask, erased)

    page.click("#undo")
    wait_for_faces(page, count + 3)
    np.testing.assert_array_equal(page_labels(page), filled)
    np.testing.assert_array_equal(studio.last_mask, filled)
    page.keyboard.press("Control+Shift+Z")
    wait_for_faces(page, count + 4)
    np.testing.assert_array_equal(page_labels(page), erased)

    page.select_option("#parts-source", f"gallery:{faces[1].face_id}")
    page.click("#apply-parts")  # mouth, u_lip and l_lip are ticked at the start
    wait_for_faces(page, count + 5)
    expected = regen.edit_label(erased, faces[1].label, regen.parse_parts("mouth,u_lip,l_lip"))
    np.testing.assert_array_equal(page_labels(page), expected)
    np.testing.assert_array_equal(studio.last_mask, expected)

    downloads = {}
    for button in ("download-face", "download-mask", "download-compare"):
        with page.expect_download() as info:
            page.click(f"#{button}")
        downloads[button] = np.asarray(Image.open(info.value.path()))
    np.testing.assert_array_equal(downloads["download-mask"], expected)
    np.testing.assert_array_equal(downloads["download-face"], shown_face(page))
    height, width = expected.shape
    assert downloads["download-compare"].shape == (height, 3 * width, 3)


def test_no_gallery_and_the_baseline_without_a_reference(browser, tmp_path, tiny_cfg,
                                                         tiny_checkpoint):
    """A checkpoint whose dataset is not here: the page says so, and the pix2pixHD baseline
    paints on a blank mask with no reference at all."""
    ckpt = tiny_checkpoint(tmp_path / "last.pt",
                           tiny_cfg("model=pix2pixhd", f"data.root={tmp_path / 'gone'}"))
    studio = load_studio(ckpt, "cpu")
    with background_server(studio) as url:
        page = browser.new_page()
        page.goto(url + "/")
        wait_for_faces(page, 1)
        assert "not on this machine" in page.locator("#gallery-message").text_content()
        assert page.locator(".tile").count() == 0 and page.locator("#gallery-hint").is_hidden()
        assert "not used by pix2pixhd" in page.locator("#ref-caption").text_content()
        np.testing.assert_array_equal(page_labels(page), np.zeros((32, 32), np.uint8))
        page.click(".swatch[data-label='1']")
        stroke(page, [(8, 16), (24, 16)])
        wait_for_faces(page, 2)
        painted = page_labels(page)
        assert set(np.unique(painted)) == {0, 1}
        np.testing.assert_array_equal(studio.last_mask, painted)
        page.close()


def test_region_pickers_only_for_a_regional_model_and_they_change_the_face(
        browser, page, tmp_path, tiny_cfg, tiny_checkpoint, synthetic_dataset):
    from faceregen.labels import LABEL_NAMES
    from faceregen.regen.generate import fit_region_reference, generate_prepared, prepare_pair

    assert page.locator("#regions-section").is_hidden()  # the global style model
    ckpt = tiny_checkpoint(tmp_path / "last.pt", tiny_cfg(
        "model=style_regional", f"data.root={synthetic_dataset.root}"))
    studio = load_studio(ckpt, "cpu", exact=True)
    main, donor = list(studio.gallery.faces.values())[:2]
    Image.fromarray(donor.photo).save(tmp_path / "donor.png")
    Image.fromarray(donor.label).save(tmp_path / "donor_mask.png")
    with background_server(studio) as url:
        regional_page = browser.new_page()
        regional_page.goto(url + "/")
        wait_for_faces(regional_page, 1)
        assert regional_page.locator("#regions-section").is_visible()
        rows = regional_page.locator(".region-ref")
        assert rows.count() == 3
        assert rows.nth(0).locator(".region-names").input_value() == "hair"
        before = shown_face(regional_page)
        inputs = rows.nth(0).locator("input[type=file]")
        inputs.nth(0).set_input_files(str(tmp_path / "donor.png"))  # no parser: waits for
        inputs.nth(1).set_input_files(str(tmp_path / "donor_mask.png"))  # the mask
        wait_for_faces(regional_page, 2)
        after = shown_face(regional_page)
        regional_page.close()
    regenerator = studio.regenerator
    pair = prepare_pair(main.label, main.photo, main.label, regenerator.size)
    pair.region_references = [fit_region_reference(
        (LABEL_NAMES.index("hair"),), donor.photo, donor.label, regenerator.size, "d", "dm")]
    np.testing.assert_array_equal(after, generate_prepared(regenerator, [pair])[0])
    assert not np.array_equal(after, before)
