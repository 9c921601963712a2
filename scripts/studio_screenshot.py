"""Screenshot of `faceregen studio` with a painted edit and its regenerated face (docs/studio.png).

    python scripts/studio_screenshot.py --ckpt checkpoints/demo/train/checkpoints/last.pt

Serves the studio on a free local port, opens it in headless Chromium (the system's, through
Playwright), picks a gallery face, paints a stroke of --label across the mask, takes the
mouth of the next gallery face, waits for the face and saves the page.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from faceregen.labels import LABEL_NAMES
from faceregen.studio.cli import background_server, load_studio

LAUNCH_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync"]
READY = "studio.regenCount >= {count} && !studio.inFlight && !studio.dirty"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/studio.png"))
    parser.add_argument("--face", type=int, default=0, help="gallery position of the reference")
    parser.add_argument("--label", default="hair", choices=LABEL_NAMES, help="class to paint")
    parser.add_argument("--stroke", default="0.36,0.29,0.64,0.29",
                        help="x0,y0,x1,y1 of the stroke as fractions of the mask")
    parser.add_argument("--brush", type=int, default=7)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no Chromium found: apt-get install -y chromium")

    from playwright.sync_api import sync_playwright

    studio = load_studio(args.ckpt, "cpu")
    with background_server(studio) as url, sync_playwright() as playwright, \
            tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=chromium, headless=True, args=LAUNCH_FLAGS,
            viewport={"width": 1360, "height": 860}, device_scale_factor=1)
        page = context.new_page()
        page.goto(url + "/")
        page.wait_for_function(READY.format(count=1))
        count = 1
        if args.face:
            page.locator(".tile img").nth(args.face).click()
            page.wait_for_function(READY.format(count=2))
            page.locator(".tile button").nth(args.face).click()
            count = 3
            page.wait_for_function(READY.format(count=count))
        page.click(f".swatch[data-label='{LABEL_NAMES.index(args.label)}']")
        page.locator("#brush-size").fill(str(args.brush))
        box = page.locator("#mask-canvas").bounding_box()
        x0, y0, x1, y1 = (float(v) for v in args.stroke.split(","))
        side = min(box["width"], box["height"])
        left = box["x"] + (box["width"] - side) / 2
        top = box["y"] + (box["height"] - side) / 2
        page.mouse.move(left + x0 * side, top + y0 * side)
        page.mouse.down()
        page.mouse.move(left + x1 * side, top + y1 * side, steps=20)
        page.mouse.up()
        count += 1
        page.wait_for_function(READY.format(count=count))
        faces = page.locator(".tile").count()
        page.select_option("#parts-source", index=(args.face + 1) % faces)
        page.click("#apply-parts")
        page.wait_for_function(READY.format(count=count + 1))
        page.mouse.move(left + 0.5 * side, top + 0.55 * side)  # the hover read-out
        page.screenshot(path=str(args.out), full_page=True)
        context.close()
    print(args.out)


if __name__ == "__main__":
    main()
