"""scripts/ablations.py: variant names become overrides, and the table averages over seeds."""

from __future__ import annotations

import json

import pytest
from conftest import load_script


@pytest.fixture(scope="module")
def ablations():
    return load_script("ablations")


def test_variants_combine_and_unknown_names_are_refused(ablations):
    assert ablations.variant_overrides("baseline", ["x=1"]) == [
        "+experiment=synthetic_baseline", "x=1"]
    assert ablations.variant_overrides("adv-sum+vgg-raw", []) == [
        "loss.adv_scale_reduction=sum", "loss.vgg.input=raw"]
    with pytest.raises(SystemExit, match="unknown variant 'nope'"):
        ablations.variant_overrides("default+nope", [])


def test_every_variant_composes_with_the_training_config(ablations, tiny_cfg):
    """A misspelt key in VARIANTS, or settings the networks refuse together, would otherwise
    fail only when a benchmark reaches it."""
    from faceregen.config import check_train_settings
    from faceregen.models import build_networks

    for name in ablations.VARIANTS:
        cfg = tiny_cfg(*ablations.variant_overrides(name, []))
        check_train_settings(cfg)
        build_networks(cfg.model)


def test_the_table_gives_the_mean_and_half_the_range_over_seeds(ablations, tmp_path, capsys):
    def scores(attribute: float) -> dict:
        protocol = {"attribute_accuracy": attribute, "segmentation_pixel_accuracy": 0.9,
                    "segmentation_miou": 0.5, "region_color_error": 10.0, "psnr": 20.0}
        return {"rows": {"model": {"protocols": {"mask_swap": protocol,
                                                 "reconstruction": protocol}}}}

    for seed, attribute in ((0, 0.80), (1, 0.84)):
        metrics = tmp_path / "default" / f"seed{seed}" / "eval" / "metrics.json"
        metrics.parent.mkdir(parents=True)
        metrics.write_text(json.dumps(scores(attribute)))
    ablations.main(["--seeds", "0,1", "default", "gp-off", "--table-only", "--out",
                    str(tmp_path)])
    table = capsys.readouterr().out
    assert "| default | 0,1 | 82.00 ±2.00 | 90.00 ±0.00 | 50.00 ±0.00 | 10.00 ±0.00 |" in table
    assert "gp-off" not in table  # never trained: no row


def test_the_detail_table_averages_part_iou_and_lists_false_alarms(ablations):
    def result(seed: int, iou: float, accuracy: float, fp: int) -> dict:
        swap = {"per_class_iou": {name: iou for name in ablations.DETAIL_CLASSES},
                "per_attribute_accuracy": {name: accuracy
                                           for name in ablations.DETAIL_ATTRIBUTES},
                "per_attribute_counts": {name: {"tp": 1, "tn": 1, "fp": fp, "fn": 0}
                                         for name in ablations.DETAIL_ATTRIBUTES}}
        return {"variant": "default", "seed": seed, "protocols": {"mask_swap": swap}}

    table = ablations.detail_table([result(0, 0.5, 0.7, 3), result(1, 0.7, 0.8, 5)],
                                   ["default", "baseline"])
    row = next(line for line in table.splitlines() if line.startswith("| default |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == "2"
    assert cells[2:2 + len(ablations.DETAIL_CLASSES)] == ["0.60"] * len(ablations.DETAIL_CLASSES)
    assert cells[-1] == "75.0 (FP 3/5)"
    assert "| baseline |" not in table  # no runs: no row


def test_the_colour_table_gives_each_region_seed_by_seed(ablations):
    def result(seed: int, background: float) -> dict:
        swap = {"region_color_error": (4.0 + background) / 2,
                "region_color_error_per_region": {"skin": 4.0, "background": background}}
        return {"variant": "default", "seed": seed, "protocols": {"mask_swap": swap}}

    table = ablations.colour_table([result(0, 18.0), result(1, 4.0)], ["default", "baseline"])
    assert table.splitlines()[0] == "| variant | seeds | skin | background | mean |"
    assert "| default | 0,1 | 4.00 (4.00, 4.00) | 11.00 (18.00, 4.00) | 7.50 |" in table
    assert "| baseline |" not in table
