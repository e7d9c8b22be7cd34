"""Summaries with their uncertainty: bootstrap intervals of medians, per-column mean ± SEM.

Every random draw comes from a `torch.Generator` seeded by the caller (``seed``), so a summary is
the same on every run. NaN and ±inf values count as undefined (e.g. a measure with no foreground
found): they are skipped and counted, never silently turned into numbers.
"""

from __future__ import annotations

import torch

CI_QUANTILES = (0.025, 0.975)
"""Percentile-bootstrap 95% interval."""


def bootstrap_medians(values: torch.Tensor, resamples: int, rng: torch.Generator) -> torch.Tensor:
    """Medians ``[R]`` of ``resamples`` resamples (with replacement) of the finite ``values``."""
    finite = values[values.isfinite()]
    picks_RN = torch.randint(len(finite), (resamples, len(finite)), generator=rng)
    return finite[picks_RN].median(dim=1).values


def percentile_interval(draws_R: torch.Tensor) -> list[float]:
    """The `CI_QUANTILES` of bootstrap draws ``[R]`` (5 digits)."""
    return [round(float(q), 5) for q in draws_R.quantile(torch.tensor(CI_QUANTILES, dtype=draws_R.dtype))]


def median_ci(values: torch.Tensor, resamples: int = 2000, seed: int = 0) -> dict:
    """Median of the finite values ``[N]`` (the lower one for an even count, as torch), its
    percentile-bootstrap 95% interval, and how many values were undefined (NaN: e.g. no
    foreground found)."""
    finite = values[values.isfinite()]
    if len(finite) == 0:
        return {"median": None, "n": 0, "undefined": len(values), "ci95": [None, None]}
    medians_R = bootstrap_medians(values, resamples, torch.Generator().manual_seed(seed))
    return {
        "median": round(float(finite.median()), 5),
        "n": len(finite),
        "undefined": len(values) - len(finite),
        "ci95": percentile_interval(medians_R),
    }


def median_difference_ci(a: torch.Tensor, b: torch.Tensor, resamples: int = 2000, seed: int = 0) -> dict:
    """median(a) − median(b) of the finite values of two independent samples, with a
    percentile-bootstrap 95% interval (None where either has no finite value)."""
    if not (a.isfinite().any() and b.isfinite().any()):
        return {"difference": None, "ci95": [None, None]}
    rng = torch.Generator().manual_seed(seed)
    diffs_R = bootstrap_medians(a, resamples, rng) - bootstrap_medians(b, resamples, rng)
    point = a[a.isfinite()].median() - b[b.isfinite()].median()
    return {"difference": round(float(point), 5), "ci95": percentile_interval(diffs_R)}


def rounded_list(values: torch.Tensor, digits: int = 5) -> list[float | None]:
    """``values`` as a JSON-ready list, rounded to ``digits``, NaN as None."""
    return [None if v != v else round(v, digits) for v in values.tolist()]


def mean_sem(values_NT: torch.Tensor) -> dict:
    """Per-column mean and standard error ``{"mean": [T], "sem": [T]}`` of ``[N, T]`` values (NaNs
    skipped; 4 digits)."""
    n_T = values_NT.isfinite().sum(dim=0)
    mean_T = values_NT.nanmean(dim=0)
    sem_T = ((values_NT - mean_T).square().nansum(dim=0) / (n_T - 1).clamp_min(1)).sqrt() / n_T.clamp_min(1).sqrt()
    return {"mean": rounded_list(mean_T, 4), "sem": rounded_list(sem_T, 4)}
