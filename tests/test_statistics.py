"""Bootstrap intervals and mean ± SEM summaries (`tokenbridge.statistics`)."""

import math

import torch

from tokenbridge.statistics import bootstrap_medians, mean_sem, median_ci, median_difference_ci, rounded_list

NAN = float("nan")


def test_bootstrap_summaries_are_seeded():
    values = torch.cat([torch.arange(100.0), torch.tensor([NAN])])
    a, b = median_ci(values, 200, seed=1), median_ci(values, 200, seed=1)
    assert a == b and a["median"] == 49.0 and a["undefined"] == 1 and a["n"] == 100
    assert a["ci95"][0] < 49 < a["ci95"][1]
    assert median_ci(values, 200, seed=2) != a  # another seed, other resamples
    diff = median_difference_ci(values + 10, values, 200)
    assert diff["difference"] == 10.0 and diff["ci95"][0] < 10 < diff["ci95"][1]


def test_bootstrap_medians_resample_only_finite_values():
    values = torch.tensor([1.0, NAN, float("inf"), 1.0, 1.0])
    medians = bootstrap_medians(values, 50, torch.Generator().manual_seed(0))
    assert medians.shape == (50,) and torch.all(medians == 1.0)


def test_undefined_summaries_say_so():
    assert median_ci(torch.tensor([NAN, NAN])) == {"median": None, "n": 0, "undefined": 2, "ci95": [None, None]}
    assert median_difference_ci(torch.tensor([NAN]), torch.tensor([1.0])) == {"difference": None, "ci95": [None, None]}


def test_mean_sem_per_column_skips_nan():
    values_NT = torch.tensor([[1.0, 2.0, NAN], [3.0, 2.0, NAN], [5.0, NAN, NAN]])
    out = mean_sem(values_NT)
    assert out["mean"] == [3.0, 2.0, None]
    # column 0: sample std 2 over 3 values; column 1: two equal values
    assert out["sem"][0] == round(2 / math.sqrt(3), 4) and out["sem"][1] == 0.0


def test_rounded_list_is_json_ready():
    assert rounded_list(torch.tensor([1.234567, NAN, -0.5]), 3) == [1.235, None, -0.5]
