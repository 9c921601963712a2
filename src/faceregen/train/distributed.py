"""Process-group plumbing for `torchrun` launches; a no-op in a single process.

Gradients are averaged with an explicit all-reduce rather than by wrapping the networks in
DistributedDataParallel: the WGAN-GP penalty differentiates the discriminator twice
(``create_graph=True``), which DDP's gradient reducer does not support, and the generator's
adversarial term runs the discriminator without wanting its gradients. Parameters start
identical (broadcast from rank 0) and receive identical averaged gradients, so every rank holds
the same weights after each step, exactly as with DDP.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> DistInfo:
    """Join the process group that `torchrun`, submitit or SLURM describes, if any.

    Under `torchrun` the environment is complete. Under Hydra's submitit launcher (SLURM or
    local) submitit's own job environment supplies rank, world size and the rendezvous
    address. Under a bare `srun` the SLURM variables give the ranks, and MASTER_ADDR and
    MASTER_PORT must be exported by the job script.
    """
    if "WORLD_SIZE" not in os.environ and os.environ.get("SUBMITIT_EXECUTOR"):
        _export_submitit_environment()
    env = os.environ
    if "WORLD_SIZE" not in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        env.update(WORLD_SIZE=env["SLURM_NTASKS"], RANK=env["SLURM_PROCID"],
                   LOCAL_RANK=env.get("SLURM_LOCALID", "0"))
    world_size = int(env.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank = int(env["RANK"])
    local_rank = int(env.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        if device_kind == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size)


def _export_submitit_environment() -> None:
    """Set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT from submitit's job.

    The rendezvous is the job's first host, on a port derived from the job id unless
    MASTER_PORT is set. CUDA_VISIBLE_DEVICES is left alone: each rank picks its GPU by local
    rank.
    """
    from submitit.helpers import TorchDistributedEnvironment

    env = TorchDistributedEnvironment()
    if env.world_size > 1:
        env.export(set_cuda_visible_devices=False, overwrite=True)


def shutdown_distributed(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_parameters(modules: Iterable[torch.nn.Module], info: DistInfo) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if not info.enabled:
        return
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_gradients(params: Iterable[torch.nn.Parameter], info: DistInfo) -> None:
    """All-reduce the gradients of ``params`` in one flat buffer and divide by the world size."""
    if not info.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= info.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def any_rank(*flags: bool, device: torch.device, info: DistInfo) -> tuple[bool, ...]:
    """Each flag true on every rank when it is true on at least one (one all-reduce for all)."""
    if not info.enabled:
        return flags
    t = torch.tensor([1.0 if flag else 0.0 for flag in flags], device=device)
    dist.all_reduce(t)
    return tuple(bool(v > 0) for v in t.tolist())


def mean_over_ranks(values: dict[str, float], device: torch.device,
                    info: DistInfo) -> dict[str, float]:
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    t /= info.world_size
    return dict(zip(keys, t.tolist()))
