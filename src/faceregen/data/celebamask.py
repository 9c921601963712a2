"""CelebAMask-HQ's raw on-disk layout (docs/data.md): paths, annotation files, split rules.

Both the synthetic generator (which writes this layout) and `prepare` (which reads it) use these
helpers, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from faceregen.errors import FaceregenError
from faceregen.labels import ATTRIBUTE_NAMES

IMAGE_DIR = "CelebA-HQ-img"
MASK_DIR = "CelebAMask-HQ-mask-anno"
ATTRIBUTE_FILE = "CelebAMask-HQ-attribute-anno.txt"
MAPPING_FILE = "CelebA-HQ-to-CelebA-mapping.txt"
MAPPING_HEADER = "idx orig_idx orig_file"
FACES_PER_MASK_FOLDER = 2000

# CelebA's official partition by original index (list_eval_partition.txt boundaries).
CELEBA_TRAIN_END = 162771
CELEBA_VAL_END = 182638
SPLIT_SCHEMES = ("celeba", "index", "report")


def image_path(root: Path, k: int) -> Path:
    return Path(root) / IMAGE_DIR / f"{k}.jpg"


def part_mask_path(root: Path, k: int, part: str) -> Path:
    return Path(root) / MASK_DIR / str(k // FACES_PER_MASK_FOLDER) / f"{k:05d}_{part}.png"


@dataclass
class AttributeTable:
    """Parsed attribute file: ids in file order, their 40 values, and the lines that failed."""

    ids: list[int]
    values: dict[int, list[int]]
    bad_lines: list[str]


def _read_lines(path: Path, what: str, hint: str = "") -> list[str]:
    """The lines of an annotation text file, or a user error naming it."""
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        raise FaceregenError(f"{path}: {what} not found{hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FaceregenError(f"{path}: cannot read {what} ({exc})") from None


def read_attributes(root: Path) -> AttributeTable:
    """Parse the attribute file; a malformed face line is collected in ``bad_lines``.

    A malformed header (count or names) is fatal: nothing after it can be trusted.
    """
    path = Path(root) / ATTRIBUTE_FILE
    lines = _read_lines(path, "attribute file")
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise FaceregenError(f"{path}:1: expected the number of faces on the first line")
    names = lines[1].split()
    if tuple(names) != ATTRIBUTE_NAMES:
        raise FaceregenError(f"{path}:2: expected the 40 CelebA attribute names in file order")
    ids: list[int] = []
    values: dict[int, list[int]] = {}
    bad_lines: list[str] = []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        problem = _attribute_line_problem(fields, values)
        if problem:
            bad_lines.append(f"{path}:{number}: {problem}")
            continue
        k = int(fields[0][:-4])
        ids.append(k)
        values[k] = [int(v) for v in fields[1:]]
    declared = int(lines[0].strip())
    if declared != len(ids) + len(bad_lines):
        raise FaceregenError(
            f"{path}:1: header says {declared} faces but the file lists "
            f"{len(ids) + len(bad_lines)}"
        )
    return AttributeTable(ids=ids, values=values, bad_lines=bad_lines)


def _attribute_line_problem(fields: list[str], seen: dict[int, list[int]]) -> str | None:
    name = fields[0]
    if not (name.endswith(".jpg") and name[:-4].isdigit()):
        return f"expected '<k>.jpg' first, got '{name}'"
    if len(fields) != 1 + len(ATTRIBUTE_NAMES):
        return f"expected {len(ATTRIBUTE_NAMES)} values, got {len(fields) - 1}"
    if any(v not in ("1", "-1") for v in fields[1:]):
        return "attribute values must be 1 or -1"
    if int(name[:-4]) in seen:
        return f"face {name} is listed twice"
    return None


def read_mapping(root: Path) -> dict[int, int]:
    """CelebA-HQ index -> original CelebA index, from the mapping file."""
    path = Path(root) / MAPPING_FILE
    lines = _read_lines(path, "mapping file", " (needed by --split celeba)")
    if not lines or lines[0].split() != MAPPING_HEADER.split():
        raise FaceregenError(f"{path}:1: expected the header '{MAPPING_HEADER}'")
    mapping: dict[int, int] = {}
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or not (fields[0].isdigit() and fields[1].isdigit()):
            raise FaceregenError(f"{path}:{number}: expected 'idx orig_idx orig_file'")
        mapping[int(fields[0])] = int(fields[1])
    return mapping


def assign_splits(ids: list[int], scheme: str, mapping: dict[int, int] | None) -> dict[int, str]:
    """Split of each id under ``scheme``; ids the scheme leaves out (``report``) are omitted.

    ``index`` is SEAN's "first 28,000 train, last 2,000 test", generalised to any count as
    "the last n // 15 ids are test" (the same thing for 30,000 faces).
    """
    if scheme == "celeba":
        if mapping is None:
            raise FaceregenError("split 'celeba' needs the mapping file")
        missing = [k for k in ids if k not in mapping]
        if missing:
            raise FaceregenError(
                f"{MAPPING_FILE} has no row for face {missing[0]} ({len(missing)} faces missing)"
            )
        return {k: _celeba_split(mapping[k]) for k in ids}
    ordered = sorted(ids)
    if scheme == "index":
        n_test = len(ordered) // 15
        return {k: ("test" if i >= len(ordered) - n_test else "train") for i, k in
                enumerate(ordered)}
    if scheme == "report":
        subset = [k for k in ordered if k < 501]
        return {k: {1: "val", 2: "test"}.get(k % 10, "train") for k in subset}
    raise FaceregenError(
        f"unknown split scheme '{scheme}' (choose from {', '.join(SPLIT_SCHEMES)})"
    )


def _celeba_split(orig_idx: int) -> str:
    if orig_idx < CELEBA_TRAIN_END:
        return "train"
    if orig_idx < CELEBA_VAL_END:
        return "val"
    return "test"
