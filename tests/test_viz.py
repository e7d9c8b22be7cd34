"""Figures of `tokenbridge.viz`: each returns a Figure with the expected panels and rejects bad shapes."""

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

from tokenbridge import spectral, viz
from tokenbridge.quantizer import GaussianQuantizer


@pytest.fixture(scope="module")
def latents():
    return torch.randn(5, 6, 8, 8, generator=torch.Generator().manual_seed(0))


def _axes(fig) -> int:
    assert isinstance(fig, Figure)
    return len(fig.axes)


def test_no_pyplot_state(latents):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    viz.plot_channel_maps(latents[:2])
    assert plt.get_fignums() == before
    assert matplotlib.get_backend()  # importing viz did not break the backend


def test_existing_figures_still_work():
    q = GaussianQuantizer(16)
    assert _axes(viz.plot_bins({"a": q, "b": GaussianQuantizer.official()})) == 2
    assert _axes(viz.plot_curves([4, 8], {"x": [1.0, 0.5]}, "B", "mse")) == 1
    assert _axes(viz.plot_bin_occupancy({"a": torch.arange(16)})) == 1


def test_channel_maps(latents):
    assert _axes(viz.plot_channel_maps(latents[:3])) == 3 * 6 + 1
    fig = viz.plot_channel_maps(latents[:2], channels=[5, 0, 2], row_labels=["a", "b"], limit=3.0)
    assert _axes(fig) == 2 * 3 + 1
    assert fig.axes[0].get_title() == "c5"
    with pytest.raises(ValueError, match=r"\[N, C, h, w\]"):
        viz.plot_channel_maps(latents[0])
    with pytest.raises(ValueError, match="channels"):
        viz.plot_channel_maps(latents, channels=[6])
    with pytest.raises(ValueError, match="row labels"):
        viz.plot_channel_maps(latents[:2], row_labels=["only one"])


def test_power_spectra(latents):
    spectra = spectral.power_spectra(latents)
    assert _axes(viz.plot_power_spectra(spectra)) == 6 + 1
    assert _axes(viz.plot_power_spectra(spectra, columns=4)) == 6 + 1  # 2×4 grid, 2 cells removed
    assert _axes(viz.plot_power_spectra(spectra, channels=[1, 3])) == 2 + 1
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        viz.plot_power_spectra(spectra[0])
    with pytest.raises(ValueError, match="columns"):
        viz.plot_power_spectra(spectra, columns=0)


def test_radial_profiles(latents):
    radii, power = spectral.radial_profile(latents)
    assert _axes(viz.plot_radial_profiles(radii, power, cutoff=0.5, highlight=[0, 2])) == 1
    assert _axes(viz.plot_radial_profiles(radii, power, normalize=False)) == 1
    with pytest.raises(ValueError, match="bands"):
        viz.plot_radial_profiles(radii[:-1], power)
    with pytest.raises(ValueError, match=r"\[C, K\]"):
        viz.plot_radial_profiles(radii, power[0])
    with pytest.raises(ValueError, match="channels"):
        viz.plot_radial_profiles(radii, power, highlight=[99])


def test_ratio_order_bars_follow_frequency_order(latents):
    ratios = spectral.low_frequency_ratio(latents)
    fig = viz.plot_ratio_order(ratios, reference=0.2, reference_label="white noise")
    assert _axes(fig) == 1
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == [f"c{c}" for c in spectral.frequency_order(latents).tolist()]
    with pytest.raises(ValueError, match=r"\[C\]"):
        viz.plot_ratio_order(ratios[None])


def test_channel_bars():
    fig = viz.plot_channel_bars(
        {"a": [1.0, 2.0, 3.0], "b": torch.tensor([3.0, 2.0, 1.0])},
        "bits",
        channels=[2, 0, 1],
        reference=6.0,
        ylim=(0.5, 3.5),
    )
    assert _axes(fig) == 1
    assert fig.axes[0].get_ylim() == (0.5, 3.5)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["c2", "c0", "c1"]
    with pytest.raises(ValueError, match="same length"):
        viz.plot_channel_bars({"a": [1.0, 2.0], "b": [1.0]}, "bits")
    with pytest.raises(ValueError, match="labels"):
        viz.plot_channel_bars({"a": [1.0, 2.0]}, "bits", channels=[0])
    with pytest.raises(ValueError, match="at least one"):
        viz.plot_channel_bars({}, "bits")


def test_channel_histograms(latents):
    per_channel = GaussianQuantizer(64, calibration="per_channel").fit(latents)
    quantizers = {"fixed": GaussianQuantizer(16), "per channel": per_channel}
    assert _axes(viz.plot_channel_histograms(latents, quantizers, channels=[0, 3, 5])) == 2 * 3
    assert _axes(viz.plot_channel_histograms(latents, {"fixed": GaussianQuantizer(8)})) == 6
    with pytest.raises(ValueError, match=r"\[N, C, h, w\]"):
        viz.plot_channel_histograms(latents[0], quantizers)
    with pytest.raises(ValueError, match="at least one"):
        viz.plot_channel_histograms(latents, {})
    with pytest.raises(ValueError, match="channels"):
        viz.plot_channel_histograms(latents, quantizers, channels=[])


def test_vs_bits():
    fig = viz.plot_vs_bits(
        [4, 8, 16],
        {"a": [1.0, None, 3.0], "b": [1, 2, 3]},
        "FD",
        baselines={"continuous": 0.5},
        logy=True,
        references={"paper": [None, 2.0, 1.0]},
    )
    assert _axes(fig) == 1
    assert len(fig.axes[0].lines) == 4
    with pytest.raises(ValueError, match="'paper'"):
        viz.plot_vs_bits([4, 8], {"a": [1.0, 2.0]}, "FD", references={"paper": [1.0]})
    with pytest.raises(ValueError, match="3 levels"):
        viz.plot_vs_bits([4, 8, 16], {"a": [1.0]}, "FD")
    with pytest.raises(ValueError, match="levels"):
        viz.plot_vs_bits([1, 8], {"a": [1.0, 2.0]}, "FD")


def test_image_rows():
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    fig = viz.plot_image_rows({"original": images, "recon": images.flip(0)}, column_labels=["x", "y", "z"])
    assert _axes(fig) == 2 * 3
    with pytest.raises(ValueError, match="same N"):
        viz.plot_image_rows({"a": images, "b": images[:2]})
    with pytest.raises(ValueError, match="same N"):
        viz.plot_image_rows({"a": images[:, :1]})
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        viz.plot_image_rows({"a": images[0]})
    with pytest.raises(ValueError, match="column labels"):
        viz.plot_image_rows({"a": images}, column_labels=["x"])


def test_rows_by_setting():
    rows = [
        {"levels": None, "assign": "nearest", "calibration": "fixed", "bins": "gaussian", "fd": 1.0},
        {"levels": 64, "assign": "nearest", "calibration": "fixed", "bins": "gaussian", "fd": 1.1},
        {"levels": 8, "assign": "nearest", "calibration": "fixed", "bins": "gaussian", "fd": 3.0},
        {"levels": 8, "assign": "interval", "calibration": "fixed", "bins": "gaussian", "fd": 3.5},
    ]
    levels, series, continuous = viz.rows_by_setting(rows, "fd")
    assert levels == [8, 64] and continuous == 1.0
    assert series == {"nearest, fixed, gaussian": [3.0, 1.1], "interval, fixed, gaussian": [3.5, None]}
    assert _axes(viz.plot_vs_bits(levels, series, "FD", baselines={"continuous": continuous})) == 1
    with pytest.raises(ValueError, match="no 'psnr'"):
        viz.rows_by_setting(rows, "psnr")
    with pytest.raises(ValueError, match="two rows"):
        viz.rows_by_setting(rows + [dict(rows[1], fd=9.0)], "fd")


def test_power_spectra_of_constant_maps_is_blank_not_an_error():
    spectra = spectral.power_spectra(torch.ones(2, 3, 4, 4))  # mean removed: zero power everywhere
    assert _axes(viz.plot_power_spectra(spectra)) == 3 + 1


def test_sampling_steps_masks_and_intervals(tiny_pipeline):
    runs = {
        order: list(tiny_pipeline.steps([2], seed=0, preview=True, num_steps=4, order=order))
        for order in ("random", "confidence")
    }
    outline = torch.zeros(64, 64, dtype=torch.bool)
    outline[20:40, 20:40] = True
    assert _axes(viz.plot_sampling_steps(runs, outlines={"random": outline})) == 2 * 3 * 4 + 2
    assert _axes(viz.plot_sampling_steps({"random": runs["random"]}, steps=[0, 3])) == 3 * 2 + 1
    with pytest.raises(ValueError, match="same, non-zero number of steps"):
        viz.plot_sampling_steps({"a": runs["random"], "b": runs["random"][:2]})
    images = torch.zeros(3, 3, 64, 64)
    masks = outline.expand(3, 64, 64)
    assert _axes(viz.plot_mask_overlays(images, {"truth": masks, "estimate": masks})) == 3
    with pytest.raises(ValueError, match="masks must be"):
        viz.plot_mask_overlays(images, {"truth": masks[:2]})
    rows = {"real": (1.0, 0.9, 1.1), "random": (2.0, 1.5, 2.5)}
    assert _axes(viz.plot_intervals({"a": rows, "b": rows})) == 2
    with pytest.raises(ValueError, match="expected"):
        viz.plot_intervals({"a": rows, "b": {"random": (2.0, 1.5, 2.5)}})
    assert _axes(viz.plot_curves([1, 2], {"x": [1.0, 2.0]}, "step", "share", errors={"x": [0.1, 0.2]})) == 1
