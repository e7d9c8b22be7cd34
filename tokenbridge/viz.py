"""Figures shared by the notebooks and the app (matplotlib; no Gradio here).

Every function returns a ``matplotlib.figure.Figure`` and leaves global pyplot state alone, so
callers can display, save or embed it.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from tokenbridge.quantizer import GaussianQuantizer


def _gaussian_density(u: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * u**2) / math.sqrt(2 * math.pi)


def plot_bins(quantizers: Mapping[str, GaussianQuantizer]) -> Figure:
    """One panel per quantizer: N(0,1) density, bin boundaries (grey), values (dots), in u units."""
    fig = Figure(figsize=(5 * len(quantizers), 3.2), layout="constrained")
    axes = fig.subplots(1, len(quantizers), squeeze=False)[0]
    for ax, (title, q) in zip(axes, quantizers.items()):
        r = q.config.std_range
        u = np.linspace(-r - 0.3, r + 0.3, 600)
        ax.plot(u, _gaussian_density(u), color="black", lw=1.2, label="N(0, 1)")
        for b in q.boundaries.numpy():
            ax.axvline(b, color="0.6", lw=0.6)
        values = q.values.numpy()
        ax.plot(values, _gaussian_density(values), "o", ms=3, color="tab:red", label="γ_i (bin means)")
        ax.set_title(f"{title}: B = {q.levels}")
        ax.set_xlabel("normalized latent u")
        ax.legend(loc="upper right", fontsize=8)
    return fig


def plot_curves(
    x: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    xlabel: str,
    ylabel: str,
    title: str = "",
    logx: bool = False,
    logy: bool = False,
) -> Figure:
    """Several named y-series over one x axis (e.g. MSE of each rule vs B)."""
    fig = Figure(figsize=(5.5, 3.5), layout="constrained")
    ax = fig.subplots()
    for name, ys in curves.items():
        ax.plot(list(x), list(ys), "o-", ms=4, label=name)
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_rule_disagreement(levels: int, std_range: float = 3.0, points: int = 20001) -> Figure:
    """Where ``nearest`` and ``interval`` pick different bins, over u in [-r, r].

    Both quantizers use value_range = std_range, so latents and normalized units coincide.
    """
    rules = {a: GaussianQuantizer(levels, std_range, std_range, assign=a) for a in ("nearest", "interval")}
    u = torch.linspace(-std_range, std_range, points)
    differs = (rules["nearest"].quantize(u) != rules["interval"].quantize(u)).numpy()
    fig = Figure(figsize=(9, 2.8), layout="constrained")
    ax = fig.subplots()
    ax.plot(u.numpy(), _gaussian_density(u.numpy()), color="black", lw=1, label="N(0, 1)")
    ax.fill_between(u.numpy(), 0, 0.42 * differs, color="tab:orange", alpha=0.6, step="mid",
                    label="nearest ≠ interval")
    ax.set_xlabel("normalized latent u")
    ax.set_title(f"B = {levels}: nearest (argmin |u − γ_i|) vs interval (b_i ≤ u < b_i+1)")
    ax.legend(loc="upper right", fontsize=8)
    return fig


def plot_bin_occupancy(counts: Mapping[str, torch.Tensor]) -> Figure:
    """Share of values per bin index for several settings (``counts`` [B] each)."""
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(counts)
    for i, (name, c) in enumerate(counts.items()):
        share = (c.double() / c.sum()).numpy()
        ax.bar(np.arange(len(share)) + (i - (len(counts) - 1) / 2) * width, share, width=width, label=name)
    ax.set_xlabel("bin index")
    ax.set_ylabel("share of values")
    ax.legend(fontsize=8)
    return fig
