"""The FID Inception network: InceptionV3 pool3 (2048-d) features with pytorch-fid's weights.

pytorch-fid's network is torchvision's Inception3 layout (1008 classes, no aux head) in which
the Mixed_5*, Mixed_6b-e and Mixed_7b/c blocks compute their pooling branch the way the
TensorFlow graph of the 2015-12-05 Inception did: average pooling that ignores the zero padding,
and max pooling (not average pooling) in the last block. The parameters are exactly
torchvision's, so pytorch-fid's weight file (pt_inception-2015-12-05-6726825d.pth) loads into
:class:`FIDInceptionV3` with ``strict=True``. Only the modules' forward passes differ.

Weights are looked up in this order: a configured file, the torch hub cache, a download. When
none works, :class:`InceptionWeightsUnavailable` says why and the runner reports FID as
unavailable.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import inception as tv_inception

from faceregen.errors import FaceregenError

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   + FID_WEIGHTS_FILE)
FID_NUM_CLASSES = 1008
FID_INPUT_SIZE = 299
FEATURE_DIM = 2048


class InceptionWeightsUnavailable(FaceregenError):
    """No usable pytorch-fid weight file: the message lists where it was looked for."""


def avg_pool_without_padding(x: torch.Tensor) -> torch.Tensor:
    """TensorFlow's 3x3 average pool: padded zeros do not count in the average."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def max_pool_same(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class FIDInceptionA(tv_inception.InceptionA):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(avg_pool_without_padding(x))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, branch_pool], 1)


class FIDInceptionC(tv_inception.InceptionC):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = layer(branch7x7dbl)
        branch_pool = self.branch_pool(avg_pool_without_padding(x))
        return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, branch_pool], 1)


class FIDInceptionE(tv_inception.InceptionE):
    """InceptionE; Mixed_7c of the FID graph max-pools in its pooling branch (Mixed_7b averages)."""

    def __init__(self, in_channels: int, use_max_pool: bool) -> None:
        super().__init__(in_channels)
        self.use_max_pool = use_max_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat(
            [self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
        pooled = max_pool_same(x) if self.use_max_pool else avg_pool_without_padding(x)
        branch_pool = self.branch_pool(pooled)
        return torch.cat([self.branch1x1(x), branch3x3, branch3x3dbl, branch_pool], 1)


class FIDInceptionV3(tv_inception.Inception3):
    """pytorch-fid's InceptionV3; :meth:`forward` returns pool3 features [B, 2048].

    Input: images in [0,1] of any size; they are resized to 299x299 (bilinear,
    align_corners=False) and scaled to [-1,1], as pytorch-fid does.
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
        self.Mixed_7b = FIDInceptionE(1280, use_max_pool=False)
        self.Mixed_7c = FIDInceptionE(2048, use_max_pool=True)
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
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILE


def download_weights(destination: Path) -> None:
    """Fetch pytorch-fid's release file into the hub cache (checks the hash in its name)."""
    torch.hub.load_state_dict_from_url(FID_WEIGHTS_URL, model_dir=str(destination.parent),
                                       progress=True, check_hash=True, weights_only=True)


def find_weights(path: str | None, allow_download: bool = True) -> Path:
    """The weight file: ``path`` if given, else the hub cache, else a download into the cache."""
    if path is not None:
        if not Path(path).is_file():
            raise InceptionWeightsUnavailable(f"fid.path={path} does not exist")
        return Path(path)
    cached = hub_cache_path()
    if cached.is_file():
        return cached
    where = f"not in the torch hub cache ({cached})"
    if not allow_download:
        raise InceptionWeightsUnavailable(f"{FID_WEIGHTS_FILE} {where}; downloads are off")
    try:
        download_weights(cached)
    except Exception as exc:  # any network or hash failure means: no weights
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InceptionWeightsUnavailable(
            f"{FID_WEIGHTS_FILE} {where} and the download from {FID_WEIGHTS_URL} failed "
            f"({first_line}); place the file there or pass fid.path=FILE") from None
    if not cached.is_file():
        raise InceptionWeightsUnavailable(f"the download did not produce {cached}")
    return cached


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
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InceptionWeightsUnavailable(
                f"{file}: not a loadable weight file ({exc})") from None
        model = FIDInceptionV3()
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first_line = str(exc).strip().splitlines()[0]
            raise InceptionWeightsUnavailable(
                f"{file}: not pytorch-fid's Inception weights ({first_line})") from None
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
