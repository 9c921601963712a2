"""Shared pytest fixtures."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

import faceregen.config  # noqa: F401  (registers the config schemas)

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str):
    """A module of scripts/ (not a package), loaded afresh from its file."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

# The tests' training setup: the tiny networks and a few CPU steps (configs/model/size/tiny.yaml,
# configs/trainer/smoke.yaml) on a 24-face synthetic set at 32 px, without the VGG term (a
# VGG19 would dominate the run time) and with the penalty on every step.
TINY_OVERRIDES = (
    "model/size=tiny", "trainer=smoke", "logger.enabled=false",
    "data.size=32", "data.synth_size=64", "data.synth_num=24", "data.batch_size=4",
    "data.num_workers=0", "loss.lambda_vgg=0", "loss.gp_every=1",
)


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    """Compose configs/<name>.yaml as the Hydra app would (no run directory is made)."""
    GlobalHydra.instance().clear()
    with initialize_config_module(version_base="1.3", config_module="faceregen.configs"):
        return compose(config_name=name, overrides=overrides)


def compose_tiny(*overrides: str, data_dir: Path | str | None = None) -> DictConfig:
    """The `train` config with TINY_OVERRIDES, then ``paths.data=data_dir`` and ``overrides``."""
    data = [] if data_dir is None else [f"paths.data={data_dir}"]
    return compose_config("train", [*TINY_OVERRIDES, *data, *overrides])


# `faceregen eval` on a tiny checkpoint: tiny evaluators, 4 train images, a random-weight
# Inception (tests only), on the CPU.
TINY_EVAL_OVERRIDES = (
    "evaluators=tiny", "device=cpu", "num_workers=0", "batch_size=4", "split=train",
    "max_images=4", "num_examples=2", "fid.weights=random", "gt_reference=train",
)


def compose_tiny_eval(*overrides: str) -> DictConfig:
    """The `eval` config with TINY_EVAL_OVERRIDES, then ``overrides`` (``ckpt=...`` among them)."""
    return compose_config("eval", [*TINY_EVAL_OVERRIDES, *overrides])


@pytest.fixture(scope="session")
def tiny_cfg():
    """``tiny_cfg(*overrides, data_dir=None)``: the tiny training config (compose_tiny)."""
    return compose_tiny


@pytest.fixture(scope="session")
def tiny_eval_cfg():
    """``tiny_eval_cfg(*overrides)``: the tiny eval config (compose_tiny_eval)."""
    return compose_tiny_eval


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    """TINY_OVERRIDES as command-line arguments, for `faceregen train` in a subprocess."""
    return list(TINY_OVERRIDES)


def write_tiny_checkpoint(path, cfg: DictConfig, step: int = 7, seed: int = 0,
                          ema_offset: float = 0.0) -> Path:
    """A checkpoint in the trainer's layout with seeded random weights (no optimiser state).

    ``ema_offset`` shifts the EMA generator's weights away from the raw ones, so that a test
    can tell which of the two a command used.
    """
    import torch
    from omegaconf import OmegaConf

    from faceregen.checkpoint import save_checkpoint
    from faceregen.models import build_networks

    torch.manual_seed(seed)
    networks = build_networks(cfg.model)
    encoder = networks.style_encoder
    save_checkpoint({
        "step": step,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "generator": networks.generator.state_dict(),
        "generator_ema": {k: v + ema_offset for k, v in networks.generator.state_dict().items()},
        "style_encoder": encoder.state_dict() if encoder is not None else None,
        "style_encoder_ema": encoder.state_dict() if encoder is not None else None,
        "discriminator": networks.discriminator.state_dict(),
    }, path)
    return Path(path)


@pytest.fixture(scope="session")
def tiny_checkpoint():
    """``tiny_checkpoint(path, cfg, step=7, seed=0, ema_offset=0.0)``: write_tiny_checkpoint."""
    return write_tiny_checkpoint


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """A tiny synthetic raw set (12 faces, 64 px photos, 32 px masks) and its 32 px preparation.

    Returns a namespace with ``raw`` (CelebAMask-HQ layout), ``root`` (prepared dir), ``num``,
    ``photo_size`` and ``size``. Treat both folders as read-only; copy them to modify.
    """
    from faceregen.data.prepare import prepare
    from faceregen.data.synth import synthesize

    base = tmp_path_factory.mktemp("synthetic")
    num, photo_size, size = 12, 64, 32
    raw = synthesize(base / "raw", num=num, size=photo_size, seed=0, workers=1, progress=False)
    prepare(raw, base / "prepared", size=size, split="celeba", workers=1, progress=False)
    return SimpleNamespace(raw=raw, root=base / "prepared", num=num, photo_size=photo_size,
                           size=size)


@pytest.fixture
def user_error(capsys):
    """``user_error(argv)``: run the CLI, expect exit status 2 and exactly one `error:` line
    (no traceback); return that line."""
    def run(argv) -> str:
        from faceregen.cli import main as cli_main

        with pytest.raises(SystemExit) as exit_info:
            cli_main([str(arg) for arg in argv])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
        return err[0]

    return run
