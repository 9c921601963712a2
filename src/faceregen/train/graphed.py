"""The training step's forward and backward passes replayed as CUDA graphs (``trainer.cuda_graph``).

Why: at batch 4 the eager step launches about 3,500 kernels, and the GPU idles while the host
launches them (18 % of the style model's step on an H200, docs/speed.md). A CUDA graph replays
the recorded kernels with one launch. What is recorded is :func:`compute_gradients` (forward
passes, losses, penalty, both backward passes into fixed ``.grad`` buffers). The optimiser steps,
the data-parallel gradient average, the LR schedule and the EMA stay eager: they are a few fused
kernels, and keeping them out of the graph keeps the learning rate a plain float that the
schedule changes and the checkpoint stores as before.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from omegaconf import DictConfig

from faceregen.train.step import StepModules, apply_gradients, compute_gradients, penalty_due

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class GraphedStep:
    """``adversarial_step`` with its gradient computation recorded once and replayed.

    One graph per penalty phase (a step with the gradient penalty and, when ``loss.gp_every`` is
    above 1, one without), each recorded after ``warmup`` eager steps of that phase: cuDNN's
    autotuning, the optimisers' state and the ``.grad`` buffers are set up in those, so that a
    replay touches only memory that stays put. The inputs are copied into fixed buffers before
    each replay; the fakes and loss terms returned are the graph's own outputs, overwritten by
    the next replay of the same graph (read or copy them before then).

    The graphs see the networks' parameters, buffers and ``.grad`` tensors by address, so
    anything that replaces them (``load_state_dict`` is fine: it copies in place) must happen
    before the first step. Shapes are fixed: every batch must have the first batch's shape.
    """

    def __init__(self, modules: StepModules, loss_cfg: DictConfig,
                 autocast: Callable[[], AbstractContextManager], warmup: int = 3):
        self.modules = modules
        self.loss_cfg = loss_cfg
        self.autocast = autocast
        self.warmup = max(1, int(warmup))
        self.eager_steps = {True: 0, False: 0}
        self.graphs: dict[bool, tuple[torch.cuda.CUDAGraph, tuple]] = {}
        self.inputs: Batch | None = None
        self.side_stream: torch.cuda.Stream | None = None

    def __call__(self, label_onehot: torch.Tensor, real: torch.Tensor, ref_image: torch.Tensor,
                 ref_onehot: torch.Tensor, step_index: int,
                 sync_gradients: Callable[[], None] | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch = (label_onehot, real, ref_image, ref_onehot)
        if self.inputs is None:
            self.inputs = tuple(t.detach().clone() for t in batch)  # keeps the memory format
            self.side_stream = torch.cuda.Stream(device=real.device)
        for fixed, new in zip(self.inputs, batch):
            if fixed.shape != new.shape:
                raise ValueError(f"trainer.cuda_graph needs batches of one shape: got "
                                 f"{tuple(new.shape)} after {tuple(fixed.shape)}")
        apply_penalty = penalty_due(self.loss_cfg, step_index)
        if self.eager_steps[apply_penalty] < self.warmup:
            outputs = self._eager(batch, apply_penalty)
        else:
            for fixed, new in zip(self.inputs, batch):
                fixed.copy_(new)
            if apply_penalty not in self.graphs:
                self.graphs[apply_penalty] = self._record(apply_penalty)
            graph, outputs = self.graphs[apply_penalty]
            graph.replay()
        apply_gradients(self.modules, sync_gradients)
        return outputs

    def _eager(self, batch: Batch, apply_penalty: bool):
        """A warm-up step on a side stream, as CUDA graphs ask: its allocations (the ``.grad``
        buffers, cuDNN's workspaces) are made outside the graphs' memory pools."""
        stream = self.side_stream
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            outputs = compute_gradients(self.modules, *batch, self.loss_cfg, apply_penalty,
                                        self.autocast, keep_gradient_buffers=True)
        torch.cuda.current_stream().wait_stream(stream)
        self.eager_steps[apply_penalty] += 1
        return outputs

    def _record(self, apply_penalty: bool):
        graph = torch.cuda.CUDAGraph()
        # thread_local: the loader's pin-memory thread keeps calling CUDA while this records.
        with torch.cuda.graph(graph, stream=self.side_stream, capture_error_mode="thread_local"):
            fake, terms = compute_gradients(self.modules, *self.inputs, self.loss_cfg,
                                            apply_penalty, self.autocast,
                                            keep_gradient_buffers=True)
            outputs = (fake.detach(), {name: value.detach() for name, value in terms.items()})
        return graph, outputs
