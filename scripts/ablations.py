"""Train named variants on the synthetic set with one budget and seeds, score each, print a table.

    python scripts/ablations.py --steps 700 --seeds 0 baseline default adv-sum vgg-raw
    python scripts/ablations.py --steps 5000 --seeds 0,1 --jobs 6 --device cuda baseline default
    python scripts/ablations.py --list
    python scripts/ablations.py --steps 700 --seeds 0,1 --table-only --detail baseline default

Each variant is a set of Hydra overrides of `faceregen train` (VARIANTS below); ``baseline`` is
the pix2pixHD baseline (+experiment=synthetic_baseline) and every other variant is the style
model; ``a+b`` combines variants (``baseline+label-skips``: the baseline with label skips).
Every (variant, seed) trains in ``OUT/<variant>/seed<s>`` (resumed, so a rerun only finishes
what is missing) and is scored alone by `faceregen eval` (the ``model`` row of its
metrics.json); the table gives the mean over seeds and, with several seeds, the spread
(max - min). ``--detail`` adds the small face parts: their mask-swap IoU and the attributes
they decide, with the false alarms (predicted present, absent) among the errors; ``--colour``
the mask-swap colour error of each region, seed by seed. ``--jobs N``
trains N runs at once: on a GPU one small run leaves most of the device idle. Further
arguments after ``--`` go to every training run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REGIONAL_DECODER = ["model=style_regional", "model.generator.decoder_norm=adain",
                    "model.generator.decoder_norm_layers=all", "model.generator.label_skips=true"]
# name -> overrides of the style model's training (None: the baseline experiment).
VARIANTS: dict[str, list[str] | None] = {
    "baseline": None,
    "default": [],
    "adv-sum": ["loss.adv_scale_reduction=sum"],
    "vgg-raw": ["loss.vgg.input=raw"],
    "decoder-instance": ["model.generator.decoder_norm=instance"],
    "decoder-layer": ["model.generator.decoder_norm=layer"],
    "decoder-group": ["model.generator.decoder_norm=group"],
    "decoder-adain": ["model.generator.decoder_norm=adain"],
    "decoder-none": ["model.generator.decoder_norm=none"],
    # AdaIN at every upsampling norm (the default since 2026-11-27) or the first only (before)
    "decoder-adain-all": ["model.generator.decoder_norm_layers=all"],
    "decoder-adain-first": ["model.generator.decoder_norm_layers=first"],
    "no-mean2": ["model.generator.block_second_shift=false"],
    "label-skips": ["model.generator.label_skips=true"],
    "no-label-skips": ["model.generator.label_skips=false"],  # the default before 2026-11-27
    "skips-upsampling": ["model.generator.label_skip_convs=upsampling"],
    "skips-output": ["model.generator.label_skip_convs=output"],
    "gp-mean": ["loss.gp_reduction=mean"],
    "gp-r1": ["loss.gp_mode=r1"],
    "gp-off": ["loss.lambda_gp=0"],
    "gp-every-1": ["loss.gp_every=1"],
    "gp-every-16": ["loss.gp_every=16"],
    "r1-every-16": ["loss.gp_mode=r1", "loss.gp_every=16"],
    "sft-report": ["model.style_encoder.sft_mode=report"],
    "l1-2": ["loss.lambda_l1=2"],
    "l1-20": ["loss.lambda_l1=20"],
    "l1-class-0": ["loss.lambda_l1_class=0"],  # the default before the class-balanced L1
    "l1-class-5": ["loss.lambda_l1_class=5"],
    "l1-class-10": ["loss.lambda_l1_class=10"],  # the offline default's since it was measured
    "l1-class-20": ["loss.lambda_l1_class=20"],
    "vgg-off": ["loss.lambda_vgg=0"],
    "vgg-20": ["loss.lambda_vgg=20"],
    "feat-20": ["loss.lambda_feat=20"],
    "lr-5e-4": ["optim.generator.lr=5e-4", "optim.discriminator.lr=5e-4"],
    "lr-3e-4": ["optim.generator.lr=3e-4", "optim.discriminator.lr=3e-4"],
    "lr-2e-4": ["optim.generator.lr=2e-4", "optim.discriminator.lr=2e-4"],
    "betas-0-0.9": ["optim.generator.betas=[0,0.9]", "optim.discriminator.betas=[0,0.9]"],
    # SPADE's two time-scale rule (D at 4x G's rate, betas 0 and 0.9), about the offline rate
    "ttur": ["optim.generator.lr=5e-4", "optim.discriminator.lr=2e-3",
             "optim.generator.betas=[0,0.9]", "optim.discriminator.betas=[0,0.9]"],
    # the regional model (model=style_regional): as first measured (the report's instance-norm
    # decoder, no label skips), with the global model's decoder and skips, and with those and
    # every decoder AdaIN taking each pixel's class row (decoder_styles=regional, its default)
    "regional-before": ["model=style_regional", "model.generator.decoder_norm=instance",
                        "model.generator.label_skips=false",
                        "model.generator.decoder_styles=global"],
    "regional-global-decoder": REGIONAL_DECODER + ["model.generator.decoder_styles=global"],
    "regional-decoder": REGIONAL_DECODER + ["model.generator.decoder_styles=regional"],
    # the regional model's training augmentation (data.region_recolor), off, or on for any model
    "no-region-recolor": ["data.region_recolor=0"],
    "region-recolor": ["data.region_recolor=0.5"],
    "style-lr-0.1": ["optim.style_encoder_lr_scale=0.1"],
    "style-lr-0.01": ["optim.style_encoder_lr_scale=0.01"],
}
# (header, protocol, metric key, percent)
COLUMNS = (
    ("swap attr. (%)", "mask_swap", "attribute_accuracy", True),
    ("swap seg. (%)", "mask_swap", "segmentation_pixel_accuracy", True),
    ("swap mIoU (%)", "mask_swap", "segmentation_miou", True),
    ("swap colour err.", "mask_swap", "region_color_error", False),
    ("rec. attr. (%)", "reconstruction", "attribute_accuracy", True),
    ("rec. seg. (%)", "reconstruction", "segmentation_pixel_accuracy", True),
    ("rec. PSNR (dB)", "reconstruction", "psnr", False),
)

# --detail: the small parts' classes and the geometry attributes they decide (mask swap)
DETAIL_CLASSES = ("l_eye", "r_eye", "l_brow", "r_brow", "u_lip", "l_lip", "mouth", "nose", "eye_g")
DETAIL_ATTRIBUTES = ("Narrow_Eyes", "Arched_Eyebrows", "Bushy_Eyebrows", "Big_Lips", "Smiling",
                     "Eyeglasses")


def variant_overrides(name: str, extra: list[str]) -> list[str]:
    """Variants are names from VARIANTS, or ``name+name`` for several at once."""
    overrides: list[str] = []
    for part in name.split("+"):
        if part not in VARIANTS:
            raise SystemExit(f"error: unknown variant {part!r}; --list shows them")
        chosen = VARIANTS[part]
        overrides += ["+experiment=synthetic_baseline"] if chosen is None else chosen
    return overrides + extra


def run(command: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        handle.write(" ".join(command) + "\n")
        handle.flush()
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} failed with status {code}; see {log}")


def train_and_score(name: str, seed: int, args: argparse.Namespace) -> dict:
    run_dir = args.out / name / f"seed{seed}"
    faceregen = [sys.executable, "-m", "faceregen"]
    started = time.monotonic()
    run([*faceregen, "train", f"hydra.run.dir={run_dir}", f"trainer.max_steps={args.steps}",
         "trainer.max_minutes=null", "trainer.resume=auto", f"trainer.seed={seed}",
         f"trainer.device={args.device}", "logger.enabled=false",
         *variant_overrides(name, args.train_overrides)], run_dir / "run.log")
    minutes = (time.monotonic() - started) / 60
    if scored(name, seed, args.out) is None:
        run([*faceregen, "eval", f"ckpt={run_dir}/checkpoints/last.pt",
             f"hydra.run.dir={run_dir}/eval", f"device={args.device}"], run_dir / "run.log")
    return {**scored(name, seed, args.out), "train_minutes": minutes}


def evaluators_ready(name: str, args: argparse.Namespace) -> bool:
    """Whether the variant's prepared dataset and both its evaluators exist (paths as composed)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from faceregen.config import config_dir
    from faceregen.evaluation.evaluators import KINDS, default_evaluator_path

    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose(config_name="train",
                      overrides=variant_overrides(name, args.train_overrides))
    root = Path(OmegaConf.select(cfg, "data.root"))
    return (root / "manifest.csv").is_file() and all(
        default_evaluator_path(root, kind).is_file() for kind in KINDS)


def scored(name: str, seed: int, out: Path) -> dict | None:
    """The scores of a run that was trained and evaluated, else None."""
    metrics = out / name / f"seed{seed}" / "eval" / "metrics.json"
    if not metrics.is_file():
        return None
    result = json.loads(metrics.read_text())
    return {"variant": name, "seed": seed, "protocols": result["rows"]["model"]["protocols"]}


def summary_table(results: list[dict], names: list[str]) -> str:
    lines = ["| variant | seeds | " + " | ".join(h for h, *_ in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for name in names:
        rows = [r for r in results if r["variant"] == name]
        if not rows:
            continue
        cells = [name, ",".join(str(r["seed"]) for r in rows)]
        for _, protocol, key, percent in COLUMNS:
            values = [r["protocols"][protocol].get(key) for r in rows]
            values = [100 * v if percent else v for v in values if isinstance(v, (int, float))]
            if not values:
                cells.append("-")
                continue
            mean = sum(values) / len(values)
            spread = f" ±{(max(values) - min(values)) / 2:.2f}" if len(values) > 1 else ""
            cells.append(f"{mean:.2f}{spread}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def detail_table(results: list[dict], names: list[str]) -> str:
    """Means over seeds of the mask-swap IoU of DETAIL_CLASSES and the accuracy (false alarms
    among the test faces) of DETAIL_ATTRIBUTES."""
    header = [f"IoU {c}" for c in DETAIL_CLASSES] + [f"{a} (%)" for a in DETAIL_ATTRIBUTES]
    lines = ["| variant | seeds | " + " | ".join(header) + " |",
             "|---|---|" + "---|" * len(header)]
    for name in names:
        swaps = [r["protocols"]["mask_swap"] for r in results if r["variant"] == name]
        if not swaps:
            continue
        cells = [name, str(len(swaps))]
        for cls in DETAIL_CLASSES:
            values = [s["per_class_iou"].get(cls) for s in swaps]
            values = [v for v in values if isinstance(v, (int, float))]
            cells.append(f"{sum(values) / len(values):.2f}" if values else "-")
        for attr in DETAIL_ATTRIBUTES:
            accuracy = [s["per_attribute_accuracy"].get(attr) for s in swaps]
            if any(a is None for a in accuracy):
                cells.append("-")
                continue
            counts = [s.get("per_attribute_counts", {}).get(attr) for s in swaps]
            alarms = ("/".join(str(c["fp"]) for c in counts) if all(counts) else "?")
            cells.append(f"{100 * sum(accuracy) / len(accuracy):.1f} (FP {alarms})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def colour_table(results: list[dict], names: list[str]) -> str:
    """The mask-swap colour error (CIELAB) per region: the mean over seeds, then each seed's
    value, since one region (the background, say) can hold most of the spread between seeds."""
    regions: list[str] = []
    for r in results:
        for region in r["protocols"]["mask_swap"].get("region_color_error_per_region") or {}:
            if region not in regions:
                regions.append(region)
    lines = ["| variant | seeds | " + " | ".join(regions) + " | mean |",
             "|---|---|" + "---|" * (len(regions) + 1)]
    for name in names:
        rows = [r for r in results if r["variant"] == name]
        if not rows:
            continue
        cells = [name, ",".join(str(r["seed"]) for r in rows)]
        for region in regions:
            values = [(r["protocols"]["mask_swap"].get("region_color_error_per_region") or {})
                      .get(region) for r in rows]
            values = [v for v in values if isinstance(v, (int, float))]
            seeds = ", ".join(f"{v:.2f}" for v in values)
            cells.append(f"{sum(values) / len(values):.2f} ({seeds})" if values else "-")
        means = [r["protocols"]["mask_swap"].get("region_color_error") for r in rows]
        means = [v for v in means if isinstance(v, (int, float))]
        cells.append(f"{sum(means) / len(means):.2f}" if means else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*")
    parser.add_argument("--steps", type=int, default=700)
    parser.add_argument("--seeds", type=lambda text: [int(v) for v in text.split(",")],
                        default=[0], help="comma-separated, e.g. 0,1")
    parser.add_argument("--out", type=Path, default=Path("checkpoints/ablations"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1, help="training runs at once")
    parser.add_argument("--list", action="store_true", help="print the variants and exit")
    parser.add_argument("--table-only", action="store_true",
                        help="train nothing: the table of the runs already scored")
    parser.add_argument("--detail", action="store_true",
                        help="also the small parts' IoU and attributes (mask swap)")
    parser.add_argument("--colour", action="store_true",
                        help="also the colour error of each region, seed by seed (mask swap)")
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.train_overrides = extra
    if args.list or not args.variants:
        for name, overrides in VARIANTS.items():
            print(f"{name:14s} {' '.join(overrides) if overrides is not None else '(baseline)'}")
        return
    for name in args.variants:
        variant_overrides(name, [])
    jobs = [(name, seed) for seed in args.seeds for name in args.variants]
    env_threads = os.environ.get("OMP_NUM_THREADS")
    if args.table_only:
        results = [r for r in (scored(name, seed, args.out) for name, seed in jobs) if r]
        print(summary_table(results, args.variants))
        if args.detail:
            print(detail_table(results, args.variants))
        if args.colour:
            print(colour_table(results, args.variants))
        return
    # The first run makes the dataset and the first eval trains the evaluators: unless they
    # are there already, do that one alone so that parallel runs do not race to write them.
    results = [] if evaluators_ready(jobs[0][0], args) else [train_and_score(*jobs[0], args)]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results += list(pool.map(lambda job: train_and_score(*job, args), jobs[len(results):]))
    table = summary_table(results, args.variants)
    header = (f"{args.steps} steps, seeds {' '.join(map(str, args.seeds))}, device "
              f"{args.device}, {args.jobs} run(s) at once"
              + (f", OMP_NUM_THREADS={env_threads}" if env_threads else ""))
    if args.detail:
        table += "\n" + detail_table(results, args.variants)
    if args.colour:
        table += "\n" + colour_table(results, args.variants)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"table-{args.steps}.md").write_text(header + "\n\n" + table)
    (args.out / f"results-{args.steps}.json").write_text(json.dumps(results, indent=1))
    print(header + "\n\n" + table)


if __name__ == "__main__":
    main()
