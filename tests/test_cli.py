"""The dispatcher, each subcommand's --help, config composition and the run-directory layout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

import faceregen.config  # noqa: F401  (registers the config schemas)
from faceregen.cli import SUBCOMMANDS, main

REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_help_lists_every_subcommand(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for name in ("train", "eval", "regen", "data"):
        assert any(line.split()[:1] == [name] for line in out.splitlines()), name


def test_no_arguments_prints_usage_and_fails(capsys):
    code, out, _ = run_cli(capsys)
    assert code == 2 and "usage: faceregen" in out


def test_unknown_subcommand_is_a_one_line_error(capsys):
    code, out, err = run_cli(capsys, "tarin")
    assert code == 2
    assert err.strip().startswith("error: unknown subcommand 'tarin'")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_subcommand_help(name, capsys):
    code, out, err = run_cli(capsys, name, "--help")
    assert code == 0, err
    assert out.strip(), f"`faceregen {name} --help` printed nothing"


@pytest.fixture()
def hydra_configs():
    GlobalHydra.instance().clear()
    with initialize_config_module(version_base="1.3", config_module="faceregen.configs"):
        yield
    GlobalHydra.instance().clear()


def experiment_names() -> list[str]:
    return sorted(p.stem for p in (REPO / "configs" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", experiment_names())
def test_every_experiment_composes(experiment, hydra_configs):
    cfg = compose(config_name="train", overrides=[f"+experiment={experiment}"],
                  return_hydra_config=True)
    assert f"/train/{experiment}/" in cfg.hydra.run.dir
    assert cfg.model.generator._target_.endswith("GlobalGenerator")
    assert cfg.data.size % 2 ** cfg.model.generator.n_downsample == 0


@pytest.mark.parametrize("option", sorted(p.stem for p in (REPO / "configs" / "optim")
                                           .glob("*.yaml")))
def test_every_optimiser_option_composes_and_builds_adam(option, hydra_configs):
    import torch
    from hydra.utils import instantiate

    cfg = compose(config_name="train", overrides=[f"optim={option}"])
    weight = torch.nn.Parameter(torch.zeros(2))
    for network in ("generator", "discriminator"):
        optimizer = instantiate(cfg.optim[network])(params=[weight])
        assert isinstance(optimizer, torch.optim.Adam)
        assert optimizer.param_groups[0]["lr"] == cfg.optim[network].lr > 0
    assert 0 <= cfg.optim.decay_start <= 1


def test_experiment_group_is_listed_by_hydra(hydra_configs):
    options = GlobalHydra.instance().config_loader().get_group_options("experiment")
    assert sorted(options) == experiment_names()


def test_report_experiments_follow_the_spec(hydra_configs):
    style = compose(config_name="train", overrides=["+experiment=celebamask"])
    base = compose(config_name="train", overrides=["+experiment=pix2pixhd_baseline"])
    assert style.data.size == 512 and style.model.generator.ngf == 64
    assert style.model.generator.n_downsample == 4 and style.model.generator.n_blocks == 4
    assert style.model.discriminator.num_D == 3 and style.loss.vgg.weights == "imagenet"
    assert style.model.style_encoder is not None and base.model.style_encoder is None
    # the report's WGAN-GP, lazily every 4th step (level with every step in the benchmark)
    assert (style.loss.gp_mode, style.loss.gp_every) == (base.loss.gp_mode, base.loss.gp_every)
    assert (style.loss.gp_mode, style.loss.gp_every, style.loss.lambda_gp) == ("wgan-gp", 4, 10)
    assert "use_style" not in base.model.generator  # model.style_encoder is the one switch
    assert style.model.generator.ngf == base.model.generator.ngf
    assert style.optim.generator.lr == base.optim.generator.lr == 2e-4
    # the baseline trains with pix2pixHD's objective; the style model keeps the schema defaults
    assert (base.loss.adv_scale_reduction, base.loss.vgg.input) == ("sum", "raw")
    assert (style.loss.adv_scale_reduction, style.loss.vgg.input) == ("mean", "imagenet")


def test_both_arms_of_the_synthetic_benchmark_train_with_one_objective(hydra_configs):
    style = compose(config_name="train")
    base = compose(config_name="train", overrides=["+experiment=synthetic_baseline"])
    assert style.model.style_encoder is not None and base.model.style_encoder is None
    assert style.loss == base.loss
    # the offline default's pixel terms; the report's experiments keep the report's objective
    assert (style.loss.lambda_l1, style.loss.lambda_l1_class) == (10, 10)
    for experiment in ("celebamask", "pix2pixhd_baseline"):
        report = compose(config_name="train", overrides=[f"+experiment={experiment}"])
        assert (report.loss.lambda_l1, report.loss.lambda_l1_class) == (0, 0)


def test_command_line_overrides_win_over_the_experiment(hydra_configs):
    cfg = compose(config_name="train",
                  overrides=["+experiment=celebamask", "model.generator.ngf=32", "data.size=256"])
    assert cfg.model.generator.ngf == 32 and cfg.data.size == 256


@pytest.mark.parametrize("override, fragment", [
    ("trainer.max_steps=abc", "max_steps"),
    ("trainer.max_step=3", "max_step"),
    ("data.sizee=3", "sizee"),
    ("model.generator.ngff=3", "ngff"),
    ("loss.lambda_vgg=abc", "lambda_vgg"),
    ("optim.generator.lrr=1", "lrr"),
])
def test_schema_rejects_bad_values(override, fragment, hydra_configs):
    with pytest.raises(Exception, match=fragment):
        compose(config_name="train", overrides=[override])


def test_run_directory_layout(hydra_configs, monkeypatch):
    monkeypatch.setenv("FACEREGEN_RUNS", "/tmp/runs-x")
    monkeypatch.setenv("FACEREGEN_DATA", "/tmp/data-x")
    cfg = compose(config_name="train", overrides=["+experiment=celebamask"],
                  return_hydra_config=True)
    run_dir = cfg.hydra.run.dir
    assert run_dir.startswith("/tmp/runs-x/train/celebamask/")
    assert cfg.hydra.job.chdir is False and cfg.hydra.job.name == "train"
    assert cfg.data.root == "/tmp/data-x/celebamask-512"
    monkeypatch.delenv("FACEREGEN_RUNS")
    default = compose(config_name="train", return_hydra_config=True)
    assert default.hydra.run.dir.startswith("checkpoints/train/default/")
    ev = compose(config_name="eval", overrides=["ckpt=x.pt"], return_hydra_config=True)
    assert ev.hydra.run.dir.startswith("checkpoints/eval/")


def test_console_script_finds_configs_outside_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEREGEN_")}
    proc = subprocess.run([sys.executable, "-m", "faceregen", "train", "--cfg", "job",
                           "+experiment=celebamask"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "name: celebamask" in proc.stdout
    assert not any(tmp_path.iterdir()), "--cfg job must not create a run directory"
