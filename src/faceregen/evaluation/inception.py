"""The FID Inception network: InceptionV3 pool3 (2048-d) features with pytorch-fid's weights.

The network is pytorch-fid's, assembled as ``pytorch_fid.inception.fid_inception_v3`` does it:
torchvision's Inception3 layout (1008 classes, no aux head) with pytorch-fid's FIDInceptionA,
FIDInceptionC, FIDInceptionE_1 and FIDInceptionE_2 blocks, which pool the way the TensorFlow
graph of the 2015-12-05 Inception does. It is built here rather than by calling
``fid_inception_v3()`` because that function always downloads its weights; ours come from the
shared lookup (configured file, torch hub cache, download) and work offline. When no weight
file is found, :class:`InceptionWeightsUnavailable` says why and the runner reports FID as
unavailable.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from pytorch_fid.inception import FID_WEIGHTS_URL as PYTORCH_FID_WEIGHTS_URL
from pytorch_fid.inception import (
    FIDInceptionA,
    FIDInceptionC,
    FIDInceptionE_1,
    FIDInceptionE_2,
)
from torch import nn
from torchvision.models import inception as tv_inception

from faceregen import pretrained
from faceregen.errors import FaceregenError
from faceregen.utils import first_line, torch_load

FID_WEIGHTS_URL = PYTORCH_FID_WEIGHTS_URL
FID_WEIGHTS_FILE = FID_WEIGHTS_URL.rsplit("/", 1)[1]
FID_NUM_CLASSES = 1008
FID_INPUT_SIZE = 299
FEATURE_DIM = 2048


class InceptionWeightsUnavailable(FaceregenError):
    """No usable pytorch-fid weight file: the message lists where it was looked for."""


class FIDInceptionV3(tv_inception.Inception3):
    """pytorch-fid's FID Inception; :meth:`forward` returns pool3 features [B, 2048].

    Input: images in [0,1] of any size; they are resized to 299x299 (bilinear,
    align_corners=False) and scaled to [-1,1], as pytorch-fid's ``InceptionV3`` does.
    The blocks are replaced exactly as in ``pytorch_fid.inception.fid_inception_v3``.
    """

    def __init__(self, random_init: bool = False) -> None:
        super().__init__(num_classes=FID_NUM_CLASSES, aux_logits=False, transform_input=False,
                         init_weights=False)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7b = FIDInceptionE_1(1280)
        self.Mixed_7c = FIDInceptionE_2(2048)
        if random_init:
            self._init_scale_preserving()

    def _init_scale_preserving(self) -> None:
        """He-normal convolutions: random features keep a usable scale through 90 layers."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images, size=(FID_INPUT_SIZE, FID_INPUT_SIZE), mode="bilinear",
                          align_corners=False)
        x = 2 * x - 1
        for layer in (self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3, self.maxpool1,
                      self.Conv2d_3b_1x1, self.Conv2d_4a_3x3, self.maxpool2,
                      self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
            x = layer(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def hub_cache_path() -> Path:
    """Where torch.hub keeps (and a download puts) pytorch-fid's weight file."""
    return pretrained.hub_cache_file(FID_WEIGHTS_FILE)


def download_weights(destination: Path) -> None:
    """Fetch pytorch-fid's release file to ``destination`` (checks the hash in its name)."""
    pretrained.download_file(FID_WEIGHTS_URL, destination)


def find_weights(path: str | None, allow_download: bool = True) -> Path:
    """The weight file: ``path`` if it exists, else the hub cache, else a download into it."""
    return pretrained.find_weight_file(
        FID_WEIGHTS_FILE, FID_WEIGHTS_URL, path, "fid.path",
        description="pytorch-fid's Inception weights", allow_download=allow_download,
        download=download_weights, error=InceptionWeightsUnavailable)


def load_fid_inception(weights: str = "pytorch_fid", path: str | None = None,
                       allow_download: bool = True, device: str | torch.device = "cpu",
                       seed: int = 0) -> FIDInceptionV3:
    """The FID Inception in eval mode on ``device``.

    ``weights="random"`` builds it with seeded random weights; that is for tests only and its
    distances must never be called FID.
    """
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = FIDInceptionV3(random_init=True)
    elif weights == "pytorch_fid":
        file = find_weights(path, allow_download)
        state = torch_load(file, "weight file", error=InceptionWeightsUnavailable)
        model = FIDInceptionV3()
        try:
            model.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError) as exc:  # TypeError: not a dict of tensors at all
            raise InceptionWeightsUnavailable(
                f"{file}: not pytorch-fid's Inception weights ({first_line(exc)})") from None
    else:
        raise FaceregenError(f"fid.weights={weights}: choose pytorch_fid or random")
    return model.to(device).eval().requires_grad_(False)


def quantize_8bit(images01: torch.Tensor) -> torch.Tensor:
    """Round [0,1] images to 8-bit levels, as if saved to PNG and read back by pytorch-fid."""
    return torch.round(images01.clamp(0, 1) * 255) / 255


@torch.no_grad()
def inception_features(model: FIDInceptionV3, images: torch.Tensor) -> torch.Tensor:
    """pool3 features [B, 2048] (float64, CPU) of images in [-1,1] on the model's device."""
    device = next(model.parameters()).device
    images01 = quantize_8bit((images.to(device, torch.float32) + 1) / 2)
    return model(images01).double().cpu()
