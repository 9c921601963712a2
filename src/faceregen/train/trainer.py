"""`faceregen train`: the training loop with EMA, checkpoints, resume and data parallelism.

`train(cfg, run_dir)` is the plain function behind the Hydra app; tests call it directly. The
step itself is :func:`faceregen.train.step.adversarial_step`; the loader is in
:mod:`faceregen.train.batches`, the run state (RNG, seeds, EMA, LR) in :mod:`faceregen.train.state`.
"""

from __future__ import annotations

import copy
import logging
import signal
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from faceregen.checkpoint import (
    LAST,
    config_differences,
    load_checkpoint,
    load_state,
    newest_checkpoint,
    save_checkpoint,
)
from faceregen.config import check_train_settings
from faceregen.data import ensure_dataset
from faceregen.errors import FaceregenError
from faceregen.images import to_float
from faceregen.losses.gradient_penalty import explicit_image_penalty
from faceregen.masks import one_hot
from faceregen.models import build_networks, generate, with_legacy_arguments
from faceregen.models.networks.layout import use_gpu_friendly_layers
from faceregen.train import distributed as dist_utils
from faceregen.train.batches import EpochBatches, sample_batch, training_set
from faceregen.train.graphed import GraphedStep
from faceregen.train.objectives import compile_for_shared_pass
from faceregen.train.state import (
    NonFiniteWatch,
    RunDirectoryLock,
    StopFlag,
    build_optimizers,
    ema_decay_at,
    lr_factor,
    rng_state,
    seed_everything,
    set_rng_state,
    update_ema,
    write_env,
)
from faceregen.train.step import StepModules, adversarial_step, autocast_for
from faceregen.train.visualize import sample_grid, save_png
from faceregen.utils import (
    autocast_dtype,
    make_dirs,
    remove_stale_temporaries,
    resolve_device,
)

log = logging.getLogger("faceregen.train")
# What a checkpoint must hold for training to continue exactly where it stopped.
RESUME_KEYS = ("step", "config", "generator", "discriminator", "generator_ema", "optimizer_g",
               "optimizer_d", "scheduler_g", "scheduler_d", "scaler", "data", "rng")


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
        if tcfg.cuda_graph and self.device.type != "cuda":
            raise FaceregenError(f"trainer.cuda_graph=true needs a CUDA GPU, and the run is on "
                                 f"{self.device.type}; set trainer.cuda_graph=false")
        if tcfg.cuda_graph and tcfg.compile:
            raise FaceregenError("trainer.cuda_graph=true and trainer.compile=true: choose one")
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
        self.sample_batch = sample_batch(root, self.cfg.trainer.num_samples)

        nets = build_networks(cfg.model)
        swapped = use_gpu_friendly_layers(
            [nets.generator, nets.style_encoder, nets.discriminator],
            align_channels=tcfg.align_channels, layout_keeping_norm=tcfg.layout_keeping_norm)
        if any(swapped.values()):
            log.info("run-time layer forms: %s", swapped)
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
        self.opt_g, self.opt_d = build_optimizers(nets, cfg.optim)

        def factor(step: int) -> float:
            return lr_factor(step, tcfg.max_steps, cfg.optim.decay_start)

        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, factor)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, factor)
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.autocast_dtype is torch.float16)

        self.autocast = autocast_for(self.device, self.autocast_dtype)
        self.modules = StepModules(
            generator=self.generator, style_encoder=self.style_encoder,
            discriminator=self.discriminator,
            perceptual=(compile_for_shared_pass(self.perceptual)
                        if tcfg.compile and self.perceptual is not None else self.perceptual),
            opt_g=self.opt_g, opt_d=self.opt_d, g_params=self.g_params, d_params=self.d_params,
            run_generator=compile_for_shared_pass(generate) if tcfg.compile else generate,
            run_discriminator=(compile_for_shared_pass(self.discriminator) if tcfg.compile
                               else self.discriminator),
            scaler=self.scaler,
            image_penalty=(compile_for_shared_pass(explicit_image_penalty) if tcfg.compile
                           else None))
        self.graphed_step = (GraphedStep(self.modules, cfg.loss, autocast_for(
            self.device, self.autocast_dtype, cache_enabled=False)) if tcfg.cuda_graph else None)
        self.step = 0
        self.saved_step = -1
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.lock = RunDirectoryLock(self.run_dir)
        self.writer = None
        self.watch = NonFiniteWatch()

    # ----------------------------------------------------------------- construction helpers

    def _g_modules(self) -> list[torch.nn.Module]:
        return [self.generator] + ([self.style_encoder] if self.style_encoder is not None else [])

    def _build_perceptual(self) -> torch.nn.Module | None:
        lcfg = self.cfg.loss
        if lcfg.lambda_vgg <= 0:
            return None
        from faceregen.losses.perceptual import VGGPerceptualLoss

        vgg = VGGPerceptualLoss(weights=lcfg.vgg.weights, path=lcfg.vgg.path,
                                input_mode=lcfg.vgg.input)
        return vgg.to(self.device, memory_format=self.memory_format)

    # ----------------------------------------------------------------- one step

    def _to_device(self, batch: dict[str, torch.Tensor]):
        nb = self.device.type == "cuda"
        classes = self.cfg.model.generator.label_classes
        label = batch["label"].to(self.device, non_blocking=nb)
        ref_label = batch["ref_label"].to(self.device, non_blocking=nb)
        mf = self.memory_format
        image = to_float(batch["image"].to(self.device, non_blocking=nb))
        ref_image = to_float(batch["ref_image"].to(self.device, non_blocking=nb))
        return (one_hot(label, classes).contiguous(memory_format=mf),
                image.contiguous(memory_format=mf),
                ref_image.contiguous(memory_format=mf),
                one_hot(ref_label, classes).contiguous(memory_format=mf))

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One G and D update on a loader batch, then the LR schedules and the EMA.

        Returns every loss term, keyed by its TensorBoard tag, as a detached tensor still on
        the device: nothing here waits for the GPU.
        """
        label_oh, real, ref_image, ref_oh = self._to_device(batch)
        if self.graphed_step is not None:
            _, terms = self.graphed_step(label_oh, real, ref_image, ref_oh, self.step,
                                         sync_gradients=self._average_gradients)
        else:
            _, terms = adversarial_step(self.modules, label_oh, real, ref_image, ref_oh,
                                        self.cfg.loss, step_index=self.step,
                                        autocast=self.autocast,
                                        sync_gradients=self._average_gradients)
        self.sched_g.step()
        self.sched_d.step()
        decay = ema_decay_at(self.step, self.cfg.trainer.ema_decay)
        update_ema(self.generator_ema, self.generator, decay)
        if self.style_encoder is not None:
            update_ema(self.style_encoder_ema, self.style_encoder, decay)
        return {k: v.detach() for k, v in terms.items()}

    def _average_gradients(self) -> None:
        dist_utils.average_gradients(self.g_params, self.info)
        dist_utils.average_gradients(self.d_params, self.info)

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
        make_dirs(self.ckpt_dir)
        state = self.state_dict()
        save_checkpoint(state, path)
        save_checkpoint(state, self.ckpt_dir / LAST)
        self.saved_step = self.step
        keep = max(1, int(self.cfg.trainer.keep_last))
        for old in sorted(self.ckpt_dir.glob("step_*.pt"))[:-keep]:
            old.unlink(missing_ok=True)
        return path

    def load(self, path: Path) -> None:
        state = load_checkpoint(path)
        missing = [key for key in RESUME_KEYS if state.get(key) is None]
        if missing:
            raise FaceregenError(f"{path}: cannot resume from it: the checkpoint has no "
                                 f"{', '.join(missing)}")
        stored = OmegaConf.create(state["config"])
        mine = OmegaConf.to_container(self.cfg.model, resolve=True)
        theirs = with_legacy_arguments(OmegaConf.to_container(stored.model, resolve=True))
        if mine != theirs:
            diff = config_differences(theirs, mine, "model")
            raise FaceregenError(f"{path}: checkpoint was trained with a different model config "
                                 f"({'; '.join(diff[:4])})")
        if "loss" in stored:
            # A changed objective is allowed (a deliberate fine-tune, or a default that moved
            # since the run began) but should not pass unnoticed.
            loss_diff = config_differences(OmegaConf.to_container(stored.loss, resolve=True),
                                           OmegaConf.to_container(self.cfg.loss, resolve=True),
                                           "loss")
            if loss_diff:
                log.warning("resuming %s with a different objective: %s", path,
                            "; ".join(loss_diff))
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
            newest = newest_checkpoint(self.ckpt_dir)
            if newest is None:
                log.info("trainer.resume=auto: no checkpoint in %s yet, starting from scratch",
                         self.ckpt_dir)
            return newest
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
        with self.autocast():
            fake = self.modules.run_generator(self.generator_ema, self.style_encoder_ema,
                                              label_oh, ref_image, ref_oh)
        grid = sample_grid(batch["label"], batch["ref_image"], fake.float(), batch["image"])
        samples = self.run_dir / "samples"
        make_dirs(samples)
        save_png(grid, samples / f"step_{self.step:06d}.png")
        if self.writer is not None:
            self.writer.add_image("samples", grid, self.step, dataformats="HWC")

    def _log_scalars(self, values: dict[str, float], images_per_second: float) -> None:
        if self.writer is None:
            return
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, self.step)
        self.writer.add_scalar("lr/generator", self.sched_g.get_last_lr()[0], self.step)
        self.writer.add_scalar("lr/discriminator", self.sched_d.get_last_lr()[0], self.step)
        self.writer.add_scalar("speed/img_per_s", images_per_second, self.step)

    def _check_finite(self) -> None:
        """Stop with a user error if a loss went non-finite since the start, on any rank.

        Called before anything is written from the networks (samples, checkpoints) and at each
        log step, so a checkpoint never holds weights trained on a non-finite loss.
        """
        found = self.watch.read()
        (bad,) = dist_utils.any_rank(found is not None, device=self.device, info=self.info)
        if not bad:
            return
        last = self.ckpt_dir / LAST
        where = (f"the last good checkpoint is {last}" if last.is_file()
                 else "no checkpoint was written yet")
        step, names = found if found is not None else (self.step, [])
        raise FaceregenError(f"non-finite loss at step {step} "
                             f"({', '.join(names) or 'on another rank'}); training stopped, "
                             f"{where}")

    def open_writer(self) -> None:
        if self.info.is_main and self.cfg.logger.enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"),
                                        flush_secs=int(self.cfg.logger.flush_secs))

    def close(self) -> None:
        self.batches.close()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.lock.release()

    # ----------------------------------------------------------------- the loop

    def fit(self) -> dict[str, Any]:
        """Train until ``trainer.max_steps``, the time budget or SIGINT/SIGTERM (resuming first
        when ``trainer.resume`` says so).

        Logs every ``log_every`` steps, writes sample grids every ``sample_every`` and
        checkpoints every ``ckpt_every`` and at the end. A non-finite loss on any rank stops the
        run with a user error naming the last good checkpoint. Returns a summary: final step,
        what stopped it (None when it ran to the end), checkpoint path, last losses, minutes.
        """
        tcfg = self.cfg.trainer
        if self.info.is_main:
            self.lock.acquire()
            for folder in (self.run_dir, self.ckpt_dir, self.run_dir / "samples"):
                for path in remove_stale_temporaries(folder):
                    log.info("removed %s, left by a run that was killed while writing", path)
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

        started = time.monotonic()
        window_start, window_images = time.monotonic(), 0
        global_batch = self.cfg.data.batch_size * self.info.world_size
        terms: dict[str, torch.Tensor] = {}
        stopped_by, signal_number = None, None
        with StopFlag() as stop, tqdm(total=tcfg.max_steps, initial=self.step, desc="train",
                                      disable=not self.info.is_main, dynamic_ncols=True) as bar:
            while self.step < tcfg.max_steps:
                terms = self.train_step(next(self.batches))
                self.watch.observe(terms, self.step + 1)
                self.step += 1
                window_images += global_batch
                bar.update(1)
                log_due = self.step % tcfg.log_every == 0 or self.step == tcfg.max_steps
                sample_due = self.step % tcfg.sample_every == 0
                ckpt_due = self.step % tcfg.ckpt_every == 0
                if log_due or sample_due or ckpt_due:
                    self._check_finite()  # once, before anything is logged or written
                if log_due:
                    ips = window_images / max(time.monotonic() - window_start, 1e-9)
                    values = dist_utils.mean_over_ranks(as_floats(terms), self.device, self.info)
                    bar.set_postfix(img_s=f"{ips:.1f}", g=f"{values['loss_g/total']:.3f}",
                                    d=f"{values['loss_d/total']:.3f}")
                    self._log_scalars(values, ips)
                    window_start, window_images = time.monotonic(), 0
                if sample_due:
                    self.write_samples()
                # Ranks decide together: one that stopped alone would leave the others
                # waiting in the next all-reduce. With several processes the check (a wait for
                # every rank) runs at log steps only.
                if not self.info.enabled or self.step % tcfg.log_every == 0:
                    out_of_time = (tcfg.max_minutes is not None
                                   and time.monotonic() - started > 60 * tcfg.max_minutes)
                    signalled, out_of_time = dist_utils.any_rank(
                        stop.signal_name is not None, out_of_time, device=self.device,
                        info=self.info)
                    if signalled:
                        stopped_by = stop.signal_name or "signal on another rank"
                        signal_number = stop.signal_number or signal.SIGTERM
                    elif out_of_time:
                        stopped_by = f"time budget of {tcfg.max_minutes} min"
                if stopped_by:
                    break
                if ckpt_due:
                    self.save()
        self._check_finite()
        if self.step % tcfg.sample_every != 0:
            self.write_samples()
        path = self.save()
        self.close()
        if stopped_by:
            log.info("stopped at step %d by %s; checkpoint %s", self.step, stopped_by, path)
        summary = {"step": self.step, "stopped_by": stopped_by,
                   "exit_code": 128 + int(signal_number) if signal_number else 0,
                   "checkpoint": str(self.ckpt_dir / LAST), "losses": as_floats(terms),
                   "minutes": (time.monotonic() - started) / 60}
        if self.info.is_main:
            log.info("finished at step %d in %.1f min; checkpoint %s", self.step,
                     summary["minutes"], summary["checkpoint"])
        return summary


def as_floats(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """Loss tensors as Python floats, with one wait for the device for all of them."""
    if not terms:
        return {}
    return dict(zip(terms, torch.stack([v.float() for v in terms.values()]).tolist()))


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train the configured model; everything is written under ``run_dir``."""
    check_train_settings(cfg)
    trainer = Trainer(cfg, Path(run_dir))
    try:
        return trainer.fit()
    finally:
        trainer.close()
        dist_utils.shutdown_distributed(trainer.info)
