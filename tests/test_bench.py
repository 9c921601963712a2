"""scripts/bench.py runs both steps on a tiny config and reports its figures as JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"
TINY_FLAGS = ["--size", "32", "--batch", "2", "--ngf", "8", "--n-downsample", "2", "--num-d", "1",
              "--steps", "1"]
TINY_OVERRIDES = ["model/size=tiny"]  # the tiny networks; the flags above come on top
TINY = [*TINY_FLAGS, "--warmup", "0", *TINY_OVERRIDES]


def run_bench(argv: list[str], capsys) -> dict:
    spec = importlib.util.spec_from_file_location("bench", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    GlobalHydra.instance().clear()
    bench.main(argv)
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("step", ["faceregen", "reference"])
def test_bench_reports_throughput_and_flops(step, capsys):
    report = run_bench(["--model", "pix2pixhd", "--no-gp", "--step", step, *TINY], capsys)
    assert report["config"]["step"] == step and report["config"]["size"] == 32
    assert report["img_per_s"] > 0 and report["gflop_per_step"] > 0
    for section in ("g_forward", "d_forward", "losses_forward", "backward"):
        assert report[f"{section}_s"] > 0


def test_reference_step_does_more_work_than_the_trainer_step(capsys):
    """The reference runs the discriminator on the fakes twice and back-propagates L_G into
    the discriminator's weights; the trainer's step does neither."""
    flops = {step: run_bench(["--model", "pix2pixhd", "--no-gp", "--step", step, *TINY],
                             capsys)["gflop_per_step"]
             for step in ("faceregen", "reference")}
    assert flops["reference"] > flops["faceregen"]


@pytest.mark.slow
def test_bench_compiled_step(capsys):
    report = run_bench(["--model", "pix2pixhd", "--no-gp", "--compile", *TINY_FLAGS,
                        "--warmup", "1", *TINY_OVERRIDES], capsys)
    assert report["config"]["compile"] is True and report["img_per_s"] > 0


def test_reference_step_refuses_a_penalty(capsys):
    with pytest.raises(SystemExit):
        run_bench(["--step", "reference", *TINY], capsys)
    assert "add --no-gp" in capsys.readouterr().err


def test_bench_data_times_the_trainers_loader(tmp_path, capsys):
    """--task data makes the synthetic set if missing and reads batches as the trainer does."""
    report = run_bench(["--task", "data", "--size", "32", "--workers", "0", "--steps", "6",
                        "--warmup", "1", f"paths.data={tmp_path}", "data.synth_num=24",
                        "data.synth_size=64", "data.batch_size=4"], capsys)
    assert (tmp_path / "synthetic" / "prepared-32" / "manifest.csv").is_file()
    assert report["workers"] == 0 and 0 < report["train_images"] < 24
    assert report["img_per_s"] > 0 and report["batch_s"] > 0
