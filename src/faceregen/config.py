"""Where the YAML configs live, and typed schemas for the plain-data config groups.

The schemas are registered in Hydra's ConfigStore so that a misspelt key or a value of the
wrong type (``trainer.max_steps=abc``) fails at composition with Hydra's own clear message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Optional

from hydra.core.config_store import ConfigStore


def config_dir() -> Path:
    """The installed ``faceregen.configs`` folder (top-level ``configs/`` in a checkout)."""
    return Path(str(resources.files("faceregen.configs")))


@dataclass
class PathsConfig:
    data: str = "data"
    runs: str = "checkpoints"


@dataclass
class DataConfig:
    name: str = "synthetic"
    raw_root: str = "???"
    root: str = "???"
    size: int = 64
    label_classes: int = 19
    split: str = "celeba"
    synthesize: bool = False
    synth_num: int = 2000
    synth_size: int = 128
    synth_seed: int = 0
    batch_size: int = 8
    num_workers: int = 2
    flip: bool = True
    crop: bool = False
    crop_scale: list[float] = field(default_factory=lambda: [0.8, 1.0])
    reference: str = "same"


@dataclass
class TrainerConfig:
    max_steps: int = 2000
    max_minutes: Optional[float] = None
    device: str = "auto"
    precision: str = "32"
    channels_last: bool = False
    compile: bool = False
    cudnn_benchmark: bool = True
    deterministic: bool = False
    seed: int = 0
    ema_decay: float = 0.999
    log_every: int = 25
    sample_every: int = 250
    ckpt_every: int = 500
    keep_last: int = 3
    num_samples: int = 8
    resume: Optional[str] = None


def register_schemas() -> None:
    cs = ConfigStore.instance()
    cs.store(group="paths", name="paths_schema", node=PathsConfig)
    cs.store(group="data", name="data_schema", node=DataConfig)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConfig)


register_schemas()
