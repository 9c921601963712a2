"""One training step: a generator and a discriminator update from one shared discriminator pass.

:func:`adversarial_step` is the whole step as a plain function of the networks, optimisers and
a batch on the device; the trainer calls it, and `scripts/bench.py` times it section by section,
so the benchmark measures exactly what training runs.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from faceregen.losses.gradient_penalty import ImagePenalty
from faceregen.train.objectives import (
    backward_separately,
    discriminate,
    discriminator_objective,
    generator_objective,
)

Section = Callable[[str], AbstractContextManager]


def no_section(name: str) -> AbstractContextManager:
    return nullcontext()


def autocast_for(device: torch.device, dtype: torch.dtype | None, cache_enabled: bool = True
                 ) -> Callable[[], AbstractContextManager]:
    """A factory of autocast contexts for ``trainer.precision`` (None: full fp32).

    ``cache_enabled=False`` for a step captured in a CUDA graph: autocast's cache of cast
    weights would outlive the capture.
    """
    if dtype is None:
        return nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=dtype,
                                  cache_enabled=cache_enabled)


@dataclass
class StepModules:
    """What one step reads and updates.

    ``run_generator`` is :func:`faceregen.models.generate` or its compiled form and
    ``run_discriminator`` the discriminator or its compiled form; the penalty differentiates the
    plain ``discriminator`` twice, eagerly or through ``image_penalty``
    (:func:`faceregen.losses.gradient_penalty.explicit_image_penalty`, compiled).
    """

    generator: nn.Module
    style_encoder: nn.Module | None
    discriminator: nn.Module
    perceptual: nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    g_params: list[nn.Parameter]
    d_params: list[nn.Parameter]
    run_generator: Callable
    run_discriminator: Callable
    scaler: torch.amp.GradScaler
    image_penalty: ImagePenalty | None = None


def adversarial_step(modules: StepModules, label_onehot: torch.Tensor, real: torch.Tensor,
                     ref_image: torch.Tensor, ref_onehot: torch.Tensor, loss_cfg: DictConfig,
                     step_index: int,
                     autocast: Callable[[], AbstractContextManager] = nullcontext,
                     sync_gradients: Callable[[], None] | None = None,
                     section: Section = no_section) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Update G (with the style encoder) and D once; return the fakes and every loss term.

    Both objectives see the networks as they are at the start of the step, as in pix2pixHD.
    The penalty is applied every ``loss.gp_every`` steps (from ``step_index``) and scaled by that
    interval. ``sync_gradients`` runs between the backward passes and the optimiser steps (the
    data-parallel gradient average). ``section(name)`` wraps each phase, for timing. The terms'
    keys are the TensorBoard tags, with ``loss_g/total`` and ``loss_d/total`` added.
    """
    fake, terms = compute_gradients(modules, label_onehot, real, ref_image, ref_onehot, loss_cfg,
                                    penalty_due(loss_cfg, step_index), autocast, section=section)
    apply_gradients(modules, sync_gradients, section)
    return fake, terms


def penalty_due(loss_cfg: DictConfig, step_index: int) -> bool:
    """Whether step ``step_index`` applies the gradient penalty (every ``loss.gp_every``)."""
    return step_index % max(1, int(loss_cfg.gp_every)) == 0


def compute_gradients(modules: StepModules, label_onehot: torch.Tensor, real: torch.Tensor,
                      ref_image: torch.Tensor, ref_onehot: torch.Tensor, loss_cfg: DictConfig,
                      apply_penalty: bool,
                      autocast: Callable[[], AbstractContextManager] = nullcontext,
                      keep_gradient_buffers: bool = False, section: Section = no_section
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The forward passes, the loss terms and both backward passes of a step: every network
    parameter's ``.grad`` holds this step's gradient, nothing is updated yet.

    ``keep_gradient_buffers`` zeroes the ``.grad`` tensors in place instead of dropping them, so
    that they stay at one address from step to step (what a CUDA graph replays).
    """
    m = modules
    every = max(1, int(loss_cfg.gp_every))
    with section("g_forward"), autocast():
        fake = m.run_generator(m.generator, m.style_encoder, label_onehot, ref_image, ref_onehot)
    with section("d_forward"), autocast():
        fake_features, real_features = discriminate(m.run_discriminator, label_onehot, fake, real)
    with section("losses_forward"), autocast():
        d_terms = discriminator_objective(
            m.discriminator, label_onehot, fake, real, fake_features, real_features, loss_cfg,
            apply_penalty=apply_penalty, penalty_scale=float(every),
            image_penalty=m.image_penalty)
        g_terms = generator_objective(label_onehot, fake, real, fake_features, real_features,
                                      m.perceptual, loss_cfg)
        loss_d = sum(d_terms.values())
        loss_g = sum(g_terms.values())
    m.opt_d.zero_grad(set_to_none=not keep_gradient_buffers)
    m.opt_g.zero_grad(set_to_none=not keep_gradient_buffers)
    with section("backward"):
        backward_separately(m.scaler.scale(loss_d), m.d_params, m.scaler.scale(loss_g),
                            m.g_params)
    return fake, {**g_terms, **d_terms, "loss_g/total": loss_g, "loss_d/total": loss_d}


def apply_gradients(modules: StepModules, sync_gradients: Callable[[], None] | None = None,
                    section: Section = no_section) -> None:
    """The optimiser steps on the gradients :func:`compute_gradients` left in ``.grad``."""
    with section("optimizer_steps"):
        if sync_gradients is not None:
            sync_gradients()
        modules.scaler.step(modules.opt_g)
        modules.scaler.step(modules.opt_d)
        modules.scaler.update()
