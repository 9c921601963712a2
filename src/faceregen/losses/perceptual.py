"""VGG19 perceptual loss and the lookup of its ImageNet weights (pix2pixHD's five relu layers)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from faceregen import pretrained
from faceregen.errors import FaceregenError
from faceregen.utils import torch_load

logger = logging.getLogger("faceregen.losses")

VGG_WEIGHTS = ("imagenet", "random")
# What the VGG sees: "imagenet" maps [-1, 1] to [0, 1] and normalises with the ImageNet mean and
# std (what the weights were trained on); "raw" feeds [-1, 1] straight in, as pix2pixHD and
# SPADE do. The ImageNet mapping multiplies the input by 1 / (2 * 0.226), about 2.2, so at
# equal lambda_vgg its perceptual term is about twice pix2pixHD's.
VGG_INPUTS = ("imagenet", "raw")
VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = f"https://download.pytorch.org/models/{VGG19_FILE}"
# Indices of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in torchvision's vgg19().features.
VGG19_SLICE_ENDS = (2, 7, 12, 21, 30)
VGG19_LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_VGG_SEED = 0


def hub_cache_file() -> Path:
    """Where torchvision keeps (and a download puts) the VGG19 weights."""
    return pretrained.hub_cache_file(VGG19_FILE)


def _check_weights_name(weights: str) -> None:
    if weights not in VGG_WEIGHTS:
        raise FaceregenError(f"loss.vgg.weights must be one of {VGG_WEIGHTS}, got {weights!r}")


def _check_input_name(input_mode: str) -> None:
    if input_mode not in VGG_INPUTS:
        raise FaceregenError(f"loss.vgg.input must be one of {VGG_INPUTS}, got {input_mode!r}")


def check_vgg_weights(weights: str = "imagenet", path: str | os.PathLike | None = None
                      ) -> Path | None:
    """Resolve the VGG19 weight file without building the network; None for random weights.

    Order: the configured ``path``, the torch hub cache, a download into the hub cache. Raises
    FaceregenError naming the missing file and where to put it. The trainer calls this at
    start-up, before any training work.
    """
    _check_weights_name(weights)
    if weights == "random":
        return None
    return pretrained.find_weight_file(
        VGG19_FILE, VGG19_URL, path, "loss.vgg.path",
        description="the ImageNet VGG19 weights for the perceptual loss",
        alternative="; or run offline with loss.vgg.weights=random (a randomly initialised VGG19)")


def _vgg19_features_layers() -> nn.Sequential:
    """torchvision's vgg19().features architecture, without building the 120M-param classifier."""
    from torchvision.models.vgg import cfgs, make_layers

    return make_layers(cfgs["E"], batch_norm=False)


def load_vgg19_features(weights: str = "imagenet", path: str | os.PathLike | None = None
                        ) -> nn.Sequential:
    """torchvision's VGG19 ``features`` with ImageNet weights (or a fixed-seed random init).

    Random weights use torchvision's own VGG init from a fixed seed, so that the loss is the same
    function in every run and after a resume.
    """
    _check_weights_name(weights)
    features = _vgg19_features_layers()
    if weights == "random":
        logger.warning(
            "the perceptual loss uses a randomly initialised VGG19 (loss.vgg.weights=random); "
            "put the ImageNet weights in place and set loss.vgg.weights=imagenet for real runs")
        generator = torch.Generator().manual_seed(RANDOM_VGG_SEED)
        for module in features.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu",
                                        generator=generator)
                nn.init.zeros_(module.bias)
        return features

    file = check_vgg_weights(weights, path)
    state = torch_load(file, "VGG19 weight file")
    if not isinstance(state, dict):
        raise FaceregenError(f"{file} is not a torchvision vgg19 state_dict ({VGG19_FILE})")
    prefix = "features."
    feature_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        features.load_state_dict(feature_state)
    except RuntimeError as exc:
        raise FaceregenError(
            f"{file} is not a torchvision vgg19 state_dict ({VGG19_FILE}): {exc}") from exc
    return features


class VGGPerceptualLoss(nn.Module):
    """L1 between VGG19 relu1_1..relu5_1 features of two images in [-1, 1].

    Layer weights 1/32, 1/16, 1/8, 1/4, 1 (pix2pixHD). ``input_mode="imagenet"``: inputs are
    mapped to [0, 1] and normalised with the ImageNet mean and std; ``"raw"``: [-1, 1] goes in
    as it is (pix2pixHD, SPADE). The network is frozen and stays in eval mode.
    The whole batch goes through at once (the report's code looped over samples); the target
    goes through under no_grad, which costs the same forward work as concatenating it with the
    fake batch but saves its activations and its half of the backward pass.
    lambda_vgg is applied by the caller.
    """

    def __init__(self, weights: str = "imagenet", path: str | os.PathLike | None = None,
                 input_mode: str = "imagenet"):
        super().__init__()
        _check_input_name(input_mode)
        self.input_mode = input_mode
        features = load_vgg19_features(weights, path)
        starts = (0, *VGG19_SLICE_ENDS[:-1])
        self.slices = nn.ModuleList(
            nn.Sequential(*features[start:end]) for start, end in zip(starts, VGG19_SLICE_ENDS))
        self.layer_weights = VGG19_LAYER_WEIGHTS
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        """Stays in eval mode whatever the trainer asks: the loss network is fixed."""
        return super().train(False)

    def _features(self, image: torch.Tensor) -> list[torch.Tensor]:
        h = ((image + 1) / 2 - self.mean) / self.std if self.input_mode == "imagenet" else image
        outputs = []
        for block in self.slices:
            h = block(h)
            outputs.append(h)
        return outputs

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            real_features = self._features(real)
        fake_features = self._features(fake)
        loss = fake.new_zeros(())
        for weight, f, r in zip(self.layer_weights, fake_features, real_features):
            loss = loss + weight * F.l1_loss(f, r.detach())
        return loss
