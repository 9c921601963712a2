"""`faceregen export`: pickle-free safetensors weights that regenerate exactly like the .pt."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

import faceregen.config  # noqa: F401  (registers the config schemas)
from faceregen import regen
from faceregen.cli import main as cli_main
from faceregen.regen import load_regenerator
from faceregen.regen.model import EXPORT_FORMAT


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def inputs(tmp_path):
    rng = np.random.default_rng(0)
    label = rng.integers(0, 19, (36, 28), dtype=np.uint8)
    photo = rng.integers(0, 256, (72, 56, 3), dtype=np.uint8)
    Image.fromarray(label).save(tmp_path / "mask.png")
    Image.fromarray(photo).save(tmp_path / "ref.png")
    Image.fromarray(label).resize((56, 72), Image.Resampling.NEAREST).save(tmp_path / "rm.png")
    return label, photo


@pytest.mark.parametrize("model,extra", [
    ("style_pix2pixhd", []), ("pix2pixhd", []),
    ("style_pix2pixhd", ["model.generator.label_skips=true"])])
def test_export_round_trip(tmp_path, capsys, model, extra, tiny_cfg, tiny_checkpoint):
    ckpt = tiny_checkpoint(tmp_path / "last.pt", tiny_cfg(f"model={model}", *extra), step=11,
                           ema_offset=0.01)
    cli_main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "g.safetensors")])
    assert capsys.readouterr().out.strip() == str(tmp_path / "g.safetensors")

    with safe_open(str(tmp_path / "g.safetensors"), framework="pt") as handle:
        metadata, keys = handle.metadata(), list(handle.keys())
    assert metadata["format"] == EXPORT_FORMAT and metadata["step"] == "11"
    assert json.loads(metadata["config"])["model"]["name"] == model
    assert all(k.startswith(("generator.", "style_encoder.")) for k in keys)
    assert any(k.startswith("style_encoder.") for k in keys) == (model == "style_pix2pixhd")

    from_pt = load_regenerator(ckpt, "cpu")
    from_export = regen.load_model(tmp_path / "g.safetensors", "cpu")
    for name, tensor in from_pt.generator.state_dict().items():
        assert torch.equal(tensor, from_export.generator.state_dict()[name]), name
    assert from_export.step == 11 and from_export.size == 32

    label, photo = inputs(tmp_path)
    ref_label = np.asarray(Image.open(tmp_path / "rm.png"))
    np.testing.assert_array_equal(regen.regenerate_arrays(from_pt, label, photo, ref_label),
                                  regen.regenerate_arrays(from_export, label, photo, ref_label))
    for name, weights in (("pt", ckpt), ("st", tmp_path / "g.safetensors")):
        cli_main(["regen", "--mask", str(tmp_path / "mask.png"), "--ref", str(tmp_path / "ref.png"),
                  "--ref-mask", str(tmp_path / "rm.png"), "--ckpt", str(weights),
                  "--out", str(tmp_path / f"{name}.png")])
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "pt.png")),
                                  np.asarray(Image.open(tmp_path / "st.png")))


def test_export_user_errors(tmp_path, tiny_cfg, tiny_checkpoint, user_error):
    ckpt = tiny_checkpoint(tmp_path / "last.pt", tiny_cfg("model=style_pix2pixhd"), step=11,
                           ema_offset=0.01)
    line = user_error(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "g.pt")])
    assert "g.pt" in line and ".safetensors" in line
    line = user_error(["export", "--ckpt", str(ckpt), "--out",
                       str(tmp_path / "missing" / "g.safetensors")])
    assert "does not exist" in line
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint\n")
    line = user_error(["export", "--ckpt", str(tmp_path / "junk.pt"), "--out",
                       str(tmp_path / "g.safetensors")])
    assert "junk.pt" in line
    assert not (tmp_path / "g.safetensors").exists()


def test_regen_rejects_foreign_safetensors(tmp_path, user_error):
    inputs(tmp_path)
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    for name in ("foreign.safetensors", "junk.safetensors"):
        line = user_error([
            "regen", "--mask", str(tmp_path / "mask.png"), "--ref", str(tmp_path / "ref.png"),
            "--ref-mask", str(tmp_path / "rm.png"), "--ckpt", str(tmp_path / name)])
        assert name in line
