"""Bootstrap intervals of sample metrics, and of the difference between two sample sets.

    outputs = sample_outputs(pipe, classifier, 500, order="random")    # tokenbridge.evaluation
    metric_intervals(outputs)                 # {"class_accuracy": [lo, hi], "fd_shapes": ..., ...}
    difference_intervals(baseline, variant)   # variant − baseline, each with its 95 % interval

A resample draws N sample indices with replacement (percentile bootstrap, `CI_QUANTILES`): class
accuracy and precision average the resampled per-sample values, FD-shapes is recomputed from the
resampled features against the fixed real statistics, and recall (a value per real image) resamples
the real images. The intervals are therefore conditional on the other set (the real reference for
FD-shapes and precision, the samples' manifold for recall): they say how far a metric moves with
the draw of samples, not with the draw of the reference. Draws are centred on the full set's value
(`corrected_draws`). Two sets generated with the same labels
and seeds (sample i: class i mod 10, seed i) are resampled with the same indices (paired), so a
difference is not blurred by the classes a resample happens to hold.
"""

from __future__ import annotations

import torch

from tokenbridge.evaluation import SampleOutputs
from tokenbridge.metrics import feature_statistics, frechet_distance, manifold_membership
from tokenbridge.statistics import percentile_interval

LOWER_IS_BETTER = {"class_accuracy": False, "fd_shapes": True, "precision": False, "recall": False}
"""The sample metrics, and which way each one improves."""

RESAMPLES = 500
"""Bootstrap resamples per interval (each FD-shapes draw costs one 128×128 matrix square root)."""


def _picks(samples: int, reals: int, resamples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Resampled sample indices ``[R, samples]`` and real-image indices ``[R, reals]`` (int64)."""
    rng = torch.Generator().manual_seed(seed)
    return (
        torch.randint(samples, (resamples, samples), generator=rng),
        torch.randint(reals, (resamples, reals), generator=rng),
    )


def metric_draws(
    outputs: SampleOutputs, picks_RN: torch.Tensor, real_picks_RM: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Every sample metric of ``outputs`` on each resample ``[R]`` (float64)."""
    membership = manifold_membership(outputs.real_features, outputs.features)
    real_stats = feature_statistics(outputs.real_features)
    fd_R = [frechet_distance(feature_statistics(outputs.features[picks]), real_stats) for picks in picks_RN]
    return {
        "class_accuracy": outputs.correct.double().cpu()[picks_RN].mean(dim=1),
        "fd_shapes": torch.tensor(fd_R, dtype=torch.float64),
        "precision": membership["precision"].double().cpu()[picks_RN].mean(dim=1),
        "recall": membership["recall"].double().cpu()[real_picks_RM].mean(dim=1),
    }


def corrected_draws(
    outputs: SampleOutputs, picks_RN: torch.Tensor, real_picks_RM: torch.Tensor
) -> dict[str, torch.Tensor]:
    """`metric_draws` shifted so that their mean is the full set's value (bootstrap bias
    correction: FD-shapes of a resample is biased upward, as a resample repeats samples and so
    holds fewer distinct ones; the averaged metrics are unbiased and barely move)."""
    full = metric_draws(
        outputs, torch.arange(len(outputs.correct))[None], torch.arange(len(outputs.real_features))[None]
    )
    draws = metric_draws(outputs, picks_RN, real_picks_RM)
    return {name: draws[name] - draws[name].mean() + full[name][0] for name in draws}


def metric_intervals(outputs: SampleOutputs, resamples: int = RESAMPLES, seed: int = 0) -> dict[str, list[float]]:
    """95 % interval ``[lo, hi]`` of each sample metric of ``outputs``."""
    picks = _picks(len(outputs.correct), len(outputs.real_features), resamples, seed)
    return {name: percentile_interval(draws) for name, draws in corrected_draws(outputs, *picks).items()}


def difference_intervals(
    base: SampleOutputs, other: SampleOutputs, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, dict]:
    """``other − base`` of each sample metric: the difference of the full sets and its 95 %
    interval from paired resamples (both sets need as many samples, drawn with the same labels
    and seeds, and as many real images)."""
    if len(base.correct) != len(other.correct) or len(base.real_features) != len(other.real_features):
        raise ValueError(
            f"a paired difference needs sets of equal size, got {len(base.correct)} and {len(other.correct)} samples"
        )
    picks = _picks(len(base.correct), len(base.real_features), resamples, seed)
    base_draws, other_draws = corrected_draws(base, *picks), corrected_draws(other, *picks)
    return {
        name: {
            "difference": round(float((other_draws[name] - base_draws[name]).mean()), 5),
            "ci95": percentile_interval(other_draws[name] - base_draws[name]),
        }
        for name in LOWER_IS_BETTER
    }


def direction(metric: str, difference: dict) -> str:
    """Whether ``other`` (of `difference_intervals`) is "better" or "worse" than ``base`` on
    ``metric`` beyond the interval (it excludes zero), else "undecided"."""
    low, high = difference["ci95"]
    if low <= 0 <= high:
        return "undecided"
    return "better" if (high < 0) == LOWER_IS_BETTER[metric] else "worse"
