"""`faceregen eval` end to end on tiny checkpoints, with a random-weight Inception (tests only)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import faceregen.config  # noqa: F401  (registers the config schemas)
from faceregen.checkpoint import save_checkpoint
from faceregen.errors import FaceregenError
from faceregen.evaluation import inception, passes, runner, scoring, statistics, train_evaluators
from faceregen.evaluation.train_evaluators import train_evaluator
from faceregen.models import build_networks


def tiny_checkpoint(path: Path, cfg) -> Path:
    """An untrained checkpoint in the trainer's layout (EMA weights are what eval loads)."""
    torch.manual_seed(0)
    nets = build_networks(cfg.model)
    encoder = nets.style_encoder
    save_checkpoint({
        "step": 7, "config": OmegaConf.to_container(cfg, resolve=True),
        "generator": nets.generator.state_dict(), "generator_ema": nets.generator.state_dict(),
        "style_encoder": None if encoder is None else encoder.state_dict(),
        "style_encoder_ema": None if encoder is None else encoder.state_dict(),
        "discriminator": nets.discriminator.state_dict(),
    }, path)
    return path


@pytest.fixture(scope="module")
def eval_data(synthetic_dataset, tmp_path_factory, tiny_cfg):
    """A copy of the tiny prepared set with tiny evaluators, and two tiny checkpoints."""
    base = tmp_path_factory.mktemp("eval")
    root = base / "prepared"
    shutil.copytree(synthetic_dataset.root, root)
    for kind in ("parser", "attributes"):
        train_evaluator(kind, root, steps=2, batch_size=4,
                        architecture={"channels": 4, "depth": 2}, device="cpu", progress=False)
    return {
        "root": root,
        "model": tiny_checkpoint(base / "model.pt",
                                 tiny_cfg("model=style_pix2pixhd", f"data.root={root}")),
        "baseline": tiny_checkpoint(base / "baseline.pt",
                                    tiny_cfg("model=pix2pixhd", f"data.root={root}")),
    }


@pytest.fixture(autouse=True)
def small_inception_features(monkeypatch):
    """Keep the first 64 of the 2048 pool3 features: the Inception still runs, but the
    Frechet distance's 2048x2048 sqrtm (about 10 s on two busy cores) is not what these
    tests check (test_metrics covers it)."""
    full = statistics.inception_features
    monkeypatch.setattr(statistics, "inception_features", lambda model, x: full(model, x)[:, :64])


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_download(destination):
        raise ConnectionError("no network in tests")

    monkeypatch.setattr(inception, "download_weights", no_download)


@pytest.fixture
def eval_config(eval_data, tiny_eval_cfg):
    """``eval_config(*overrides)``: the tiny eval config on the style model's checkpoint."""
    return lambda *overrides: tiny_eval_cfg(f"ckpt={eval_data['model']}", *overrides)


def test_swap_pairing_is_a_seeded_derangement():
    pairing = passes.swap_pairing(50, seed=3)
    assert sorted(pairing) == list(range(50))
    assert all(ref != i for i, ref in enumerate(pairing))
    assert pairing == passes.swap_pairing(50, seed=3) != passes.swap_pairing(50, seed=4)
    assert passes.swap_pairing(2, seed=0) == [1, 0]
    with pytest.raises(FaceregenError):
        passes.swap_pairing(1, seed=0)


def test_expected_attributes_take_geometry_from_label_and_appearance_from_reference():
    groups = scoring.AttributeGroups.from_config(
        ["Bangs", "Smiling"], ["Black_Hair"], classifier_names=["Black_Hair", "Smiling", "Bangs"])
    assert groups.classifier_columns == [2, 1, 0]
    label_attributes, ref_attributes = torch.zeros(1, 40), torch.zeros(1, 40)
    label_attributes[0, train_evaluators.attribute_indices(["Bangs"])] = 1   # label face: bangs
    ref_attributes[0, train_evaluators.attribute_indices(["Smiling", "Black_Hair"])] = 1
    expected = groups.expected(label_attributes, ref_attributes)
    assert expected.tolist() == [[True, False, True]]
    with pytest.raises(FaceregenError, match="not trained on"):
        scoring.AttributeGroups.from_config(["Bald"], [], classifier_names=["Bangs"])
    with pytest.raises(FaceregenError, match="both"):
        scoring.AttributeGroups.from_config(["Bald"], ["Bald"], classifier_names=["Bald"])


def test_eval_end_to_end_with_baseline_and_auto_trained_evaluators(eval_data, tmp_path,
                                                                   capsys, eval_config):
    cfg = eval_config(f"baseline_ckpt={eval_data['baseline']}",
                      f"evaluators.parser_path={tmp_path / 'nets' / 'parser.pt'}",
                      f"evaluators.attributes_path={tmp_path / 'nets' / 'attributes.pt'}")
    result = runner.evaluate(cfg, tmp_path / "run", progress=False)
    out = capsys.readouterr().out
    assert "no parser evaluator" in out and "training one first" in out
    assert (tmp_path / "nets" / "parser.pt").is_file()

    run = tmp_path / "run"
    for name in ("metrics.json", "table.md", "examples.png", "command.txt"):
        assert (run / name).is_file(), name
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["format"] == "faceregen-eval-v1" and saved["dataset"]["n_images"] == 4
    assert saved["fid"]["kind"] == "random_weights"
    assert set(saved["rows"]) == {"model", "baseline", "gt"}
    assert saved["rows"]["model"]["step"] == 7
    assert saved["rows"]["model"]["checkpoint"] == str(eval_data["model"])
    swap = saved["swap_pairing"]["references"]
    assert all(ref != i for i, ref in enumerate(swap))
    for row in ("model", "baseline"):
        protocols = saved["rows"][row]["protocols"]
        assert set(protocols) == {"reconstruction", "mask_swap"}
        recon = protocols["reconstruction"]
        assert recon["n_images"] == 4
        assert "fid" not in recon and isinstance(recon["fid_random_weights"], float)
        for key in ("attribute_accuracy", "segmentation_pixel_accuracy", "segmentation_miou",
                    "parser_feature_distance", "psnr", "ssim", "l1"):
            assert isinstance(recon[key], float), key
        assert 0 <= recon["attribute_accuracy"] <= 1 and -1 <= recon["ssim"] <= 1
        assert "psnr" not in protocols["mask_swap"]
        counts = recon["attribute_counts"]
        assert sum(counts.values()) == 4 * len(saved["attribute_groups"]["geometry"]
                                               + saved["attribute_groups"]["appearance"])
    gt = saved["rows"]["gt"]["protocols"]["real"]
    assert gt["parser_feature_distance"] == pytest.approx(0, abs=1e-3)  # train vs itself here
    table = (run / "table.md").read_text()
    assert "| baseline |" in table and "| model |" in table and "| GT |" in table
    assert "FID (random weights; tests only)" in table
    assert "ckpt=" in (run / "command.txt").read_text()
    assert result["rows"]["model"]["protocols"]["mask_swap"]["n_images"] == 4
    assert list((eval_data["root"] / "fid_stats").glob("train_32px_n4_parser-*.npz"))


def test_missing_inception_weights_make_fid_unavailable(eval_data, tmp_path, offline_hub,
                                                        eval_config):
    cfg = eval_config("fid.weights=pytorch_fid", "gt_reference=null")
    runner.evaluate(cfg, tmp_path, progress=False)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["fid"]["status"] == "unavailable" and "hub cache" in saved["fid"]["reason"]
    recon = saved["rows"]["model"]["protocols"]["reconstruction"]
    assert recon["fid"] == "unavailable" and "no network" in recon["fid_unavailable_reason"]
    assert isinstance(recon["parser_feature_distance"], float)
    assert isinstance(recon["segmentation_pixel_accuracy"], float)
    assert "unavailable" in (tmp_path / "table.md").read_text()


def test_auto_train_off_names_the_command(eval_data, tmp_path, eval_config):
    cfg = eval_config("evaluators.auto_train=false",
                      f"evaluators.parser_path={tmp_path / 'missing' / 'parser.pt'}")
    with pytest.raises(FaceregenError, match="faceregen evaluators train --kind parser"):
        runner.evaluate(cfg, tmp_path / "run", progress=False)


def test_data_root_override_must_be_prepared(eval_data, tmp_path, eval_config):
    with pytest.raises(FaceregenError, match="not a prepared dataset"):
        runner.evaluate(eval_config(f"data_root={tmp_path}"), tmp_path / "run",
                        progress=False)
