"""The regional model's target, checked on a `faceregen eval` run of the regional model
(``model`` row) against the global style model (``baseline`` row), from its metrics.json:

- region mixing: the regional model's mixed-region colour error at most half the global one's;
- segmentation accuracy and mIoU no more than one point below the global model's.

Prints the numbers and one line per check; exits 1 when a check fails.
    python scripts/regional_verdict.py checkpoints/regional_benchmark/eval/metrics.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(path: str) -> int:
    rows = json.loads(Path(path).read_text())["rows"]
    regional = rows["model"]["protocols"]["region_mixing"]
    glob = rows["baseline"]["protocols"]["region_mixing"]
    print(f"steps: regional {rows['model']['step']}, global {rows['baseline']['step']}")
    print("region mixing, colour error per mixed region (CIELAB), regional / global:")
    for region in ("hair", "skin", "cloth"):
        ours = regional["region_color_error_per_region"][region]
        theirs = glob["region_color_error_per_region"][region]
        print(f"  {region:6s} {ours:7.2f} / {theirs:7.2f}")
    ours, theirs = regional["mixed_region_color_error"], glob["mixed_region_color_error"]
    checks = [(f"mixed-region colour error {ours:.2f} <= half of {theirs:.2f}",
               ours <= theirs / 2)]
    for key, name in (("segmentation_pixel_accuracy", "segmentation accuracy"),
                      ("segmentation_miou", "mIoU")):
        a, b = 100 * regional[key], 100 * glob[key]
        checks.append((f"{name} {a:.2f} % >= {b:.2f} % - 1", a >= b - 1))
    for text, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}: {text}")
    return 0 if all(passed for _, passed in checks) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
