"""`ensure_dataset`: the prepared set a training config names, made on first use if allowed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from faceregen.data import celebamask as layout
from faceregen.data.prepare import MANIFEST, META, prepare
from faceregen.data.synth import synthesize
from faceregen.errors import FaceregenError

logger = logging.getLogger("faceregen.data")


def prepare_command(data_cfg) -> str:
    return (f"faceregen data prepare --root {data_cfg.raw_root} --out {data_cfg.root} "
            f"--size {data_cfg.size} --split {data_cfg.split}")


def ensure_dataset(data_cfg) -> Path:
    """Return the prepared root of ``data_cfg``; synthesise and prepare it if it is missing.

    Only a config with ``synthesize: true`` may build data on its own; for the real set the
    error names the command to run.
    """
    root = Path(data_cfg.root)
    if (root / MANIFEST).exists():
        _check_size(root, data_cfg.size)
        return root
    if not data_cfg.synthesize:
        raise FaceregenError(f"{root / MANIFEST} not found; prepare the dataset first: "
                             f"{prepare_command(data_cfg)}")
    raw_root = Path(data_cfg.raw_root)
    workers = max(1, int(data_cfg.num_workers))
    if not (raw_root / layout.ATTRIBUTE_FILE).exists():
        logger.info("no prepared dataset at %s: synthesising %d faces at %d px into %s and "
                    "preparing them at %d px", root, data_cfg.synth_num, data_cfg.synth_size,
                    raw_root, data_cfg.size)
        synthesize(raw_root, num=data_cfg.synth_num, size=data_cfg.synth_size,
                   seed=data_cfg.synth_seed, workers=workers)
    else:
        logger.info("no prepared dataset at %s: preparing %s at %d px", root, raw_root,
                    data_cfg.size)
    prepare(raw_root, root, size=data_cfg.size, split=data_cfg.split, workers=workers)
    return root


def _check_size(root: Path, size: int) -> None:
    try:
        meta = json.loads((root / META).read_text())
    except (OSError, ValueError):
        return
    if meta.get("size") not in (None, size):
        raise FaceregenError(f"{root} was prepared at {meta['size']} px but the config asks for "
                             f"{size}; point data.root elsewhere or prepare it again")
