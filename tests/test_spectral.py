"""Spectral analysis: power spectra, radial profiles, low-frequency ratio, frequency order."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tokenbridge.spectral import (
    OFFICIAL_KL16_ORDER,
    frequency_order,
    low_frequency_ratio,
    power_spectra,
    radial_profile,
)


def sinusoid(n, size, cycles, rng, axis=-1):
    """[n, size, size] maps of a sinusoid with `cycles` periods over the map, random phase."""
    coord = torch.arange(size, dtype=torch.float64) / size
    phase = torch.rand(n, 1, 1, generator=rng, dtype=torch.float64) * 2 * math.pi
    wave = torch.cos(2 * math.pi * cycles * coord + phase)
    return wave.expand(n, size, size) if axis == -1 else wave.transpose(-1, -2).expand(n, size, size)


def test_low_frequency_sinusoid_ranks_before_white_noise():
    rng = torch.Generator().manual_seed(0)
    n, size = 32, 16
    low = sinusoid(n, size, 1, rng)
    high = sinusoid(n, size, 7, rng, axis=0)
    noise = torch.randn(n, size, size, generator=rng, dtype=torch.float64)
    latents = torch.stack([noise, high, low + 5.0], dim=1)  # an offset must not matter (DC removed)
    ratio = low_frequency_ratio(latents, cutoff=0.5)
    assert ratio[2] > 0.99 and ratio[1] < 0.01
    assert 0.1 < ratio[0] < 0.4  # white noise: about the disc's share of the frequency plane
    assert frequency_order(latents).tolist() == [2, 0, 1]


def test_parseval_and_dc_removed():
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)) + 3.0
    spectra = power_spectra(x)
    assert spectra.shape == (3, 8, 8)
    assert torch.all(spectra[:, 0, 0].abs() < 1e-20)
    centred = x.double() - x.double().mean(dim=(-2, -1), keepdim=True)
    assert torch.allclose(spectra.sum(dim=(-2, -1)), (centred**2).sum(dim=(-2, -1)).mean(0))


def test_radial_profile_peaks_at_the_sinusoid_frequency():
    rng = torch.Generator().manual_seed(2)
    size = 32
    latents = sinusoid(8, size, 4, rng)[:, None]  # 4 cycles / 32 samples = 0.125 = 0.25 Nyquist
    radii, power = radial_profile(latents, num_bins=16)
    assert power.shape == (1, 16)
    peak = radii[torch.nan_to_num(power[0], nan=-1).argmax()]
    assert abs(peak.item() - 0.25) < 2**0.5 / 16


@given(st.permutations(range(5)), st.integers(0, 2**31 - 1))
def test_permuting_channels_permutes_ratios(perm, seed):
    rng = torch.Generator().manual_seed(seed)
    scales = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5])[None, :, None, None]
    x = torch.randn(3, 5, 8, 8, generator=rng) * scales
    x = x + torch.linspace(0, 4, 8)[None, None, None, :] * torch.arange(5)[None, :, None, None]
    perm = torch.tensor(perm)
    assert torch.allclose(low_frequency_ratio(x[:, perm]), low_frequency_ratio(x)[perm])
    channel_order = frequency_order(x)
    assert sorted(channel_order.tolist()) == list(range(5))
    ratios = low_frequency_ratio(x)[channel_order]
    assert torch.all(ratios[:-1] >= ratios[1:])


def test_constant_channel_and_errors():
    x = torch.zeros(2, 2, 4, 4)
    x[:, 1] = torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(3))
    assert low_frequency_ratio(x)[0] == 0
    assert frequency_order(x).tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        low_frequency_ratio(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="fraction of Nyquist"):
        low_frequency_ratio(x, cutoff=0)


def test_official_order_is_a_permutation():
    assert sorted(OFFICIAL_KL16_ORDER) == list(range(16))


def test_channel_variance_spectrum_counts_the_rank():
    """Latents that are 2 random maps mixed into 6 channels: all variance in 2 components."""
    from tokenbridge.spectral import channel_variance_spectrum

    rng = torch.Generator().manual_seed(0)
    sources = torch.randn(50, 2, 4, 4, generator=rng)
    latents = torch.einsum("nkhw,kc->nchw", sources, torch.randn(2, 6, generator=rng))
    spectrum = channel_variance_spectrum(latents)
    assert spectrum.shape == (6,) and spectrum[1] == pytest.approx(1.0, abs=1e-9) and spectrum[0] < 0.99
    iid = channel_variance_spectrum(torch.randn(400, 4, 4, 4, generator=rng))
    assert iid.tolist() == pytest.approx([0.25, 0.5, 0.75, 1.0], abs=0.03)
