"""`faceregen regen`: regenerate a face from a label map and a reference photo.

Inputs arrive as people have them (index or colour masks, photos of any size, mode and EXIF
orientation), so everything here is about bringing them to the model's square training size
and bringing the result back to the mask's own size. The plain functions
(`regenerate_arrays`, `edit_label`, `read_photo`, ...) are the API; `main` is a thin argparse
wrapper over them.

Input rules (docs/regen.md):
- Letterbox, not crop: the longer side is resized to the model size and the shorter side is
  padded by replicating the edge pixels, for photos and label maps alike, so that the padded
  strip of a reference carries the label of what it shows. The padding is cut off the result,
  which is then resized to the mask's original size.
- Transparent photos are composited on white; 16-bit photos are scaled to 8 bits; greyscale is
  replicated to RGB; EXIF orientation is applied.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceregen.errors import FaceregenError
from faceregen.labels import LABEL_NAMES, PALETTE

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".webp")
RGBA_BACKGROUND = (255, 255, 255)
# Reference photo and reference mask aspect ratios (w/h) may differ by this fraction.
MAX_ASPECT_MISMATCH = 0.02
PARSER_RELATIVE_PATH = Path("evaluators") / "parser.pt"


# ----------------------------------------------------------------------------- checkpoints


def default_runs_dir() -> Path:
    """The training runs folder: ``$FACEREGEN_RUNS`` or ``checkpoints`` (as in paths config)."""
    return Path(os.environ.get("FACEREGEN_RUNS", "checkpoints"))


def find_latest_checkpoint(runs_dir: str | os.PathLike | None = None) -> Path:
    """The newest ``last.pt`` (by modification time) anywhere under the runs folder."""
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    candidates = sorted(runs_dir.rglob("last.pt"), key=lambda p: p.stat().st_mtime) \
        if runs_dir.is_dir() else []
    if not candidates:
        raise FaceregenError(
            f"no checkpoint found: no last.pt under {runs_dir}/ (train one with "
            "`faceregen train`, set FACEREGEN_RUNS to your runs folder, or pass --ckpt)")
    return candidates[-1]


def load_model(path: str | os.PathLike, device="cpu"):
    """A Regenerator from a training checkpoint (.pt) or a `faceregen export` file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from faceregen.export import load_exported_regenerator

        return load_exported_regenerator(path, device)
    from faceregen.checkpoint import load_regenerator

    return load_regenerator(path, device)


# ----------------------------------------------------------------------------- reading inputs


def photo_to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL image to uint8 H×W×3: 16-bit and float greys rescaled, alpha composited on white."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = float(values.max()) if values.size else 0.0
        if image.mode.startswith("I;16") or peak > 255:
            values = values * (255.0 / 65535.0)
        elif image.mode == "F" and peak <= 1.0:
            values = values * 255.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*RGBA_BACKGROUND, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def read_photo(path: str | os.PathLike) -> np.ndarray:
    """Read a photo as uint8 H×W×3, upright (EXIF orientation applied)."""
    path = Path(path)
    if not path.is_file():
        raise FaceregenError(f"{path}: image file not found")
    try:
        with Image.open(path) as image:
            image.load()
            return photo_to_rgb(ImageOps.exif_transpose(image))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError,
            SyntaxError) as exc:
        raise FaceregenError(f"{path}: cannot read image ({exc})") from None


def read_label_map(path: str | os.PathLike) -> np.ndarray:
    """Read an index or colour mask as uint8 H×W labels (unknown colours are an error)."""
    from faceregen.masks import read_mask

    path = Path(path)
    if not path.is_file():
        raise FaceregenError(f"{path}: mask file not found")
    return read_mask(path)


# ----------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class Placement:
    """Where an H×W input sits inside the size×size model canvas (letterbox)."""

    height: int
    width: int
    size: int
    top: int
    left: int
    inner_height: int
    inner_width: int


def placement_for(height: int, width: int, size: int) -> Placement:
    """Resize the longer side to ``size``, keep the aspect ratio, centre the result."""
    scale = size / max(height, width)
    inner_height = min(size, max(1, round(height * scale)))
    inner_width = min(size, max(1, round(width * scale)))
    return Placement(height, width, size, (size - inner_height) // 2,
                     (size - inner_width) // 2, inner_height, inner_width)


def _pad(array: np.ndarray, placement: Placement) -> np.ndarray:
    rows = (placement.top, placement.size - placement.top - placement.inner_height)
    cols = (placement.left, placement.size - placement.left - placement.inner_width)
    pad = (rows, cols) + ((0, 0),) * (array.ndim - 2)
    return np.pad(array, pad, mode="edge")


def fit_photo(photo: np.ndarray, placement: Placement) -> np.ndarray:
    """uint8 H×W×3 -> size×size×3: antialiased resize, edge-replicated padding."""
    resized = Image.fromarray(photo).resize((placement.inner_width, placement.inner_height),
                                            Image.Resampling.LANCZOS)
    return _pad(np.asarray(resized), placement)


def fit_label(label: np.ndarray, placement: Placement) -> np.ndarray:
    """uint8 H×W -> size×size: nearest-neighbour resize (no invented classes), edge padding."""
    resized = Image.fromarray(label).resize((placement.inner_width, placement.inner_height),
                                            Image.Resampling.NEAREST)
    return _pad(np.asarray(resized), placement)


def restore_photo(generated: np.ndarray, placement: Placement) -> np.ndarray:
    """Undo `fit_photo`: cut the padding off and resize back to the input's H×W."""
    inner = generated[placement.top:placement.top + placement.inner_height,
                      placement.left:placement.left + placement.inner_width]
    if inner.shape[:2] == (placement.height, placement.width):
        return np.ascontiguousarray(inner)
    resized = Image.fromarray(np.ascontiguousarray(inner)).resize(
        (placement.width, placement.height), Image.Resampling.LANCZOS)
    return np.asarray(resized)


def check_same_aspect(first_shape: Sequence[int], second_shape: Sequence[int], first_name: str,
                      second_name: str) -> None:
    """Two images that must overlay pixel for pixel need the same aspect ratio."""
    first_aspect = first_shape[1] / first_shape[0]
    second_aspect = second_shape[1] / second_shape[0]
    if abs(first_aspect / second_aspect - 1.0) > MAX_ASPECT_MISMATCH:
        raise FaceregenError(
            f"{second_name}: aspect ratio {second_shape[1]}x{second_shape[0]} does not match "
            f"{first_name} ({first_shape[1]}x{first_shape[0]}); they must overlay exactly")


# ----------------------------------------------------------------------------- editing


def parse_parts(text: str) -> list[int]:
    """``"mouth,u_lip,l_lip"`` -> label ids; an unknown name lists the valid ones."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise FaceregenError("--parts is empty; name one or more of: " + ", ".join(LABEL_NAMES))
    unknown = [name for name in names if name not in LABEL_NAMES]
    if unknown:
        raise FaceregenError(
            f"unknown part name(s) {', '.join(unknown)}; valid names: {', '.join(LABEL_NAMES)}")
    return sorted({LABEL_NAMES.index(name) for name in names})


def edit_label(label: np.ndarray, other: np.ndarray, part_ids: Sequence[int]) -> np.ndarray:
    """Copy the named parts of ``other`` into ``label`` (the report's mask-editing experiment).

    Two steps: remove the named parts from ``label`` (each of their pixels takes the label of
    the nearest pixel that is none of the named parts, usually skin), then paste every pixel of
    ``other`` that is a named part. ``other`` is resized (nearest) to ``label``'s size.
    """
    from scipy import ndimage

    label = np.asarray(label, dtype=np.uint8)
    other = np.asarray(other, dtype=np.uint8)
    if other.shape != label.shape:
        check_same_aspect(label.shape, other.shape, "the mask", "the --edit-from mask")
        other = np.asarray(Image.fromarray(other).resize((label.shape[1], label.shape[0]),
                                                         Image.Resampling.NEAREST))
    part_ids = list(part_ids)
    edited = label.copy()
    removed = np.isin(label, part_ids)
    if removed.all():
        edited[:] = 0
    elif removed.any():
        _, (rows, cols) = ndimage.distance_transform_edt(removed, return_indices=True)
        edited[removed] = label[rows[removed], cols[removed]]
    pasted = np.isin(other, part_ids)
    edited[pasted] = other[pasted]
    return edited


# ----------------------------------------------------------------------------- generation


@dataclass
class PreparedPair:
    """One mask (and reference) brought to the model's size, ready to be batched."""

    label: np.ndarray
    placement: Placement
    ref_image: np.ndarray | None
    ref_label: np.ndarray | None


def prepare_pair(mask: np.ndarray, ref_image: np.ndarray | None, ref_mask: np.ndarray | None,
                 size: int, ref_name: str = "the reference",
                 ref_mask_name: str = "the reference mask") -> PreparedPair:
    """Letterbox a mask, a reference photo and the reference's mask to size×size."""
    placement = placement_for(mask.shape[0], mask.shape[1], size)
    fitted_ref = fitted_ref_label = None
    if ref_image is not None:
        if ref_mask is None:
            raise FaceregenError(f"{ref_name}: no label map for the reference")
        check_same_aspect(ref_image.shape, ref_mask.shape, ref_name, ref_mask_name)
        ref_placement = placement_for(ref_image.shape[0], ref_image.shape[1], size)
        fitted_ref = fit_photo(ref_image, ref_placement)
        fitted_ref_label = fit_label(ref_mask, ref_placement)
    return PreparedPair(fit_label(mask, placement), placement, fitted_ref, fitted_ref_label)


def generate_prepared(regenerator, pairs: Sequence[PreparedPair]) -> list[np.ndarray]:
    """Run one batch through the model; each result is uint8 at its mask's original size."""
    import torch

    labels = torch.from_numpy(np.stack([pair.label for pair in pairs])).long()
    ref_images = ref_labels = None
    if regenerator.style_encoder is not None:
        if any(pair.ref_image is None for pair in pairs):
            raise FaceregenError("this model transfers a reference's appearance: give --ref")
        ref_images = torch.from_numpy(np.stack([pair.ref_image for pair in pairs]))
        ref_images = ref_images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        ref_labels = torch.from_numpy(np.stack([pair.ref_label for pair in pairs])).long()
    generated = regenerator(labels, ref_images, ref_labels)
    generated = ((generated.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    generated = generated.permute(0, 2, 3, 1).cpu().numpy()
    return [restore_photo(image, pair.placement) for image, pair in zip(generated, pairs)]


def regenerate_arrays(regenerator, mask: np.ndarray, ref_image: np.ndarray | None = None,
                      ref_mask: np.ndarray | None = None) -> np.ndarray:
    """The whole regeneration of one face on in-memory arrays (what bench.py times).

    mask, ref_mask: uint8 H×W labels; ref_image: uint8 H×W×3. Returns uint8 H×W×3 at the
    mask's size. Returning a numpy array makes the call synchronous on a GPU as well.
    """
    return generate_prepared(regenerator, [prepare_pair(mask, ref_image, ref_mask,
                                                        regenerator.size)])[0]


# ----------------------------------------------------------------------------- reference masks


def default_parser_path(regenerator) -> Path:
    """The parser `faceregen eval` trains: ``<prepared data root>/evaluators/parser.pt``."""
    return Path(str(regenerator.config.data.root)) / PARSER_RELATIVE_PATH


def parse_photo(parser, photo: np.ndarray) -> np.ndarray:
    """Predict a uint8 H×W label map for a uint8 H×W×3 photo, letterboxed like the model input."""
    import torch

    placement = placement_for(photo.shape[0], photo.shape[1], parser.image_size)
    fitted = torch.from_numpy(fit_photo(photo, placement)).permute(2, 0, 1)[None]
    device = next(parser.network.parameters()).device
    with torch.no_grad():
        logits = parser.network(fitted.float().to(device) / 127.5 - 1.0)
    label = logits.argmax(1)[0].to(torch.uint8).cpu().numpy()
    inner = label[placement.top:placement.top + placement.inner_height,
                  placement.left:placement.left + placement.inner_width]
    return np.asarray(Image.fromarray(np.ascontiguousarray(inner)).resize(
        (photo.shape[1], photo.shape[0]), Image.Resampling.NEAREST))


def load_reference_parser(path: Path, device) -> Callable[[np.ndarray], np.ndarray]:
    """A function photo (uint8 H×W×3) -> labels (uint8 H×W) backed by the trained face parser."""
    from faceregen.evaluation.evaluators import load_evaluator

    parser = load_evaluator(path, "parser", device)
    return lambda photo: parse_photo(parser, photo)


class ReferenceMasks:
    """Predicts reference label maps with the trained face parser, loaded on first need."""

    def __init__(self, regenerator, parser_path: Path | None, device):
        self.parser_path = parser_path or default_parser_path(regenerator)
        self.device = device
        self.parse: Callable[[np.ndarray], np.ndarray] | None = None

    def predict(self, ref_path: Path, ref_image: np.ndarray) -> np.ndarray:
        if self.parse is None:
            if not self.parser_path.is_file():
                raise FaceregenError(
                    f"{ref_path}: no --ref-mask given and no face parser at {self.parser_path} "
                    "to predict it; give --ref-mask, pass --parser, or train one with "
                    "`faceregen evaluators train --kind parser --data <prepared data root>`")
            self.parse = load_reference_parser(self.parser_path, self.device)
        return self.parse(ref_image)


# ----------------------------------------------------------------------------- writing


def write_image(image: np.ndarray, path: Path) -> None:
    """Write atomically; the format follows the file suffix."""
    from faceregen.utils import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format=Image.registered_extensions()[path.suffix.lower()])


def compare_image(label: np.ndarray, ref_image: np.ndarray | None,
                  result: np.ndarray) -> np.ndarray:
    """colour mask | reference | result, all at the mask's height."""
    height = label.shape[0]
    panels = [PALETTE[label]]
    if ref_image is not None:
        width = max(1, round(ref_image.shape[1] * height / ref_image.shape[0]))
        panels.append(np.asarray(Image.fromarray(ref_image).resize(
            (width, height), Image.Resampling.LANCZOS)))
    panels.append(result)
    return np.concatenate(panels, axis=1)


def compare_path(out_path: Path) -> Path:
    return out_path.with_name(f"{out_path.stem}_compare.png")


def check_output_path(out_path: Path, inputs: Sequence[Path | None]) -> None:
    """Refuse outputs that would overwrite an input or land in a missing folder."""
    if out_path.suffix.lower() not in Image.registered_extensions():
        raise FaceregenError(f"{out_path}: unknown image format '{out_path.suffix}' for output")
    if not out_path.parent.is_dir():
        raise FaceregenError(f"{out_path}: output folder {out_path.parent} does not exist")
    for path in inputs:
        if path is not None and path.resolve() == out_path.resolve():
            raise FaceregenError(f"{out_path}: output would overwrite an input file")


# ----------------------------------------------------------------------------- single and folder


@dataclass
class Job:
    """One regeneration request read from the command line, a folder or a pairs file."""

    mask: Path
    ref: Path | None
    ref_mask: Path | None
    out: Path


@dataclass
class LoadedJob:
    """A job's images in memory: the (edited) label map, the reference and its label map."""

    job: Job
    label: np.ndarray
    ref_image: np.ndarray | None
    ref_label: np.ndarray | None


def read_job(job: Job, edit: tuple[np.ndarray, list[int]] | None) -> LoadedJob:
    """Read one job's files (no model needed, so bad files fail before the model loads)."""
    label = read_label_map(job.mask)
    if edit is not None:
        label = edit_label(label, edit[0], edit[1])
    ref_image = read_photo(job.ref) if job.ref is not None else None
    ref_label = read_label_map(job.ref_mask) if job.ref_mask is not None else None
    return LoadedJob(job, label, ref_image, ref_label)


def prepare_job(loaded: LoadedJob, regenerator, reference_masks: ReferenceMasks) -> PreparedPair:
    """Fit a read job to the model, predicting the reference's mask when none was given.

    The pix2pixHD baseline has no style encoder, so its reference is not used at all.
    """
    job = loaded.job
    if regenerator.style_encoder is None:
        return prepare_pair(loaded.label, None, None, regenerator.size)
    if loaded.ref_image is None:
        raise FaceregenError(f"{job.mask}: this model needs a reference photo (--ref)")
    ref_label = loaded.ref_label
    if ref_label is None:
        ref_label = reference_masks.predict(job.ref, loaded.ref_image)
    return prepare_pair(loaded.label, loaded.ref_image, ref_label, regenerator.size,
                        str(job.ref), str(job.ref_mask or "the predicted reference mask"))


def jobs_from_folders(mask_dir: Path, ref_dir: Path | None, ref_mask_dir: Path | None,
                      out_dir: Path) -> tuple[list[Job], list[tuple[str, str]]]:
    """Pair files by stem; masks without a unique reference become failures, not crashes."""
    for folder in (mask_dir, ref_dir, ref_mask_dir):
        if folder is not None and not folder.is_dir():
            raise FaceregenError(f"{folder}: folder not found")

    def by_stem(folder: Path | None, suffixes) -> dict[str, list[Path]]:
        found: dict[str, list[Path]] = {}
        if folder is not None:
            for path in sorted(folder.iterdir()):
                if path.is_file() and path.suffix.lower() in suffixes:
                    found.setdefault(path.stem, []).append(path)
        return found

    masks = by_stem(mask_dir, MASK_SUFFIXES)
    refs = by_stem(ref_dir, PHOTO_SUFFIXES)
    ref_masks = by_stem(ref_mask_dir, MASK_SUFFIXES)
    if not masks:
        raise FaceregenError(f"{mask_dir}: no mask images ({', '.join(MASK_SUFFIXES)})")
    jobs, failures = [], []
    for stem, mask_paths in masks.items():
        candidates = {"mask": mask_paths, "reference": refs.get(stem), "reference mask":
                      ref_masks.get(stem)}
        ambiguous = [f"{what} ({', '.join(p.name for p in paths)})"
                     for what, paths in candidates.items() if paths and len(paths) > 1]
        if ambiguous:
            failures.append((stem, "several files share this stem: " + "; ".join(ambiguous)))
            continue
        if ref_dir is not None and stem not in refs:
            failures.append((str(mask_paths[0]), f"no reference named {stem}.* in {ref_dir}"))
            continue
        if ref_mask_dir is not None and stem not in ref_masks:
            failures.append((str(mask_paths[0]),
                             f"no reference mask named {stem}.* in {ref_mask_dir}"))
            continue
        jobs.append(Job(mask_paths[0], refs[stem][0] if stem in refs else None,
                        ref_masks[stem][0] if stem in ref_masks else None,
                        out_dir / f"{stem}_regen.png"))
    return jobs, failures


def jobs_from_pairs_file(pairs_path: Path, out_dir: Path) -> list[Job]:
    """CSV with a header row and columns mask,ref[,ref_mask]; paths relative to the CSV."""
    if not pairs_path.is_file():
        raise FaceregenError(f"{pairs_path}: pairs file not found")
    try:
        with open(pairs_path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FaceregenError(f"{pairs_path}: cannot read pairs file ({exc})") from None
    if not rows or "mask" not in rows[0]:
        raise FaceregenError(f"{pairs_path}: needs a header row with columns mask,ref[,ref_mask]")

    def resolve(value: str | None) -> Path | None:
        return pairs_path.parent / value.strip() if value and value.strip() else None

    jobs = []
    for row in rows:
        mask, ref = resolve(row.get("mask")), resolve(row.get("ref"))
        if mask is None:
            raise FaceregenError(f"{pairs_path}: a row has an empty mask column")
        stem = mask.stem if ref is None or ref.stem == mask.stem else f"{mask.stem}_{ref.stem}"
        jobs.append(Job(mask, ref, resolve(row.get("ref_mask")), out_dir / f"{stem}_regen.png"))
    return jobs


def batched(items: Sequence, batch_size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), batch_size):
        yield items[start:start + batch_size]


def run_jobs(jobs: Sequence[Job], regenerator, reference_masks: ReferenceMasks, edit,
             batch_size: int, compare: bool, progress: bool) -> tuple[int, list[tuple[str, str]]]:
    """Regenerate every job in batches; a job that fails is recorded and the rest go on.

    Returns the number of faces written and (mask, reason) for each failed job.
    """
    from tqdm import tqdm

    written, failures = 0, []
    with tqdm(total=len(jobs), unit="face", disable=not progress) as bar:
        for chunk in batched(jobs, batch_size):
            ready = []
            for job in chunk:
                try:
                    check_output_path(job.out, [job.mask, job.ref, job.ref_mask])
                    loaded = read_job(job, edit)
                    ready.append((loaded, prepare_job(loaded, regenerator, reference_masks)))
                except FaceregenError as exc:
                    failures.append((str(job.mask), str(exc)))
            results = generate_prepared(regenerator, [pair for _, pair in ready]) if ready else []
            for (loaded, _), result in zip(ready, results):
                try:
                    write_result(loaded, result, compare)
                    written += 1
                except OSError as exc:
                    failures.append((str(loaded.job.mask), f"{loaded.job.out}: cannot write "
                                                           f"({exc})"))
            bar.update(len(chunk))
    return written, failures


def write_result(loaded: LoadedJob, result: np.ndarray, compare: bool) -> None:
    write_image(result, loaded.job.out)
    if compare:
        write_image(compare_image(loaded.label, loaded.ref_image, result),
                    compare_path(loaded.job.out))


def build_argparser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faceregen regen",
        description="Regenerate a face: geometry from --mask, appearance from --ref.",
        epilog="Exit status: 0 on success; 2 on a user error, or in folder mode when any pair "
               "failed (the failed pairs are listed with their reasons at the end). "
               "See docs/regen.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    single = parser.add_argument_group("one face")
    single.add_argument("--mask", type=Path, help="label map: index PNG or colour PNG")
    single.add_argument("--ref", type=Path, help="reference photo (JPEG/PNG/WebP, any size)")
    single.add_argument("--ref-mask", type=Path,
                        help="the reference's label map; predicted with the face parser if "
                             "omitted")
    single.add_argument("--out", type=Path,
                        help="output image (default: <mask stem>_regen.png beside the mask)")
    folder = parser.add_argument_group("folder mode")
    folder.add_argument("--mask-dir", type=Path, help="folder of label maps")
    folder.add_argument("--ref-dir", type=Path, help="folder of references, paired by file stem")
    folder.add_argument("--ref-mask-dir", type=Path, help="folder of reference label maps")
    folder.add_argument("--pairs", type=Path,
                        help="CSV with header mask,ref[,ref_mask] (paths relative to the CSV), "
                             "instead of --mask-dir/--ref-dir")
    folder.add_argument("--out-dir", type=Path, help="output folder (created if missing)")
    folder.add_argument("--batch-size", type=int, default=8, help="faces per forward pass")
    edit = parser.add_argument_group("editing")
    edit.add_argument("--edit-from", type=Path,
                      help="copy the --parts regions from this mask into the mask first")
    edit.add_argument("--parts", help="comma-separated part names, e.g. mouth,u_lip,l_lip")
    parser.add_argument("--ckpt", type=Path,
                        help="checkpoint (.pt) or export (.safetensors); default: newest "
                             "last.pt under $FACEREGEN_RUNS (default checkpoints/)")
    parser.add_argument("--parser", type=Path,
                        help="face parser checkpoint for predicting reference masks (default: "
                             "<data root>/evaluators/parser.pt of the checkpoint's config)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--compare", action="store_true",
                        help="also write <out stem>_compare.png: colour mask | reference | result")
    return parser


def read_edit(args) -> tuple[np.ndarray, list[int]] | None:
    if (args.edit_from is None) != (args.parts is None):
        raise FaceregenError("--edit-from and --parts go together")
    if args.edit_from is None:
        return None
    part_ids = parse_parts(args.parts)
    return read_label_map(args.edit_from), part_ids


def main(argv: list[str]) -> None:
    from faceregen.utils import resolve_device

    args = build_argparser().parse_args(argv)
    folder_mode = args.mask_dir is not None or args.pairs is not None
    if folder_mode == (args.mask is not None):
        raise FaceregenError("give either --mask (one face) or --mask-dir/--pairs (folder mode)")
    if args.batch_size < 1:
        raise FaceregenError("--batch-size must be at least 1")
    edit = read_edit(args)
    device = resolve_device(args.device)

    if not folder_mode:
        out = args.out or args.mask.with_name(f"{args.mask.stem}_regen.png")
        inputs = [args.mask, args.ref, args.ref_mask, args.edit_from]
        check_output_path(out, inputs)
        if args.compare:
            check_output_path(compare_path(out), inputs)
        loaded = read_job(Job(args.mask, args.ref, args.ref_mask, out), edit)
        regenerator = load_model(args.ckpt or find_latest_checkpoint(), device)
        reference_masks = ReferenceMasks(regenerator, args.parser, device)
        pair = prepare_job(loaded, regenerator, reference_masks)
        write_result(loaded, generate_prepared(regenerator, [pair])[0], args.compare)
        print(out)
        return

    if args.out_dir is None:
        raise FaceregenError("folder mode needs --out-dir")
    if args.pairs is not None and (args.mask_dir or args.ref_dir or args.ref_mask_dir):
        raise FaceregenError("give either --pairs or --mask-dir/--ref-dir, not both")
    if not args.out_dir.parent.is_dir():
        raise FaceregenError(f"{args.out_dir}: parent folder {args.out_dir.parent} does not exist")
    if args.pairs is not None:
        jobs, failures = jobs_from_pairs_file(args.pairs, args.out_dir), []
    else:
        jobs, failures = jobs_from_folders(args.mask_dir, args.ref_dir, args.ref_mask_dir,
                                           args.out_dir)
    args.out_dir.mkdir(exist_ok=True)
    regenerator = load_model(args.ckpt or find_latest_checkpoint(), device)
    reference_masks = ReferenceMasks(regenerator, args.parser, device)
    written, job_failures = run_jobs(jobs, regenerator, reference_masks, edit, args.batch_size,
                                     args.compare, progress=True)
    failures += job_failures
    print(f"wrote {written} face(s) to {args.out_dir}")
    if failures:
        print(f"{len(failures)} pair(s) failed:", file=sys.stderr)
        for name, reason in failures:
            print(f"  {name}: {reason}", file=sys.stderr)
        sys.exit(2)
