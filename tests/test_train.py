"""The training loop on tiny synthetic data: both models, resume, signals, NaN stop, gloo runs."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from omegaconf import DictConfig

import faceregen.config  # noqa: F401  (registers the config schemas)
from faceregen.checkpoint import load_checkpoint, save_checkpoint
from faceregen.errors import FaceregenError
from faceregen.regen import load_regenerator
from faceregen.train import step as step_module
from faceregen.train import trainer as trainer_module
from faceregen.train.state import NonFiniteWatch
from faceregen.train.trainer import Trainer, lr_factor, train


@pytest.fixture(scope="session")
def train_data(tmp_path_factory, tiny_cfg) -> Path:
    """A tiny synthetic set, made once through the same path `faceregen train` takes."""
    from faceregen.data import ensure_dataset

    data_dir = tmp_path_factory.mktemp("train-data")
    ensure_dataset(tiny_cfg(data_dir=data_dir).data)
    return data_dir


def weights(path: Path, key: str = "generator") -> dict[str, torch.Tensor]:
    return load_checkpoint(path)[key]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_lr_schedule_is_constant_then_linear_to_zero():
    assert lr_factor(0, 100, 0.5) == 1.0 and lr_factor(49, 100, 0.5) == 1.0
    assert lr_factor(75, 100, 0.5) == pytest.approx(0.5)
    assert lr_factor(100, 100, 0.5) == 0.0


@pytest.mark.parametrize("model", ["style_pix2pixhd", "pix2pixhd"])
def test_a_few_steps_of_each_model(model, train_data, tmp_path, tiny_cfg):
    cfg = tiny_cfg(f"model={model}", "logger.enabled=true", data_dir=train_data)
    summary = train(cfg, tmp_path)
    assert summary["step"] == 4 and summary["stopped_by"] is None
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*.pt")) == [
        "step_000002.pt", "step_000004.pt"]
    assert (tmp_path / "samples" / "step_000004.png").is_file()
    assert (tmp_path / "env.json").is_file() and any((tmp_path / "tb").iterdir())
    for key in ("loss_g/adv", "loss_g/feat", "loss_d/real", "loss_d/fake", "loss_d/gp"):
        assert key in summary["losses"]
    regen = load_regenerator(tmp_path / "checkpoints" / "last.pt")
    label = torch.randint(0, 19, (2, 32, 32))
    out = regen(label, torch.rand(2, 3, 32, 32) * 2 - 1, label)
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1
    assert (regen.style_encoder is None) == (model == "pix2pixhd")


@pytest.mark.slow
def test_compiled_training_with_the_penalty_saves_plain_weights(train_data, tmp_path, tiny_cfg):
    """trainer.compile=true: the generator path and D compiled (the penalty's double backward
    stays eager); the checkpoint holds the modules' own keys, so eval and regen load it."""
    summary = train(tiny_cfg("trainer.compile=true", "trainer.max_steps=2", data_dir=train_data),
                    tmp_path)
    assert summary["step"] == 2 and "loss_d/gp" in summary["losses"]
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    for network in ("generator", "style_encoder", "discriminator", "generator_ema"):
        assert not any("_orig_mod" in key for key in state[network]), network
        assert all(torch.isfinite(v).all() for v in state[network].values()), network
    regen = load_regenerator(tmp_path / "checkpoints" / "last.pt")
    label = torch.randint(0, 19, (1, 32, 32))
    assert regen(label, torch.rand(1, 3, 32, 32) * 2 - 1, label).shape == (1, 3, 32, 32)


def test_gpu_friendly_layer_forms_train_the_same_step_with_the_same_checkpoint(train_data,
                                                                            tmp_path, tiny_cfg):
    """trainer.align_channels and trainer.layout_keeping_norm: the first step's losses (the same
    initial weights) equal the plain run's, and the checkpoint has the plain run's keys."""
    options = ["trainer.align_channels=true", "trainer.layout_keeping_norm=true",
               "trainer.channels_last=true"]
    summaries = {}
    for name, extra in (("plain", []), ("forms", options)):
        summaries[name] = train(tiny_cfg("trainer.max_steps=1", "trainer.log_every=1", *extra,
                                         data_dir=train_data), tmp_path / name)
    assert summaries["plain"]["losses"].keys() == summaries["forms"]["losses"].keys()
    for key, value in summaries["plain"]["losses"].items():
        assert summaries["forms"]["losses"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    for key in ("generator", "style_encoder", "discriminator"):
        assert (weights(tmp_path / "plain" / "checkpoints" / "last.pt", key).keys()
                == weights(tmp_path / "forms" / "checkpoints" / "last.pt", key).keys())


def test_checkpoint_holds_the_full_training_state(train_data, tmp_path, tiny_cfg):
    train(tiny_cfg("trainer.max_steps=2", data_dir=train_data), tmp_path)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    for key in ("generator", "generator_ema", "style_encoder", "style_encoder_ema",
                "discriminator", "optimizer_g", "optimizer_d", "scheduler_g", "scheduler_d",
                "scaler", "step", "rng", "config", "faceregen_version"):
        assert key in state, key
    assert state["step"] == 2 and state["config"]["model"]["name"] == "style_pix2pixhd"


def test_the_style_encoder_can_train_at_its_own_rate(train_data, tmp_path, tiny_cfg):
    """Scale 0 freezes the encoder while the generator trains; 0.1 gives it a tenth of the rate."""
    cfg = tiny_cfg("trainer.max_steps=2", "optim.style_encoder_lr_scale=0", data_dir=train_data)
    trainer = Trainer(cfg, tmp_path / "frozen")
    start = {k: v.clone() for k, v in trainer.style_encoder.state_dict().items()}
    generator_start = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    trainer.fit()
    assert_same_weights(trainer.style_encoder.state_dict(), start)
    assert any(not torch.equal(v, generator_start[k])
               for k, v in trainer.generator.state_dict().items())

    scaled = Trainer(tiny_cfg("optim.style_encoder_lr_scale=0.1", data_dir=train_data),
                     tmp_path / "scaled")
    generator_group, encoder_group = scaled.opt_g.param_groups
    assert encoder_group["lr"] == pytest.approx(0.1 * generator_group["lr"])
    grouped = [id(p) for group in scaled.opt_g.param_groups for p in group["params"]]
    assert grouped == [id(p) for p in scaled.g_params]
    assert len(Trainer(tiny_cfg(data_dir=train_data), tmp_path / "one").opt_g.param_groups) == 1


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_gives_the_same_weights_as_never_stopping(workers, train_data, tmp_path, tiny_cfg):
    """Flips and crops are keyed by epoch and place, so worker processes resume exactly too."""
    augment = ["data.flip=true", "data.crop=true", f"data.num_workers={workers}"]
    train(tiny_cfg(*augment, data_dir=train_data), tmp_path / "straight")
    middle = tmp_path / "straight" / "checkpoints" / "step_000002.pt"
    resumed = train(tiny_cfg(*augment, f"trainer.resume={middle}", data_dir=train_data),
                    tmp_path / "resumed")
    assert resumed["step"] == 4
    for key in ("generator", "generator_ema", "style_encoder", "discriminator"):
        assert_same_weights(weights(tmp_path / "straight" / "checkpoints" / "last.pt", key),
                            weights(tmp_path / "resumed" / "checkpoints" / "last.pt", key))


class _KeyEcho(torch.utils.data.Dataset):
    """Items that are their keys, to follow the stream of keys through the loader."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:
        return torch.tensor(key)


@pytest.mark.parametrize("workers", [0, 2])
def test_the_batch_stream_crosses_epochs_in_one_loader_and_resumes_mid_epoch(workers,
                                                                             monkeypatch):
    """10 items, batch 3: 3 batches an epoch (one item left out), a new order each epoch, and
    one DataLoader for all of them; a stream rebuilt from a mid-epoch state continues alike."""
    from faceregen.train import batches as batches_module
    from faceregen.train.distributed import DistInfo

    loaders = []
    real_loader = batches_module.DataLoader
    monkeypatch.setattr(batches_module, "DataLoader",
                        lambda *a, **k: loaders.append(1) or real_loader(*a, **k))

    def stream(state=None, n=8):
        batches = batches_module.EpochBatches(_KeyEcho(), 3, workers, seed=5,
                                              info=DistInfo(0, 0, 1), pin_memory=False)
        if state is not None:
            batches.load_state_dict(state)
        return batches, [next(batches) for _ in range(n)]

    batches, straight = stream()
    assert len(loaders) == 1 and batches.state_dict() == {"epoch": 2, "batch_in_epoch": 2}
    expected = [k for epoch in range(3) for k in batches.epoch_keys(epoch)]
    assert [tuple(row) for b in straight for row in b.tolist()] == expected[:24]
    orders = [[position for position, _ in batches.epoch_keys(e)] for e in range(3)]
    assert all(len(set(order)) == 9 for order in orders) and orders[0] != orders[1]
    _, resumed = stream({"epoch": 0, "batch_in_epoch": 2}, n=6)
    assert all(torch.equal(a, b) for a, b in zip(straight[2:], resumed, strict=True))


def test_resume_auto_continues_in_the_run_directory(train_data, tmp_path, tiny_cfg):
    train(tiny_cfg("trainer.max_steps=2", data_dir=train_data), tmp_path)
    summary = train(tiny_cfg("trainer.resume=auto", data_dir=train_data), tmp_path)
    assert summary["step"] == 4
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 4


def test_resuming_with_another_objective_warns_and_names_the_change(train_data, tmp_path,
                                                                   tiny_cfg, caplog):
    train(tiny_cfg("trainer.max_steps=2", "loss.lambda_l1_class=0", data_dir=train_data),
          tmp_path)
    with caplog.at_level(logging.WARNING, logger="faceregen.train"):
        summary = train(tiny_cfg("trainer.resume=auto", "loss.lambda_l1_class=10",
                                 data_dir=train_data), tmp_path)
    assert summary["step"] == 4
    assert "loss.lambda_l1_class: checkpoint 0.0, config 10.0" in caplog.text


def test_incompatible_checkpoint_names_the_mismatch(train_data, tmp_path, tiny_cfg):
    train(tiny_cfg("trainer.max_steps=2", data_dir=train_data), tmp_path)
    cfg = tiny_cfg("model.generator.ngf=16", "trainer.resume=auto", data_dir=train_data)
    with pytest.raises(FaceregenError, match="model.generator.ngf: checkpoint 8, config 16"):
        train(cfg, tmp_path)


def test_sigterm_saves_at_the_current_step_and_says_it_was_stopped(train_data, tmp_path,
                                                                   monkeypatch, tiny_cfg):
    original = Trainer.train_step

    def step_then_signal(self, batch):
        values = original(self, batch)
        if self.step == 2:  # the third step is running
            os.kill(os.getpid(), signal.SIGTERM)
        return values

    monkeypatch.setattr(Trainer, "train_step", step_then_signal)
    summary = train(tiny_cfg("trainer.max_steps=50", data_dir=train_data), tmp_path)
    assert summary["step"] == 3 and summary["stopped_by"] == "SIGTERM"
    assert summary["exit_code"] == 128 + signal.SIGTERM
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 3
    assert signal.getsignal(signal.SIGTERM) is not None


def test_a_signalled_training_exits_non_zero_after_saving(train_data, tmp_path, tiny_overrides):
    """`faceregen train && faceregen eval` must not evaluate a run that SIGTERM cut short."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "faceregen", "train", f"hydra.run.dir={run_dir}",
         f"paths.data={train_data}", *tiny_overrides, "trainer.max_steps=100000",
         "trainer.ckpt_every=1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoints" / "step_000001.pt").is_file():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] >= 1


def test_a_second_training_on_a_busy_run_directory_is_refused(train_data, tmp_path, tiny_cfg):
    from faceregen.train.state import RunDirectoryLock

    holder = RunDirectoryLock(tmp_path)
    holder.acquire()
    try:
        with pytest.raises(FaceregenError, match=f"another training \\(pid {os.getpid()}"):
            train(tiny_cfg(data_dir=train_data), tmp_path)
        assert not (tmp_path / "checkpoints").exists()
    finally:
        holder.release()
    assert train(tiny_cfg(data_dir=train_data), tmp_path)["step"] == 4


def test_a_run_removes_temporaries_left_by_a_killed_run(train_data, tmp_path, tiny_cfg):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    ckpt_dir = tmp_path / "checkpoints"
    ckpt_dir.mkdir()
    stale = ckpt_dir / f".step_000004.pt.{dead}.x1y2z3w4.tmp.pt"
    stale.write_bytes(b"half a checkpoint")
    train(tiny_cfg(data_dir=train_data), tmp_path)
    assert not stale.exists()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(train_data, tmp_path, monkeypatch,
                                                           tiny_cfg):
    original = step_module.generator_objective
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        terms = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            terms["loss_g/adv"] = terms["loss_g/adv"] * float("nan")
        return terms

    monkeypatch.setattr(step_module, "generator_objective", poisoned)
    with pytest.raises(FaceregenError, match=r"non-finite loss at step 3 \(loss_g/adv"):
        train(tiny_cfg(data_dir=train_data), tmp_path)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["generator"].values())


def test_a_crash_during_save_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, path)

    def crash(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_faceregen_train_command_line(train_data, tmp_path, tiny_overrides):
    run_dir = tmp_path / "run"
    overrides = [f"paths.data={train_data}", *tiny_overrides, "trainer.max_steps=2",
                 f"hydra.run.dir={run_dir}"]
    proc = subprocess.run([sys.executable, "-m", "faceregen", "train", *overrides],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "train.log").is_file()
    bad = subprocess.run([sys.executable, "-m", "faceregen", "train", *overrides,
                          f"trainer.resume={tmp_path / 'missing.pt'}"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "missing.pt" in bad.stderr and "Traceback" not in bad.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gloo_worker(rank: int, world_size: int, port: int, cfg: DictConfig, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    trainer = Trainer(cfg, Path(out_dir))
    try:
        trainer.fit()
        modules = {"generator": trainer.generator, "style_encoder": trainer.style_encoder,
                   "discriminator": trainer.discriminator}
        torch.save({k: m.state_dict() for k, m in modules.items()},
                   Path(out_dir) / f"rank{rank}.pt")
    finally:
        trainer_module.dist_utils.shutdown_distributed(trainer.info)


def test_two_process_gloo_run_keeps_ranks_identical(train_data, tmp_path, tiny_cfg):
    cfg = tiny_cfg("trainer.max_steps=3", "data.batch_size=2", data_dir=train_data)
    mp.spawn(_gloo_worker, args=(2, _free_port(), cfg, str(tmp_path)), nprocs=2)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for name in rank0:
        assert_same_weights(rank0[name], rank1[name])
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 3


def test_submitit_launcher_trains_one_job_on_two_ranks(train_data, tmp_path, tiny_overrides):
    """The README's SLURM route, through submitit's local executor: two tasks, one process group."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "faceregen", "train", "-m", "hydra/launcher=submitit_local",
         "hydra.launcher.tasks_per_node=2", "hydra.launcher.timeout_min=5",
         f"hydra.sweep.dir={sweep}", f"paths.data={train_data}", *tiny_overrides,
         "trainer.max_steps=2", "data.batch_size=2"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    logs = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.err"))
    assert proc.returncode == 0, proc.stderr[-2000:] + logs[-2000:]
    run_dir = sweep / "0"
    assert json.loads((run_dir / "env.json").read_text())["world_size"] == 2
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 2


@pytest.mark.parametrize("content", [b"junk", b"", b"PK\x03\x04 not a zip", b"\x80\x02}q\x00."])
def test_junk_checkpoint_is_a_user_error(content, tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(FaceregenError, match="junk.pt"):
        load_checkpoint(path)


def test_the_non_finite_watch_names_the_first_bad_step_and_its_terms():
    """The watch keeps its flags on the device; read later, it still names the step where the
    first bad value appeared and the terms bad in that step, not those that followed."""
    watch = NonFiniteWatch()
    finite = {"loss_g/adv": torch.tensor(1.0), "loss_d/fake": torch.tensor(0.5)}
    watch.observe(finite, 1)
    watch.observe({**finite, "loss_d/gp": torch.tensor(0.1)}, 2)
    assert watch.read() is None
    watch.observe({**finite, "loss_d/gp": torch.tensor(float("inf"))}, 3)
    watch.observe({"loss_g/adv": torch.tensor(float("nan")),
                   "loss_d/fake": torch.tensor(float("nan"))}, 4)
    assert watch.read() == (3, ["loss_d/gp"])
