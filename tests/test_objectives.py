"""The one-pass step objectives give exactly the gradients of pix2pixHD's three passes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import faceregen.config  # noqa: F401  (registers the config schemas)
from faceregen.losses import class_balanced_l1, feature_matching_loss, gan_loss, gradient_penalty
from faceregen.models import build_networks, generate
from faceregen.train.objectives import (
    backward_separately,
    discriminate,
    discriminator_objective,
    generator_objective,
)


def tiny_setup(tiny_cfg, gan_mode: str):
    cfg = tiny_cfg("loss.lambda_l1=1", f"loss.gan_mode={gan_mode}")
    torch.manual_seed(0)
    nets = build_networks(cfg.model)
    label = F.one_hot(torch.randint(0, 19, (3, 32, 32)), 19).permute(0, 3, 1, 2).float()
    real = torch.rand(3, 3, 32, 32) * 2 - 1
    return cfg, nets, label, real


def grads(params) -> list[torch.Tensor]:
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]


@pytest.mark.parametrize("gan_mode", ["lsgan", "hinge"])
def test_shared_pass_gradients_equal_the_three_pass_step(gan_mode, tiny_cfg):
    cfg, nets, label, real = tiny_setup(tiny_cfg, gan_mode)
    g_params, d_params = list(nets.generator_parameters()), list(nets.discriminator.parameters())
    d, loss_cfg = nets.discriminator, cfg.loss

    fake = generate(nets.generator, nets.style_encoder, label, real, label)
    fake_features, real_features = discriminate(d, label, fake, real)
    d_terms = discriminator_objective(d, label, fake, real, fake_features, real_features,
                                      loss_cfg, apply_penalty=False)
    g_terms = generator_objective(label, fake, real, fake_features, real_features, None, loss_cfg)
    backward_separately(sum(d_terms.values()), d_params, sum(g_terms.values()), g_params)
    shared_d, shared_g = grads(d_params), grads(g_params)

    # pix2pixHD: D on the detached fake and on the real for L_D, then D again on the fake
    # (D frozen) for L_G, its features matched against the real pass.
    for p in g_params + d_params:
        p.grad = None
    fake = generate(nets.generator, nets.style_encoder, label, real, label)
    pred_fake_detached = d(torch.cat([label, fake.detach()], 1))
    pred_real = d(torch.cat([label, real], 1))
    loss_d = 0.5 * (gan_loss(pred_fake_detached, False, mode=gan_mode)
                    + gan_loss(pred_real, True, mode=gan_mode))
    loss_d.backward()
    d.requires_grad_(False)
    pred_fake = d(torch.cat([label, fake], 1))
    loss_g = (gan_loss(pred_fake, True, mode=gan_mode, for_discriminator=False)
              + loss_cfg.lambda_feat * feature_matching_loss(pred_fake, pred_real)
              + loss_cfg.lambda_l1 * F.l1_loss(fake, real)
              + loss_cfg.lambda_l1_class * class_balanced_l1(fake, real, label))
    loss_g.backward()
    d.requires_grad_(True)

    assert set(d_terms) == {"loss_d/fake", "loss_d/real"}
    assert set(g_terms) == {"loss_g/adv", "loss_g/feat", "loss_g/l1", "loss_g/l1_class"}
    assert torch.allclose(sum(d_terms.values()), loss_d, atol=1e-6)
    assert torch.allclose(sum(g_terms.values()), loss_g, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in shared_d) and any(g.abs().sum() > 0 for g in shared_g)
    for shared, reference in zip(shared_d + shared_g, grads(d_params) + grads(g_params)):
        assert torch.allclose(shared, reference, rtol=1e-4, atol=1e-7)


def test_penalty_step_adds_the_scaled_penalty_and_trains_only_d(tiny_cfg):
    cfg, nets, label, real = tiny_setup(tiny_cfg, "lsgan")
    d = nets.discriminator
    fake = generate(nets.generator, nets.style_encoder, label, real, label)
    fake_features, real_features = discriminate(d, label, fake, real)
    terms = discriminator_objective(d, label, fake, real, fake_features, real_features,
                                    cfg.loss, apply_penalty=True, penalty_scale=4.0)
    assert set(terms) == {"loss_d/fake", "loss_d/real", "loss_d/gp"}
    assert terms["loss_d/gp"] > 0
    backward_separately(sum(terms.values()), list(d.parameters()),
                        fake.mean(), list(nets.generator_parameters()))
    assert all(p.grad is not None for p in d.parameters())


def test_objective_options_reach_the_losses(tiny_cfg):
    """loss.adv_scale_reduction=sum doubles every adversarial term of the tiny two-scale
    discriminator and leaves feature matching alone (pix2pixHD averages it over scales too);
    loss.gp_reduction=mean gives the penalty of the per-sample patch mean."""
    cfg, nets, label, real = tiny_setup(tiny_cfg, "lsgan")
    assert cfg.loss.adv_scale_reduction == "mean" and cfg.loss.gp_reduction == "sum"
    d = nets.discriminator
    assert len(d.discriminators) == 2
    fake = generate(nets.generator, nets.style_encoder, label, real, label)
    fake_features, real_features = discriminate(d, label, fake, real)

    def terms(*overrides):
        loss_cfg = tiny_cfg("loss.lambda_l1=1", *overrides).loss
        torch.manual_seed(1)  # the same interpolation draw for every call
        d_terms = discriminator_objective(d, label, fake, real, fake_features, real_features,
                                          loss_cfg, apply_penalty=True)
        return {**d_terms, **generator_objective(label, fake, real, fake_features,
                                                 real_features, None, loss_cfg)}

    mean, summed = terms(), terms("loss.adv_scale_reduction=sum")
    for key in ("loss_d/fake", "loss_d/real", "loss_g/adv"):
        assert summed[key].item() == pytest.approx(2 * mean[key].item(), rel=1e-6)
    for key in ("loss_g/feat", "loss_g/l1", "loss_d/gp"):
        assert summed[key].item() == pytest.approx(mean[key].item(), rel=1e-6)
    torch.manual_seed(1)
    expected = gradient_penalty(d, real, fake, label, mode="wgan-gp", reduction="mean")
    patch_mean = terms("loss.gp_reduction=mean")["loss_d/gp"]
    assert patch_mean.item() == pytest.approx(cfg.loss.lambda_gp * expected.item(), rel=1e-5)
    assert patch_mean.item() != pytest.approx(mean["loss_d/gp"].item(), rel=1e-2)


def test_the_class_balanced_l1_term_reads_the_label_map_it_is_given(tiny_cfg):
    cfg, nets, label, real = tiny_setup(tiny_cfg, "lsgan")
    fake = generate(nets.generator, nets.style_encoder, label, real, label)
    fake_features, real_features = discriminate(nets.discriminator, label, fake, real)

    def terms(label_map, *overrides):
        loss_cfg = tiny_cfg(*overrides).loss
        return generator_objective(label_map, fake, real, fake_features, real_features, None,
                                   loss_cfg)

    assert "loss_g/l1_class" not in terms(label, "loss.lambda_l1_class=0")  # off at 0
    weighted = terms(label, "loss.lambda_l1_class=2")["loss_g/l1_class"]
    assert weighted.item() == pytest.approx(2 * class_balanced_l1(fake, real, label).item(),
                                            rel=1e-6)
    one_class = torch.zeros_like(label)
    one_class[:, 0] = 1  # a single class: the plain L1
    assert terms(one_class, "loss.lambda_l1_class=1")["loss_g/l1_class"].item() == pytest.approx(
        F.l1_loss(fake, real).item(), rel=1e-6)


def step_gradients(cfg, nets, label, real, compiled: bool, perceptual=None
                   ) -> list[torch.Tensor]:
    """Gradients of one adversarial_step (penalty applied) from the networks as given."""
    import copy

    from faceregen.losses.gradient_penalty import explicit_image_penalty
    from faceregen.train.objectives import compile_for_shared_pass
    from faceregen.train.step import StepModules, adversarial_step

    g, d = copy.deepcopy(nets.generator), copy.deepcopy(nets.discriminator)
    e = copy.deepcopy(nets.style_encoder)
    g_params = [*g.parameters(), *e.parameters()]
    d_params = list(d.parameters())
    modules = StepModules(
        generator=g, style_encoder=e, discriminator=d,
        perceptual=compile_for_shared_pass(perceptual) if compiled and perceptual else perceptual,
        opt_g=torch.optim.SGD(g_params, lr=0.0), opt_d=torch.optim.SGD(d_params, lr=0.0),
        g_params=g_params, d_params=d_params,
        run_generator=compile_for_shared_pass(generate) if compiled else generate,
        run_discriminator=compile_for_shared_pass(d) if compiled else d,
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        image_penalty=compile_for_shared_pass(explicit_image_penalty) if compiled else None)
    torch.manual_seed(5)  # the penalty's interpolation draw
    adversarial_step(modules, label, real, real, label, cfg.loss, step_index=0)
    return grads(g_params + d_params)


@pytest.mark.slow
def test_the_compiled_step_gives_the_eager_gradients(tiny_cfg):
    """trainer.compile=true computes the same step: generator path, discriminator, VGG and
    the penalty's double backward compiled; every gradient equal to the eager step's within
    float32 reordering."""
    from faceregen.losses.perceptual import VGGPerceptualLoss

    cfg, nets, label, real = tiny_setup(tiny_cfg, "lsgan")
    vgg = VGGPerceptualLoss(weights="random")
    eager = step_gradients(cfg, nets, label, real, compiled=False, perceptual=vgg)
    compiled = step_gradients(cfg, nets, label, real, compiled=True, perceptual=vgg)
    torch._dynamo.reset()
    assert len(eager) == len(compiled)
    flat_eager = torch.cat([g.flatten() for g in eager])
    flat_compiled = torch.cat([g.flatten() for g in compiled])
    assert (flat_compiled - flat_eager).norm() <= 1e-4 * flat_eager.norm()
    scale = max(g.norm() for g in eager)  # near-zero tensors compare against the largest
    for a, b in zip(eager, compiled):
        assert (a - b).norm() <= 1e-3 * a.norm() + 1e-4 * scale, ((a - b).norm(), a.norm())



def test_compiling_for_the_shared_pass_works_in_a_fresh_process():
    """``import torch`` does not import ``torch._functorch.config``, which the function sets:
    it must not depend on another module having imported it first."""
    import subprocess
    import sys

    code = ("import torch; from faceregen.train.objectives import compile_for_shared_pass; "
            "compile_for_shared_pass(torch.nn.Identity()); "
            "from torch._functorch import config; assert config.donated_buffer is False")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
