"""Regeneration jobs: one face, a folder or a pairs file, read, batched and written safely.

Files are read before the model loads, so a bad file fails fast; in folder mode a job that
fails is recorded and the rest go on. Outputs are written atomically and never over an input.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from faceregen.errors import FaceregenError
from faceregen.labels import PALETTE
from faceregen.regen.editing import edit_label
from faceregen.regen.generate import (
    PreparedPair,
    fit_region_reference,
    generate_prepared,
    prepare_pair,
)
from faceregen.regen.inputs import MASK_SUFFIXES, PHOTO_SUFFIXES, read_label_map, read_photo
from faceregen.regen.references import ReferenceMasks
from faceregen.regen.regions import (
    RegionReference,
    check_disjoint,
    parse_region_reference,
    require_regional,
)
from faceregen.utils import atomic_path


def write_image(image: np.ndarray, path: Path) -> None:
    """Write atomically; the format follows the file suffix."""
    try:
        with atomic_path(path) as tmp:
            Image.fromarray(image).save(tmp,
                                        format=Image.registered_extensions()[path.suffix.lower()])
    except OSError as exc:
        raise FaceregenError(f"{path}: cannot write ({exc})") from None


def compare_image(label: np.ndarray, ref_image: np.ndarray | None,
                  result: np.ndarray, region_images: Sequence[np.ndarray] = ()) -> np.ndarray:
    """colour mask | reference | [region references] | result, all at the mask's height."""
    height = label.shape[0]
    panels = [PALETTE[label]]
    for photo in ([ref_image] if ref_image is not None else []) + list(region_images):
        width = max(1, round(photo.shape[1] * height / photo.shape[0]))
        panels.append(np.asarray(Image.fromarray(photo).resize(
            (width, height), Image.Resampling.LANCZOS)))
    panels.append(result)
    return np.concatenate(panels, axis=1)


def compare_path(out_path: Path) -> Path:
    return out_path.with_name(f"{out_path.stem}_compare.png")


def protected_paths(paths: Iterable[Path | None], folders: Iterable[Path | None] = ()
                    ) -> set[Path]:
    """Every input of a job set, resolved: the given files and every file in the folders.

    Outputs are checked against all of them, not only against their own pair's inputs, so
    an output folder that is also an input folder never loses a file.
    """
    protected = {path.resolve() for path in paths if path is not None}
    for folder in folders:
        if folder is not None and folder.is_dir():
            protected.update(path.resolve() for path in folder.iterdir() if path.is_file())
    return protected


def check_output_path(out_path: Path, protected: Collection[Path]) -> None:
    """Refuse outputs that would overwrite an input (``protected``, resolved paths) or land in
    a missing folder."""
    if out_path.suffix.lower() not in Image.registered_extensions():
        raise FaceregenError(f"{out_path}: unknown image format '{out_path.suffix}' for output")
    if not out_path.parent.is_dir():
        raise FaceregenError(f"{out_path}: output folder {out_path.parent} does not exist")
    if out_path.resolve() in protected:
        raise FaceregenError(f"{out_path}: output would overwrite an input file")


def check_outputs(job: Job, protected: Collection[Path], compare: bool) -> None:
    check_output_path(job.out, protected)
    if compare:
        check_output_path(compare_path(job.out), protected)


@dataclass
class Job:
    """One regeneration request read from the command line, a folder or a pairs file."""

    mask: Path
    ref: Path | None
    ref_mask: Path | None
    out: Path
    region_refs: tuple[RegionReference, ...] = ()

    def inputs(self) -> list[Path | None]:
        """Every file the job reads (outputs must not overwrite any of them)."""
        return [self.mask, self.ref, self.ref_mask] + [path for region in self.region_refs
                                                       for path in (region.image, region.mask)]


@dataclass
class LoadedJob:
    """A job's images in memory: the (edited) label map, the reference and its label map."""

    job: Job
    label: np.ndarray
    ref_image: np.ndarray | None
    ref_label: np.ndarray | None
    # each region reference with its photo and label map (None: to be predicted)
    regions: list[tuple[RegionReference, np.ndarray, np.ndarray | None]] = field(
        default_factory=list)


def read_job(job: Job, edit: tuple[np.ndarray, list[int]] | None) -> LoadedJob:
    """Read one job's files (no model needed, so bad files fail before the model loads)."""
    label = read_label_map(job.mask)
    if edit is not None:
        label = edit_label(label, edit[0], edit[1])
    ref_image = read_photo(job.ref) if job.ref is not None else None
    ref_label = read_label_map(job.ref_mask) if job.ref_mask is not None else None
    regions = [(region, read_photo(region.image),
                read_label_map(region.mask) if region.mask is not None else None)
               for region in job.region_refs]
    return LoadedJob(job, label, ref_image, ref_label, regions)


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
    pair = prepare_pair(loaded.label, loaded.ref_image, ref_label, regenerator.size,
                        str(job.ref), str(job.ref_mask or "the predicted reference mask"))
    if loaded.regions:
        require_regional(regenerator, None)
    for region, image, label in loaded.regions:
        if label is None:
            label = reference_masks.predict(region.image, image)
        pair.region_references.append(fit_region_reference(
            region.classes, image, label, regenerator.size, str(region.image),
            str(region.mask or "the predicted mask of " + str(region.image))))
    return pair


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
    """CSV with a header row and columns mask,ref[,ref_mask][,region_refs]; paths relative to
    the CSV. ``region_refs`` holds `--region-ref` values separated by ';', e.g.
    ``hair=b.jpg;skin,nose=c.jpg:c_mask.png`` (quoted, since it may hold commas)."""
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
        region_refs = tuple(
            parse_region_reference(spec.strip(), pairs_path.parent, f"{pairs_path}: region_refs")
            for spec in (row.get("region_refs") or "").split(";") if spec.strip())
        check_disjoint(region_refs)
        jobs.append(Job(mask, ref, resolve(row.get("ref_mask")), out_dir / f"{stem}_regen.png",
                        region_refs))
    return jobs


def batched(items: Sequence, batch_size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), batch_size):
        yield items[start:start + batch_size]


def run_jobs(jobs: Sequence[Job], regenerator, reference_masks: ReferenceMasks, edit,
             batch_size: int, compare: bool, progress: bool,
             protected: Collection[Path]) -> tuple[int, list[tuple[str, str]]]:
    """Regenerate every job in batches; a job that fails is recorded and the rest go on.

    No output is written over a path in ``protected`` (see :func:`protected_paths`). Returns
    the number of faces written and (mask, reason) for each failed job.
    """
    from tqdm import tqdm

    written, failures = 0, []
    with tqdm(total=len(jobs), unit="face", disable=not progress) as bar:
        for chunk in batched(jobs, batch_size):
            ready = []
            for job in chunk:
                try:
                    check_outputs(job, protected, compare)
                    loaded = read_job(job, edit)
                    ready.append((loaded, prepare_job(loaded, regenerator, reference_masks)))
                except FaceregenError as exc:
                    failures.append((str(job.mask), str(exc)))
            results = generate_prepared(regenerator, [pair for _, pair in ready]) if ready else []
            for (loaded, _), result in zip(ready, results):
                try:
                    write_result(loaded, result, compare)
                    written += 1
                except FaceregenError as exc:  # write_image names the file and the reason
                    failures.append((str(loaded.job.mask), str(exc)))
            bar.update(len(chunk))
    return written, failures


def write_result(loaded: LoadedJob, result: np.ndarray, compare: bool) -> None:
    write_image(result, loaded.job.out)
    if compare:
        write_image(compare_image(loaded.label, loaded.ref_image, result,
                                  [image for _, image, _ in loaded.regions]),
                    compare_path(loaded.job.out))
