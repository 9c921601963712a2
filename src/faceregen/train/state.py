"""Run state besides the networks: learning-rate schedule, EMA, RNG streams, seeds, environment
record and the stop signal. Everything here is saved in or restored from a checkpoint, or
written beside it, so that a resumed run continues exactly.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import random
import signal
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate

from faceregen import __version__
from faceregen.utils import make_dirs


def build_optimizers(nets, optim_cfg) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """The generator's optimiser (generator and style encoder, the encoder at
    ``optim.style_encoder_lr_scale`` times the rate) and the discriminator's, from ``optim``."""
    opt_g = instantiate(optim_cfg.generator)(params=nets.generator_param_groups(
        optim_cfg.generator.lr, optim_cfg.style_encoder_lr_scale))
    opt_d = instantiate(optim_cfg.discriminator)(params=list(nets.discriminator.parameters()))
    return opt_g, opt_d


def lr_factor(step: int, max_steps: int, decay_start: float) -> float:
    """Constant learning rate, then linear decay to 0 from ``decay_start * max_steps``."""
    start = int(decay_start * max_steps)
    if step < start:
        return 1.0
    return max(0.0, (max_steps - step) / max(1, max_steps - start))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- ema + (1 - decay) (model - ema) for every parameter, buffers copied.

    One multi-tensor operation per group instead of one small kernel per tensor: the EMA
    touches every generator weight each step, and per-tensor launches made it a visible share of
    a GPU step.
    """
    ema_params, params = list(ema.parameters()), [p.detach() for p in model.parameters()]
    if ema_params:
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    ema_buffers, buffers = list(ema.buffers()), list(model.buffers())
    if ema_buffers:
        torch._foreach_copy_(ema_buffers, buffers)


class NonFiniteWatch:
    """Remembers, on the device, the first step with a non-finite loss term and its bad terms.

    Reading a loss value makes the host wait for the GPU, and a wait in every step leaves the
    GPU idle while the next batch is fetched and launched; the watch lets the trainer look only
    where it must (logging, samples, checkpoints, the end) and still name the step where the
    first bad value appeared.
    """

    def __init__(self) -> None:
        self._flags: dict[tuple[str, ...], torch.Tensor] = {}
        self._first_step: torch.Tensor | None = None

    def observe(self, terms: dict[str, torch.Tensor], step: int) -> None:
        names = tuple(terms)
        bad = ~torch.isfinite(torch.stack([v.detach().float() for v in terms.values()]))
        first = self._first_step if self._first_step is not None else torch.zeros(
            (), dtype=torch.long, device=bad.device)
        newly_bad = (first == 0) & bad.any()  # this is the first step with a bad term
        self._first_step = torch.where(newly_bad, step, first)
        seen = self._flags.get(names, torch.zeros_like(bad))
        self._flags[names] = torch.where(newly_bad, bad, seen)

    def read(self) -> tuple[int, list[str]] | None:
        """(first bad step, the terms that were bad in it) or None; one wait for the device."""
        if self._first_step is None or int(self._first_step) == 0:
            return None
        names = {name for keys, flags in self._flags.items()
                 for name, bad in zip(keys, flags.tolist()) if bad}
        return int(self._first_step), sorted(names)


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


class StopFlag:
    """Turns SIGINT/SIGTERM into a request to checkpoint and stop after the current step."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.signal_number: int | None = None
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
        self.signal_number = int(signum)

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class RunDirectoryLock:
    """One training per run directory: an exclusive ``flock`` on ``<run dir>/.lock``.

    The kernel drops the lock when its process dies, however it dies, so a lock file left by a
    dead run is simply taken over (with a message naming the run that left it). A second live
    training on the same directory is refused instead of overwriting the first one's
    checkpoints.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self._handle = None

    def acquire(self) -> None:
        import fcntl
        import socket

        from faceregen.errors import FaceregenError

        make_dirs(self.path.parent)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise FaceregenError(
                f"{self.path.parent}: another training ({holder}) is running in this run "
                "directory; wait for it, stop it, or give this run its own hydra.run.dir"
            ) from None
        handle.seek(0)
        previous = handle.read().strip()
        if previous:
            logging.getLogger("faceregen.train").info(
                "taking over the run directory lock left by %s, which is no longer running",
                previous)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is None:
            return
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.close()  # closing the file drops the flock
        self._handle = None
