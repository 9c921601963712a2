"""`faceregen data prepare`: raw CelebAMask-HQ layout -> merged, resized training set.

Output under ``out``::

    images/{k}.png       photo resized to size² (antialiased LANCZOS); .jpg (q95) on request
    labels/{k}.png       19-class index map, mode L, part masks merged in PART_NAMES order (nearest)
    manifest.csv         id,split,image,label,<40 attributes as -1/1>; written last
    meta.json            size, split scheme, source root, count, skipped faces

Every output is written atomically, so an interrupted run leaves only complete files and a
rerun continues where it stopped; a finished run is recognised and left alone.
Part masks are merged as CelebAMask-HQ's own ``g_mask.py`` does: any non-zero pixel counts.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from faceregen.data import celebamask as layout
from faceregen.errors import FaceregenError
from faceregen.labels import ATTRIBUTE_NAMES, PART_NAMES
from faceregen.masks import write_index_mask
from faceregen.utils import atomic_path, ignore_interrupts, output_folder

MANIFEST = "manifest.csv"
META = "meta.json"
MANIFEST_HEADER = ["id", "split", "image", "label", *ATTRIBUTE_NAMES]
IMAGE_FORMATS = ("png", "jpg")


def require_prepared(root: Path, name: str) -> Path:
    """``root`` if it holds a prepared dataset, else a user error naming ``name`` (the setting
    or option that gave it)."""
    root = Path(root)
    if not (root / MANIFEST).is_file():
        raise FaceregenError(f"{name}: not a prepared dataset (no {MANIFEST}); run "
                             "`faceregen data prepare` first")
    return root


@dataclass
class PrepareResult:
    out: Path
    count: int
    splits: dict[str, int]
    skipped: list[str] = field(default_factory=list)
    already_done: bool = False


def output_paths(out: Path, k: int, image_format: str) -> tuple[Path, Path]:
    return out / "images" / f"{k}.{image_format}", out / "labels" / f"{k}.png"


def load_photo(path: Path) -> Image.Image:
    """Fully decode the photo so that a truncated file fails here, not in training."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise FaceregenError(f"{path}: photo is missing") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise FaceregenError(f"{path}: unreadable or truncated photo ({exc})") from None


def load_part_mask(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert("L")) > 0
    except (OSError, ValueError, SyntaxError) as exc:
        raise FaceregenError(f"{path}: unreadable or truncated part mask ({exc})") from None


def merge_part_masks(root: Path, k: int, photo_size: tuple[int, int]) -> np.ndarray:
    """Merge face ``k``'s part masks in PART_NAMES order (later parts overwrite earlier ones).

    All masks of a face must share one size: half the photo size (as in CelebAMask-HQ) or the
    photo size itself (as other tools write them).
    """
    allowed = {(photo_size[0] // 2, photo_size[1] // 2), photo_size}
    label = None
    for index, part in enumerate(PART_NAMES, start=1):
        path = layout.part_mask_path(root, k, part)
        if not path.exists():
            continue
        mask = load_part_mask(path)
        size = (mask.shape[1], mask.shape[0])
        if label is None:
            if size not in allowed:
                raise FaceregenError(
                    f"{path}: mask is {size[0]}x{size[1]}, expected half the photo size "
                    f"({photo_size[0] // 2}x{photo_size[1] // 2}) or the photo size"
                )
            label = np.zeros(mask.shape, dtype=np.uint8)
        elif mask.shape != label.shape:
            raise FaceregenError(
                f"{path}: mask is {size[0]}x{size[1]} but this face's other masks are "
                f"{label.shape[1]}x{label.shape[0]}"
            )
        label[mask] = index
    if label is None:
        folder = layout.part_mask_path(root, k, "skin").parent
        raise FaceregenError(f"{folder}: no part masks for face {k} ({k:05d}_<part>.png)")
    return label


def prepare_face(root: Path, out: Path, k: int, size: int, image_format: str) -> None:
    """Check, merge, resize and write one face; raises FaceregenError naming the bad file."""
    photo = load_photo(layout.image_path(root, k))
    label = merge_part_masks(root, k, photo.size)
    image_path, label_path = output_paths(out, k, image_format)
    label_image = Image.fromarray(label).resize((size, size), Image.NEAREST)
    write_index_mask(np.asarray(label_image), label_path)
    photo = photo.resize((size, size), Image.LANCZOS, reducing_gap=3.0)
    with atomic_path(image_path) as tmp:
        if image_format == "jpg":
            photo.save(tmp, format="JPEG", quality=95)
        else:
            photo.save(tmp, format="PNG", compress_level=4)


def _prepare_job(job: tuple[str, str, int, int, str]) -> tuple[int, str | None]:
    root, out, k, size, image_format = job
    try:
        prepare_face(Path(root), Path(out), k, size, image_format)
    except FaceregenError as exc:
        return k, str(exc)
    return k, None


def _run_jobs(jobs: list, workers: int, progress: bool):
    """Yield job results in job order, in this process or a pool of ``workers``."""
    bar = tqdm(total=len(jobs), desc="prepare", unit="face", disable=not progress)
    try:
        if workers <= 1:
            for job in jobs:
                yield _prepare_job(job)
                bar.update()
        else:
            with get_context().Pool(workers, initializer=ignore_interrupts) as pool:
                for result in pool.imap(_prepare_job, jobs, chunksize=4):
                    yield result
                    bar.update()
    finally:
        bar.close()


def _check_previous_run(out: Path, params: dict) -> bool:
    """True if ``out`` already holds this exact prepared set; error if it holds another."""
    meta_path = out / META
    if not meta_path.exists():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise FaceregenError(f"{meta_path}: unreadable ({exc}); remove it to start over") from None
    different = {key: meta.get(key) for key in params if meta.get(key) != params[key]}
    if different:
        raise FaceregenError(
            f"{out} holds a prepared set made with other settings "
            f"({', '.join(f'{key}={value}' for key, value in different.items())}); "
            "choose another --out or delete it"
        )
    return bool(meta.get("complete")) and (out / MANIFEST).exists()


def prepare(root: str | os.PathLike, out: str | os.PathLike, size: int, split: str = "celeba",
            workers: int = 1, skip_bad: bool = False, image_format: str = "png",
            progress: bool = True) -> PrepareResult:
    """Prepare the raw set at ``root`` into ``out`` (see the module docstring)."""
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise FaceregenError(f"{root}: raw dataset folder not found")
    if size < 8:
        raise FaceregenError(f"--size must be at least 8, got {size}")
    if image_format not in IMAGE_FORMATS:
        raise FaceregenError(f"image format must be one of {IMAGE_FORMATS}, got {image_format}")
    params = {"size": size, "split": split, "source": str(root.resolve()),
              "image_format": image_format}
    if _check_previous_run(out, params):
        meta = json.loads((out / META).read_text())
        return PrepareResult(out=out, count=meta["count"], splits=meta["splits"],
                             skipped=meta["skipped"], already_done=True)

    table = layout.read_attributes(root)
    if table.bad_lines and not skip_bad:
        raise FaceregenError(table.bad_lines[0])
    skipped = list(table.bad_lines)
    mapping = layout.read_mapping(root) if split == "celeba" else None
    splits = layout.assign_splits(table.ids, split, mapping)
    ids = sorted(splits)
    if not ids:
        raise FaceregenError(f"{root}: no faces to prepare with split '{split}'")

    for folder in (".", "images", "labels"):
        output_folder(out / folder)
    (out / MANIFEST).unlink(missing_ok=True)
    _write_meta(out, {**params, "complete": False})

    todo = [k for k in ids if not all(p.exists() for p in output_paths(out, k, image_format))]
    jobs = [(str(root), str(out), k, size, image_format) for k in todo]
    bad_ids = set()
    results = _run_jobs(jobs, workers, progress)
    for k, problem in results:
        if problem is None:
            continue
        if not skip_bad:
            results.close()
            raise FaceregenError(problem)
        skipped.append(problem)
        bad_ids.add(k)

    kept = [k for k in ids if k not in bad_ids]
    with atomic_path(out / MANIFEST) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_HEADER)
        for k in kept:
            image_path, label_path = output_paths(Path(), k, image_format)
            writer.writerow([k, splits[k], image_path.as_posix(), label_path.as_posix(),
                             *table.values[k]])
    counts = {name: sum(splits[k] == name for k in kept) for name in ("train", "val", "test")}
    _write_meta(out, {**params, "complete": True, "count": len(kept), "splits": counts,
                      "skipped": skipped})
    return PrepareResult(out=out, count=len(kept), splits=counts, skipped=skipped)


def _write_meta(out: Path, meta: dict) -> None:
    with atomic_path(out / META) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
