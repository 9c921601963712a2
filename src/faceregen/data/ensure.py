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
        _check_prepared(root, data_cfg)
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


def _check_prepared(root: Path, data_cfg) -> None:
    """A prepared set must match the config's size and, when it was prepared from the config's
    synthetic raw set, its face count (an older or differently sized synthetic set would
    otherwise be reused in silence)."""
    try:
        meta = json.loads((root / META).read_text())
    except (OSError, ValueError):
        return
    size = data_cfg.size
    if meta.get("size") not in (None, size):
        raise FaceregenError(f"{root} was prepared at {meta['size']} px but the config asks for "
                             f"{size}; point data.root elsewhere or prepare it again")
    made_here = (data_cfg.synthesize and meta.get("source") is not None
                 and Path(meta["source"]).resolve() == Path(data_cfg.raw_root).resolve())
    if made_here and meta.get("count") not in (None, data_cfg.synth_num):
        raise FaceregenError(
            f"{root} holds {meta['count']} synthetic faces but data.synth_num is "
            f"{data_cfg.synth_num}; delete {root} and {data_cfg.raw_root} to synthesise the new "
            f"set, or pass data.synth_num={meta['count']}")
