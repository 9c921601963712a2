"""Training throughput and where the step time goes, as JSON.

    python scripts/bench.py                                # offline default model, 64 px, CPU
    python scripts/bench.py --model pix2pixhd --size 64 --batch 4 --ngf 32 --n-downsample 3
    python scripts/bench.py --device cuda --precision bf16 --channels-last +experiment=celebamask
    python scripts/bench.py --task regen --size 512 +experiment=celebamask   # regen latency
    python scripts/bench.py --task studio --steps 20                     # studio HTTP round trip
    python scripts/bench.py --task data --workers 4 +experiment=celebamask    # loader img/s
    python scripts/bench.py --task penalty --channels-last +experiment=celebamask  # the penalty
    python scripts/bench.py --step reference ...           # pix2pixHD's own step, same networks

Random label maps and images stand in for data, so the training figures measure the networks and
losses alone; ``--task data`` measures the other side, the trainer's data loader on the
configured prepared dataset (made first if it is the synthetic set), so that the two can be
compared: a loader slower than the step starves the accelerator. Any further argument is a
Hydra override of the train config.

``--step reference`` times the work of the pix2pixHD reference code's training step on the same
networks and losses, for a same-machine comparison: three separate discriminator calls (the
detached fake and the real for L_D, the fake again for L_G), L_G back-propagated into the
discriminator's weights as well (the reference code zeroes them before L_D's backward), no
penalty of its own. ``--step faceregen`` (default) is the trainer's step.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import platform
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from omegaconf import DictConfig
from torch.utils.flop_counter import FlopCounterMode

import faceregen.config  # noqa: F401  (registers the config schemas)
from faceregen.losses import feature_matching_loss, gan_loss
from faceregen.losses.gradient_penalty import (
    autograd_image_penalty,
    eager_image_penalty,
    explicit_image_penalty,
    functional_image_penalty,
    gradient_penalty,
)
from faceregen.losses.perceptual import VGGPerceptualLoss
from faceregen.models import build_networks, generate
from faceregen.models.networks.layout import use_gpu_friendly_layers
from faceregen.train.graphed import GraphedStep
from faceregen.train.objectives import compile_for_shared_pass
from faceregen.train.state import build_optimizers, update_ema
from faceregen.train.step import StepModules, adversarial_step, autocast_for
from faceregen.utils import autocast_dtype, resolve_device


def compose_config(args: argparse.Namespace) -> DictConfig:
    overrides = [f"model={args.model}", "loss.vgg.weights=random"]
    if args.size:
        overrides.append(f"data.size={args.size}")
    if args.batch:
        overrides.append(f"data.batch_size={args.batch}")
    if args.ngf:
        overrides.append(f"model.generator.ngf={args.ngf}")
    if args.n_downsample:
        overrides.append(f"model.generator.n_downsample={args.n_downsample}")
    if args.num_d:
        overrides.append(f"model.discriminator.num_D={args.num_d}")
    if args.no_gp:
        overrides.append("loss.lambda_gp=0")
    with initialize_config_module(version_base="1.3", config_module="faceregen.configs"):
        return compose(config_name="train", overrides=overrides + args.overrides)


class Timer:
    """Accumulates wall time per named section, synchronising CUDA around each one.

    A disabled timer times nothing and never synchronises: the headline step time is taken
    over whole steps, with no waits inside them, as the trainer runs them.
    """

    def __init__(self, device: torch.device, enabled: bool = True):
        self.device = device
        self.enabled = enabled
        self.totals: dict[str, float] = {}

    def section(self, name: str):
        if not self.enabled:
            return nullcontext()
        timer = self

        class _Section:
            def __enter__(self):
                synchronize(timer.device)
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                synchronize(timer.device)
                timer.totals[name] = timer.totals.get(name, 0.0) + time.perf_counter() - self.start

        return _Section()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# The penalty's forms, run eagerly (bench's ``eager_penalty``: the trainer's, the one that
# trainer.compile compiles, and autograd's own double backward, the eager form before) and
# compiled (``compiled_penalty``: trainer.compile's, and its form before).
EAGER_PENALTIES = {"default": eager_image_penalty, "explicit": explicit_image_penalty,
                   "autograd": autograd_image_penalty}
COMPILED_PENALTIES = {"explicit": explicit_image_penalty, "func.grad": functional_image_penalty}


def bench(cfg: DictConfig, device: torch.device, precision: str, channels_last: bool,
          steps: int, warmup: int, step_kind: str = "faceregen", compile: bool = False,
          phases: bool = True, profile: bool = False, cuda_graph: bool = False,
          eager_penalty: str = "default", compiled_penalty: str = "explicit",
          compile_mode: str | None = None) -> dict:
    """Time ``steps`` training steps after ``warmup`` (compilation, cuDNN autotuning).

    ``eager_penalty`` names the penalty's form in an eager step (:data:`EAGER_PENALTIES`).
    ``compile`` compiles as ``trainer.compile=true`` does; ``compiled_penalty`` names the
    penalty's form then (:data:`COMPILED_PENALTIES`), or "eager" to leave it uncompiled.
    ``cuda_graph`` replays the step's gradient computation as CUDA graphs, as
    ``trainer.cuda_graph=true`` (GraphedStep); its own eager steps and the recording of each
    graph are added to the warm-up.
    ``compile_mode`` is torch.compile's; with "reduce-overhead" (CUDA graphs of each compiled
    part) every step first marks a new step for the graphs' outputs.

    The step time is wall time over all timed steps with one synchronisation at each end.
    ``phases`` adds a second pass with a synchronisation around each phase (forward passes,
    backward, optimiser) for the per-phase times; ``profile`` a third under torch.profiler.
    """
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    nets = build_networks(cfg.model)
    use_gpu_friendly_layers([nets.generator, nets.style_encoder, nets.discriminator],
                            align_channels=cfg.trainer.align_channels,
                            layout_keeping_norm=cfg.trainer.layout_keeping_norm)
    g = nets.generator.to(device, memory_format=fmt)
    e = nets.style_encoder.to(device, memory_format=fmt) if nets.style_encoder else None
    d = nets.discriminator.to(device, memory_format=fmt)
    vgg = (VGGPerceptualLoss(weights="random").to(device, memory_format=fmt)
           if cfg.loss.lambda_vgg > 0 else None)
    g_params = list(nets.generator_parameters())
    d_params = list(d.parameters())
    if step_kind == "reference":  # the reference code's optimisers: torch's default Adam
        opt_g = torch.optim.Adam(g_params, lr=2e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(d_params, lr=2e-4, betas=(0.5, 0.999))
    else:  # the trainer's, from the config
        opt_g, opt_d = build_optimizers(nets, cfg.optim)
    dtype = autocast_dtype(precision)
    autocast = autocast_for(device, dtype)
    modules = StepModules(  # as the trainer builds them; compiled below, after the FLOP count
        generator=g, style_encoder=e, discriminator=d, perceptual=vgg, opt_g=opt_g, opt_d=opt_d,
        g_params=g_params, d_params=d_params, run_generator=generate, run_discriminator=d,
        scaler=torch.amp.GradScaler("cuda", enabled=dtype is torch.float16),
        image_penalty=EAGER_PENALTIES[eager_penalty])

    b, s, c = cfg.data.batch_size, cfg.data.size, cfg.model.generator.label_classes
    label = torch.randint(0, c, (b, s, s), device=device)
    label_oh = torch.zeros(b, c, s, s, device=device).scatter_(1, label[:, None], 1.0)
    label_oh = label_oh.contiguous(memory_format=fmt)
    real = (torch.rand(b, 3, s, s, device=device) * 2 - 1).contiguous(memory_format=fmt)

    every = max(1, int(cfg.loss.gp_every))

    def reference_step(timer: Timer) -> torch.Tensor:
        """pix2pixHD's step (its models/pix2pixHD_model.py and train.py), same networks."""
        with timer.section("g_forward"), autocast():
            fake = generate(g, e, label_oh, real, label_oh)
        with timer.section("d_forward"), autocast():
            pred_fake_pool = d(torch.cat([label_oh, fake.detach()], 1))
            pred_real = d(torch.cat([label_oh, real], 1))
            pred_fake = d(torch.cat([label_oh, fake], 1))
        with timer.section("losses_forward"), autocast():
            mode = cfg.loss.gan_mode
            loss_d = 0.5 * (gan_loss(pred_fake_pool, False, mode=mode)
                            + gan_loss(pred_real, True, mode=mode))
            loss_g = (gan_loss(pred_fake, True, mode=mode, for_discriminator=False)
                      + cfg.loss.lambda_feat * feature_matching_loss(pred_fake, pred_real))
            if vgg is not None:
                loss_g = loss_g + cfg.loss.lambda_vgg * vgg(fake, real)
            if cfg.loss.lambda_l1 > 0:
                loss_g = loss_g + cfg.loss.lambda_l1 * F.l1_loss(fake, real)
        with timer.section("backward"):
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
        with timer.section("optimizer_steps"):
            opt_g.step()
            opt_d.step()
        return fake

    g_ema = [copy.deepcopy(module).requires_grad_(False) for module in (g, e) if module]
    graphed = None  # set after the FLOP count, which runs eager

    def faceregen_step(timer: Timer, index: int) -> torch.Tensor:
        """The trainer's step itself (faceregen.train.step.adversarial_step) and its EMA."""
        if compile and compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        if graphed is not None:
            fake, _ = graphed(label_oh, real, real, label_oh, index)
        else:
            fake, _ = adversarial_step(modules, label_oh, real, real, label_oh, cfg.loss,
                                       step_index=index, autocast=autocast,
                                       section=timer.section)
        with timer.section("ema"):
            for ema, module in zip(g_ema, (g, e)):
                update_ema(ema, module, 0.999)
        return fake

    def step(timer: Timer, index: int, probe_vgg: bool = True) -> None:
        with timer.section("step"):
            fake = (reference_step(timer) if step_kind == "reference"
                    else faceregen_step(timer, index))
        if vgg is not None and probe_vgg:
            with timer.section("vgg_forward_backward"):
                probe = fake.detach().requires_grad_(True)
                with autocast():
                    loss = vgg(probe, real)
                loss.backward()

    with FlopCounterMode(display=False) as flop_counter:  # convolutions and matmuls
        for index in range(every):  # one penalty interval
            step(Timer(device), index, probe_vgg=False)
    step_flops = flop_counter.get_total_flops() / every
    if compile:  # as trainer.compile=true: generator path, discriminator, VGG, penalty
        modules.run_generator = compile_for_shared_pass(generate, compile_mode)
        modules.run_discriminator = compile_for_shared_pass(d, compile_mode)
        if vgg is not None:
            modules.perceptual = compile_for_shared_pass(vgg, compile_mode)
        if compiled_penalty != "eager":
            modules.image_penalty = compile_for_shared_pass(COMPILED_PENALTIES[compiled_penalty],
                                                            compile_mode)
    if cuda_graph:
        graphed = GraphedStep(modules, cfg.loss, autocast_for(device, dtype, cache_enabled=False))
        warmup += (graphed.warmup + 1) * every  # eager steps of each phase, then the recordings

    quiet = Timer(device, enabled=False)
    for i in range(warmup):
        step(quiet, i, probe_vgg=False)
    synchronize(device)
    start = time.perf_counter()
    for i in range(steps):
        step(quiet, i, probe_vgg=False)
    synchronize(device)
    step_s = (time.perf_counter() - start) / steps
    result = {
        "img_per_s": b / step_s,
        "step_s": step_s,
        "gflop_per_step": step_flops / 1e9,
        "achieved_gflop_per_s": step_flops / 1e9 / step_s,
    }
    if phases:
        timer = Timer(device)
        for i in range(steps):
            step(timer, i)
        per_step = {k: v / steps for k, v in timer.totals.items()}
        result["phases_s"] = {name: per_step.get(name) for name in (
            "g_forward", "d_forward", "losses_forward", "backward", "optimizer_steps", "ema",
            "vgg_forward_backward")}
    if profile:
        result["profile"] = profile_steps(lambda i: step(quiet, i, probe_vgg=False), steps,
                                          device, flop_counter.get_flop_counts(), every)
    return result


# Dense bf16 tensor-core peaks (TFLOP/s, vendor datasheets), by a name nvidia-smi reports.
BF16_PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0),
                    ("H200", 989.0), ("GH200", 989.0), ("A100", 312.0), ("L40S", 362.0))


def bf16_peak_tflops(device_name: str) -> float | None:
    for fragment, peak in BF16_PEAK_TFLOPS:
        if fragment in device_name:
            return peak
    return None


# (class, substrings of a kernel or op name, lower case); the first match wins.
KERNEL_CLASSES = (  # Triton's first: their fused names can hold "convolution" and the like
    ("compiled fusion, reduction", ("triton_red", "triton_per")),
    ("compiled fusion, pointwise", ("triton_poi", "triton_")),
    ("layout conversion", ("nchwtonhwc", "nhwctonchw", "nchw_to_nhwc", "nhwc_to_nchw")),
    ("conv backward, data", ("dgrad", "convolution_backward_input")),
    ("conv backward, weights", ("wgrad", "convolution_backward_weight")),
    ("conv backward (CPU op)", ("convolution_backward",)),
    ("conv forward", ("fprop", "convolve", "conv2d", "convolution", "implicit_gemm")),
    ("matmul", ("gemm", "nvjet", "cutlass", "addmm", "aten::mm", "aten::bmm")),
    ("normalisation", ("norm", "var_mean", "welford", "batch_norm")),
    ("padding", ("reflection_pad", "replication_pad", "pad")),
    ("optimiser and EMA", ("multi_tensor", "fused_adam", "adam", "foreach", "lerp")),
    ("reduction", ("reduce", "sum", "mean")),
    ("copy and cat", ("copy", "cat", "clone", "contiguous")),
    ("elementwise", ("elementwise", "add", "mul", "leaky", "relu", "tanh", "where", "fill",
                     "div", "sub", "pow", "sqrt", "abs", "sign", "clamp", "threshold")),
)


def kernel_class(name: str) -> str:
    lowered = name.lower()
    for label, fragments in KERNEL_CLASSES:
        if any(fragment in lowered for fragment in fragments):
            return label
    return "other"


def kernel_precision(name: str) -> str:
    """'bf16, NHWC' and the like, as far as a convolution or matmul kernel's name says."""
    lowered = name.lower()
    if "bf16" in lowered:
        precision = "bf16"
    elif "f16" in lowered or "h884" in lowered or "h1688" in lowered:
        precision = "fp16"
    elif "tf32" in lowered or "f32" in lowered or "sgemm" in lowered or "float" in lowered:
        precision = "fp32/tf32"
    else:
        precision = "?"
    if "nhwc" in lowered:
        return f"{precision}, NHWC"
    return f"{precision}, NCHW" if "nchw" in lowered else precision


def profile_steps(run_step, steps: int, device: torch.device, flop_counts: dict,
                  every: int) -> dict:
    """Where the step's time goes: kernel (GPU) or op (CPU) self time by class.

    Taken after the warm-up, so cuDNN's autotuning trials are not in it. Convolution classes
    get their achieved TFLOP/s from the FLOP count of the same step (forward against
    ``aten.convolution``, both backward classes together against ``aten.convolution_backward``),
    and the share of the device's bf16 peak; everything else is memory-bound work whose time
    is the thing to cut. ``idle`` is the step's wall time not covered by any kernel: launch
    gaps and host waits.
    """
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    synchronize(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for i in range(steps):
            run_step(i)
        synchronize(device)
        wall_us = (time.perf_counter() - start) * 1e6
    classes: dict[str, dict] = {}
    busy_us = 0.0
    for event in prof.key_averages():
        if cuda:
            if event.device_type != torch.autograd.DeviceType.CUDA:
                continue
            self_us = event.self_device_time_total
        else:  # leaf CPU ops only: an op's self time excludes what it called
            if not event.key.startswith("aten::") or event.key in (
                    "aten::conv2d", "aten::convolution", "aten::_convolution"):
                continue
            self_us = event.self_cpu_time_total
        if self_us <= 0:
            continue
        busy_us += self_us
        label = kernel_class(event.key)
        if label.startswith("conv") or label == "matmul":
            label = f"{label} ({kernel_precision(event.key)})" if cuda else label
        entry = classes.setdefault(label, {"ms_per_step": 0.0, "calls_per_step": 0.0,
                                           "top": []})
        entry["ms_per_step"] += self_us / 1e3 / steps
        entry["calls_per_step"] += event.count / steps
        entry["top"].append((self_us / 1e3 / steps, event.key[:120]))
    step_ms = wall_us / 1e3 / steps
    if cuda:
        classes["idle (launch gaps, host waits)"] = {
            "ms_per_step": max(0.0, step_ms - busy_us / 1e3 / steps), "calls_per_step": 0,
            "top": []}
    counts = {str(op): flops / every for op, flops in flop_counts.get("Global", {}).items()}
    peak = bf16_peak_tflops(torch.cuda.get_device_name(device)) if cuda else None
    roofline = {}
    for group, op in (("conv forward", "aten.convolution"),
                      ("conv backward", "aten.convolution_backward")):
        ms = sum(e["ms_per_step"] for n, e in classes.items() if n.startswith(group))
        if ms > 0 and counts.get(op):
            tflops = counts[op] / 1e12 / (ms / 1e3)
            roofline[group] = {"gflop_per_step": counts[op] / 1e9, "ms_per_step": ms,
                               "tflops": tflops,
                               "share_of_bf16_peak": tflops / peak if peak else None}
    for entry in classes.values():
        entry["share"] = entry["ms_per_step"] / step_ms
        entry["top"] = [f"{ms:.3f} ms {kernel}" for ms, kernel in sorted(entry["top"])[::-1][:3]]
    return {"step_ms": step_ms, "roofline": roofline, "classes": dict(sorted(
        classes.items(), key=lambda item: -item[1]["ms_per_step"])),
            "host_ops": host_dispatched_ops(prof.events(), steps)}


# Profiler ranges of compiled code: dynamo's frame, AOTAutograd's forward and backward, and
# Inductor's graph call.
COMPILED_RANGES = ("Torch-Compiled Region", "CompiledFunction", "CompiledFxGraph")


def host_dispatched_ops(events, steps: int) -> dict:
    """The aten ops the host dispatches per step, each counted once (not the ops it calls),
    outside compiled code and inside it (the ops a compiled graph calls out to, such as
    cuDNN's convolutions): on a GPU each is a launch or more that the host pays for, views
    and detaches apart. The most frequent ones outside compiled code say which Python code
    launches them."""
    outside: dict[str, int] = {}
    inside = 0
    for event in events:
        if not event.name.startswith("aten::"):
            continue
        parent, compiled = event.cpu_parent, False
        while parent is not None:
            if parent.name.startswith("aten::"):
                break
            compiled = compiled or any(mark in parent.name for mark in COMPILED_RANGES)
            parent = parent.cpu_parent
        if parent is not None:  # called by another aten op
            continue
        if compiled:
            inside += 1
        else:
            outside[event.name] = outside.get(event.name, 0) + 1
    most = sorted(outside.items(), key=lambda item: -item[1])[:8]
    return {"outside_compiled_per_step": sum(outside.values()) / steps,
            "inside_compiled_per_step": inside / steps,
            "most_frequent_outside": {name: count / steps for name, count in most}}


# The GPU suite: (row, step kind, experiment, compiled, batch, overrides); it runs the eager
# rows first so that a cut-short run still has them. The reference step has no penalty
# (pix2pixHD had none); every other row trains its experiment's loss as configured.
SUITE = (
    ("pix2pixHD's step (reference)", "reference", "pix2pixhd_baseline", False, 4,
     ["loss.lambda_gp=0"]),
    ("baseline", "faceregen", "pix2pixhd_baseline", False, 4, []),
    ("style model", "faceregen", "celebamask", False, 4, []),
    ("style model", "faceregen", "celebamask", False, 16, []),
    ("baseline, compiled", "faceregen", "pix2pixhd_baseline", True, 4, []),
    ("style model, compiled", "faceregen", "celebamask", True, 4, []),
    ("style model, compiled", "faceregen", "celebamask", True, 16, []),
)
# The CUDA-graph rows (trainer.cuda_graph=true; CUDA only, so not in --suite tiny), after the
# eager rows and before the compiled ones. A graph of the compiled step could not be recorded
# (torch 2.11, H100), so there is no such row.
GRAPH_ROWS = (
    ("baseline, CUDA graph", "graphed", "pix2pixhd_baseline", False, 4, []),
    ("style model, CUDA graph", "graphed", "celebamask", False, 4, []),
    ("style model, CUDA graph", "graphed", "celebamask", False, 16, []),
    ("style model, CUDA graph, both layer forms", "graphed", "celebamask", False, 4,
     ["trainer.align_channels=true", "trainer.layout_keeping_norm=true"]),
)
# --variants: the style model eager at batch 4 under the other penalty schedules (what the
# penalty costs), with the discriminator run once over fakes and reals concatenated (the form before
# the two-pass step, for an A/B on the same machine), with the exact run-time layer forms of
# models/networks/layout.py, compiled with the penalty every step and R1 every 16th, compiled
# with the penalty left eager (what compiling the penalty gains), without the label skips
# (what they cost), with the eager penalty through autograd's own double backward of the
# convolutions (the form before DifferentiableInputGradients) and in its explicit form (the one
# trainer.compile compiles), compiled with
# mode="reduce-overhead" (each compiled part replayed as CUDA graphs; on the CPU it compiles
# as the default mode does), and compiled with the penalty through torch.func.grad (the
# compiled form before explicit_image_penalty).
VARIANT_ROWS = (
    ("style model, WGAN-GP every step", "faceregen", "celebamask", False, 4, ["loss.gp_every=1"]),
    ("style model, WGAN-GP every 16th", "faceregen", "celebamask", False, 4,
     ["loss.gp_every=16"]),
    ("style model, R1 every 16th", "faceregen", "celebamask", False, 4,
     ["loss.gp_mode=r1", "loss.gp_every=16"]),
    ("style model, no penalty", "faceregen", "celebamask", False, 4, ["loss.lambda_gp=0"]),
    ("style model, one concatenated D pass", "one-pass", "celebamask", False, 4, []),
    ("style model, 8-aligned first convolutions", "faceregen", "celebamask", False, 4,
     ["trainer.align_channels=true"]),
    ("style model, layout-keeping instance norm", "faceregen", "celebamask", False, 4,
     ["trainer.layout_keeping_norm=true"]),
    ("style model, both", "faceregen", "celebamask", False, 4,
     ["trainer.align_channels=true", "trainer.layout_keeping_norm=true"]),
    ("baseline, both", "faceregen", "pix2pixhd_baseline", False, 4,
     ["trainer.align_channels=true", "trainer.layout_keeping_norm=true"]),
    ("style model, compiled, WGAN-GP every step", "faceregen", "celebamask", True, 4,
     ["loss.gp_every=1"]),
    ("style model, compiled, R1 every 16th", "faceregen", "celebamask", True, 4,
     ["loss.gp_mode=r1", "loss.gp_every=16"]),
    ("style model, compiled, eager penalty", "eager-penalty", "celebamask", True, 4, []),
    ("style model, compiled, WGAN-GP every step, eager penalty", "eager-penalty", "celebamask",
     True, 4, ["loss.gp_every=1"]),
    ("style model, no label skips", "faceregen", "celebamask", False, 4,
     ["model.generator.label_skips=false"]),
    ("style model, autograd's penalty", "autograd-penalty", "celebamask", False, 4, []),
    ("style model, explicit penalty", "explicit-penalty", "celebamask", False, 4, []),
    ("style model, WGAN-GP every step, explicit penalty", "explicit-penalty", "celebamask",
     False, 4, ["loss.gp_every=1"]),
    ("style model, compiled, reduce-overhead", "reduce-overhead", "celebamask", True, 4, []),
    ("style model, WGAN-GP every step, autograd's penalty", "autograd-penalty", "celebamask",
     False, 4, ["loss.gp_every=1"]),
    ("style model, compiled, no label skips", "faceregen", "celebamask", True, 4,
     ["model.generator.label_skips=false"]),
    ("style model, compiled, func.grad penalty", "func-grad-penalty", "celebamask", True, 4, []),
    ("style model, compiled, WGAN-GP every step, func.grad penalty", "func-grad-penalty",
     "celebamask", True, 4, ["loss.gp_every=1"]),
)
# --suite tiny: the same rows on the CPU at a test size, batch 16 read as 4.
TINY_SUITE_OVERRIDES = ["model/size=tiny", "data.size=32", "model.generator.ngf=8",
                        "model.generator.n_downsample=2", "model.discriminator.num_D=1"]


def run_suite(args: argparse.Namespace) -> dict:
    """Every SUITE row in one process on one device, with the reference step's img/s as the
    yardstick; returns the rows and prints a markdown table."""
    gpu = args.suite == "gpu"
    device = torch.device(args.device if gpu else "cpu")
    precision = args.precision if gpu else "32"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = bf16_peak_tflops(name)
    rows = []
    reference = None
    variants = VARIANT_ROWS if args.variants else ()
    graphs = GRAPH_ROWS if device.type == "cuda" and not args.no_graphs else ()
    rows_in_order = [*SUITE, *variants, *graphs]  # eager first; compiling takes longest
    suite = ([row for row in rows_in_order if not row[3]]
             + [row for row in rows_in_order if row[3]])
    if args.rows:  # the rows named, eager before compiled, each in the order of the words
        def rank(row) -> int | None:
            name = f"{row[0]}, batch {row[4]}".lower()
            return next((i for i, word in enumerate(args.rows) if word.lower() in name), None)

        chosen = sorted((row for row in suite[1:] if rank(row) is not None),
                        key=lambda row: (row[3], rank(row)))
        suite = [suite[0], *chosen]
    for label, step_kind, experiment, compiled, batch, row_overrides in suite:
        if (compiled and args.eager_only) or (args.batch and batch != args.batch):
            continue
        overrides = [f"+experiment={experiment}", *([] if gpu else TINY_SUITE_OVERRIDES),
                     *args.overrides, *row_overrides]
        batch = batch if gpu else {4: 2, 16: 4}[batch]
        with initialize_config_module(version_base="1.3", config_module="faceregen.configs"):
            cfg = compose(config_name="train", overrides=[
                "loss.vgg.weights=random", f"data.batch_size={batch}", *overrides])
        profile = (args.profile and label in ("style model", "style model, compiled")
                   and batch == (4 if gpu else 2))
        identity = {"row": label, "batch": batch, "experiment": experiment,
                    "compiled": compiled, "overrides": row_overrides}
        try:
            with concatenated_discriminator_pass(step_kind == "one-pass"):
                result = bench(cfg, device, precision, gpu and args.channels_last, args.steps,
                               args.warmup, "reference" if step_kind == "reference"
                               else "faceregen", compiled, phases=False, profile=profile,
                               cuda_graph=step_kind == "graphed",
                               compiled_penalty={"eager-penalty": "eager",
                                                 "func-grad-penalty": "func.grad"}.get(
                                                     step_kind, "explicit"),
                               eager_penalty={"autograd-penalty": "autograd",
                                              "explicit-penalty": "explicit"}.get(
                                                  step_kind, "default"),
                               compile_mode=("reduce-overhead" if step_kind == "reduce-overhead"
                                             else None))
        except Exception as exc:  # one failed row must not cost the rest of a GPU run
            if reference is None:
                raise
            row = {**identity, "error": f"{type(exc).__name__}: "
                                        f"{str(exc).splitlines()[0] if str(exc) else ''}"}
        else:
            reference = reference or result["img_per_s"]
            row = {**identity,
                   "penalty": (f"{cfg.loss.gp_mode} every {cfg.loss.gp_every}"
                               if cfg.loss.lambda_gp > 0 else "none"), **result,
                   "vs_reference": result["img_per_s"] / reference,
                   "share_of_bf16_peak": (result["achieved_gflop_per_s"] / 1e3 / peak if peak
                                          else None)}
        rows.append(row)
        print(suite_table([row], name, precision, peak, header=not rows[:-1]), file=sys.stderr,
              flush=True)
        if "profile" in row:
            print(f"\n{row['row']}, batch {row['batch']}:\n{profile_table(row['profile'])}\n",
                  file=sys.stderr, flush=True)
        if args.out is not None:  # so far, in case the run is cut short
            emit_file({"partial": True, "device_name": name, "rows": rows}, args.out)
        release_row(device)
    print("\n" + suite_table(rows, name, precision, peak), file=sys.stderr)
    return {"device_name": name, "bf16_peak_tflops": peak, "rows": rows}


def release_row(device: torch.device) -> None:
    """Drop a row's compiled code, graphs and cached blocks before the next row: its networks
    sit in reference cycles (the step closures), so collect them first."""
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@contextmanager
def concatenated_discriminator_pass(enabled: bool):
    """The step with the discriminator run once over fakes and reals concatenated, as before
    the two-pass form; for an A/B on one machine (the gradients are the same)."""
    if not enabled:
        yield
        return
    from faceregen.train import step as step_module

    def discriminate_concatenated(discriminator, label_onehot, fake, real):
        n = fake.shape[0]
        preds = discriminator(torch.cat([torch.cat([label_onehot, fake], 1),
                                         torch.cat([label_onehot, real], 1)], 0))
        return ([[f[:n] for f in scale] for scale in preds],
                [[f[n:] for f in scale] for scale in preds])

    two_pass = step_module.discriminate
    step_module.discriminate = discriminate_concatenated
    try:
        yield
    finally:
        step_module.discriminate = two_pass


def suite_table(rows: list[dict], device_name: str, precision: str, peak: float | None,
                header: bool = True) -> str:
    lines = [f"{device_name}, precision {precision}, peak "
             f"{f'{peak:.0f} TFLOP/s dense bf16' if peak else 'unknown'}", "",
             "| step | batch | penalty | img/s | x reference | GFLOP/step | TFLOP/s | "
             "% of bf16 peak |", "|---|---|---|---|---|---|---|---|"] if header else []
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['row']} | {row['batch']} | failed: {row['error']} | | | | | |")
            continue
        share = row["share_of_bf16_peak"]
        lines.append(
            f"| {row['row']} | {row['batch']} | {row['penalty']} | {row['img_per_s']:.1f} | "
            f"{row['vs_reference']:.2f} | {row['gflop_per_step']:.0f} | "
            f"{row['achieved_gflop_per_s'] / 1e3:.1f} | "
            f"{f'{100 * share:.1f}' if share is not None else '-'} |")
    return "\n".join(lines)


def profile_table(profile: dict) -> str:
    """The profile_steps() result as markdown: time by class, then the convolutions' roofline."""
    lines = [f"step {profile['step_ms']:.2f} ms", "", "| class | ms/step | share | calls/step |",
             "|---|---|---|---|"]
    for name, entry in profile["classes"].items():
        lines.append(f"| {name} | {entry['ms_per_step']:.2f} | {100 * entry['share']:.1f}% | "
                     f"{entry['calls_per_step']:.0f} |")
    host = profile["host_ops"]
    lines += ["", f"host-dispatched aten ops per step: {host['outside_compiled_per_step']:.0f} "
              f"outside compiled code, {host['inside_compiled_per_step']:.0f} inside; most "
              "frequent outside: " + ", ".join(
                  f"{name.removeprefix('aten::')} {count:.0f}"
                  for name, count in host["most_frequent_outside"].items())]
    lines += ["", "| convolutions | GFLOP/step | ms/step | TFLOP/s | % of bf16 peak |",
              "|---|---|---|---|---|"]
    for name, entry in profile["roofline"].items():
        share = entry["share_of_bf16_peak"]
        lines.append(f"| {name} | {entry['gflop_per_step']:.0f} | {entry['ms_per_step']:.2f} | "
                     f"{entry['tflops']:.1f} | "
                     f"{f'{100 * share:.1f}%' if share is not None else '-'} |")
    return "\n".join(lines)


def trace_trainer(cfg: DictConfig, steps: int, warmup: int) -> dict:
    """The real trainer's loop, step by step: time waiting for the loader against time in the
    step (synchronised), to tell a slow loader from a slow step and to find periodic stalls."""
    import statistics
    import tempfile

    from faceregen.train.trainer import Trainer

    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, Path(run_dir))
        try:
            waits, computes = [], []
            for i in range(warmup + steps):
                start = time.perf_counter()
                batch = next(trainer.batches)
                fetched = time.perf_counter()
                trainer.train_step(batch)
                trainer.step += 1
                synchronize(trainer.device)
                if i >= warmup:
                    waits.append(fetched - start)
                    computes.append(time.perf_counter() - fetched)
        finally:
            trainer.close()
    totals = [w + c for w, c in zip(waits, computes)]
    median = statistics.median(totals)
    slow = [{"step": warmup + i, "total_ms": 1e3 * t, "loader_wait_ms": 1e3 * waits[i]}
            for i, t in enumerate(totals) if t > 1.5 * median]

    def summary(values: list[float]) -> dict:
        ordered = sorted(values)
        return {"median_ms": 1e3 * statistics.median(values),
                "p90_ms": 1e3 * ordered[int(0.9 * (len(ordered) - 1))],
                "max_ms": 1e3 * ordered[-1]}

    return {"img_per_s": cfg.data.batch_size * steps / sum(totals),
            "loader_wait": summary(waits), "step": summary(computes),
            "batches_per_epoch": trainer.batches.batches_per_epoch,
            "slow_steps": slow[:40], "slow_step_count": len(slow)}


def bench_penalty(cfg: DictConfig, device: torch.device, channels_last: bool, steps: int,
                  warmup: int, profile: bool = False, compile: bool = False) -> dict:
    """The gradient penalty alone on the configured discriminator and size, in float32 as the
    step runs it: each form's time for the penalty and its backward into the discriminator,
    and the convolutions that backward (the second differentiation) runs, by kind;
    ``profile`` adds each form's kernel time by class (:func:`profile_steps`). ``compile`` adds
    the compiled forms (:data:`COMPILED_PENALTIES`), compiled during the warm-up."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Census(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.counts: dict[str, int] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            packet = func.overloadpacket
            if packet in (torch.ops.aten.convolution, torch.ops.aten.convolution_backward):
                kind = "backward" if packet is torch.ops.aten.convolution_backward else (
                    "forward, dilated" if any(d > 1 for d in args[5]) else "forward")
                layouts = {"channels_last" if t.is_contiguous(memory_format=torch.channels_last)
                           and not t.is_contiguous() else "contiguous or other"
                           for t in args[:2] if t.dim() == 4 and t.shape[2] * t.shape[3] > 1}
                for name in (kind, *(f"{kind}, {layout} data" for layout in sorted(layouts))):
                    self.counts[name] = self.counts.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    discriminator = build_networks(cfg.model).discriminator.to(device, memory_format=fmt)
    b, s, c = cfg.data.batch_size, cfg.data.size, cfg.model.generator.label_classes
    label = torch.zeros(b, c, s, s, device=device).scatter_(
        1, torch.randint(0, c, (b, 1, s, s), device=device), 1.0).contiguous(memory_format=fmt)
    real, fake = ((torch.rand(b, 3, s, s, device=device) * 2 - 1).contiguous(memory_format=fmt)
                  for _ in range(2))
    loss = cfg.loss
    result = {}
    forms = dict(EAGER_PENALTIES)
    if compile:
        forms.update({f"{name}, compiled": compile_for_shared_pass(form)
                      for name, form in COMPILED_PENALTIES.items()})
    for name, image_penalty in forms.items():
        def penalty(image_penalty=image_penalty):
            return gradient_penalty(discriminator, real, fake, label, mode=loss.gp_mode,
                                    reduction=loss.gp_reduction, image_penalty=image_penalty)

        for _ in range(warmup):
            penalty().backward()
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            penalty().backward()
        synchronize(device)
        elapsed = time.perf_counter() - start
        value = penalty()
        with Census() as census:
            value.backward()
        result[name] = {"ms": elapsed / steps * 1e3,
                        "second_differentiation_convolutions": census.counts}
        if profile:
            with FlopCounterMode(display=False) as flop_counter:
                penalty().backward()
            result[name]["profile"] = profile_steps(lambda i: penalty().backward(), steps,
                                                    device, flop_counter.get_flop_counts(), 1)
        discriminator.zero_grad(set_to_none=True)
    return result


def bench_regen(cfg: DictConfig, device: torch.device, steps: int, warmup: int) -> dict:
    """Latency of `faceregen regen` on one face: letterbox, encode, generate, restore."""
    import numpy as np

    from faceregen.regen import Regenerator, regenerate_arrays

    nets = build_networks(cfg.model)
    regenerator = Regenerator(
        nets.generator.to(device).eval(),
        nets.style_encoder.to(device).eval() if nets.style_encoder is not None else None,
        cfg, 0, device)
    rng = np.random.default_rng(0)
    s = cfg.data.size
    mask = rng.integers(0, cfg.model.generator.label_classes, (s, s), dtype=np.uint8)
    photo = rng.integers(0, 256, (s, s, 3), dtype=np.uint8)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        regenerate_arrays(regenerator, mask, photo, mask)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return {"latency_s_per_image": sum(times) / len(times), "min_s": min(times)}


def multipart_body(files: dict[str, bytes], boundary: str) -> bytes:
    """A multipart/form-data body of PNG file fields, as a browser's FormData sends it."""
    parts = []
    for name, data in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{name}.png"\r\nContent-Type: image/png\r\n\r\n'.encode())
        parts += [data, b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)


def bench_studio(cfg: DictConfig, device: torch.device, steps: int, warmup: int,
                 exact: bool = False, precision: str = "32") -> dict:
    """HTTP round trip of the studio's POST /api/regen on a real server on 127.0.0.1.

    The server runs in a thread of this process; the client sends what the page sends after
    each stroke (the index PNG mask, the reference photo and its index PNG mask) on one
    keep-alive connection and reads the whole PNG answer. One synthetic face at the model
    size stands in for the data. The networks are laid out as `faceregen studio` lays them
    out: channels_last on the CPU unless ``exact``; ``--precision bf16`` is `studio --bf16`.
    """
    import http.client
    import io
    import statistics

    import numpy as np
    from PIL import Image

    from faceregen.data.synth import synthesize_face
    from faceregen.regen import Regenerator
    from faceregen.regen.model import use_channels_last
    from faceregen.studio.cli import background_server
    from faceregen.studio.gallery import Gallery
    from faceregen.studio.service import Studio

    nets = build_networks(cfg.model)
    regenerator = Regenerator(
        nets.generator.to(device).eval(),
        nets.style_encoder.to(device).eval() if nets.style_encoder is not None else None,
        cfg, 0, device)
    if device.type == "cpu" and not exact:
        use_channels_last(regenerator)
    bf16 = precision == "bf16"
    studio = Studio(regenerator, "random-weights", gallery=Gallery({}, "none"), bf16=bf16)
    s = cfg.data.size
    photo, label, _, _ = synthesize_face(0, seed=0, size=s)
    label = Image.fromarray(label).resize((s, s), Image.Resampling.NEAREST)

    def png(image: Image.Image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    files = {"mask": png(label), "ref": png(photo), "ref_mask": png(label)}
    boundary = "faceregen-bench"
    body = multipart_body(files, boundary)
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    times, server_times = [], []
    with background_server(studio) as url:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=600)
        for i in range(warmup + steps):
            start = time.perf_counter()
            connection.request("POST", "/api/regen", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            elapsed = time.perf_counter() - start
            if response.status != 200:
                raise SystemExit(f"POST /api/regen answered {response.status}: {answer[:300]}")
            if i >= warmup:
                times.append(elapsed)
                server_times.append(float(response.getheader("X-Regen-Seconds")))
        connection.close()
    face = np.asarray(Image.open(io.BytesIO(answer)))
    deciles = statistics.quantiles(times, n=10, method="inclusive")
    return {"requests": steps, "median_s": statistics.median(times), "p90_s": deciles[-1],
            "min_s": min(times), "max_s": max(times),
            "server_median_s": statistics.median(server_times),
            "upload_bytes": len(body), "answer_shape": list(face.shape),
            "layout": "plain (exact)" if exact or device.type != "cpu" else "channels_last"}


def bench_data(cfg: DictConfig, workers: int, steps: int, warmup: int) -> dict:
    """Batches per second from the trainer's loader: decode, flip, reference pairing, collate."""
    from faceregen.data import ensure_dataset
    from faceregen.train.batches import EpochBatches, training_set
    from faceregen.train.distributed import DistInfo

    dcfg = cfg.data
    dataset = training_set(ensure_dataset(dcfg), dcfg, seed=0)
    batches = EpochBatches(dataset, dcfg.batch_size, workers, seed=0, info=DistInfo(),
                           pin_memory=False)
    for _ in range(warmup):  # worker start-up and the first batches in flight
        next(batches)
    start = time.perf_counter()
    for _ in range(steps):
        next(batches)
    seconds = time.perf_counter() - start
    return {"workers": workers, "train_images": len(dataset),
            "img_per_s": steps * dcfg.batch_size / seconds,
            "batch_s": seconds / steps}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="train",
                        choices=["train", "regen", "studio", "data", "trainer", "penalty"])
    parser.add_argument("--suite", choices=["gpu", "tiny"], default=None,
                        help="every SUITE row in one run: gpu (512 px on --device) or tiny "
                             "(the same rows on the CPU at a test size); prints a table")
    parser.add_argument("--eager-only", action="store_true", help="--suite without the "
                        "compiled rows")
    parser.add_argument("--no-graphs", action="store_true", help="--suite without the CUDA "
                        "graph rows")
    parser.add_argument("--rows", nargs="+", default=None, metavar="WORD",
                        help="--suite: the reference row and the rows whose name (with "
                             "', batch N') contains one of these words, eager rows first, "
                             "each in the order of the words")
    parser.add_argument("--variants", action="store_true", help="--suite with VARIANT_ROWS: "
                        "each penalty schedule, the one-pass discriminator, the exact layer "
                        "forms, the penalty left eager in a compiled step, no label skips")
    parser.add_argument("--profile", action="store_true",
                        help="add a kernel-time profile by class (in --suite: the style "
                             "model at batch 4, eager and compiled)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--model", default="style_pix2pixhd",
                        choices=["style_pix2pixhd", "pix2pixhd"])
    parser.add_argument("--size", type=int, default=None, help="default: data.size")
    parser.add_argument("--batch", type=int, default=None, help="default: data.batch_size")
    parser.add_argument("--ngf", type=int, default=None)
    parser.add_argument("--n-downsample", type=int, default=None)
    parser.add_argument("--num-d", type=int, default=None)
    parser.add_argument("--no-gp", action="store_true", help="lambda_gp=0 (pix2pixHD had none)")
    parser.add_argument("--step", default="faceregen", choices=["faceregen", "reference"],
                        help="the trainer's step, or the pix2pixHD reference code's")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32", choices=["32", "bf16", "16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile as trainer.compile=true (warm-up steps compile); "
                        "with --task penalty, add the compiled penalty forms")
    parser.add_argument("--compiled-penalty", default="explicit",
                        choices=[*COMPILED_PENALTIES, "eager"],
                        help="with --compile, the penalty's form: explicit (trainer.compile's), "
                             "func.grad (its form before) or eager (left uncompiled)")
    parser.add_argument("--eager-penalty", default="default", choices=list(EAGER_PENALTIES),
                        help="the penalty's form in an eager step: default (the trainer's), "
                             "explicit (the one trainer.compile compiles) or autograd (autograd's "
                             "own double backward, the form before)")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="CUDA graphs as trainer.cuda_graph=true (CUDA only)")
    parser.add_argument("--exact", action="store_true",
                        help="--task studio: the plain layout (`faceregen studio --exact`)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None,
                        help="--task data: loader processes (default: data.num_workers)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the train config")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.suite:
        if args.suite == "gpu" and device.type != "cuda":
            parser.error("--suite gpu needs --device cuda (--suite tiny runs on the CPU)")
        report = {"task": "suite", "suite": args.suite, "torch": torch.__version__,
                  "steps": args.steps, "warmup": args.warmup, "overrides": args.overrides,
                  **run_suite(args)}
        emit(report, args.out)
        return
    cfg = compose_config(args)
    if args.task == "trainer":
        device = resolve_device(cfg.trainer.device)
    if args.task == "regen":
        with torch.inference_mode():
            result = bench_regen(cfg, device, args.steps, args.warmup)
    elif args.task == "studio":
        if args.precision == "16":
            parser.error("--task studio: --precision 32 or bf16 (the studio's --bf16)")
        result = bench_studio(cfg, device, args.steps, args.warmup, args.exact, args.precision)
    elif args.task == "trainer":
        result = trace_trainer(cfg, args.steps, args.warmup)
    elif args.task == "penalty":
        result = bench_penalty(cfg, device, args.channels_last, args.steps, args.warmup,
                               args.profile, args.compile)
        for name, form in result.items():
            if "profile" in form:
                print(f"\n{name} penalty:\n{profile_table(form['profile'])}", file=sys.stderr)
    elif args.task == "data":
        workers = cfg.data.num_workers if args.workers is None else args.workers
        result = bench_data(cfg, workers, args.steps, args.warmup)
    else:
        if args.step == "reference" and cfg.loss.lambda_gp > 0:
            parser.error("--step reference has no gradient penalty (pix2pixHD had none): "
                         "add --no-gp")
        if args.step == "reference" and (args.compile or args.cuda_graph):
            parser.error("--compile and --cuda-graph apply to the trainer's step, not "
                         "--step reference")
        if args.cuda_graph and device.type != "cuda":
            parser.error("--cuda-graph needs --device cuda")
        if args.compile and args.compiled_penalty != "eager" and args.eager_penalty != "default":
            parser.error("--eager-penalty names the form of an uncompiled penalty: with "
                         "--compile add --compiled-penalty eager")
        result = bench(cfg, device, args.precision, args.channels_last, args.steps,
                       args.warmup, args.step, args.compile, profile=args.profile,
                       cuda_graph=args.cuda_graph, eager_penalty=args.eager_penalty,
                       compiled_penalty=args.compiled_penalty)
        if args.profile:
            print(profile_table(result["profile"]), file=sys.stderr)
    report = {
        "task": args.task,
        "config": {"step": args.step, "model": args.model, "size": cfg.data.size,
                   "batch": cfg.data.batch_size,
                   "ngf": cfg.model.generator.ngf,
                   "n_downsample": cfg.model.generator.n_downsample,
                   "n_blocks": cfg.model.generator.n_blocks,
                   "num_D": cfg.model.discriminator.num_D,
                   "lambda_vgg": cfg.loss.lambda_vgg, "lambda_gp": cfg.loss.lambda_gp,
                   "precision": args.precision, "channels_last": args.channels_last,
                   "compile": args.compile, "cuda_graph": args.cuda_graph,
                   "eager_penalty": args.eager_penalty,
                   "compiled_penalty": args.compiled_penalty if args.compile else None,
                   "overrides": args.overrides},
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"cpu ({torch.get_num_threads()} threads, {platform.machine()})"),
        "torch": torch.__version__,
        **{k: (round(v, 5) if isinstance(v, float) else v) for k, v in result.items()},
    }
    emit(report, args.out)


def emit(report: dict, out: Path | None) -> None:
    """The report as JSON on stdout and, with ``out``, in that file."""
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    if out is not None:
        emit_file(report, out)


def emit_file(report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
