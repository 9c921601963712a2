"""The evaluation's outputs: metrics.json, table.md (the report's Table 1 layout), examples.png
and command.txt, all written atomically."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from faceregen.evaluation.scoring import MIXED_REGIONS
from faceregen.images import image_grid, to_hwc
from faceregen.utils import atomic_path

METRICS_FORMAT = "faceregen-eval-v1"
PROTOCOLS = ("reconstruction", "mask_swap", "region_mixing")


def json_ready(value: Any) -> Any:
    """Non-finite floats as strings ("inf", "nan") so that metrics.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def format_cell(value: Any, percent: bool = False, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if not math.isfinite(value):
        return str(value)
    return f"{100 * value:.{digits}f}" if percent else f"{value:.{digits}f}"


TABLE_COLUMNS = (
    ("attribute accuracy (%)", "attribute_accuracy", True, 2),
    ("segmentation accuracy (%)", "segmentation_pixel_accuracy", True, 2),
    ("mIoU (%)", "segmentation_miou", True, 2),
    ("FID", "fid", False, 2),
    ("parser feature distance", "parser_feature_distance", False, 4),
    ("region colour error (CIELAB)", "region_color_error", False, 2),
    ("PSNR (dB)", "psnr", False, 2),
    ("SSIM", "ssim", False, 4),
)
# Region mixing has no target photo (no PSNR, SSIM) and adds the mixed regions' colour error.
MIXING_COLUMNS = TABLE_COLUMNS[:-2] + (
    ("mixed-region colour error (CIELAB)", "mixed_region_color_error", False, 2),)
PROTOCOL_TITLES = {
    "reconstruction": "Reconstruction (label k + reference k vs photo k)",
    "mask_swap": "Mask swap (label j + reference perm[j], the report's Table 1)",
    "region_mixing": "Region mixing (label j + reference perm[j], hair, skin and cloth each "
                     "from a reference of their own)"}


def markdown_table(result: dict[str, Any]) -> str:
    """One table per protocol, rows baseline / model / GT as in the report's Table 1."""
    random_fid = result["fid"]["kind"] == "random_weights"
    lines = []
    for protocol in PROTOCOLS:
        columns = MIXING_COLUMNS if protocol == "region_mixing" else TABLE_COLUMNS
        lines += [f"### {PROTOCOL_TITLES[protocol]}", ""]
        headers = ["row"] + [
            ("FID (random weights; tests only)" if random_fid and key == "fid" else header)
            for header, key, _, _ in columns]
        lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        for row in ("baseline", "model", "gt"):
            if row not in result["rows"]:
                continue
            scores = result["rows"][row]["protocols"]["real" if row == "gt" else protocol]
            cells = [{"gt": "GT", "model": "model", "baseline": "baseline"}[row]]
            for _, key, percent, digits in columns:
                if key == "fid":
                    key = "fid_random_weights" if random_fid else "fid"
                value = scores.get(key)
                if row == "gt" and key in ("region_color_error", "mixed_region_color_error"):
                    value = scores.get("region_color_by_protocol", {}).get(protocol, {}).get(key)
                cells.append(format_cell(value, percent, digits))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    n = result["dataset"]["n_images"]
    lines.append(f"{n} {result['dataset']['split']} images of {result['dataset']['root']} at "
                 f"{result['dataset']['size']} px. GT: evaluators on the real photos; its FID "
                 "and parser feature distance compare real train photos with the real test "
                 "photos ('-' when gt_reference is null); its region colour error compares "
                 "each real photo with the protocol's real reference photo (0 in "
                 "reconstruction; in mask swap, what a model that ignored the reference would "
                 "score; in region mixing, each mixed region against its own reference). "
                 "Region mixing: a model with one style per reference (the baseline, the "
                 "global style model) ignores the region references.")
    return "\n".join(lines) + "\n"


def example_grid(sections: dict[str, dict[str, dict[str, torch.Tensor]]]) -> Image.Image:
    """Rows: examples of each protocol; columns: mask | reference | [region references] |
    model | [baseline] | target.

    ``sections[protocol][row]`` holds the examples kept by ``generated_pass``; each protocol
    is its own grid, so a double gutter separates them.
    """
    from faceregen.masks import colorize

    grids = []
    for protocol in PROTOCOLS:
        model = sections[protocol]["model"]
        baseline = sections[protocol].get("baseline")
        region_columns = [model[f"{name}_image"] for name in MIXED_REGIONS
                          if f"{name}_image" in model]
        columns = [model["ref_image"], *region_columns, model["generated"]]
        if baseline is not None:
            columns.append(baseline["generated"])
        columns.append(model["target"])
        photos = [to_hwc(column) for column in columns]
        rows = [[colorize(label.numpy())] + [column[i] for column in photos]
                for i, label in enumerate(model["label"])]
        if rows:
            grids.append(image_grid(rows))
    width = max(grid.shape[1] for grid in grids)  # region mixing has more columns
    grids = [np.pad(grid, ((0, 0), (0, width - grid.shape[1]), (0, 0)), constant_values=255)
             for grid in grids]
    return Image.fromarray(np.concatenate(grids, axis=0))


COMMAND_KEYS = ("ckpt", "baseline_ckpt", "data_root", "split", "device", "batch_size",
                "max_images", "swap_seed", "mixing_seed", "gt_reference", "fid.weights", "fid.path",
                "evaluators.auto_train")


def command_line(cfg: DictConfig, run_dir: Path) -> str:
    """The command that produced this run: `faceregen eval` plus Hydra's task overrides.

    When ``evaluate`` is called from Python (no Hydra run writing to ``run_dir``; a Hydra
    config left over from an earlier in-process run does not count), the command is rebuilt
    from the config's main settings.
    """
    from hydra.core.hydra_config import HydraConfig

    try:
        output_dir = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None
    except Exception:  # a partial config from an interrupted in-process run
        output_dir = None
    if output_dir and Path(output_dir).resolve() == Path(run_dir).resolve():
        overrides = list(HydraConfig.get().overrides.task)
    else:
        overrides = [f"{key}={OmegaConf.select(cfg, key)}" for key in COMMAND_KEYS
                     if OmegaConf.select(cfg, key) is not None]
    return shlex.join(["faceregen", "eval", *overrides])


def write_outputs(run_dir: Path, result: dict[str, Any],
                  sections: dict[str, dict[str, Any]]) -> None:
    """metrics.json, table.md, examples.png, command.txt (all atomic); print the table."""
    write_text(run_dir / "metrics.json", json.dumps(json_ready(result), indent=2) + "\n")
    table = markdown_table(result)
    write_text(run_dir / "table.md", table)
    write_text(run_dir / "command.txt", result["command"] + "\n")
    with atomic_path(run_dir / "examples.png") as tmp:
        example_grid(sections).save(tmp, format="PNG")
    print(table, flush=True)
    print(f"evaluation written to {run_dir}", flush=True)
