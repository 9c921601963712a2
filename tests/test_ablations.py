"""scripts/ablations.py: variant names become overrides, and the table averages over seeds."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ablations.py"


@pytest.fixture(scope="module")
def ablations():
    spec = importlib.util.spec_from_file_location("ablations", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variants_combine_and_unknown_names_are_refused(ablations):
    assert ablations.variant_overrides("baseline", ["x=1"]) == [
        "+experiment=synthetic_baseline", "x=1"]
    assert ablations.variant_overrides("adv-sum+vgg-raw", []) == [
        "loss.adv_scale_reduction=sum", "loss.vgg.input=raw"]
    with pytest.raises(SystemExit, match="unknown variant 'nope'"):
        ablations.variant_overrides("default+nope", [])


def test_every_variant_composes_with_the_training_config(ablations, tiny_cfg):
    """A misspelt key in VARIANTS would otherwise fail only when a benchmark reaches it."""
    from faceregen.config import check_train_settings

    for name in ablations.VARIANTS:
        check_train_settings(tiny_cfg(*ablations.variant_overrides(name, [])))


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
