"""Small pure metric functions: Frechet distance, segmentation, attribute, PSNR/SSIM, L1,
region colours in CIELAB.

Segmentation metrics go through a confusion matrix so that they can be accumulated over
batches and stay exact (no averaging of per-batch ratios). Image metrics work on [0,1] images
and return one value per image; the runner averages them over the test set.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_fid.fid_score import calculate_frechet_distance


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of ``features`` [N, D] in float64, as pytorch-fid computes them."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors of shape [N, D], got {features.shape}")
    return np.mean(features, axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)), by pytorch-fid's own function.

    pytorch-fid adds ``eps`` to both diagonals when the product is singular and raises
    ValueError for a square root with a large imaginary part. Mismatched dimensions are checked
    here as a ValueError, because pytorch-fid only asserts them.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("the two Gaussians have different dimensions")
    return float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2, eps=eps))


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts [num_classes, num_classes] (row: target class, column: predicted class), int64."""
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    index = target * num_classes + pred
    counts = torch.bincount(index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).cpu()


def pixel_accuracy(confusion: torch.Tensor) -> float:
    """Correct pixels / all pixels."""
    total = confusion.sum().item()
    return confusion.diagonal().sum().item() / total if total else float("nan")


def per_class_iou(confusion: torch.Tensor) -> torch.Tensor:
    """IoU per class (float64); NaN for a class absent from both prediction and target."""
    confusion = confusion.double()
    intersection = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - intersection
    iou = torch.full_like(intersection, float("nan"))
    present = union > 0
    iou[present] = intersection[present] / union[present]
    return iou


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean IoU over the classes that occur in the target or the prediction.

    A class absent from both (union 0) is left out rather than counted as 0 or 1, so a test set
    without hats neither rewards nor punishes the hat class.
    """
    iou = per_class_iou(confusion)
    present = ~torch.isnan(iou)
    return iou[present].mean().item() if present.any() else float("nan")


def attribute_confusion(predicted: torch.Tensor, expected: torch.Tensor) -> dict[str, int]:
    """TP/TN/FP/FN over all (image, attribute) entries of two boolean tensors of equal shape.

    TP: predicted present and present; TN: predicted absent and absent; FP: predicted present
    but absent; FN: predicted absent but present (the report's section 5.1).
    """
    predicted, expected = predicted.bool(), expected.bool()
    return {
        "tp": int((predicted & expected).sum()),
        "tn": int((~predicted & ~expected).sum()),
        "fp": int((predicted & ~expected).sum()),
        "fn": int((~predicted & expected).sum()),
    }


def attribute_accuracy(counts: dict[str, int]) -> float:
    """(TP + TN) / (TP + TN + FP + FN)."""
    total = counts["tp"] + counts["tn"] + counts["fp"] + counts["fn"]
    return (counts["tp"] + counts["tn"]) / total if total else float("nan")


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB per image of [B,C,H,W] batches; +inf for identical images."""
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 2-D Gaussian window [size, size] (float64)."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-coords.pow(2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window_size: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """SSIM per image (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03.

    Local statistics use 'valid' filtering (no padding), as the reference MATLAB code does;
    the SSIM map is averaged over pixels and channels. Images smaller than the window use a
    window of the image's size.
    """
    x, y = x.double(), y.double()
    channels = x.shape[1]
    window_size = min(window_size, x.shape[-1], x.shape[-2])
    window = gaussian_window(window_size, sigma).to(x.device)
    window = window.expand(channels, 1, window_size, window_size).contiguous()

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)

    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_x, mu_y = filt(x), filt(y)
    var_x = filt(x * x) - mu_x.pow(2)
    var_y = filt(y * y) - mu_y.pow(2)
    cov_xy = filt(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x.pow(2) + mu_y.pow(2) + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(1)


def l1_error(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference per image."""
    return (x.double() - y.double()).abs().flatten(1).mean(1)


# sRGB (IEC 61966-2-1) linear RGB -> CIE XYZ, D65 white; the D65 white point of CIELAB.
SRGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375),
               (0.2126729, 0.7151522, 0.0721750),
               (0.0193339, 0.1191920, 0.9503041))
D65_WHITE = (0.95047, 1.0, 1.08883)


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] (channels last, [..., 3]) -> CIELAB (L*, a*, b*), D65, float64.

    Undo the sRGB transfer curve, take XYZ by the sRGB matrix, divide by the white point, then
    L* = 116 f(Y) - 16, a* = 500 (f(X) - f(Y)), b* = 200 (f(Y) - f(Z)) with f(t) = t^(1/3)
    above (6/29)^3 and its linear continuation t / (3 (6/29)^2) + 4/29 below.
    """
    rgb = rgb.double()
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    matrix = torch.tensor(SRGB_TO_XYZ, dtype=torch.float64, device=rgb.device)
    white = torch.tensor(D65_WHITE, dtype=torch.float64, device=rgb.device)
    xyz = linear @ matrix.T / white
    delta = 6 / 29
    f = torch.where(xyz > delta**3, xyz.clamp_min(delta**3) ** (1 / 3),
                    xyz / (3 * delta**2) + 4 / 29)
    fx, fy, fz = f.unbind(-1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-1)


def region_mean_lab(image: torch.Tensor, label: torch.Tensor,
                    regions: list[tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean CIELAB colour of each region of each image, and its pixel count.

    ``image``: [B, 3, H, W] sRGB in [0, 1]; ``label``: [B, H, W] class ids; ``regions``: the
    class ids of each region. Returns means [B, R, 3] (float64; NaN for an empty region) and
    counts [B, R] (int64). Pixels are converted to CIELAB first, then averaged.
    """
    lab = srgb_to_lab(image.movedim(1, -1)).flatten(1, 2)                  # [B, HW, 3]
    label = label.to(image.device).flatten(1)                              # [B, HW]
    means, counts = [], []
    for classes in regions:
        mask = torch.zeros_like(label, dtype=torch.bool)
        for index in classes:
            mask |= label == index
        count = mask.sum(1)                                                # [B]
        total = (lab * mask[..., None]).sum(1)                             # [B, 3]
        means.append(total / count[:, None])  # 0 / 0 = NaN for an empty region
        counts.append(count)
    return torch.stack(means, 1).cpu(), torch.stack(counts, 1).cpu()


def region_color_distance(means_a: torch.Tensor, counts_a: torch.Tensor,
                          means_b: torch.Tensor, counts_b: torch.Tensor) -> torch.Tensor:
    """Euclidean CIELAB distance (CIE76 delta E) between paired region means, [N, R] float64;
    NaN where the region is empty in either image of the pair."""
    distance = (means_a.double() - means_b.double()).norm(dim=-1)
    present = (counts_a > 0) & (counts_b > 0)
    return torch.where(present, distance, torch.full_like(distance, float("nan")))
