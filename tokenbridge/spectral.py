"""Per-channel frequency analysis of latents and the frequency-based channel order (Sec. 3.3).

Units: spatial frequencies are in cycles per latent sample, so the Nyquist frequency is 0.5 on
both axes; a ``cutoff`` is a radius given as a fraction of Nyquist (``cutoff = 1`` is the circle
that touches the Nyquist frequency of both axes).

DC handling: every latent map has its own mean subtracted before the FFT, so the DC bin holds no
power. A channel with a large constant offset therefore does not look "low-frequency": the ratio
measures how a channel's *variation* is spread over frequencies.
"""

from __future__ import annotations

import torch

OFFICIAL_KL16_ORDER = (8, 1, 10, 9, 6, 12, 4, 0, 3, 11, 7, 14, 2, 15, 13, 5)
"""The fixed channel order of the official TokenBridge checkpoints (MAR KL-16 latents)."""


def _check_latents(latents: torch.Tensor) -> None:
    if latents.dim() != 4:
        raise ValueError(f"latents must be [N, C, H, W], got shape {tuple(latents.shape)}")
    if latents.shape[0] < 1 or latents.shape[2] < 2 or latents.shape[3] < 2:
        raise ValueError(f"need N >= 1 and H, W >= 2, got shape {tuple(latents.shape)}")


def power_spectra(latents: torch.Tensor) -> torch.Tensor:
    """Mean 2-D power spectrum per channel: ``[N, C, H, W]`` -> ``[C, H, W]`` float64.

    ``|FFT2(x - mean(x))|^2 / (H W)`` averaged over the N maps, with frequencies in FFT order
    (DC at ``[0, 0]``; use ``torch.fft.fftshift`` to centre it for display). By Parseval the
    spectrum sums to the per-map variance times H W.
    """
    _check_latents(latents)
    x = latents.detach().double()
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    h, w = x.shape[-2:]
    return (torch.fft.fft2(x).abs() ** 2).mean(dim=0) / (h * w)


def frequency_radius(height: int, width: int) -> torch.Tensor:
    """Radius of each FFT bin as a fraction of Nyquist, ``[H, W]`` in FFT order (DC = 0)."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(width, dtype=torch.float64)[None, :]
    return torch.sqrt(fy**2 + fx**2) / 0.5


def radial_profile(latents: torch.Tensor, num_bins: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean power per radial frequency band: returns ``(radii [K], power [C, K])``.

    The bands split radii ``(0, sqrt(2)]`` (fraction of Nyquist; the corners reach sqrt 2) into
    ``num_bins`` equal widths (default ``max(H, W) // 2``); ``radii`` are band centres. DC is
    excluded; a band with no FFT bin is NaN.
    """
    spectra = power_spectra(latents)
    radius = frequency_radius(*spectra.shape[-2:])
    k = num_bins or max(spectra.shape[-2:]) // 2
    edges = torch.linspace(0.0, 2**0.5, k + 1, dtype=torch.float64)
    band = torch.bucketize(radius, edges[1:-1], right=True).flatten()
    keep = radius.flatten() > 0
    flat = spectra.flatten(1)[:, keep]
    band = band[keep]
    totals = torch.zeros(spectra.shape[0], k, dtype=torch.float64).index_add_(1, band, flat)
    counts = torch.bincount(band, minlength=k).double()
    return 0.5 * (edges[:-1] + edges[1:]), totals / counts


def low_frequency_ratio(latents: torch.Tensor, cutoff: float = 0.5) -> torch.Tensor:
    """Fraction of each channel's (DC-free) power at radius <= ``cutoff`` × Nyquist: ``[C]``.

    A channel with no variation at all has ratio 0.
    """
    if not 0 < cutoff <= 2**0.5:
        raise ValueError(f"cutoff is a fraction of Nyquist in (0, 1.414], got {cutoff}")
    spectra = power_spectra(latents)
    radius = frequency_radius(*spectra.shape[-2:])
    inside = (radius > 0) & (radius <= cutoff)
    total = spectra.sum(dim=(-2, -1))
    low = (spectra * inside).sum(dim=(-2, -1))
    return torch.where(total > 0, low / total.clamp_min(1e-300), torch.zeros_like(total))


def frequency_order(latents: torch.Tensor, cutoff: float = 0.5) -> torch.Tensor:
    """Channel permutation ``[C]`` (int64), descending low-frequency ratio: structure first.

    Ties keep the lower channel index first, so the order is deterministic.
    """
    ratio = low_frequency_ratio(latents, cutoff)
    return torch.sort(ratio, descending=True, stable=True).indices


def channel_variance_spectrum(latents: torch.Tensor) -> torch.Tensor:
    """Cumulative fraction of the latent variance explained by the top-k principal components of
    the channel vectors, k = 1..C: ``[N, C, H, W]`` -> ``[C]`` float64, ending at 1.

    Every position of every map is one C-vector (centred over all of them). A latent whose curve
    reaches ~1 at k ≪ C is nearly rank k: its remaining channels hold low-variance detail, which a
    generator must still model token by token (why the embedded VAE's channel count was chosen).
    """
    _check_latents(latents)
    vectors = latents.double().movedim(1, -1).reshape(-1, latents.shape[1])
    vectors = vectors - vectors.mean(dim=0)
    eigenvalues = torch.linalg.eigvalsh(vectors.T @ vectors).flip(0).clamp_min(0)
    return eigenvalues.cumsum(0) / eigenvalues.sum().clamp_min(1e-300)
