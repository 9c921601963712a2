"""Where the YAML configs live, and typed schemas for the config groups.

The schemas are registered in Hydra's ConfigStore (``<group>_schema``, pulled in by each
option's defaults list) so that a misspelt key or a value of the wrong type
(``trainer.max_steps=abc``) fails at composition with Hydra's own clear message.

One source per value: a field with a default here is not repeated in the YAML files; a field
that every option sets is required (``???``). The ``model`` and ``optim`` nodes are
``_target_`` nodes for ``hydra.utils.instantiate`` whose fields are the constructors'
arguments; the networks' constructors have no defaults of their own for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from faceregen.labels import LABEL_NAMES, NUM_CLASSES


def config_dir() -> Path:
    """The installed ``faceregen.configs`` folder (top-level ``configs/`` in a checkout)."""
    return Path(str(resources.files("faceregen.configs")))


@dataclass
class PathsConfig:
    data: str = MISSING
    runs: str = MISSING


@dataclass
class DataConfig:
    name: str = MISSING
    raw_root: str = MISSING
    root: str = MISSING
    size: int = MISSING
    split: str = "celeba"
    synthesize: bool = False
    # The synthetic set (data.synthesize): 2000 faces split 1604 / 184 / 212 by the mapping
    # file as CelebA is; photos at synth_size px, part masks at half that as in CelebAMask-HQ.
    synth_num: int = 2000
    synth_size: int = 128
    synth_seed: int = 0
    batch_size: int = MISSING
    num_workers: int = 2
    flip: bool = True
    crop: bool = False
    crop_scale: list[float] = field(default_factory=lambda: [0.8, 1.0])
    reference: str = "same"
    # Region recolouring (model=style_regional sets 0.5): each region of region_recolor_regions
    # is, with this probability, recoloured in the photo and its reference alike to the colour
    # statistics of the same region of another training face. A per-region style is then the only
    # source of that region's colour, so the model learns to take it from the region's own code,
    # which is what mixing references per region asks at test time; the target stays consistent
    # with the reference (swapping a region's code without it would teach the model to ignore
    # the code). 0 turns it off.
    region_recolor: float = 0.0
    region_recolor_regions: list[str] = field(default_factory=lambda: ["hair", "skin", "cloth"])


@dataclass
class GeneratorConfig:
    """faceregen.models.networks.generator.GlobalGenerator; ``use_style`` is not a key:
    build_networks passes it, true exactly when ``model.style_encoder`` is set."""

    _target_: str = "faceregen.models.networks.generator.GlobalGenerator"
    label_classes: int = NUM_CLASSES
    out_channels: int = 3
    ngf: int = MISSING
    n_downsample: int = MISSING
    n_blocks: int = MISSING
    upsample: str = MISSING
    # The decoder's first normalisation: instance (pix2pixHD) | layer | group | adain | none.
    decoder_norm: str = "instance"
    # The residual blocks' second AdaIN mean (the report's); false drops it from the style.
    block_second_shift: bool = True
    # The label map fed again to every decoder convolution (not in pix2pixHD or the report).
    label_skips: bool = False
    # Which decoder convolutions the skips feed: all | upsampling | output.
    label_skip_convs: str = "all"
    # Which upsampling norms decoder_norm replaces: first | all (the others stay instance).
    decoder_norm_layers: str = "first"
    # The regional generator's decoder AdaINs: global (row 0) | regional (each pixel its class's).
    decoder_styles: str = "global"


@dataclass
class StyleEncoderConfig:
    """faceregen.models.networks.encoder.StyleEncoder, partial: build_networks adds the
    generator's ``num_style_params``."""

    _target_: str = "faceregen.models.networks.encoder.StyleEncoder"
    _partial_: bool = True
    label_classes: int = NUM_CLASSES
    image_channels: int = 3
    sft_mode: str = MISSING
    second_conv_skip: bool = MISSING


@dataclass
class DiscriminatorConfig:
    _target_: str = "faceregen.models.networks.discriminator.MultiScaleDiscriminator"
    label_classes: int = NUM_CLASSES
    image_channels: int = 3
    ndf: int = MISSING
    n_layers: int = MISSING
    num_D: int = MISSING


@dataclass
class ModelConfig:
    """The three networks; ``style_encoder`` null is the pix2pixHD baseline."""

    name: str = MISSING
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    style_encoder: Optional[StyleEncoderConfig] = MISSING
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)


@dataclass
class VGGConfig:
    weights: str = MISSING
    path: Optional[str] = None  # a torchvision vgg19 state_dict; else the hub cache, else download
    # imagenet: [-1, 1] -> [0, 1] -> ImageNet mean/std (about 2x the term of raw); raw: [-1, 1]
    # straight in, as pix2pixHD and SPADE do.
    input: str = "imagenet"


@dataclass
class LossConfig:
    gan_mode: str = MISSING
    # How the adversarial loss (G and D) combines the discriminator's scales: mean (SPADE) or
    # sum (pix2pixHD; num_D times the adversarial weight against feature matching and VGG).
    adv_scale_reduction: str = "mean"
    lambda_feat: float = MISSING
    lambda_vgg: float = MISSING
    lambda_l1: float = MISSING
    # A second pixel L1 that averages within each label class first, so that a dozen-pixel eye
    # counts as much as the background (losses/reconstruction.py).
    lambda_l1_class: float = 0.0
    lambda_gp: float = MISSING
    gp_mode: str = MISSING
    # What the penalty differentiates per sample and scale: the sum of the patch logits (the
    # report's; its strength grows with the patch count) or their mean (one average patch).
    gp_reduction: str = "sum"
    gp_every: int = MISSING
    vgg: VGGConfig = field(default_factory=VGGConfig)


@dataclass
class AdamConfig:
    """torch.optim.Adam, partial: the trainer adds the parameters."""

    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = MISSING
    betas: list[float] = MISSING
    fused: bool = MISSING


@dataclass
class OptimConfig:
    generator: AdamConfig = field(default_factory=AdamConfig)
    discriminator: AdamConfig = field(default_factory=AdamConfig)
    decay_start: float = MISSING
    # The style encoder's rate as a multiple of the generator's (StyleGAN slows its mapping
    # network the same way); 1 trains both at one rate, as the report does.
    style_encoder_lr_scale: float = 1.0


@dataclass
class TrainerConfig:
    max_steps: int = MISSING
    max_minutes: Optional[float] = None
    device: str = "auto"
    precision: str = "32"
    channels_last: bool = False
    # Exact run-time layer forms for GPUs (models/networks/layout.py, docs/speed.md): first
    # convolutions padded to 8-aligned input channels; instance norms that keep channels_last.
    align_channels: bool = False
    layout_keeping_norm: bool = False
    compile: bool = False
    # The step's forward and backward passes replayed as CUDA graphs (train/graphed.py).
    cuda_graph: bool = False
    cudnn_benchmark: bool = True
    deterministic: bool = False
    seed: int = 0
    ema_decay: float = 0.999
    log_every: int = 25
    sample_every: int = 250
    ckpt_every: int = 500
    keep_last: int = 3
    num_samples: int = 8
    resume: Optional[str] = None


# key -> (smallest allowed value, what it is): ranges the schema's types cannot express.
TRAIN_MINIMUMS = {
    "data.size": (1, "the image size"),
    "data.batch_size": (1, "images per step and process"),
    "data.num_workers": (0, "loader processes"),
    "data.region_recolor": (0, "the probability of recolouring a region"),
    "trainer.max_steps": (1, "training steps"),
    "trainer.log_every": (1, "steps between log lines"),
    "trainer.sample_every": (1, "steps between sample grids"),
    "trainer.ckpt_every": (1, "steps between checkpoints"),
    "trainer.keep_last": (1, "step checkpoints kept"),
    "trainer.num_samples": (1, "faces in a sample grid"),
    "loss.gp_every": (1, "steps between penalty applications"),
    "optim.style_encoder_lr_scale": (0, "the style encoder's rate over the generator's"),
}


def train_choices() -> dict[str, tuple[str, ...]]:
    """key -> the values it may take: string settings the schema's types cannot restrict."""
    from faceregen.losses import (
        GAN_MODES,
        GP_MODES,
        GP_REDUCTIONS,
        SCALE_REDUCTIONS,
        VGG_INPUTS,
    )
    from faceregen.models.networks.generator import (
        DECODER_NORM_LAYERS,
        DECODER_NORMS,
        DECODER_STYLES,
        LABEL_SKIP_CONVS,
        UPSAMPLE_MODES,
    )
    from faceregen.models.networks.normalization import SFTLayer

    return {"loss.gan_mode": GAN_MODES, "loss.adv_scale_reduction": SCALE_REDUCTIONS,
            "loss.gp_mode": GP_MODES, "loss.gp_reduction": GP_REDUCTIONS,
            "loss.vgg.input": VGG_INPUTS, "model.generator.upsample": UPSAMPLE_MODES,
            "model.generator.decoder_norm": DECODER_NORMS,
            "model.generator.decoder_norm_layers": DECODER_NORM_LAYERS,
            "model.generator.decoder_styles": DECODER_STYLES,
            "model.generator.label_skip_convs": LABEL_SKIP_CONVS,
            "model.style_encoder.sft_mode": SFTLayer.MODES}


def check_train_settings(cfg) -> None:
    """Refuse settings out of range before any work starts (one error naming the key)."""
    from omegaconf import OmegaConf

    from faceregen.errors import FaceregenError

    for key, choices in train_choices().items():
        value = OmegaConf.select(cfg, key)
        if value is not None and value not in choices:
            raise FaceregenError(f"{key}={value}: must be one of {', '.join(choices)}")
    for key, (minimum, meaning) in TRAIN_MINIMUMS.items():
        value = OmegaConf.select(cfg, key)
        if value is not None and value < minimum:
            raise FaceregenError(f"{key}={value}: must be at least {minimum} ({meaning})")
    max_minutes = OmegaConf.select(cfg, "trainer.max_minutes")
    if max_minutes is not None and max_minutes <= 0:
        raise FaceregenError(f"trainer.max_minutes={max_minutes}: must be positive, or null")
    if (OmegaConf.select(cfg, "data.region_recolor") or 0) > 1:
        raise FaceregenError(f"data.region_recolor={cfg.data.region_recolor}: a probability, "
                             "must be at most 1")
    for name in OmegaConf.select(cfg, "data.region_recolor_regions") or []:
        if name not in LABEL_NAMES:
            raise FaceregenError(f"data.region_recolor_regions: unknown region {name!r}; valid "
                                 f"names: {', '.join(LABEL_NAMES)}")
    ema_decay = OmegaConf.select(cfg, "trainer.ema_decay")
    if ema_decay is not None and not 0 <= ema_decay < 1:
        raise FaceregenError(f"trainer.ema_decay={ema_decay}: must be in [0, 1)")
    for key in ("loss.lambda_feat", "loss.lambda_vgg", "loss.lambda_l1", "loss.lambda_l1_class",
                "loss.lambda_gp"):
        value = OmegaConf.select(cfg, key)
        if value is not None and value < 0:
            raise FaceregenError(f"{key}={value}: a loss weight cannot be negative")


def register_schemas() -> None:
    cs = ConfigStore.instance()
    cs.store(group="paths", name="paths_schema", node=PathsConfig)
    cs.store(group="data", name="data_schema", node=DataConfig)
    cs.store(group="model", name="model_schema", node=ModelConfig)
    cs.store(group="loss", name="loss_schema", node=LossConfig)
    cs.store(group="optim", name="optim_schema", node=OptimConfig)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConfig)


register_schemas()
