"""`faceregen train`: alternating G/D steps with EMA, checkpoints, resume and data parallelism.

`train(cfg, run_dir)` is the plain function behind the Hydra app; tests call it directly.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import platform
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

from faceregen import __version__
from faceregen.checkpoint import load_checkpoint, load_state, save_checkpoint
from faceregen.data import FaceDataset, ensure_dataset
from faceregen.data.dataset import image_to_float
from faceregen.errors import FaceregenError
from faceregen.masks import one_hot
from faceregen.models import build_networks, generate
from faceregen.train import distributed as dist_utils
from faceregen.train.objectives import (
    backward_separately,
    compile_for_shared_pass,
    discriminate,
    discriminator_objective,
    generator_objective,
)
from faceregen.train.visualize import sample_grid, save_png
from faceregen.utils import autocast_dtype, resolve_device

log = logging.getLogger("faceregen.train")


# --------------------------------------------------------------------------- small pieces


def lr_factor(step: int, max_steps: int, decay_start: float) -> float:
    """Constant learning rate, then linear decay to 0 from ``decay_start * max_steps``."""
    start = int(decay_start * max_steps)
    if step < start:
        return 1.0
    return max(0.0, (max_steps - step) / max(1, max_steps - start))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for ema_p, p in zip(ema.parameters(), model.parameters()):
        ema_p.lerp_(p.detach(), 1.0 - decay)
    for ema_b, b in zip(ema.buffers(), model.buffers()):
        ema_b.copy_(b)


def ema_decay_at(step: int, decay: float) -> float:
    """Warm the EMA up so that short runs are not dominated by the random initialisation."""
    return min(decay, (1 + step) / (10 + step))


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].copy()), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy(), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    """Checkpoints may store tuples as lists; random.setstate wants tuples all the way down."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def write_env(run_dir: Path, world_size: int = 1) -> None:
    """Record the code version, package versions and process count beside the resolved config."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    import hydra
    import omegaconf
    import torchvision

    env = {
        "faceregen": __version__, "git_commit": commit, "python": platform.python_version(),
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "hydra": hydra.__version__, "omegaconf": omegaconf.__version__,
        "numpy": np.__version__, "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "world_size": world_size,
    }
    (run_dir / "env.json").write_text(json.dumps(env, indent=2) + "\n")


def training_set(root: Path, dcfg: DictConfig, seed: int) -> FaceDataset:
    """The train split with the configured augmentation, as raw uint8 items (see FaceDataset)."""
    return FaceDataset(root, "train", flip=dcfg.flip, crop=dcfg.crop,
                       crop_scale=tuple(dcfg.crop_scale), reference=dcfg.reference, seed=seed,
                       raw=True)


class EpochBatches:
    """An endless stream of batches: a fresh seeded shuffle every epoch, resumable mid-epoch."""

    def __init__(self, dataset: Dataset, batch_size: int, num_workers: int, seed: int,
                 info: dist_utils.DistInfo, pin_memory: bool):
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.info = info
        self.pin_memory = pin_memory
        self.epoch = 0
        self.batch_in_epoch = 0
        per_rank = len(dataset) // info.world_size
        self.batches_per_epoch = per_rank // batch_size
        if self.batches_per_epoch == 0:
            raise FaceregenError(
                f"the training split has {len(dataset)} images, fewer than one batch of "
                f"{batch_size} per process; lower data.batch_size")
        self._iterator: Iterator | None = None

    @property
    def _epoch_seed(self) -> int:
        """One seed per (run seed, epoch): the epoch's shuffle and its samples' augment seeds."""
        return self.seed * 100_003 + self.epoch

    def _keys(self) -> list[tuple[int, int]]:
        """This rank's rest of the epoch as (position, augment seed) keys of the dataset.

        The seed is a function of run seed, epoch and place in the epoch's order, not of the
        worker that loads it, so a resumed run draws the same flips and crops.
        """
        g = torch.Generator().manual_seed(self._epoch_seed)
        order = torch.randperm(len(self.dataset), generator=g).tolist()
        per_rank = self.batches_per_epoch * self.batch_size
        keys = [(position, self._epoch_seed * 1_000_003 + place)
                for place, position in enumerate(order)]
        mine = keys[self.info.rank::self.info.world_size][:per_rank]
        return mine[self.batch_in_epoch * self.batch_size:]

    def _start(self) -> None:
        g = torch.Generator().manual_seed(
            self._epoch_seed * 7919 + self.batch_in_epoch + self.info.rank)
        loader = DataLoader(
            self.dataset, batch_size=self.batch_size, sampler=self._keys(),
            num_workers=self.num_workers, pin_memory=self.pin_memory, drop_last=True,
            worker_init_fn=_seed_worker, generator=g,
            persistent_workers=False)
        self._iterator = iter(loader)

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._iterator is None:
            self._start()
        try:
            batch = next(self._iterator)
        except StopIteration:
            self.epoch += 1
            self.batch_in_epoch = 0
            self._start()
            batch = next(self._iterator)
        self.batch_in_epoch += 1
        if self.batch_in_epoch >= self.batches_per_epoch:
            self.epoch += 1
            self.batch_in_epoch = 0
            self._iterator = None
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self._iterator = None


class StopFlag:
    """Turns SIGINT/SIGTERM into a request to checkpoint and stop after the current step."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------------- the trainer


class Trainer:
    """Holds the networks, optimisers and loop state of one training run."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        tcfg = cfg.trainer
        self.device = resolve_device(tcfg.device)
        self.info = dist_utils.init_distributed(self.device.type)
        if self.info.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.info.local_rank)
        self.autocast_dtype = autocast_dtype(tcfg.precision)
        if self.autocast_dtype is torch.float16 and self.device.type != "cuda":
            raise FaceregenError("trainer.precision=16 needs a CUDA GPU; use bf16 on the CPU")
        self.memory_format = (torch.channels_last if tcfg.channels_last
                              else torch.contiguous_format)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = bool(tcfg.cudnn_benchmark)
        if tcfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        seed_everything(tcfg.seed + self.info.rank)

        # Weights the losses need are checked before any data or training work.
        self.perceptual = self._build_perceptual()

        if self.info.is_main:  # rank 0 makes the data; the others find it made
            ensure_dataset(cfg.data)
        dist_utils.barrier(self.info)
        root = ensure_dataset(cfg.data)
        dcfg = cfg.data
        self.train_set = training_set(root, dcfg, tcfg.seed)
        self.batches = EpochBatches(self.train_set, dcfg.batch_size, dcfg.num_workers,
                                    tcfg.seed, self.info,
                                    pin_memory=self.device.type == "cuda")
        self.sample_batch = self._fixed_samples(root)

        nets = build_networks(cfg.model)
        self.generator = nets.generator.to(self.device, memory_format=self.memory_format)
        self.style_encoder = (nets.style_encoder.to(self.device, memory_format=self.memory_format)
                              if nets.style_encoder is not None else None)
        self.discriminator = nets.discriminator.to(self.device, memory_format=self.memory_format)
        dist_utils.broadcast_parameters(self._g_modules() + [self.discriminator], self.info)
        self.generator_ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        self.style_encoder_ema = (copy.deepcopy(self.style_encoder).eval().requires_grad_(False)
                                  if self.style_encoder is not None else None)

        self.g_params = list(nets.generator_parameters())
        self.d_params = list(self.discriminator.parameters())
        self.opt_g = instantiate(cfg.optim.generator)(params=self.g_params)
        self.opt_d = instantiate(cfg.optim.discriminator)(params=self.d_params)

        def factor(step: int) -> float:
            return lr_factor(step, tcfg.max_steps, cfg.optim.decay_start)

        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, factor)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, factor)
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.autocast_dtype is torch.float16)

        self.run_generator = self._generator_fn()
        self.run_discriminator = (compile_for_shared_pass(self.discriminator) if tcfg.compile
                                  else self.discriminator)
        self.step = 0
        self.saved_step = -1
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.writer = None

    # ----------------------------------------------------------------- construction helpers

    def _g_modules(self) -> list[torch.nn.Module]:
        return [self.generator] + ([self.style_encoder] if self.style_encoder is not None else [])

    def _build_perceptual(self) -> torch.nn.Module | None:
        lcfg = self.cfg.loss
        if lcfg.lambda_vgg <= 0:
            return None
        from faceregen.losses.perceptual import VGGPerceptualLoss

        vgg = VGGPerceptualLoss(weights=lcfg.vgg.weights, path=lcfg.vgg.path)
        return vgg.to(self.device, memory_format=self.memory_format)

    def _generator_fn(self):
        def run(label_onehot, ref_image, ref_onehot, generator=None, style_encoder=None):
            generator = self.generator if generator is None else generator
            style_encoder = self.style_encoder if style_encoder is None else style_encoder
            return generate(generator, style_encoder, label_onehot, ref_image, ref_onehot)

        return compile_for_shared_pass(run) if self.cfg.trainer.compile else run

    def _fixed_samples(self, root: Path) -> dict[str, torch.Tensor]:
        """A fixed batch for progress images: half reconstructions, half swapped references."""
        split = "val"
        try:
            dataset = FaceDataset(root, split)
        except FaceregenError:
            dataset = None
        if dataset is None or len(dataset) < 2:
            dataset = FaceDataset(root, "train")
        n = min(self.cfg.trainer.num_samples, len(dataset))
        items = [dataset[i] for i in range(n)]
        batch = {k: torch.stack([it[k] for it in items]) for k in
                 ("label", "image", "ref_image", "ref_label")}
        half = n // 2
        if half:
            order = torch.arange(n)
            order[half:] = torch.roll(order[half:], 1)
            batch["ref_image"] = batch["image"][order]
            batch["ref_label"] = batch["label"][order]
        return batch

    # ----------------------------------------------------------------- one step

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _to_device(self, batch: dict[str, torch.Tensor]):
        nb = self.device.type == "cuda"
        classes = self.cfg.model.generator.label_classes
        label = batch["label"].to(self.device, non_blocking=nb)
        ref_label = batch["ref_label"].to(self.device, non_blocking=nb)
        mf = self.memory_format
        image = image_to_float(batch["image"].to(self.device, non_blocking=nb))
        ref_image = image_to_float(batch["ref_image"].to(self.device, non_blocking=nb))
        return (one_hot(label, classes).contiguous(memory_format=mf),
                image.contiguous(memory_format=mf),
                ref_image.contiguous(memory_format=mf),
                one_hot(ref_label, classes).contiguous(memory_format=mf))

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        label_oh, real, ref_image, ref_oh = self._to_device(batch)
        lcfg = self.cfg.loss

        # Both objectives see the networks as they are at the start of the step (pix2pixHD).
        every = max(1, int(lcfg.gp_every))
        with self._autocast():
            fake = self.run_generator(label_oh, ref_image, ref_oh)
            fake_features, real_features = discriminate(self.run_discriminator, label_oh,
                                                         fake, real)
            # The penalty differentiates D twice: that runs eagerly, never through a compiled D.
            d_terms = discriminator_objective(
                self.discriminator, label_oh, fake, real, fake_features, real_features,
                lcfg, apply_penalty=self.step % every == 0, penalty_scale=float(every))
            g_terms = generator_objective(fake, real, fake_features, real_features,
                                          self.perceptual, lcfg)
            loss_d = sum(d_terms.values())
            loss_g = sum(g_terms.values())
        self.opt_d.zero_grad(set_to_none=True)
        self.opt_g.zero_grad(set_to_none=True)
        backward_separately(self.scaler.scale(loss_d), self.d_params,
                            self.scaler.scale(loss_g), self.g_params)

        dist_utils.average_gradients(self.g_params, self.info)
        dist_utils.average_gradients(self.d_params, self.info)
        self.scaler.step(self.opt_g)
        self.scaler.step(self.opt_d)
        self.scaler.update()

        self.sched_g.step()
        self.sched_d.step()
        decay = ema_decay_at(self.step, self.cfg.trainer.ema_decay)
        update_ema(self.generator_ema, self.generator, decay)
        if self.style_encoder is not None:
            update_ema(self.style_encoder_ema, self.style_encoder, decay)

        terms = {**g_terms, **d_terms}
        values = {k: float(v.detach()) for k, v in terms.items()}
        values["loss_g/total"] = float(loss_g.detach())
        values["loss_d/total"] = float(loss_d.detach())
        return values

    # ----------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        def sd(module):
            return None if module is None else module.state_dict()

        return {
            "step": self.step,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "generator": sd(self.generator), "style_encoder": sd(self.style_encoder),
            "discriminator": sd(self.discriminator),
            "generator_ema": sd(self.generator_ema),
            "style_encoder_ema": sd(self.style_encoder_ema),
            "optimizer_g": self.opt_g.state_dict(), "optimizer_d": self.opt_d.state_dict(),
            "scheduler_g": self.sched_g.state_dict(), "scheduler_d": self.sched_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "data": self.batches.state_dict(),
            "rng": rng_state(),
        }

    def save(self) -> Path | None:
        """Write step_XXXXXX.pt and last.pt atomically (rank 0), keep the newest K step files."""
        if not self.info.is_main:
            return None
        path = self.ckpt_dir / f"step_{self.step:06d}.pt"
        if self.saved_step == self.step and path.is_file():
            return path
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        save_checkpoint(state, path)
        save_checkpoint(state, self.ckpt_dir / "last.pt")
        self.saved_step = self.step
        keep = max(1, int(self.cfg.trainer.keep_last))
        for old in sorted(self.ckpt_dir.glob("step_*.pt"))[:-keep]:
            old.unlink(missing_ok=True)
        return path

    def load(self, path: Path) -> None:
        state = load_checkpoint(path)
        stored = OmegaConf.create(state["config"])
        mine = OmegaConf.to_container(self.cfg.model, resolve=True)
        theirs = OmegaConf.to_container(stored.model, resolve=True)
        if mine != theirs:
            diff = _config_diff(theirs, mine)
            raise FaceregenError(f"{path}: checkpoint was trained with a different model config "
                                 f"({'; '.join(diff[:4])})")
        load_state(self.generator, state["generator"], "generator", path)
        load_state(self.discriminator, state["discriminator"], "discriminator", path)
        load_state(self.generator_ema, state["generator_ema"], "EMA generator", path)
        if self.style_encoder is not None:
            load_state(self.style_encoder, state["style_encoder"], "style encoder", path)
            load_state(self.style_encoder_ema, state["style_encoder_ema"], "EMA style encoder",
                       path)
        self.opt_g.load_state_dict(state["optimizer_g"])
        self.opt_d.load_state_dict(state["optimizer_d"])
        self.sched_g.load_state_dict(state["scheduler_g"])
        self.sched_d.load_state_dict(state["scheduler_d"])
        self.scaler.load_state_dict(state["scaler"])
        self.batches.load_state_dict(state["data"])
        set_rng_state(state["rng"])
        self.step = int(state["step"])

    def resume_path(self) -> Path | None:
        resume = self.cfg.trainer.resume
        if resume in (None, "", "none"):
            return None
        if resume == "auto":
            last = self.ckpt_dir / "last.pt"
            if last.is_file():
                return last
            log.info("trainer.resume=auto: no %s yet, starting from scratch", last)
            return None
        path = Path(resume)
        if not path.is_file():
            raise FaceregenError(f"{path}: trainer.resume points to a file that does not exist")
        return path

    # ----------------------------------------------------------------- logging

    @torch.no_grad()
    def write_samples(self) -> None:
        if not self.info.is_main:
            return
        batch = self.sample_batch
        label_oh, real, ref_image, ref_oh = self._to_device(batch)
        with self._autocast():
            fake = self.run_generator(label_oh, ref_image, ref_oh, self.generator_ema,
                                      self.style_encoder_ema)
        grid = sample_grid(batch["label"], batch["ref_image"], fake.float(), batch["image"])
        samples = self.run_dir / "samples"
        samples.mkdir(parents=True, exist_ok=True)
        save_png(grid, samples / f"step_{self.step:06d}.png")
        if self.writer is not None:
            self.writer.add_image("samples", grid, self.step, dataformats="HWC")

    def open_writer(self) -> None:
        if self.info.is_main and self.cfg.logger.enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"),
                                        flush_secs=int(self.cfg.logger.flush_secs))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    # ----------------------------------------------------------------- the loop

    def fit(self) -> dict[str, Any]:
        tcfg = self.cfg.trainer
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_env(self.run_dir, self.info.world_size)
            log.info("training %s on %s: %d process(es), batch %d per process, %d steps",
                     self.cfg.model.name, self.device, self.info.world_size,
                     self.cfg.data.batch_size, tcfg.max_steps)
        resume = self.resume_path()
        if resume is not None:
            self.load(resume)
            log.info("resumed from %s at step %d", resume, self.step)
        self.open_writer()
        if self.step == 0:
            self.write_samples()

        from tqdm import tqdm

        bar = tqdm(total=tcfg.max_steps, initial=self.step, disable=not self.info.is_main,
                   dynamic_ncols=True, desc="train")
        started = time.monotonic()
        window_start, window_images = time.monotonic(), 0
        global_batch = self.cfg.data.batch_size * self.info.world_size
        last_values: dict[str, float] = {}
        stopped_by = None
        with StopFlag() as stop:
            while self.step < tcfg.max_steps:
                values = self.train_step(next(self.batches))
                bad = not all(math.isfinite(v) for v in values.values())
                if dist_utils.any_rank(bad, self.device, self.info):
                    bar.close()
                    last = self.ckpt_dir / "last.pt"
                    where = (f"the last good checkpoint is {last}" if last.is_file()
                             else "no checkpoint was written yet")
                    nonfinite = ", ".join(
                        sorted(k for k, v in values.items() if not math.isfinite(v)))
                    raise FaceregenError(
                        f"non-finite loss at step {self.step + 1} "
                        f"({nonfinite or 'on another rank'}); training stopped, {where}")
                self.step += 1
                window_images += global_batch
                last_values = values
                bar.update(1)
                if self.step % tcfg.log_every == 0 or self.step == tcfg.max_steps:
                    elapsed = time.monotonic() - window_start
                    values = dist_utils.mean_over_ranks(values, self.device, self.info)
                    ips = window_images / max(elapsed, 1e-9)
                    bar.set_postfix(img_s=f"{ips:.1f}", g=f"{values['loss_g/total']:.3f}",
                                    d=f"{values['loss_d/total']:.3f}")
                    if self.writer is not None:
                        for k, v in values.items():
                            self.writer.add_scalar(k, v, self.step)
                        self.writer.add_scalar("lr/generator", self.sched_g.get_last_lr()[0],
                                               self.step)
                        self.writer.add_scalar("lr/discriminator",
                                               self.sched_d.get_last_lr()[0], self.step)
                        self.writer.add_scalar("speed/img_per_s", ips, self.step)
                    window_start, window_images = time.monotonic(), 0
                if self.step % tcfg.sample_every == 0:
                    self.write_samples()
                out_of_time = (tcfg.max_minutes is not None
                               and time.monotonic() - started > 60 * tcfg.max_minutes)
                if dist_utils.any_rank(stop.signal_name is not None, self.device, self.info):
                    stopped_by = stop.signal_name or "signal on another rank"
                elif out_of_time:
                    stopped_by = f"time budget of {tcfg.max_minutes} min"
                if stopped_by:
                    break
                if self.step % tcfg.ckpt_every == 0:
                    self.save()
        bar.close()
        if self.step % tcfg.sample_every != 0:
            self.write_samples()
        path = self.save()
        self.close()
        if stopped_by:
            log.info("stopped at step %d by %s; checkpoint %s", self.step, stopped_by, path)
        summary = {"step": self.step, "stopped_by": stopped_by,
                   "checkpoint": str(self.ckpt_dir / "last.pt"), "losses": last_values,
                   "minutes": (time.monotonic() - started) / 60}
        if self.info.is_main:
            log.info("finished at step %d in %.1f min; checkpoint %s", self.step,
                     summary["minutes"], summary["checkpoint"])
        return summary


def _config_diff(a: Any, b: Any, prefix: str = "model") -> list[str]:
    """Human-readable differences between two nested config containers."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _config_diff(a.get(k), b.get(k), f"{prefix}.{k}")
        return out
    return [] if a == b else [f"{prefix}: checkpoint {a!r}, config {b!r}"]


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train the configured model; everything is written under ``run_dir``."""
    trainer = Trainer(cfg, Path(run_dir))
    try:
        return trainer.fit()
    finally:
        trainer.close()
        dist_utils.shutdown_distributed(trainer.info)
