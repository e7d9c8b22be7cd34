"""Metrics: PSNR values, Fréchet distance against an independent eigenvalue formula, accuracy."""

import math

import numpy as np
import pytest
import torch

from tokenbridge import metrics
from tokenbridge.classifier import ClassifierConfig, build_classifier
from tokenbridge.metrics import FeatureStats, accuracy, classifier_outputs, feature_statistics, frechet_distance, psnr


def reference_fd(a: FeatureStats, b: FeatureStats) -> float:
    """Tr((Σa Σb)^½) = Σ √λ of the PSD matrix Σa^½ Σb Σa^½ (same eigenvalues): no sqrtm involved."""
    w, v = np.linalg.eigh(a.cov)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = np.clip(np.linalg.eigvalsh(root_a @ b.cov @ root_a), 0, None)
    diff = a.mean - b.mean
    return float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2 * np.sqrt(lam).sum())


def gaussian(n, d, seed, shift=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    return (torch.randn(n, d, generator=g, dtype=torch.float64) @ mix) * scale + shift


# ------------------------------------------------------------------ PSNR
def test_psnr_known_values():
    ref = torch.zeros(2, 3, 4, 4)
    assert torch.allclose(psnr(ref + 0.1, ref), torch.full((2,), 10 * math.log10(4 / 0.01)))  # 26.0206 dB
    assert psnr(ref + 0.1, ref)[0].item() == pytest.approx(26.0206, abs=1e-3)
    same = psnr(ref, ref)
    assert torch.isfinite(same).all() and (same > 100).all()  # MSE clamped at 1e-12: 126 dB, not inf
    half = ref.clone()
    half[1, :, :2] = 1.0  # second image: half the pixels off by 1 -> MSE 0.5
    out = psnr(half, ref)
    assert out[1].item() == pytest.approx(10 * math.log10(8), abs=1e-4) and out[0] > 100


def test_psnr_clips_to_image_range():
    ref = torch.full((1, 3, 2, 2), 1.0)
    assert psnr(ref + 5.0, ref).item() > 100  # 6.0 is shown as 1.0
    assert psnr(torch.full_like(ref, -1.0), ref).item() == pytest.approx(0.0, abs=1e-6)  # full range: 0 dB
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 3))


# ------------------------------------------------------------------ Fréchet distance
def test_fd_of_a_set_with_itself_is_zero():
    s = feature_statistics(gaussian(300, 12, seed=0))
    assert frechet_distance(s, s) == pytest.approx(0.0, abs=1e-6)


def test_fd_equals_squared_shift_for_equal_covariances():
    x = gaussian(400, 8, seed=1)
    a = feature_statistics(x)
    values = []
    for k in (0.0, 0.5, 1.0, 2.0, 4.0):
        shift = torch.linspace(-1, 1, 8, dtype=torch.float64) * k
        fd = frechet_distance(a, feature_statistics(x + shift))
        assert fd == pytest.approx(float(shift @ shift), rel=1e-6, abs=1e-6)
        values.append(fd)
    assert all(lo < hi for lo, hi in zip(values[1:], values[2:])) and values[0] < values[1]


def test_fd_matches_independent_formula_and_is_symmetric():
    a = feature_statistics(gaussian(500, 10, seed=2))
    b = feature_statistics(gaussian(400, 10, seed=3, shift=0.3, scale=1.7))
    fd = frechet_distance(a, b)
    assert fd == pytest.approx(reference_fd(a, b), rel=1e-6)
    assert fd == pytest.approx(frechet_distance(b, a), rel=1e-6)
    assert fd > 0


def test_fd_closed_form_diagonal():
    """Diagonal covariances: FD = ‖Δμ‖² + Σ (σa − σb)²."""
    a = FeatureStats(mean=np.array([0.0, 1.0, 2.0]), cov=np.diag([1.0, 4.0, 9.0]), count=10)
    b = FeatureStats(mean=np.array([1.0, 1.0, 0.0]), cov=np.diag([4.0, 4.0, 1.0]), count=10)
    assert frechet_distance(a, b) == pytest.approx(1 + 4 + (1 + 0 + 4), rel=1e-9)


def test_fd_one_dimensional_features():
    a = feature_statistics(torch.tensor([[0.0], [2.0], [4.0]]))  # mean 2, var 4
    b = feature_statistics(torch.tensor([[1.0], [2.0]]))  # mean 1.5, var 0.5
    assert a.cov.shape == (1, 1)
    assert frechet_distance(a, b) == pytest.approx(0.25 + (2 - math.sqrt(0.5)) ** 2, rel=1e-9)


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_fd_with_singular_covariances_is_finite():
    """N < D: rank-deficient covariances; the result stays finite and matches the eigen formula."""
    a = feature_statistics(gaussian(5, 16, seed=4))
    b = feature_statistics(gaussian(6, 16, seed=5, shift=1.0))
    assert np.linalg.matrix_rank(a.cov) < 16
    fd = frechet_distance(a, b)
    assert math.isfinite(fd)
    assert fd == pytest.approx(reference_fd(a, b), rel=1e-4)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-4)
    zero = feature_statistics(torch.zeros(4, 3))
    assert frechet_distance(zero, zero) == pytest.approx(0.0, abs=1e-9)


def test_fd_eps_fallback_when_sqrtm_fails(monkeypatch):
    """A non-finite sqrtm triggers the ε·I retry (forced here: scipy rarely fails on real inputs)."""
    from scipy import linalg

    real_sqrtm = linalg.sqrtm
    calls = []

    def flaky(matrix, *args, **kwargs):
        calls.append(matrix)
        if len(calls) == 1:
            return np.full_like(matrix, np.nan)
        return real_sqrtm(matrix, *args, **kwargs)

    monkeypatch.setattr(linalg, "sqrtm", flaky)
    a = feature_statistics(gaussian(5, 8, seed=6))
    b = feature_statistics(gaussian(5, 8, seed=7))
    fd = frechet_distance(a, b, eps=1e-6)
    assert len(calls) == 2 and math.isfinite(fd)
    assert np.allclose(calls[1], (a.cov + 1e-6 * np.eye(8)) @ (b.cov + 1e-6 * np.eye(8)))
    assert fd == pytest.approx(reference_fd(a, b), rel=1e-3)


def test_fd_rejects_large_imaginary_parts(monkeypatch):
    from scipy import linalg

    monkeypatch.setattr(linalg, "sqrtm", lambda m, *a, **k: np.eye(len(m)) * (1 + 1j))
    s = feature_statistics(gaussian(10, 3, seed=8))
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(s, s)


def test_fd_dimension_mismatch():
    with pytest.raises(ValueError, match="feature dimensions differ"):
        frechet_distance(feature_statistics(gaussian(5, 3, 0)), feature_statistics(gaussian(5, 4, 0)))


# ------------------------------------------------------------------ statistics, accuracy, classifier outputs
def test_feature_statistics_values_and_validation():
    x = gaussian(50, 4, seed=9)
    s = feature_statistics(x.float())
    assert s.count == 50 and s.mean.dtype == np.float64 and s.cov.shape == (4, 4)
    assert np.allclose(s.cov, np.cov(x.numpy(), rowvar=False), atol=1e-5)
    assert np.allclose(s.mean, x.numpy().mean(axis=0), atol=1e-6)
    assert feature_statistics(x.numpy()).count == 50
    for bad in (torch.zeros(1, 4), torch.zeros(8), torch.zeros(2, 3, 4)):
        with pytest.raises(ValueError, match="expected features"):
            feature_statistics(bad)
    with pytest.raises(ValueError, match="1 non-finite"):
        feature_statistics(torch.tensor([[0.0, 1.0], [float("nan"), 2.0]]))


def test_accuracy():
    assert accuracy(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 4])) == 0.75
    assert accuracy(torch.tensor([0]), torch.tensor([0])) == 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        accuracy(torch.tensor([1, 2]), torch.tensor([1]))


def test_classifier_outputs_concatenate_batches():
    torch.manual_seed(0)
    model = build_classifier(ClassifierConfig(widths=(8, 16), num_classes=3, image_size=16))
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    feats, preds = classifier_outputs(model, [x[:2], x[2:]])
    assert feats.shape == (5, 16) and preds.shape == (5,)
    with torch.no_grad():
        assert torch.allclose(feats, model.features(x), atol=1e-6)
        assert torch.equal(preds, model(x).argmax(1))
    with pytest.raises(ValueError, match="no images"):
        classifier_outputs(model, [])


def test_warn_if_few():
    with pytest.warns(UserWarning, match="strongly biased"):
        metrics.warn_if_few(10, 128)


def test_precision_recall_separates_fidelity_from_coverage():
    from tokenbridge.metrics import precision_recall

    g = torch.Generator().manual_seed(0)
    real = torch.randn(400, 4, generator=g)
    same = precision_recall(real, torch.randn(400, 4, generator=g))
    assert same["precision"] > 0.85 and same["recall"] > 0.85
    collapsed = precision_recall(real, 0.2 * torch.randn(400, 4, generator=g))  # faithful, no variety
    assert collapsed["precision"] > 0.95 and collapsed["recall"] < 0.5
    off = precision_recall(real, torch.randn(400, 4, generator=g) + 6.0)  # far from the real data
    assert off["precision"] < 0.05 and off["recall"] < 0.05
    # real radii (k=1) 1, 1, 2: fakes 0.5 and 0.7 are inside, 10 is not. Fake radii 0.2, 0.2, 9.3:
    # real 0 is in no fake ball, reals 1 and 3 fall in the outlier's huge ball (a known weakness).
    exact = precision_recall(torch.tensor([[0.0], [1.0], [3.0]]), torch.tensor([[0.5], [0.7], [10.0]]), k=1)
    assert exact == pytest.approx({"precision": 2 / 3, "recall": 2 / 3})
    with pytest.raises(ValueError, match="more than 3 samples"):
        precision_recall(real[:3], real[:3])
    with pytest.raises(ValueError, match="equal D"):
        precision_recall(real, real[:, :2])
