"""Metric functions on cases whose answers are known in closed form or by hand."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from faceregen.evaluation import metrics


def random_rotation(dim: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    return q


def test_frechet_distance_diagonal_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    got = metrics.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(expected, abs=1e-6)


def test_frechet_distance_commuting_covariances():
    """Shared eigenvectors Q: the trace term is sum (sqrt a - sqrt b)^2."""
    q = random_rotation(5, seed=1)
    a, b = np.array([0.5, 1, 2, 3, 4.0]), np.array([2, 2, 0.1, 3, 1.0])
    mu1, mu2 = np.arange(5.0), np.arange(5.0)[::-1].copy()
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = metrics.frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, abs=1e-3)


def direct_frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """The formula by symmetric eigen decompositions, independent of scipy's sqrtm:
    Tr sqrt(S1 S2) = Tr sqrt(R S2 R) with R = sqrt(S1), and R S2 R is symmetric PSD."""
    values, vectors = np.linalg.eigh(sigma1)
    root1 = vectors @ np.diag(np.sqrt(np.clip(values, 0, None))) @ vectors.T
    inner = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_sqrt = np.sum(np.sqrt(np.clip(inner, 0, None)))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


@pytest.mark.parametrize("dim", [2, 16, 64])
def test_frechet_distance_matches_the_formula_on_random_covariances(dim):
    """Catches a drift in pytorch-fid's function (or scipy's sqrtm) that the closed forms miss:
    these covariances do not commute."""
    rng = np.random.default_rng(dim)
    a, b = rng.normal(size=(dim, dim)), rng.normal(size=(dim, dim)) * 0.5
    sigma1 = a @ a.T / dim + 0.1 * np.eye(dim)
    sigma2 = b @ b.T / dim + 0.05 * np.eye(dim)
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    assert not np.allclose(sigma1 @ sigma2, sigma2 @ sigma1)
    expected = direct_frechet_distance(mu1, sigma1, mu2, sigma2)
    got = metrics.frechet_distance(mu1, sigma1, mu2, sigma2)
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-7, abs=1e-9)


def test_frechet_distance_rejects_mismatched_dimensions():
    with pytest.raises(ValueError, match="different dimensions"):
        metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_frechet_distance_identical_sets_is_zero():
    features = np.random.default_rng(0).normal(size=(200, 16))
    mu, sigma = metrics.gaussian_statistics(features)
    assert metrics.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_singular_covariances_stay_finite():
    """Fewer samples than dimensions: singular covariances, pytorch-fid's eps path."""
    rng = np.random.default_rng(0)
    mu1, s1 = metrics.gaussian_statistics(rng.normal(size=(4, 12)))
    mu2, s2 = metrics.gaussian_statistics(rng.normal(size=(4, 12)) + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = metrics.frechet_distance(mu1, s1, mu2, s2)
    assert math.isfinite(value) and value > 0


def test_gaussian_statistics_match_numpy():
    features = np.random.default_rng(2).normal(size=(50, 3)).astype(np.float32)
    mu, sigma = metrics.gaussian_statistics(features)
    assert mu.dtype == np.float64 and sigma.shape == (3, 3)
    np.testing.assert_allclose(sigma, np.cov(features.astype(np.float64), rowvar=False))


def test_pixel_accuracy_and_miou_by_hand():
    target = torch.tensor([[0, 0, 1, 1],
                           [0, 0, 1, 1]])
    pred = torch.tensor([[0, 1, 1, 1],
                         [0, 0, 1, 2]])
    confusion = metrics.confusion_matrix(pred, target, num_classes=4)
    assert metrics.pixel_accuracy(confusion) == pytest.approx(6 / 8)
    # class 0: inter 3, union 4; class 1: inter 3, union 5; class 2: inter 0, union 1;
    # class 3 absent from both -> left out of the mean.
    iou = metrics.per_class_iou(confusion)
    assert iou[:3].tolist() == pytest.approx([3 / 4, 3 / 5, 0.0])
    assert math.isnan(iou[3].item())
    assert metrics.mean_iou(confusion) == pytest.approx((3 / 4 + 3 / 5 + 0) / 3)


def test_confusion_accumulates_over_batches():
    rng = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 5, (4, 8, 8), generator=rng)
    target = torch.randint(0, 5, (4, 8, 8), generator=rng)
    whole = metrics.confusion_matrix(pred, target, 5)
    parts = metrics.confusion_matrix(pred[:1], target[:1], 5) + metrics.confusion_matrix(
        pred[1:], target[1:], 5)
    assert torch.equal(whole, parts)
    assert whole.sum().item() == 4 * 8 * 8


def test_perfect_segmentation():
    target = torch.randint(0, 19, (2, 16, 16))
    confusion = metrics.confusion_matrix(target, target, 19)
    assert metrics.pixel_accuracy(confusion) == 1.0
    assert metrics.mean_iou(confusion) == 1.0


def test_attribute_confusion_by_hand():
    predicted = torch.tensor([[1, 0, 1, 0],
                              [1, 1, 0, 0]])
    expected = torch.tensor([[1, 0, 0, 1],
                             [1, 0, 0, 0]])
    counts = metrics.attribute_confusion(predicted, expected)
    assert counts == {"tp": 2, "tn": 3, "fp": 2, "fn": 1}
    assert metrics.attribute_accuracy(counts) == pytest.approx(5 / 8)


def test_psnr_identical_is_inf_and_known_case():
    x = torch.rand(2, 3, 16, 16)
    assert torch.isinf(metrics.psnr(x, x)).all()
    zeros, tenth = torch.zeros(1, 3, 8, 8), torch.full((1, 3, 8, 8), 0.1)
    assert metrics.psnr(zeros, tenth).item() == pytest.approx(20.0)


def test_ssim_identical_is_one():
    x = torch.rand(3, 3, 32, 32)
    assert metrics.ssim(x, x).tolist() == pytest.approx([1.0] * 3)


def test_ssim_constant_images_closed_form():
    """Zero variance and covariance: SSIM = (2ab + C1) / (a^2 + b^2 + C1)."""
    a, b = 0.2, 0.7
    c1 = 0.01**2
    x, y = torch.full((1, 1, 20, 20), a), torch.full((1, 1, 20, 20), b)
    assert metrics.ssim(x, y).item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1))


def test_ssim_matches_direct_window_loop():
    rng = np.random.default_rng(0)
    x, y = rng.random((13, 14)), rng.random((13, 14))
    y = 0.6 * x + 0.4 * y
    w = metrics.gaussian_window(11, 1.5).numpy()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for i in range(13 - 10):
        for j in range(14 - 10):
            px, py = x[i:i + 11, j:j + 11], y[i:i + 11, j:j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cxy = (w * (px - mx) * (py - my)).sum()
            values.append((2 * mx * my + c1) * (2 * cxy + c2)
                          / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    got = metrics.ssim(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None])
    assert got.item() == pytest.approx(float(np.mean(values)), abs=1e-9)


def test_l1_error():
    assert metrics.l1_error(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)).item() == 1.0


# --- CIELAB and region colours ------------------------------------------------------------------

@pytest.mark.parametrize("rgb,lab", [
    ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),           # the D65 white point
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    ((1.0, 0.0, 0.0), (53.24, 80.09, 67.20)),        # the sRGB primaries (standard tables)
    ((0.0, 1.0, 0.0), (87.73, -86.18, 83.18)),
    ((0.0, 0.0, 1.0), (32.30, 79.19, -107.86)),
    ((0.5, 0.5, 0.5), (53.39, 0.0, 0.0)),            # mid grey: L* of Y = 0.2140
    ((0.01, 0.01, 0.01), (0.6992, 0.0, 0.0)),        # dark: the linear parts of both curves
])
def test_srgb_to_lab_known_values(rgb, lab):
    got = metrics.srgb_to_lab(torch.tensor(rgb))
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx(lab, abs=0.01)


def test_srgb_to_lab_is_continuous_at_both_joins():
    """The sRGB curve joins at 0.04045 and f at (6/29)^3: no step in L* across either join."""
    grey = torch.linspace(0, 1, 20001)[:, None].expand(-1, 3)
    lightness = metrics.srgb_to_lab(grey)[:, 0]
    assert torch.all(lightness.diff() > 0)
    assert lightness.diff().max() < 0.02


def test_region_mean_lab_and_distance_by_hand():
    """Two 2x2 images: region A = class 1, region B = classes 2 and 3, region C = class 4."""
    label = torch.tensor([[[1, 1], [2, 3]], [[1, 2], [2, 2]]])
    image = torch.zeros(2, 3, 2, 2)
    image[0, :, 0, :] = 1.0                       # image 0: class 1 white
    image[0, 0, 1, :] = 1.0                       # classes 2, 3 red
    image[1, 0] = 1.0                             # image 1: all red
    regions = [(1,), (2, 3), (4,)]
    means, counts = metrics.region_mean_lab(image, label, regions)
    assert counts.tolist() == [[2, 2, 0], [1, 3, 0]]
    white, red = (100.0, 0.0, 0.0), (53.24, 80.09, 67.20)
    assert means[0, 0].tolist() == pytest.approx(white, abs=0.01)
    assert means[0, 1].tolist() == pytest.approx(red, abs=0.01)
    assert means[1, 0].tolist() == pytest.approx(red, abs=0.01)
    assert torch.isnan(means[:, 2]).all()

    # pair image 0 with image 1: region A white vs red, B red vs red, C empty in both
    distance = metrics.region_color_distance(means[:1], counts[:1], means[1:], counts[1:])
    expected = math.dist(white, red)
    assert distance[0, 0].item() == pytest.approx(expected, abs=0.02)
    assert distance[0, 1].item() == pytest.approx(0, abs=1e-9)
    assert math.isnan(distance[0, 2].item())
    # a region present in one image only is skipped too
    counts_b = counts[1:].clone()
    counts_b[0, 0] = 0
    assert math.isnan(metrics.region_color_distance(means[:1], counts[:1], means[1:],
                                                    counts_b)[0, 0].item())


def test_region_mean_lab_averages_lab_values_not_rgb():
    """Half black, half white: the mean of the L* values (50), not L* of mid grey (53.4)."""
    image = torch.zeros(1, 3, 1, 2)
    image[..., 1] = 1.0
    means, _ = metrics.region_mean_lab(image, torch.zeros(1, 1, 2, dtype=torch.long), [(0,)])
    assert means[0, 0].tolist() == pytest.approx((50.0, 0.0, 0.0), abs=1e-3)
