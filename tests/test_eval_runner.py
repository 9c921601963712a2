"""`faceregen eval` end to end on tiny checkpoints, with a random-weight Inception (tests only)."""

from __future__ import annotations

import json
import math
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


class FakeEvaluators(dict):
    """A parser and an attribute classifier that answer zeros: for the colour tests only."""

    def __init__(self, num_attributes: int):
        from types import SimpleNamespace

        super().__init__(
            parser=SimpleNamespace(network=lambda x: torch.zeros(x.shape[0], 19, *x.shape[2:])),
            attributes=SimpleNamespace(network=lambda x: torch.zeros(x.shape[0], num_attributes)))


def painted(regions: dict[int, tuple[float, float, float]], width: int = 4):
    """A face whose label map gives each class of ``regions`` its own row, in one flat sRGB
    colour ([-1, 1], as the data loader gives it)."""
    label = torch.zeros(len(regions), width, dtype=torch.long)
    image = torch.zeros(3, len(regions), width)
    for row, (index, rgb) in enumerate(regions.items()):
        label[row] = index
        image[:, row] = torch.tensor(rgb)[:, None] * 2 - 1
    return image, label


def test_region_color_error_by_hand():
    """Generated = face 0's own photo and label, reference = face 1. skin: red vs white; hair:
    black vs black; lips: only face 1 has them (skipped); cloth: in neither (skipped);
    background: blue vs blue. Per region and averaged over the regions with pairs."""
    from faceregen.evaluation import metrics

    red, white, black, blue = (1, 0, 0), (1, 1, 1), (0, 0, 0), (0, 0, 1)
    skin, hair, lip, background = 1, 13, 11, 0
    face0 = painted({skin: red, hair: black, background: blue})
    face1 = painted({skin: white, hair: black, lip: red, background: blue})
    groups = scoring.AttributeGroups.from_config(["Bangs"], [], classifier_names=["Bangs"])
    acc = scoring.ProtocolAccumulator(groups, [], with_target=False)
    acc.update(face0[0][None], face0[1][None], torch.zeros(1, 1, dtype=torch.bool),
               FakeEvaluators(1), ref_image=face1[0][None], ref_label=face1[1][None])
    result = acc.result({})
    skin_error = math.dist(metrics.srgb_to_lab(torch.tensor(red)).tolist(), (100, 0, 0))
    per_region = result["region_color_error_per_region"]
    assert per_region["skin"] == pytest.approx(skin_error, abs=0.02)
    assert per_region["hair"] == pytest.approx(0, abs=1e-9)
    assert per_region["background"] == pytest.approx(0, abs=1e-9)
    assert per_region["lips"] is None and per_region["cloth"] is None
    assert result["region_color_error"] == pytest.approx(skin_error / 3, abs=0.01)
    assert result["region_color_skipped"] == {"skin": 0, "hair": 0, "lips": 1,
                                              "background": 0, "cloth": 1}
    assert result["region_color_pairs"]["skin"] == 1


def test_gt_region_colors_are_the_score_of_a_model_that_draws_the_labels_own_face():
    """The GT mask-swap number is what a generator that returns the label's own photo (and so
    ignores the reference) scores; in reconstruction that generator scores 0."""
    faces = [painted({1: (0.2 * k, 0.5, 0.3), 13: (0.1, 0.1 * k, 0.2), 0: (0.9, 0.8, 0.1 * k)})
             for k in range(4)]
    images = torch.stack([image for image, _ in faces])
    labels = torch.stack([label for _, label in faces])
    references = [2, 0, 3, 1]
    groups = scoring.AttributeGroups.from_config(["Bangs"], [], classifier_names=["Bangs"])
    real = scoring.ProtocolAccumulator(groups, [], with_target=False)
    real.update(images, labels, torch.zeros(4, 1, dtype=torch.bool), FakeEvaluators(1))
    for pairing in (references, list(range(4))):
        model = scoring.ProtocolAccumulator(groups, [], with_target=False)
        for start in (0, 2):  # two batches
            batch = slice(start, start + 2)
            refs = pairing[batch]
            model.update(images[batch], labels[batch], torch.zeros(2, 1, dtype=torch.bool),
                         FakeEvaluators(1), ref_image=images[refs], ref_label=labels[refs])
        gt = scoring.paired_region_colors(*real.region_colors(), pairing)
        assert model.result({})["region_color_error_per_region"] == pytest.approx(
            gt["region_color_error_per_region"])
        if pairing == references:
            assert gt["region_color_error"] > 5
        else:
            assert gt["region_color_error"] == 0


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
        assert set(protocols) == {"reconstruction", "mask_swap", "region_mixing"}
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
        per_attribute = recon["per_attribute_counts"]
        assert set(per_attribute) == set(recon["per_attribute_accuracy"])
        for key in counts:  # the per-attribute counts add up to the overall ones
            assert sum(c[key] for c in per_attribute.values()) == counts[key]
        for name, c in per_attribute.items():
            assert sum(c.values()) == 4
            assert (c["tp"] + c["tn"]) / 4 == pytest.approx(
                recon["per_attribute_accuracy"][name])
        for protocol in ("reconstruction", "mask_swap"):
            scores = protocols[protocol]
            assert isinstance(scores["region_color_error"], float)
            assert set(scores["region_color_error_per_region"]) == set(scoring.COLOR_REGIONS)
            for region in scoring.COLOR_REGIONS:
                assert (scores["region_color_pairs"][region]
                        + scores["region_color_skipped"][region]) == 4
    gt = saved["rows"]["gt"]["protocols"]["real"]
    assert gt["parser_feature_distance"] == pytest.approx(0, abs=1e-3)  # train vs itself here
    gt_colors = gt["region_color_by_protocol"]
    assert gt_colors["reconstruction"]["region_color_error"] == 0  # each photo vs itself
    assert gt_colors["mask_swap"]["region_color_error"] > 1  # two different faces
    assert gt_colors["region_mixing"]["mixed_region_color_error"] > 1
    table = (run / "table.md").read_text()
    assert "| baseline |" in table and "| model |" in table and "| GT |" in table
    assert "region colour error (CIELAB)" in table
    gt_lines = [line for line in table.splitlines() if line.startswith("| GT |")]
    swap_gt = gt_colors["mask_swap"]["region_color_error"]
    assert "| 0.00 |" in gt_lines[0] and f"| {swap_gt:.2f} |" in gt_lines[1]
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


# --- region mixing ----------------------------------------------------------------------------

def test_region_mixing_pairing_is_seeded_and_avoids_the_label_and_its_reference():
    references = passes.swap_pairing(9, seed=0)
    chosen = passes.region_mixing_pairing(references, seed=3)
    assert chosen == passes.region_mixing_pairing(references, seed=3)
    assert chosen != passes.region_mixing_pairing(references, seed=4)
    assert set(chosen) == set(scoring.MIXED_REGIONS)
    for j, ref in enumerate(references):
        picks = [chosen[name][j] for name in scoring.MIXED_REGIONS]
        assert len(set(picks)) == 3 and j not in picks and ref not in picks
    with pytest.raises(FaceregenError, match="at least 3"):
        passes.region_mixing_pairing([1, 0], seed=0)


def test_mixed_reference_colours_take_each_mixed_region_from_its_own_reference():
    means = torch.arange(4 * 5 * 3, dtype=torch.float64).reshape(4, 5, 3)
    counts = torch.arange(1, 21).reshape(4, 5)
    regions = list(scoring.COLOR_REGIONS)
    hair, skin = regions.index("hair"), regions.index("skin")
    mixed_means, mixed_counts = scoring.mixed_reference_colors(
        (means[[0, 0]], counts[[0, 0]]),
        {"hair": (means[[1, 2]], counts[[1, 2]]), "skin": (means[[3, 3]], counts[[3, 3]])})
    assert torch.equal(mixed_means[:, hair], means[[1, 2], hair])
    assert torch.equal(mixed_counts[:, skin], counts[[3, 3], skin])
    others = [i for i in range(5) if i not in (hair, skin)]
    assert torch.equal(mixed_means[:, others], means[[0, 0]][:, others])


def test_region_mixing_regional_model_against_the_global_one(eval_data, tmp_path, tiny_cfg,
                                                            tiny_eval_cfg):
    """The global model ignores the region references: its images, hence its segmentation, are
    mask swap's. The regional model takes them: its images change."""
    regional = tiny_checkpoint(tmp_path / "regional.pt",
                               tiny_cfg("model=style_regional", f"data.root={eval_data['root']}"))
    state = torch.load(regional, weights_only=False)
    for key in ("style_encoder", "style_encoder_ema"):  # offsets that matter
        state[key]["region_bias"].normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    save_checkpoint(state, regional)
    cfg = tiny_eval_cfg(f"ckpt={regional}", f"baseline_ckpt={eval_data['model']}",
                        "max_images=6", "num_examples=2")
    result = runner.evaluate(cfg, tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    pairing = saved["region_mixing_pairing"]
    assert pairing["global_references"] == saved["swap_pairing"]["references"]
    assert set(pairing["region_references"]) == {"hair", "skin", "cloth"}
    for row in ("model", "baseline"):
        mixing = result["rows"][row]["protocols"]["region_mixing"]
        assert mixing["n_images"] == 6 and "psnr" not in mixing
        assert isinstance(mixing["mixed_region_color_error"], float)
    glob = result["rows"]["baseline"]["protocols"]
    assert glob["region_mixing"]["segmentation_pixel_accuracy"] == \
        glob["mask_swap"]["segmentation_pixel_accuracy"]
    regional_rows = result["rows"]["model"]["protocols"]
    assert regional_rows["region_mixing"]["parser_feature_distance"] != \
        regional_rows["mask_swap"]["parser_feature_distance"]
    table = (tmp_path / "run" / "table.md").read_text()
    assert "### Region mixing" in table and "mixed-region colour error (CIELAB)" in table
    assert (tmp_path / "run" / "examples.png").is_file()
