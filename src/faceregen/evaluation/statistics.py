"""Feature spaces of the distribution distances (FID, parser feature distance) and the real
photos' statistics in each, cached under ``<data root>/fid_stats``."""

from __future__ import annotations

import logging
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from faceregen.evaluation import metrics
from faceregen.evaluation.evaluators import Evaluator
from faceregen.evaluation.inception import (
    InceptionWeightsUnavailable,
    inception_features,
    load_fid_inception,
)
from faceregen.utils import atomic_path

log = logging.getLogger(__name__)


@dataclass
class FeatureSpace:
    """A feature extractor for a distribution distance, or why it is unavailable."""

    key: str                      # metrics.json key: fid, fid_random_weights, parser_feature_...
    cache_tag: str | None         # part of the real-statistics file name; None: never cached
    extract: Callable[[torch.Tensor], torch.Tensor] | None
    unavailable_reason: str | None = None
    batch_size: int = 32


def fid_space(fid_cfg: DictConfig, device: torch.device) -> FeatureSpace:
    """The FID Inception space; with missing weights a space that says unavailable."""
    if fid_cfg.weights == "random":
        log.warning("fid.weights=random: Inception with random weights; for tests only, "
                    "reported as fid_random_weights, not FID")
        model = load_fid_inception("random", device=device)
        return FeatureSpace("fid_random_weights", None, lambda x: inception_features(model, x),
                            batch_size=int(fid_cfg.batch_size))
    try:
        model = load_fid_inception(str(fid_cfg.weights), fid_cfg.path,
                                   allow_download=bool(fid_cfg.download), device=device)
    except InceptionWeightsUnavailable as exc:
        log.warning("FID unavailable: %s", exc)
        print(f"warning: FID unavailable: {exc}", file=sys.stderr, flush=True)
        return FeatureSpace("fid", None, None, unavailable_reason=str(exc))
    return FeatureSpace("fid", "inception-pytorch_fid", lambda x: inception_features(model, x),
                        batch_size=int(fid_cfg.batch_size))


def file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha1(path.read_bytes()).hexdigest()[:12]


@torch.no_grad()
def parser_features(parser: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    return parser(images, return_features=True)[1].double().cpu()


def parser_space(parser: Evaluator) -> FeatureSpace:
    """Global-average-pooled bottleneck of the trained parser: a domain feature distance."""
    return FeatureSpace("parser_feature_distance", f"parser-{file_digest(parser.path)}",
                        lambda x: parser_features(parser.network, x))


@dataclass
class RealStatistics:
    """Mean and covariance of real photos in one feature space."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


def stats_path(data_root: Path, split: str, size: int, n: int, tag: str) -> Path:
    return data_root / "fid_stats" / f"{split}_{size}px_n{n}_{tag}.npz"


def load_cached_stats(path: Path, data_root: Path) -> RealStatistics | None:
    """The cached statistics, or None when there are none for this dataset: a missing, foreign
    or unreadable file (a run killed while writing it, say) is a cache miss, recomputed."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            if str(data["root"]) != str(data_root.resolve()):
                return None
            stats = RealStatistics(data["mu"], data["sigma"], int(data["n"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("ignoring the unreadable statistics cache %s (%s)", path, exc)
        return None
    if stats.mu.ndim != 1 or stats.sigma.shape != (stats.mu.shape[0],) * 2:
        log.warning("ignoring the statistics cache %s: its shapes do not fit", path)
        return None
    return stats


def save_stats(path: Path, stats: RealStatistics, data_root: Path) -> None:
    """Cache the statistics; a dataset folder we may not write to only costs the cache."""
    from faceregen.errors import FaceregenError
    from faceregen.utils import make_dirs

    try:
        make_dirs(path.parent)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, mu=stats.mu, sigma=stats.sigma, n=stats.n,
                     root=str(data_root.resolve()))
    except (FaceregenError, OSError) as exc:
        log.warning("real statistics not cached: %s", exc)


def statistics_of(features: list[torch.Tensor]) -> RealStatistics:
    stacked = torch.cat(features).numpy()
    mu, sigma = metrics.gaussian_statistics(stacked)
    return RealStatistics(mu, sigma, stacked.shape[0])


def distance_to(stats: RealStatistics | None, features: list[torch.Tensor]) -> float | None:
    if stats is None or not features or sum(len(f) for f in features) < 2:
        return None
    own = statistics_of(features)
    return metrics.frechet_distance(own.mu, own.sigma, stats.mu, stats.sigma)
