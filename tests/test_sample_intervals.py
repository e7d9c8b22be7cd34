"""Bootstrap intervals of sample metrics: they hold the full set's value, shrink as 1/√N, and a
paired difference of a set with itself is exactly zero."""

import math

import pytest
import torch

from tokenbridge.evaluation import SampleOutputs, summary_metrics
from tokenbridge.sample_intervals import difference_intervals, direction, metric_intervals


def _outputs(n: int, correct: float, shift: float = 0.0, seed: int = 0) -> SampleOutputs:
    gen = torch.Generator().manual_seed(seed)
    real, fake = torch.randn(n, 8, generator=gen), torch.randn(n, 8, generator=gen)
    return SampleOutputs(fake + shift, real, torch.randperm(n, generator=gen) < round(correct * n))


def test_intervals_hold_the_value_and_match_the_binomial_width():
    outputs = _outputs(400, 0.5)
    full, intervals = summary_metrics(outputs), metric_intervals(outputs, resamples=400)
    for metric, (low, high) in intervals.items():
        assert low < full[metric] < high, metric
    width = intervals["class_accuracy"][1] - intervals["class_accuracy"][0]
    assert width == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 400), abs=0.015)
    small = metric_intervals(_outputs(100, 0.5), resamples=400)["class_accuracy"]
    assert small[1] - small[0] > 1.6 * width  # four times fewer samples: about twice as wide


def test_paired_difference_of_a_set_with_itself_is_zero():
    outputs = _outputs(100, 0.7)
    for metric, difference in difference_intervals(outputs, outputs, resamples=100).items():
        assert difference == {"difference": 0.0, "ci95": [0.0, 0.0]}
        assert direction(metric, difference) == "undecided"


def test_a_set_farther_from_the_data_and_less_accurate_is_worse_beyond_the_interval():
    base, other = _outputs(300, 0.9), _outputs(300, 0.6, shift=1.5)
    differences = difference_intervals(base, other, resamples=200)
    assert differences["class_accuracy"]["difference"] == pytest.approx(-0.3, abs=1e-6)
    assert differences["fd_shapes"]["difference"] > 0 and differences["fd_shapes"]["ci95"][0] > 0
    assert {m: direction(m, d) for m, d in differences.items() if m != "recall"} == {
        "class_accuracy": "worse",
        "fd_shapes": "worse",
        "precision": "worse",
    }
    assert direction("class_accuracy", difference_intervals(other, base, resamples=200)["class_accuracy"]) == "better"


def test_unequal_sets_cannot_be_paired():
    with pytest.raises(ValueError, match="equal size"):
        difference_intervals(_outputs(100, 0.5), _outputs(80, 0.5))
