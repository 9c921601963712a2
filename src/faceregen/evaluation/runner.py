"""`faceregen eval`: score checkpoints on their dataset's test split (docs/evaluation.md).

Rows: ``model`` (``ckpt``), ``baseline`` (``baseline_ckpt``, optional) and ``gt`` (the
evaluators on real test photos). Generated rows run two protocols:

- reconstruction: label_k + reference k -> compared with photo k (PSNR, SSIM, L1 as well);
- mask_swap: label_j + reference perm[j], perm a seeded derangement (no face is its own
  reference);
- region_mixing: mask swap's pairs, and for each of hair, skin and cloth a reference of its own
  (seeded, ``mixing_seed``); a regional model takes those regions' styles from them, a global
  one ignores them, and each region's colour is scored against its own reference.

Each protocol reports attribute accuracy (expected geometry attributes from the label's face,
appearance attributes from the reference's), the parser's pixel accuracy and mean IoU against
the input label map, FID against the real test photos, the parser feature distance and the
region colour error (CIELAB distance of region mean colours to the reference's).
"""

from __future__ import annotations

import logging
import shlex
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset, Subset

from faceregen.errors import FaceregenError
from faceregen.evaluation.evaluators import Evaluator, default_evaluator_path, load_evaluator
from faceregen.evaluation.passes import (
    EvalContext,
    ProtocolPairs,
    generated_pass,
    real_statistics,
    reference_distances,
    region_mixing_pairing,
    swap_pairing,
)
from faceregen.evaluation.report import METRICS_FORMAT, PROTOCOLS, command_line, write_outputs
from faceregen.evaluation.scoring import (
    AttributeGroups,
    mixed_region_color_summary,
    paired_mixed_region_colors,
    paired_region_colors,
)
from faceregen.evaluation.statistics import fid_space, parser_space
from faceregen.evaluation.train_evaluators import open_split, train_from_settings
from faceregen.utils import make_dirs, resolve_device

log = logging.getLogger(__name__)


def evaluator_path(ev_cfg: DictConfig, data_root: Path, kind: str) -> Path:
    configured = ev_cfg.get(f"{kind}_path")
    return Path(configured) if configured else default_evaluator_path(data_root, kind)


def train_command(kind: str, data_root: Path, path: Path) -> str:
    command = f"faceregen evaluators train --kind {kind} --data {shlex.quote(str(data_root))}"
    if path != default_evaluator_path(data_root, kind):
        command += f" --out {shlex.quote(str(path.parent))}"
    return command


def ensure_evaluators(ev_cfg: DictConfig, data_root: Path, device: torch.device,
                      num_workers: int = 0, progress: bool = True) -> dict[str, Evaluator]:
    """Load the parser and the attribute classifier of ``data_root``; train missing ones first
    when ``auto_train`` is on, else stop with the command that trains them."""
    loaded = {}
    for kind in ("parser", "attributes"):
        path = evaluator_path(ev_cfg, data_root, kind)
        if not path.is_file():
            if not ev_cfg.auto_train:
                raise FaceregenError(
                    f"the {kind} evaluator for {data_root} is missing ({path}); train it with "
                    f"`{train_command(kind, data_root, path)}` or set evaluators.auto_train=true")
            settings = ev_cfg[kind]
            print(f"no {kind} evaluator at {path}: training one first on the train split of "
                  f"{data_root} ({settings.steps} steps)", flush=True)
            train_from_settings(kind, data_root, settings, out_path=path, device=str(device),
                                seed=int(ev_cfg.seed), cpu_threads=ev_cfg.get("cpu_threads"),
                                num_workers=num_workers, progress=progress)
        loaded[kind] = load_evaluator(path, kind, device)
    return loaded


def first_n(dataset: Dataset, n: int | None) -> Dataset:
    return dataset if n is None or n >= len(dataset) else Subset(dataset, range(n))


def resolve_data_root(cfg: DictConfig, checkpoint_config: DictConfig) -> Path:
    """``data_root`` when given, else the dataset stored in the checkpoint (made if missing)."""
    if cfg.get("data_root"):
        from faceregen.data.prepare import require_prepared

        return require_prepared(Path(cfg.data_root), f"data_root={cfg.data_root}")
    from faceregen.data import ensure_dataset

    return Path(ensure_dataset(checkpoint_config.data))


def newest_checkpoint_hint() -> str:
    from faceregen.checkpoint import find_latest_checkpoint

    try:
        return f" (the newest is {find_latest_checkpoint()})"
    except FaceregenError:
        return ""


def evaluate(cfg: DictConfig, run_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt`` (and ``cfg.baseline_ckpt``); write the outputs into ``run_dir``."""
    from faceregen.regen import load_model

    if OmegaConf.is_missing(cfg, "ckpt"):
        raise FaceregenError(f"faceregen eval needs the checkpoint to evaluate: "
                             f"faceregen eval ckpt=PATH{newest_checkpoint_hint()}")
    started = time.time()
    run_dir = Path(run_dir)
    make_dirs(run_dir)
    device = resolve_device(str(cfg.device))
    models = {"model": (str(cfg.ckpt), load_model(cfg.ckpt, device))}
    if cfg.get("baseline_ckpt"):
        models["baseline"] = (str(cfg.baseline_ckpt), load_model(cfg.baseline_ckpt, device))
    data_root = resolve_data_root(cfg, models["model"][1].config)
    sizes = {name: regen.size for name, (_, regen) in models.items()}

    evaluators = ensure_evaluators(cfg.evaluators, data_root, device,
                                   num_workers=int(cfg.num_workers), progress=progress)
    groups = AttributeGroups.from_config(list(cfg.evaluators.geometry_attributes),
                                         list(cfg.evaluators.appearance_attributes),
                                         evaluators["attributes"].attribute_names)
    faces = first_n(open_split(data_root, str(cfg.split)), cfg.get("max_images"))
    if len(faces) < 2:
        raise FaceregenError(f"{data_root}: the {cfg.split} split has {len(faces)} images; "
                             "the evaluation needs at least 2")
    size = int(faces[0]["image"].shape[-1])
    for name, regen_size in sizes.items():
        if regen_size != size:
            raise FaceregenError(f"{models[name][0]} generates {regen_size} px images but "
                                 f"{data_root} holds {size} px photos; pass data_root=")
    for evaluator in evaluators.values():
        if evaluator.image_size != size:
            raise FaceregenError(f"{evaluator.path} was trained on {evaluator.image_size} px "
                                 f"photos, the test photos are {size} px")

    spaces = [fid_space(cfg.fid, device), parser_space(evaluators["parser"])]
    ctx = EvalContext(evaluators, groups, spaces, device, int(cfg.batch_size),
                      int(cfg.num_workers), int(cfg.num_examples), progress)
    use_cache = bool(cfg.fid.cache)
    gt_acc, real_stats = real_statistics(faces, str(cfg.split), ctx, data_root, size, use_cache,
                                         f"real {cfg.split} photos")
    gt_scores = gt_acc.result({})
    for space in spaces:
        gt_scores[space.key] = ("unavailable" if space.unavailable_reason else None)
    if cfg.get("gt_reference"):
        try:
            reference_faces = first_n(open_split(data_root, str(cfg.gt_reference)), len(faces))
        except FaceregenError as exc:  # e.g. an empty split: the GT distances stay '-'
            log.warning("no GT distances: %s", exc)
            reference_faces = []
        if len(reference_faces) >= 2:
            gt_scores.update(reference_distances(reference_faces, str(cfg.gt_reference), ctx,
                                                 data_root, size, use_cache, real_stats))

    swap = swap_pairing(len(faces), int(cfg.swap_seed))
    pairings = {"reconstruction": list(range(len(faces))), "mask_swap": swap,
                "region_mixing": swap}
    region_references = {"region_mixing": region_mixing_pairing(
        swap, int(cfg.get("mixing_seed", 0)))}
    # GT region colours: each real photo against the protocol's real reference photo (0 in
    # reconstruction; in mask swap the colour gap of two faces, what ignoring the reference costs;
    # in region mixing each mixed region against its own reference)
    colors = gt_acc.region_colors()
    gt_scores["region_color_by_protocol"] = {
        protocol: (paired_mixed_region_colors(*colors, pairings[protocol],
                                              region_references[protocol])
                   if protocol in region_references
                   else paired_region_colors(*colors, pairings[protocol]))
        for protocol in PROTOCOLS}
    rows: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {protocol: {} for protocol in PROTOCOLS}
    for name, (path, regen) in models.items():
        protocols = {}
        for protocol in PROTOCOLS:
            pairs = ProtocolPairs(faces, pairings[protocol], region_references.get(protocol))
            acc, examples = generated_pass(regen, pairs, ctx, f"{name}: {protocol}")
            protocols[protocol] = acc.result(real_stats)
            if protocol in region_references:
                protocols[protocol].update(mixed_region_color_summary(protocols[protocol]))
            sections[protocol][name] = examples
        rows[name] = {"checkpoint": path, "step": regen.step,
                      "model_name": str(regen.config.model.get("name", "")),
                      "protocols": protocols}
    rows["gt"] = {"checkpoint": None, "step": None, "model_name": "real photos",
                  "protocols": {"real": gt_scores}}

    fid_space_ = spaces[0]
    result = {
        "format": METRICS_FORMAT,
        "dataset": {"root": str(data_root), "split": str(cfg.split), "size": size,
                    "n_images": len(faces)},
        "evaluators": {kind: {"path": str(ev.path), "steps": ev.steps,
                              "validation": ev.metrics} for kind, ev in evaluators.items()},
        "attribute_groups": {"geometry": list(cfg.evaluators.geometry_attributes),
                             "appearance": list(cfg.evaluators.appearance_attributes)},
        "swap_pairing": {"seed": int(cfg.swap_seed), "method": "uniform derangement",
                         "references": pairings["mask_swap"]},
        "region_mixing_pairing": {"seed": int(cfg.get("mixing_seed", 0)),
                                  "global_references": pairings["region_mixing"],
                                  "region_references": region_references["region_mixing"]},
        "fid": {"kind": "random_weights" if fid_space_.key == "fid_random_weights"
                else "pytorch_fid",
                "status": "unavailable" if fid_space_.unavailable_reason else "ok",
                "reason": fid_space_.unavailable_reason,
                "gt_reference": cfg.get("gt_reference")},
        "rows": rows,
        "command": command_line(cfg, run_dir),
        "config": OmegaConf.to_container(cfg, resolve=False),
        "seconds": round(time.time() - started, 1),
    }
    write_outputs(run_dir, result, sections)
    return result
