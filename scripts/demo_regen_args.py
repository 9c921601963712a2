"""Print `faceregen regen` arguments for the demo: a test face whose mouth is opened.

    faceregen regen $(python scripts/demo_regen_args.py data/synthetic/prepared-64) --compare

Picks, from the test split of a prepared set, a face with a closed mouth (its mask is the input
and its photo the reference) and another face with an open mouth whose mouth and lips are
pasted into the mask.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def main(root: str) -> None:
    root_path = Path(root)
    with open(root_path / "manifest.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "test"]
    closed = [r for r in rows if r["Mouth_Slightly_Open"] == "-1"]
    opened = [r for r in rows if r["Mouth_Slightly_Open"] == "1"]
    if not closed or not opened:
        sys.exit(f"error: {root_path / 'manifest.csv'}: needs test faces with open and closed "
                 "mouths")
    face, donor = closed[0], opened[0]
    print(f"--mask {root_path / face['label']} --ref {root_path / face['image']} "
          f"--ref-mask {root_path / face['label']} --edit-from {root_path / donor['label']} "
          "--parts mouth,u_lip,l_lip")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/synthetic/prepared-64")
