"""What a careful but unlucky user can do wrong, and what they get back.

Every case here runs a real command line. The contract: one line that starts with `error:`
and names the file or setting (Hydra's own text may follow, indented, for configuration
errors), exit status 2, no traceback, and nothing already written lost. Other modules test
the same contract where it belongs to one command (test_regen, test_export, test_untrusted_files,
test_data_prepare, test_data_synth, test_train).
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
from PIL import Image

from faceregen.cli import main as cli_main


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """An empty working folder: run directories and data of the developer stay out."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FACEREGEN_RUNS", raising=False)
    monkeypatch.delenv("FACEREGEN_DATA", raising=False)


def run(argv: list[str], capsys) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as exit_info:
        cli_main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return exit_info.value.code, err.strip().splitlines()


def expect_error(argv, capsys, *names: str, indented_text: bool = False) -> str:
    code, lines = run(argv, capsys)
    assert code == 2, lines
    assert lines and lines[0].startswith("error: "), lines
    if not indented_text:
        assert len(lines) == 1, lines
    else:
        assert all(line.startswith("  ") for line in lines[1:]), lines
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


# ----------------------------------------------------------------------------- configuration

@pytest.mark.parametrize("override, names", [
    ("trainer.max_stepz=3", ["trainer.max_stepz"]),           # a misspelt key
    ("trainer.max_steps=abc", ["trainer.max_steps"]),         # a wrong type
    ("model.generator.ngff=8", ["model.generator.ngff"]),     # a misspelt model argument
    ("loss=nonexistent", ["loss"]),                           # an unknown config option
])
def test_a_bad_override_is_one_error_line_with_hydras_text_under_it(override, names, capsys):
    expect_error(["train", override], capsys, *names, indented_text=True)


@pytest.mark.parametrize("override, name", [
    ("data.batch_size=0", "data.batch_size"),
    ("data.batch_size=-4", "data.batch_size"),
    ("trainer.log_every=0", "trainer.log_every"),
    ("trainer.ckpt_every=0", "trainer.ckpt_every"),
    ("trainer.max_steps=-1", "trainer.max_steps"),             # used to "finish" at step 0
    ("trainer.max_minutes=0", "trainer.max_minutes"),
    ("loss.lambda_vgg=-1", "loss.lambda_vgg"),
    ("loss.lambda_l1_class=-1", "loss.lambda_l1_class"),
    ("data.region_recolor=-0.5", "data.region_recolor"),
    ("data.region_recolor=1.5", "data.region_recolor"),
])
def test_numbers_out_of_range_are_refused_before_any_work(override, name, capsys, tmp_path):
    expect_error(["train", override], capsys, name)
    assert not (tmp_path / "data").exists()                    # no dataset was made
    assert not list(tmp_path.glob("checkpoints/train/*/*/checkpoints"))


@pytest.mark.parametrize("override, name", [
    ("loss.adv_scale_reduction=avg", "loss.adv_scale_reduction"),
    ("loss.gp_reduction=max", "loss.gp_reduction"),
    ("loss.vgg.input=bgr", "loss.vgg.input"),
    ("loss.gan_mode=wgan", "loss.gan_mode"),
    ("model.generator.decoder_norm=batch", "model.generator.decoder_norm"),
    ("model.generator.decoder_styles=local", "model.generator.decoder_styles"),
    ("model.style_encoder.sft_mode=plus", "model.style_encoder.sft_mode"),
    ("data.region_recolor_regions=[hiar]", "data.region_recolor_regions"),
])
def test_unknown_choices_are_refused_before_any_work(override, name, capsys, tmp_path):
    expect_error(["train", override], capsys, name)
    assert not (tmp_path / "data").exists()


def test_eval_without_a_checkpoint_says_how_to_give_one(capsys):
    expect_error(["eval"], capsys, "ckpt=")


def test_an_unknown_device_is_named(capsys, tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "m.png")
    expect_error(["regen", "--mask", tmp_path / "m.png", "--device", "tpu9"], capsys, "tpu9")
    expect_error(["train", "trainer.device=tpu9"], capsys, "tpu9")


# ----------------------------------------------------------------------------- files


def test_a_pickled_parser_file_is_refused_without_torchs_advice(capsys, tmp_path, tiny_cfg,
                                                                 tiny_checkpoint):
    ckpt = tiny_checkpoint(tmp_path / "last.pt", tiny_cfg())
    label = np.zeros((32, 32), np.uint8)
    Image.fromarray(label).save(tmp_path / "m.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "r.png")
    with open(tmp_path / "parser.pt", "wb") as handle:
        pickle.dump(Exception("a pickled object, not tensors"), handle)
    line = expect_error(["regen", "--mask", tmp_path / "m.png", "--ref", tmp_path / "r.png",
                         "--ckpt", ckpt, "--parser", tmp_path / "parser.pt"], capsys, "parser.pt")
    assert "weights_only" not in line and "never unpickled" in line


def test_a_checkpoint_without_its_config_is_named(capsys, tmp_path):
    from faceregen.checkpoint import save_checkpoint

    save_checkpoint({"step": 1, "generator_ema": {}}, tmp_path / "bare.pt")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "m.png")
    line = expect_error(["regen", "--mask", tmp_path / "m.png", "--ckpt", tmp_path / "bare.pt"],
                        capsys, "bare.pt")
    assert "config" in line
    expect_error(["export", "--ckpt", tmp_path / "bare.pt", "--out", tmp_path / "x.safetensors"],
                 capsys, "bare.pt")


def deny_new_files(monkeypatch):
    """Every new file is refused, as in a folder without write permission (the tests run as
    root on CI, where chmod cannot take write permission away)."""
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)


def test_an_unwritable_output_folder_is_named(capsys, tmp_path, tiny_cfg, tiny_checkpoint,
                                              synthetic_dataset, monkeypatch):
    ckpt = tiny_checkpoint(tmp_path / "last.pt", tiny_cfg())
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "m.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "r.png")
    deny_new_files(monkeypatch)
    line = expect_error(["regen", "--mask", tmp_path / "m.png", "--ref", tmp_path / "r.png",
                         "--ref-mask", tmp_path / "m.png", "--ckpt", ckpt,
                         "--out", tmp_path / "face.png"], capsys, "face.png")
    assert "Permission denied" in line
    expect_error(["export", "--ckpt", ckpt, "--out", tmp_path / "model.safetensors"], capsys,
                 "model.safetensors", "Permission denied")
    expect_error(["data", "prepare", "--root", synthetic_dataset.raw, "--out", tmp_path / "prep",
                  "--size", "32", "--workers", "1"], capsys, "Permission denied")


def test_an_output_folder_that_is_a_file_is_named(capsys, tmp_path, synthetic_dataset):
    (tmp_path / "taken").write_text("a file, not a folder")
    expect_error(["data", "prepare", "--root", synthetic_dataset.raw, "--out",
                  tmp_path / "taken", "--size", "32", "--workers", "1"], capsys, "taken")


def test_a_truncated_statistics_cache_is_a_cache_miss(tmp_path, caplog):
    from faceregen.evaluation.statistics import RealStatistics, load_cached_stats, save_stats

    path = tmp_path / "fid_stats" / "test_32px_n4_parser-x.npz"
    save_stats(path, RealStatistics(np.zeros(3), np.eye(3), 4), tmp_path)
    assert load_cached_stats(path, tmp_path).n == 4
    path.write_bytes(path.read_bytes()[:100])                   # a run killed mid-write
    assert load_cached_stats(path, tmp_path) is None
    assert "unreadable" in caplog.text


# ----------------------------------------------------------------------------- interruptions


def test_ctrl_c_during_synth_is_one_line_and_the_next_run_finishes(tmp_path):
    """Ctrl-C reaches the whole process group: the workers must stay quiet, the parent says
    one line and exits 130, and running the same command again completes the set."""
    out, num = tmp_path / "raw", 1200
    command = [sys.executable, "-m", "faceregen", "data", "synth", "--out", str(out),
               "--num", str(num), "--size", "64", "--workers", "2"]
    # A shell without job control starts background jobs with SIGINT ignored, and Python keeps
    # it ignored: give the command a terminal's default, as when a user presses Ctrl-C.
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while len(list((out / "CelebA-HQ-img").glob("*.jpg"))) < 20:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "interrupted" in err
    assert not (out / "CelebAMask-HQ-attribute-anno.txt").exists()
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert len(list((out / "CelebA-HQ-img").glob("*.jpg"))) == num
