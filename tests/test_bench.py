"""scripts/bench.py runs both steps on a tiny config and reports its figures as JSON."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import load_script
from hydra.core.global_hydra import GlobalHydra

TINY_FLAGS = ["--size", "32", "--batch", "2", "--ngf", "8", "--n-downsample", "2", "--num-d", "1",
              "--steps", "1"]
TINY_OVERRIDES = ["model/size=tiny"]  # the tiny networks; the flags above come on top
TINY = [*TINY_FLAGS, "--warmup", "0", *TINY_OVERRIDES]


def run_bench(argv: list[str], capsys) -> dict:
    bench = load_script("bench")
    GlobalHydra.instance().clear()
    bench.main(argv)
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("step", ["faceregen", "reference"])
def test_bench_reports_throughput_and_flops(step, capsys):
    report = run_bench(["--model", "pix2pixhd", "--no-gp", "--step", step, *TINY], capsys)
    assert report["config"]["step"] == step and report["config"]["size"] == 32
    assert report["img_per_s"] > 0 and report["gflop_per_step"] > 0
    for section in ("g_forward", "d_forward", "losses_forward", "backward"):
        assert report["phases_s"][section] > 0


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


def test_an_eager_penalty_form_is_refused_with_a_compiled_penalty(capsys):
    with pytest.raises(SystemExit):
        run_bench(["--eager-penalty", "autograd", "--compile", *TINY], capsys)
    assert "--compiled-penalty eager" in capsys.readouterr().err


def test_bench_penalty_times_each_form_and_counts_their_convolutions(capsys):
    """--task penalty: the trainer's eager penalty and the explicit one run convolution
    backward passes only in their second differentiation, compiled too; autograd's own double
    backward runs forward ones, dilated among them, and so does the func.grad form compiled.
    --profile adds each form's time by class and the aten ops the host dispatches: in the
    compiled form mostly from inside compiled code, in the eager one all outside it."""
    report = run_bench(["--task", "penalty", "--channels-last", "--profile", "--compile",
                        *TINY], capsys)
    torch._dynamo.reset()
    forms = ("default", "explicit", "autograd", "explicit, compiled", "func.grad, compiled")
    assert all(report[form]["ms"] > 0 and report[form]["profile"]["classes"] for form in forms)
    for form in ("default", "explicit", "explicit, compiled"):
        convolutions = report[form]["second_differentiation_convolutions"]
        assert convolutions["backward"] > 0
        assert not any(kind.startswith("forward") for kind in convolutions)
    for form in ("autograd", "func.grad, compiled"):
        assert report[form]["second_differentiation_convolutions"]["forward, dilated"] > 0
    eager, compiled = (report[form]["profile"]["host_ops"]
                       for form in ("explicit", "explicit, compiled"))
    assert eager["inside_compiled_per_step"] == 0 and eager["outside_compiled_per_step"] > 100
    assert compiled["inside_compiled_per_step"] > 0
    assert compiled["outside_compiled_per_step"] < eager["outside_compiled_per_step"] / 4


def test_bench_data_times_the_trainers_loader(tmp_path, capsys):
    """--task data makes the synthetic set if missing and reads batches as the trainer does."""
    report = run_bench(["--task", "data", "--size", "32", "--workers", "0", "--steps", "6",
                        "--warmup", "1", f"paths.data={tmp_path}", "data.synth_num=24",
                        "data.synth_size=64", "data.batch_size=4"], capsys)
    assert (tmp_path / "synthetic" / "prepared-32" / "manifest.csv").is_file()
    assert report["workers"] == 0 and 0 < report["train_images"] < 24
    assert report["img_per_s"] > 0 and report["batch_s"] > 0


def test_the_suite_runs_every_row_at_a_tiny_size_and_compares_with_the_reference(capsys):
    """--suite tiny is --suite gpu's rows on the CPU: the reference step first, the ratio of
    every row to it, and a profile of the eager style model whose classes add up to the step."""
    bench = load_script("bench")
    GlobalHydra.instance().clear()
    bench.main(["--suite", "tiny", "--eager-only", "--steps", "1", "--warmup", "0",
                "--profile"])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    rows = report["rows"]
    assert [row["row"] for row in rows] == [
        "pix2pixHD's step (reference)", "baseline", "style model", "style model"]
    assert [row["batch"] for row in rows] == [2, 2, 2, 4]
    assert rows[0]["penalty"] == "none" and rows[0]["vs_reference"] == 1.0
    assert rows[1]["penalty"].startswith("wgan-gp every")
    for row in rows:
        assert row["vs_reference"] == pytest.approx(row["img_per_s"] / rows[0]["img_per_s"])
    profile = next(row["profile"] for row in rows if "profile" in row)
    assert profile["classes"]["conv forward"]["ms_per_step"] > 0
    assert 0.5 < sum(entry["share"] for entry in profile["classes"].values()) <= 1.05
    assert profile["roofline"]["conv backward"]["gflop_per_step"] > 0
    assert "| style model | 4 |" in captured.err and "x reference" in captured.err


def test_the_suites_variant_rows_run_at_a_tiny_size(capsys):
    """--variants: every row runs; the 8-aligned first convolutions add only the zero channels'
    work (22 -> 24 input channels of the discriminator's, 19 -> 24 of the generator's)."""
    bench = load_script("bench")
    GlobalHydra.instance().clear()
    bench.main(["--suite", "tiny", "--eager-only", "--variants", "--batch", "4", "--steps", "1",
                "--warmup", "0"])
    rows = {row["row"]: row for row in json.loads(capsys.readouterr().out)["rows"]}
    assert set(rows) == {"pix2pixHD's step (reference)", "baseline", "style model",
                         *(row[0] for row in bench.VARIANT_ROWS if not row[3])}
    assert all(row["img_per_s"] > 0 for row in rows.values())
    plain, aligned = rows["style model"], rows["style model, 8-aligned first convolutions"]
    assert 1 < aligned["gflop_per_step"] / plain["gflop_per_step"] < 1.2
    assert rows["style model, layout-keeping instance norm"]["gflop_per_step"] == pytest.approx(
        plain["gflop_per_step"])


def test_the_suite_picks_rows_by_name_and_records_a_failed_row_without_stopping(capsys,
                                                                             monkeypatch):
    """--rows keeps the reference and the named rows, in the order named; a row that raises (a
    CUDA graph that cannot be recorded, say) becomes an error row and the rows after it still
    run."""
    bench = load_script("bench")
    real_bench = bench.bench

    def failing_for_the_baseline(cfg, *args, **kwargs):
        if cfg.model.name == "pix2pixhd" and cfg.loss.lambda_gp > 0:
            raise RuntimeError("operation not permitted when stream is capturing\nmore")
        return real_bench(cfg, *args, **kwargs)

    monkeypatch.setattr(bench, "bench", failing_for_the_baseline)
    GlobalHydra.instance().clear()
    bench.main(["--suite", "tiny", "--eager-only", "--steps", "1", "--warmup", "0",
                "--rows", "baseline, batch", "style model, batch 4"])
    captured = capsys.readouterr()
    rows = json.loads(captured.out)["rows"]
    assert [(row["row"], row["batch"]) for row in rows] == [
        ("pix2pixHD's step (reference)", 2), ("baseline", 2), ("style model", 2)]
    assert rows[1]["error"] == "RuntimeError: operation not permitted when stream is capturing"
    assert rows[2]["img_per_s"] > 0
    assert "| baseline | 2 | failed: RuntimeError" in captured.err

    monkeypatch.setattr(bench, "bench", real_bench)  # rows run in the order of the words
    bench.main(["--suite", "tiny", "--eager-only", "--steps", "1", "--warmup", "0",
                "--rows", "style model, batch 4", "baseline, batch"])
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [row["row"] for row in rows] == ["pix2pixHD's step (reference)", "style model",
                                            "baseline"]


@pytest.mark.parametrize("name, expected", [
    ("sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize128x128x64",
     ("conv forward", "bf16, NHWC")),
    ("sm80_xmma_dgrad_implicit_gemm_indexed_f32f32_tf32f32_f32_nchwkcrs_nchw",
     ("conv backward, data", "fp32/tf32, NCHW")),
    ("sm90_xmma_wgrad_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc", ("conv backward, weights",
                                                                          "bf16, NHWC")),
    ("void cudnn::engines_precompiled::nchwToNhwcKernel<float>", ("layout conversion", None)),
    ("void at::native::reflection_pad2d_out_kernel<c10::BFloat16>", ("padding", None)),
    ("triton_per_fused_native_group_norm_0", ("compiled fusion, reduction", None)),
    ("triton_poi_fused__to_copy_convolution_relu_11", ("compiled fusion, pointwise", None)),
    ("triton_red_fused_convolution_backward_native_batch_norm_backward_view_11",
     ("compiled fusion, reduction", None)),
    ("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedAdam>",
     ("optimiser and EMA", None)),
])
def test_kernel_names_fall_in_their_class(name, expected):
    bench = load_script("bench")
    label, precision = expected
    assert bench.kernel_class(name) == label
    if precision:
        assert bench.kernel_precision(name) == precision
