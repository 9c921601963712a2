"""Checkpoints and exports are data, never code: a crafted config cannot choose what runs.

Each crafted file carries a payload that would create a marker file if Hydra instantiated it
(``builtins.open(marker, "w")``); every command that reads model files must refuse it with one
`error:` line naming the file, before anything is built, and the marker must never appear.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from safetensors.torch import load_file, save_file

from faceregen.checkpoint import save_checkpoint
from faceregen.cli import main as cli_main
from faceregen.errors import FaceregenError
from faceregen.models import build_networks
from faceregen.models.allowlist import check_stored_config
from faceregen.regen import load_model


@pytest.fixture(scope="module")
def good(tmp_path_factory, tiny_cfg):
    """A valid tiny checkpoint, its export and its stored config."""
    base = tmp_path_factory.mktemp("good")
    config = OmegaConf.to_container(tiny_cfg(), resolve=True)
    networks = build_networks(OmegaConf.create(config).model)
    state = {"step": 3, "config": config,
             "generator": networks.generator.state_dict(),
             "generator_ema": networks.generator.state_dict(),
             "style_encoder": networks.style_encoder.state_dict(),
             "style_encoder_ema": networks.style_encoder.state_dict(),
             "discriminator": networks.discriminator.state_dict()}
    save_checkpoint(state, base / "good.pt")
    cli_main(["export", "--ckpt", str(base / "good.pt"), "--out", str(base / "good.safetensors")])
    return {"state": state, "pt": base / "good.pt", "export": base / "good.safetensors"}


def payloads(marker):
    """(name, change to the stored config) pairs; each would run code or is not plain data."""
    opener = {"_target_": "builtins.open", "_args_": [str(marker), "w"]}

    def target(config):
        config["model"]["generator"]["_target_"] = "builtins.open"
        config["model"]["generator"]["_args_"] = [str(marker), "w"]

    def args(config):
        config["model"]["generator"]["_args_"] = [str(marker), "w"]

    def nested(config):
        config["model"]["discriminator"]["ndf"] = opener

    def nested_model_key(config):
        config["model"]["extra"] = opener

    def encoder_target(config):
        config["model"]["style_encoder"]["_target_"] = "builtins.open"

    def recursive(config):
        config["model"]["generator"]["_recursive_"] = True

    def interpolation(config):
        config["data"]["root"] = "${oc.env:HOME}"

    def unknown_argument(config):
        config["model"]["generator"]["payload"] = 1

    def no_model(config):
        del config["model"]

    return [target, args, nested, nested_model_key, encoder_target, recursive, interpolation,
            unknown_argument, no_model]


def crafted_checkpoint(good, change, path):
    state = copy.deepcopy(good["state"])
    change(state["config"])
    save_checkpoint(state, path)
    return path


def crafted_export(good, change, path):
    tensors = load_file(str(good["export"]))
    from safetensors import safe_open

    with safe_open(str(good["export"]), framework="pt") as handle:
        metadata = dict(handle.metadata())
    config = json.loads(metadata["config"])
    change(config)
    metadata["config"] = json.dumps(config)
    save_file(tensors, str(path), metadata=metadata)
    return path


def regen_inputs(tmp_path):
    label = np.random.default_rng(0).integers(0, 19, (32, 32), dtype=np.uint8)
    Image.fromarray(label).save(tmp_path / "mask.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "ref.png")
    return ["regen", "--mask", str(tmp_path / "mask.png"), "--ref", str(tmp_path / "ref.png"),
            "--ref-mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "out.png")]


def test_the_untouched_files_load(good):
    assert load_model(good["pt"]).step == 3
    assert load_model(good["export"]).step == 3


@pytest.mark.parametrize("index", range(9))
def test_regen_refuses_a_crafted_checkpoint_and_export(good, tmp_path, index, user_error):
    marker = tmp_path / "owned"
    change = payloads(marker)[index]
    argv = regen_inputs(tmp_path)
    for crafted in (crafted_checkpoint(good, change, tmp_path / "crafted.pt"),
                    crafted_export(good, change, tmp_path / "crafted.safetensors")):
        line = user_error([*argv, "--ckpt", str(crafted)])
        assert crafted.name in line
        assert not marker.exists() and not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("index", range(9))
def test_export_refuses_to_copy_a_crafted_config(good, tmp_path, index, user_error):
    marker = tmp_path / "owned"
    crafted = crafted_checkpoint(good, payloads(marker)[index], tmp_path / "crafted.pt")
    out = tmp_path / "clean.safetensors"
    line = user_error(["export", "--ckpt", str(crafted), "--out", str(out)])
    assert "crafted.pt" in line and not out.exists() and not marker.exists()


def test_evaluation_loads_models_through_the_same_check(good, tmp_path, tiny_eval_cfg):
    from faceregen.evaluation import runner

    marker = tmp_path / "owned"
    crafted = crafted_checkpoint(good, payloads(marker)[0], tmp_path / "crafted.pt")
    cfg = tiny_eval_cfg(f"ckpt={crafted}")
    with pytest.raises(FaceregenError, match="crafted.pt.*builtins.open"):
        runner.evaluate(cfg, tmp_path / "eval", progress=False)
    assert not marker.exists()


def test_allowlist_accepts_the_baseline_without_a_style_encoder(good):
    config = copy.deepcopy(good["state"]["config"])
    config["model"]["style_encoder"] = None
    check_stored_config(config, "baseline.pt")
    config["model"]["discriminator"] = None
    with pytest.raises(FaceregenError, match="model.discriminator must be a network node"):
        check_stored_config(config, "baseline.pt")


def test_a_tensor_in_the_config_is_not_plain_data(good, tmp_path, user_error):
    state = copy.deepcopy(good["state"])
    state["config"]["model"]["generator"]["ngf"] = torch.tensor(8)
    save_checkpoint(state, tmp_path / "tensor.pt")
    argv = regen_inputs(tmp_path)
    assert "tensor.pt" in user_error([*argv, "--ckpt", str(tmp_path / "tensor.pt")])


@pytest.mark.parametrize("architecture", [
    {"channels": 4, "payload": 1},          # not an argument of the network
    {"channels": {"_target_": "builtins.open"}},
    ["channels", 4],
])
def test_an_evaluator_file_with_a_foreign_architecture_is_refused(tmp_path, architecture):
    from faceregen.evaluation.evaluators import load_evaluator, save_evaluator
    from faceregen.models.networks import UNetParser

    path = tmp_path / "parser.pt"
    save_evaluator(path, "parser", UNetParser(channels=4, depth=1), {"channels": 4, "depth": 1},
                   image_size=32, data_root=tmp_path, steps=1, metrics={})
    state = torch.load(path, weights_only=True)
    state["architecture"] = architecture
    torch.save(state, path)
    with pytest.raises(FaceregenError, match="parser.pt: the stored architecture"):
        load_evaluator(path, "parser")
