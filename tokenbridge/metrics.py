"""Metrics: PSNR, Fréchet distance, and features / accuracy from the kit's shapes classifier.

"FD-shapes" is the Fréchet distance between Gaussian fits of the shapes classifier's penultimate
features (`tokenbridge.classifier`); it is *not* FID (no Inception network), and is named so.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch


def psnr(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of ``images`` vs ``reference`` (both ``[B, 3, H, W]`` in [-1, 1]).

    Images are clipped to [-1, 1] first (what a viewer sees); peak-to-peak range is 2.
    """
    if images.shape != reference.shape:
        raise ValueError(f"shapes differ: {tuple(images.shape)} vs {tuple(reference.shape)}")
    diff = images.float().clamp(-1, 1) - reference.float().clamp(-1, 1)
    mse = diff.pow(2).flatten(1).mean(dim=1).clamp_min(1e-12)
    return 10.0 * torch.log10(4.0 / mse)


@dataclass(frozen=True)
class FeatureStats:
    """Mean ``[D]`` and covariance ``[D, D]`` (float64) of ``count`` feature vectors."""

    mean: np.ndarray
    cov: np.ndarray
    count: int


def feature_statistics(features: torch.Tensor | np.ndarray) -> FeatureStats:
    """Gaussian fit of features ``[N, D]`` in float64 (unbiased covariance; N ≥ 2)."""
    f = np.asarray(torch.as_tensor(features).detach().cpu().double())
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"expected features [N >= 2, D], got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError(f"features hold {int((~np.isfinite(f)).sum())} non-finite values")
    cov = np.atleast_2d(np.cov(f, rowvar=False))  # np.cov gives a 0-d array for D = 1
    return FeatureStats(mean=f.mean(axis=0), cov=cov, count=f.shape[0])


def frechet_distance(a: FeatureStats, b: FeatureStats, eps: float = 1e-6) -> float:
    """‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2}) in float64.

    ``scipy.linalg.sqrtm`` of the product; when it is singular or not finite, ``eps·I`` is added to
    both covariances (the usual fallback). An imaginary part larger than 1e-3 of the largest
    diagonal entry means a numerical failure and raises; smaller ones are dropped.
    """
    from scipy import linalg

    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature dimensions differ: {a.mean.shape} vs {b.mean.shape}")
    diff = a.mean - b.mean
    covmean = linalg.sqrtm(a.cov @ b.cov)  # (``disp=False`` is deprecated since SciPy 1.16, gone in 1.18)
    if not np.isfinite(covmean).all():
        offset = np.eye(a.cov.shape[0]) * eps
        covmean = linalg.sqrtm((a.cov + offset) @ (b.cov + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3 * max(1.0, np.abs(covmean).max())):
            raise ValueError(f"sqrtm returned a large imaginary part ({np.abs(covmean.imag).max():.3g})")
        covmean = covmean.real
    return float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2.0 * np.trace(covmean))


@torch.no_grad()
def classifier_outputs(
    classifier: torch.nn.Module, batches: Iterable[torch.Tensor], device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features [N, D], predicted labels [N])`` of the classifier over image batches ``[B, 3, H, W]``."""
    feats, preds = [], []
    classifier = classifier.to(device).eval()
    for images in batches:
        f = classifier.features(images.to(device).float())
        feats.append(f.cpu())
        preds.append(classifier.head(f).argmax(dim=1).cpu())
    if not feats:
        raise ValueError("no images given")
    return torch.cat(feats), torch.cat(preds)


def accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``predicted == labels``."""
    if predicted.shape != labels.shape:
        raise ValueError(f"shapes differ: {tuple(predicted.shape)} vs {tuple(labels.shape)}")
    return float((predicted == labels).float().mean())


def warn_if_few(count: int, dim: int) -> None:
    """FD from fewer samples than feature dimensions is biased upward and has a singular covariance."""
    if count < dim:
        warnings.warn(f"FD-shapes from {count} samples in {dim} dimensions is strongly biased; use more samples")


def _knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row ``[N]`` (the row itself excluded)."""
    if len(features) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set, got {len(features)}")
    return torch.cdist(features, features).kthvalue(k + 1, dim=1).values


def _inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Whether each of ``points`` lies inside at least one ball ``(centres[j], radii[j])`` ``[N]`` bool."""
    return (torch.cdist(points, centres) <= radii[None]).any(dim=1)


def manifold_membership(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> dict[str, torch.Tensor]:
    """Per point, what `precision_recall` averages: ``"precision"`` ``[N_fake]`` bool (each fake
    sample inside the real manifold), ``"recall"`` ``[N_real]`` bool (each real image inside the fake
    manifold). Bootstrap intervals resample these (`tokenbridge.sample_intervals`)."""
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"need two [N, D] feature sets of equal D, got {tuple(real.shape)} and {tuple(fake.shape)}")
    real, fake = real.double(), fake.double()
    return {
        "precision": _inside(fake, real, _knn_radii(real, k)),
        "recall": _inside(real, fake, _knn_radii(fake, k)),
    }


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> dict[str, float]:
    """k-NN precision and recall of feature sets ``[N, D]`` (Kynkäänniemi et al., 2019).

    Precision: share of fake samples inside the real manifold (union of balls reaching each real
    point's k-th neighbour) — fidelity. Recall: share of real samples inside the fake manifold —
    coverage of the real variety. FD mixes both; these separate them.
    """
    return {name: float(inside.float().mean()) for name, inside in manifold_membership(real, fake, k).items()}
