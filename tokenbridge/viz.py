"""Figures shared by the notebooks and the app (matplotlib; no Gradio here).

Every function returns a ``matplotlib.figure.Figure`` and leaves global pyplot state alone, so
callers can display, save or embed it.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib
import matplotlib.collections
import matplotlib.colors
import matplotlib.lines
import matplotlib.ticker
import numpy as np
import torch
from matplotlib.figure import Figure

from tokenbridge.data import to_uint8_image
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
    errors: Mapping[str, Sequence[float]] | None = None,
    baselines: Mapping[str, float] | None = None,
    baseline_label: str = "baseline",
) -> Figure:
    """Several named y-series over one x axis (e.g. MSE of each rule vs B); ``errors`` (per series
    name, one value per point, e.g. a standard error) are drawn as shaded bands y ± error;
    ``baselines`` (per series name, one value, e.g. chance) as a dashed line in the series' colour,
    named ``baseline_label`` once in the legend."""
    fig = Figure(figsize=(5.5, 3.5), layout="constrained")
    ax = fig.subplots()
    for name, ys in curves.items():
        (line,) = ax.plot(list(x), list(ys), "o-", ms=4, label=name)
        if errors is not None and name in errors:
            y, e = np.asarray(ys, dtype=float), np.asarray(errors[name], dtype=float)
            ax.fill_between(list(x), y - e, y + e, color=line.get_color(), alpha=0.2, lw=0)
        if baselines is not None and name in baselines:
            ax.axhline(float(baselines[name]), color=line.get_color(), ls="--", lw=1)
    if baselines:
        ax.plot([], [], "k--", lw=1, label=f"dashed: {baseline_label}")
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
    ax.fill_between(u.numpy(), 0, 0.42 * differs, color="tab:orange", alpha=0.6, step="mid", label="nearest ≠ interval")
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


# ------------------------------------------------------------------------------------------------
# Latent channels: maps, spectra, low-frequency ratios, histograms in quantizer units
# ------------------------------------------------------------------------------------------------


def _check_dim(name: str, tensor: torch.Tensor, dims: int, shape_text: str) -> torch.Tensor:
    t = torch.as_tensor(tensor).detach().cpu()
    if t.dim() != dims or 0 in t.shape:
        raise ValueError(f"{name} must be {shape_text} with no empty dimension, got shape {tuple(t.shape)}")
    return t


def _channel_list(channels: Sequence[int] | None, count: int) -> list[int]:
    picked = list(range(count)) if channels is None else [int(c) for c in channels]
    if not picked or any(not 0 <= c < count for c in picked):
        raise ValueError(f"channels must be a non-empty list of indices in 0..{count - 1}, got {channels!r}")
    return picked


def plot_channel_maps(
    latents: torch.Tensor,
    channels: Sequence[int] | None = None,
    row_labels: Sequence[str] | None = None,
    limit: float | None = None,
) -> Figure:
    """Latent maps ``[N, C, h, w]``: one row per image, one column per channel (in ``channels``
    order, default 0..C-1), one shared diverging colour scale ±``limit`` (default: the largest
    absolute value) and its colour bar. Axes: ``N · len(channels) + 1``."""
    z = _check_dim("latents", latents, 4, "[N, C, h, w]").float()
    picked = _channel_list(channels, z.shape[1])
    if row_labels is not None and len(row_labels) != z.shape[0]:
        raise ValueError(f"got {len(row_labels)} row labels for {z.shape[0]} images")
    vmax = float(limit) if limit is not None else max(float(z.abs().max()), 1e-12)
    fig = Figure(figsize=(0.85 * len(picked) + 1.2, 0.9 * z.shape[0] + 0.5), layout="constrained")
    axes = fig.subplots(z.shape[0], len(picked), squeeze=False)
    for i, row in enumerate(axes):
        for j, (ax, c) in enumerate(zip(row, picked)):
            im = ax.imshow(z[i, c].numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"c{c}", fontsize=8)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[i], fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.8, label="scaled latent")
    return fig


def plot_power_spectra(spectra: torch.Tensor, channels: Sequence[int] | None = None, columns: int = 8) -> Figure:
    """Mean power spectra ``[C, H, W]`` in FFT order (as `spectral.power_spectra` returns them),
    shown DC-centred (fftshift) on one shared log10 colour scale, one panel per channel.
    Zero-power bins (DC) are grey. Axes: ``len(channels)`` panels plus one colour bar (unused
    grid cells are removed)."""
    s = _check_dim("spectra", spectra, 3, "[C, H, W]").double()
    picked = _channel_list(channels, s.shape[0])
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    positive = torch.fft.fftshift(s, dim=(-2, -1))[picked]
    # The DC bin is zero by construction (each map's mean is removed): masked, like any zero.
    shown = np.ma.masked_invalid(torch.log10(positive.where(positive > 0, torch.nan)).numpy())
    vmin, vmax = (float(shown.min()), float(shown.max())) if shown.count() else (-1.0, 1.0)
    cmap = matplotlib.colormaps["magma"].with_extremes(bad="0.55")  # masked (zero) bins in grey
    cols = min(columns, len(picked))
    rows = math.ceil(len(picked) / cols)
    fig = Figure(figsize=(1.3 * cols + 1.0, 1.35 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, c, img in zip(axes, picked, shown):
        im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(f"c{c}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(picked) :]:
        ax.remove()
    fig.colorbar(im, ax=axes[: len(picked)].tolist(), shrink=0.8, label="log10 power (DC centred)")
    return fig


def plot_radial_profiles(
    radii: torch.Tensor,
    power: torch.Tensor,
    cutoff: float | None = None,
    highlight: Sequence[int] = (),
    normalize: bool = True,
) -> Figure:
    """Radial power profiles (`spectral.radial_profile`: radii ``[K]``, power ``[C, K]``), one
    line per channel on a log axis; ``highlight`` channels are drawn bold and labelled, the rest
    grey. ``normalize`` divides each profile by its mean over the bands (compares shapes, not
    variances). ``cutoff`` (fraction of Nyquist) draws the low-frequency disc's radius. One axes."""
    r = _check_dim("radii", radii, 1, "[K]").double().numpy()
    p = _check_dim("power", power, 2, "[C, K]").double()
    if p.shape[1] != r.shape[0]:
        raise ValueError(f"power has {p.shape[1]} bands but radii has {r.shape[0]}")
    bold = set(_channel_list(highlight, p.shape[0])) if len(highlight) else set()
    if normalize:
        p = p / torch.nanmean(p, dim=1, keepdim=True).clamp_min(1e-300)
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.subplots()
    for c in range(p.shape[0]):
        if c in bold:
            ax.plot(r, p[c].numpy(), "o-", ms=3, lw=1.8, label=f"c{c}")
        else:
            ax.plot(r, p[c].numpy(), "-", lw=0.8, color="0.7")
    if cutoff is not None:
        ax.axvline(cutoff, color="black", ls="--", lw=1, label=f"cutoff {cutoff:g}·Nyquist")
    ax.set_yscale("log")
    ax.set_xlabel("radial frequency (fraction of Nyquist)")
    ax.set_ylabel("power / channel mean" if normalize else "mean power")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, ncol=2)
    return fig


def plot_ratio_order(
    ratios: torch.Tensor,
    title: str = "low-frequency energy ratio",
    reference: float | None = None,
    reference_label: str = "reference",
) -> Figure:
    """Bars of per-channel ratios ``[C]`` sorted descending (ties: lower channel first), so the
    x axis reads as the generation order, channel names under the bars; ``reference`` draws a
    dashed horizontal line (e.g. the ratio of white noise). One axes."""
    v = _check_dim("ratios", ratios, 1, "[C]").double()
    channel_order = torch.sort(v, descending=True, stable=True).indices.tolist()
    fig = Figure(figsize=(0.42 * len(channel_order) + 1.5, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.bar(np.arange(len(channel_order)), v[channel_order].numpy(), color="tab:blue")
    ax.set_xticks(np.arange(len(channel_order)), [f"c{c}" for c in channel_order], fontsize=8)
    if reference is not None:
        ax.axhline(float(reference), color="black", ls="--", lw=1, label=reference_label)
        ax.legend(fontsize=8)
    ax.set_xlabel("channel, in generation order (structure first)")
    ax.set_ylabel("ratio")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    return fig


def plot_channel_bars(
    values: Mapping[str, Sequence[float]],
    ylabel: str,
    title: str = "",
    channels: Sequence[int] | None = None,
    reference: float | None = None,
    ylim: tuple[float, float] | None = None,
) -> Figure:
    """Grouped bars: for each channel, one bar per named series (each ``[C]``, in the order of
    ``channels``, the channel indices written under the bars, default 0..C-1); ``reference``
    draws a horizontal line (e.g. log2 B); ``ylim`` zooms the value axis. One axes."""
    if not values:
        raise ValueError("values must hold at least one series")
    series = {k: np.asarray(torch.as_tensor(v, dtype=torch.float64)) for k, v in values.items()}
    lengths = {len(v) if v.ndim == 1 else -1 for v in series.values()}
    if len(lengths) != 1 or -1 in lengths or 0 in lengths:
        shapes = [v.shape for v in series.values()]
        raise ValueError(f"every series must be 1-D with the same length, got shapes {shapes}")
    count = lengths.pop()
    labels = list(range(count)) if channels is None else [int(c) for c in channels]
    if len(labels) != count:
        raise ValueError(f"got {len(labels)} channel labels for series of length {count}")
    fig = Figure(figsize=(0.5 * count + 2, 3.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(series)
    for i, (name, v) in enumerate(series.items()):
        ax.bar(np.arange(count) + (i - (len(series) - 1) / 2) * width, v, width=width, label=name)
    if reference is not None:
        ax.axhline(reference, color="black", ls="--", lw=1)
    ax.set_xticks(np.arange(count), [f"c{c}" for c in labels], fontsize=8)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return fig


def plot_channel_histograms(
    latents: torch.Tensor,
    quantizers: Mapping[str, GaussianQuantizer],
    channels: Sequence[int] | None = None,
    bins: int = 60,
) -> Figure:
    """Histograms of latents ``[N, C, h, w]`` in each quantizer's normalized units u (before
    clamping), one row per quantizer (labelled with its key), one column per channel, with the
    N(0, 1) density the bins are laid out for, the bin boundaries (grey) and the clamp at ±r
    (red). Axes: ``len(quantizers) · len(channels)``."""
    z = _check_dim("latents", latents, 4, "[N, C, h, w]").float()
    if not quantizers:
        raise ValueError("quantizers must hold at least one quantizer")
    picked = _channel_list(channels, z.shape[1])
    fig = Figure(figsize=(2.3 * len(picked) + 0.6, 1.9 * len(quantizers) + 0.4), layout="constrained")
    axes = fig.subplots(len(quantizers), len(picked), squeeze=False, sharex=True)
    for row, (name, q) in zip(axes, quantizers.items()):
        r = q.config.std_range
        u = q.normalize(z, channel_dim=1)
        grid = np.linspace(-r - 1, r + 1, 400)
        for j, (ax, c) in enumerate(zip(row, picked)):
            for b in q.boundaries.numpy()[1:-1]:
                ax.axvline(b, color="0.7", lw=0.4)
            ax.hist(
                u[:, c].flatten().numpy(), bins=bins, range=(-r - 1, r + 1), density=True, color="tab:blue", alpha=0.7
            )
            ax.plot(grid, _gaussian_density(grid), color="black", lw=1)
            for edge in (-r, r):
                ax.axvline(edge, color="tab:red", lw=1)
            ax.set_yticks([])
            if row is axes[0]:
                ax.set_title(f"c{c}", fontsize=9)
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
            if row is axes[-1]:
                ax.set_xlabel("u")
    return fig


# ------------------------------------------------------------------------------------------------
# Reconstruction: metric vs bits, image grids
# ------------------------------------------------------------------------------------------------


def rows_by_setting(
    rows: Sequence[Mapping], metric: str, keys: Sequence[str] = ("assign", "calibration", "bins")
) -> tuple[list[int], dict[str, list[float | None]], float | None]:
    """Evaluation rows (dicts as `tokenbridge.evaluation.reconstruction_table` returns, ``levels``
    None for the continuous latents) -> ``(sorted levels, {"nearest, fixed, gaussian": [metric
    per level, None where missing]}, the continuous row's metric or None)``, for `plot_vs_bits`."""
    levels = sorted({int(r["levels"]) for r in rows if r["levels"] is not None})
    series: dict[str, list[float | None]] = {}
    continuous = None
    for r in rows:
        if metric not in r:
            raise ValueError(f"row has no {metric!r}; it has {', '.join(r)}")
        if r["levels"] is None:
            continuous = r[metric]
            continue
        name = ", ".join(str(r[k]) for k in keys)
        ys = series.setdefault(name, [None] * len(levels))
        i = levels.index(int(r["levels"]))
        if ys[i] is not None:
            raise ValueError(f"two rows for {name!r} at B = {r['levels']}; add the differing field to keys")
        ys[i] = r[metric]
    return levels, series, continuous


def _with_gaps(values: Sequence[float | None]) -> list[float]:
    return [np.nan if v is None else float(v) for v in values]


def plot_vs_bits(
    levels: Sequence[int],
    curves: Mapping[str, Sequence[float | None]],
    ylabel: str,
    title: str = "",
    baselines: Mapping[str, float] | None = None,
    logy: bool = False,
    references: Mapping[str, Sequence[float | None]] | None = None,
) -> Figure:
    """Named series over the number of levels B (log2 x axis labelled with B and bits); ``None``
    entries are gaps. ``references`` (e.g. a paper's numbers) are drawn in black with square
    markers, ``baselines`` as dashed/dotted horizontal lines (e.g. the continuous latents). One axes."""
    xs = [int(b) for b in levels]
    if not xs or any(b < 2 for b in xs):
        raise ValueError(f"levels must be a non-empty list of integers >= 2, got {list(levels)!r}")
    references = references or {}
    for name, ys in (*curves.items(), *references.items()):
        if len(ys) != len(xs):
            raise ValueError(f"curve {name!r} has {len(ys)} values for {len(xs)} levels")
    fig = Figure(figsize=(6.5, 3.8), layout="constrained")
    ax = fig.subplots()
    for name, ys in curves.items():
        ax.plot(xs, _with_gaps(ys), "o-", ms=4, lw=1.2, label=name)
    for name, ys in references.items():
        ax.plot(xs, _with_gaps(ys), "s--", ms=5, lw=1.5, color="black", label=name)
    for k, (name, y) in enumerate((baselines or {}).items()):
        ax.axhline(float(y), color="0.25" if k == 0 else "0.55", ls="--" if k == 0 else ":", lw=1.2, label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set(xs)), [f"{b}\n({math.log2(b):g} b)" for b in sorted(set(xs))], fontsize=8)
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    if logy:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("levels B (bits)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def plot_image_rows(
    rows: Mapping[str, torch.Tensor], column_labels: Sequence[str] | None = None, scale: float = 1.1
) -> Figure:
    """Images ``[N, 3, H, W]`` in [-1, 1] per named row (all rows the same N), row names on the
    left. Axes: ``len(rows) · N``."""
    if not rows:
        raise ValueError("rows must hold at least one batch of images")
    batches = {k: _check_dim(f"row {k!r}", v, 4, "[N, 3, H, W]") for k, v in rows.items()}
    sizes = {v.shape[0] for v in batches.values()}
    if len(sizes) != 1 or any(v.shape[1] != 3 for v in batches.values()):
        shapes = [tuple(v.shape) for v in batches.values()]
        raise ValueError(f"every row must be [N, 3, H, W] with the same N, got {shapes}")
    n = sizes.pop()
    if column_labels is not None and len(column_labels) != n:
        raise ValueError(f"got {len(column_labels)} column labels for {n} images per row")
    fig = Figure(figsize=(scale * n + 1.2, scale * len(batches) + 0.3), layout="constrained")
    axes = fig.subplots(len(batches), n, squeeze=False)
    for i, (name, images) in enumerate(batches.items()):
        pixels = to_uint8_image(images)
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(pixels[j], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
            if i == 0 and column_labels is not None:
                ax.set_title(column_labels[j], fontsize=8)
    return fig


# ------------------------------------------------------------------------------------------------
# Sampling steps and the foreground proxy (notebook 05)
# ------------------------------------------------------------------------------------------------

_COMMIT_COLOURS = matplotlib.colors.ListedColormap(["white", "0.75", "tab:orange"])
"""Token states in `plot_sampling_steps`: still masked, committed earlier, committed this step."""
_MASK_COLOURS = ("tab:red", "tab:cyan", "yellow", "tab:green")


def _outline(
    ax, mask: torch.Tensor, extent: tuple[float, float, float, float], colour: str, width: float = 1.2
) -> None:
    """Contour of a bool mask ``[H, W]`` drawn over ``extent`` (left, right, bottom, top)."""
    m = torch.as_tensor(mask).detach().cpu().float().numpy()
    if 0 < m.sum() < m.size:
        h, w = m.shape
        left, right, bottom, top = extent
        xs = left + (np.arange(w) + 0.5) * (right - left) / w
        ys = top + (np.arange(h) + 0.5) * (bottom - top) / h
        ax.contour(xs, ys, m, levels=[0.5], colors=colour, linewidths=width)


def plot_sampling_steps(
    runs: Mapping[str, Sequence], steps: Sequence[int] | None = None, outlines: Mapping[str, torch.Tensor] | None = None
) -> Figure:
    """Image 0 of each named sampling run (a list of `tokenbridge.pipeline.PreviewStep` with
    previews) at the chosen ``steps`` (default all): three rows per run, the decoded preview, the
    token grid (white: still masked, grey: committed before, orange: committed at this step) and the
    step's scores (`SamplingStep.confidence`, one colour scale per run, grey where nothing was
    decoded). ``outlines`` (per run, a mask ``[H, W]``, e.g. the final image's estimated
    foreground) is drawn in red on all three. Axes: ``3 · len(runs) · len(steps)`` + one colour
    bar per run."""
    if not runs:
        raise ValueError("runs must hold at least one sampling run")
    lengths = {len(r) for r in runs.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"every run must have the same, non-zero number of steps, got {sorted(lengths)}")
    shown = list(range(lengths.pop())) if steps is None else [int(t) for t in steps]
    fig = Figure(figsize=(1.25 * len(shown) + 1.6, 3.9 * len(runs)), layout="constrained")
    axes = fig.subplots(3 * len(runs), len(shown), squeeze=False)
    for r, (name, run) in enumerate(runs.items()):
        grid = math.isqrt(run[0].step.mask.shape[1])
        scores = torch.stack([run[t].step.confidence[0].float().cpu() for t in shown]).reshape(-1, grid, grid)
        finite = scores[scores.isfinite()]
        vmin, vmax = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.6")
        for j, t in enumerate(shown):
            step = run[t].step
            earlier = (~step.mask[0] & ~step.committed[0]).cpu().reshape(grid, grid)
            state = earlier.long() + 2 * step.committed[0].cpu().reshape(grid, grid).long()
            preview_ax, commit_ax, score_ax = axes[3 * r : 3 * r + 3, j]
            size = run[t].preview.shape[-1]
            preview_ax.imshow(to_uint8_image(run[t].preview[0]), interpolation="nearest")
            commit_ax.imshow(state.numpy(), cmap=_COMMIT_COLOURS, vmin=0, vmax=2, extent=(0, grid, grid, 0))
            im = score_ax.imshow(
                np.ma.masked_invalid(scores[j].numpy()), cmap=cmap, vmin=vmin, vmax=vmax, extent=(0, grid, grid, 0)
            )
            if outlines is not None and name in outlines:
                _outline(preview_ax, outlines[name], (0, size, size, 0), "tab:red")
                for ax in (commit_ax, score_ax):
                    _outline(ax, outlines[name], (0, grid, grid, 0), "tab:red")
            for ax in (preview_ax, commit_ax, score_ax):
                ax.set_xticks([])
                ax.set_yticks([])
            preview_ax.set_title(f"step {t + 1}/{step.num_steps}\n+{int(step.committed[0].sum())} tokens", fontsize=8)
            if j == 0:
                for ax, what in zip((preview_ax, commit_ax, score_ax), ("preview", "committed", "score")):
                    ax.set_ylabel(f"{name}\n{what}", fontsize=8)
        fig.colorbar(im, ax=axes[3 * r + 2, :].tolist(), shrink=0.9, label="log p + noise", pad=0.01)
    return fig


def plot_mask_overlays(
    images: torch.Tensor,
    masks: Mapping[str, torch.Tensor],
    column_labels: Sequence[str] | None = None,
    scale: float = 1.4,
) -> Figure:
    """Images ``[N, 3, H, W]`` in [-1, 1] in one row, each named set of masks ``[N, H, W]``
    outlined in its own colour, the first widest so that coinciding outlines stay visible
    (legend below). Axes: ``N``."""
    x = _check_dim("images", images, 4, "[N, 3, H, W]")
    if len(masks) > len(_MASK_COLOURS) or any(tuple(m.shape) != (x.shape[0], *x.shape[2:]) for m in masks.values()):
        raise ValueError(
            f"masks must be at most {len(_MASK_COLOURS)} sets of [N, H, W] = "
            f"{[x.shape[0], *x.shape[2:]]}, got {[tuple(m.shape) for m in masks.values()]}"
        )
    fig = Figure(figsize=(scale * x.shape[0] + 0.4, scale + 0.7), layout="constrained")
    axes = fig.subplots(1, x.shape[0], squeeze=False)[0]
    h, w = x.shape[2:]
    for i, ax in enumerate(axes):
        ax.imshow(to_uint8_image(x[i]), interpolation="nearest", extent=(0, w, h, 0))
        for k, (colour, m) in enumerate(zip(_MASK_COLOURS, masks.values())):
            _outline(ax, m[i], (0, w, h, 0), colour, width=2.4 / (k + 1))
        ax.set_xticks([])
        ax.set_yticks([])
        if column_labels is not None:
            ax.set_title(column_labels[i], fontsize=8)
    handles = [matplotlib.lines.Line2D([], [], color=c, lw=1.5) for c in _MASK_COLOURS[: len(masks)]]
    fig.legend(handles, list(masks), loc="outside lower center", ncol=len(masks), fontsize=8)
    return fig


def plot_intervals(measures: Mapping[str, Mapping[str, tuple[float, float, float]]]) -> Figure:
    """One panel per measure: for each named setting, an estimate with its interval ``(estimate,
    low, high)`` (e.g. a median and its bootstrap 95% interval); settings top to bottom in the
    order given, the same in every panel. Axes: ``len(measures)``."""
    if not measures:
        raise ValueError("measures must hold at least one measure")
    names = list(next(iter(measures.values())))
    fig = Figure(figsize=(3.2 * len(measures), 0.45 * len(names) + 1.0), layout="constrained")
    axes = fig.subplots(1, len(measures), squeeze=False, sharey=True)[0]
    for ax, (measure, rows) in zip(axes, measures.items()):
        if list(rows) != names:
            raise ValueError(f"measure {measure!r} has settings {list(rows)}, expected {names}")
        for y, (est, lo, hi) in enumerate(rows.values()):
            ax.plot([lo, hi], [y, y], color="tab:blue", lw=2)
            ax.plot([est], [y], "o", color="black", ms=4)
        ax.set_title(measure, fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(range(len(names)), names, fontsize=8)
    axes[0].invert_yaxis()
    return fig


def plot_training_curves(columns: Mapping[str, Sequence[float]], title: str = "", smooth: int = 20) -> Figure:
    """A run's ``metrics.csv`` columns (`tokenbridge.training_loop.read_metrics`) against ``step``: the loss
    on top, each of the task's own logs below (lr and seconds left out). Raw values thin, a centred
    running mean over ``smooth`` logged points thick, so the trend shows through batch noise."""
    names = [n for n in columns if n not in ("step", "lr", "seconds")]
    steps = np.asarray(columns["step"], dtype=float)
    fig = Figure(figsize=(6.5, 2.2 + 1.6 * len(names)), layout="constrained")
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, names):
        values = np.asarray(columns[name], dtype=float)
        (line,) = ax.plot(steps, values, lw=0.6, alpha=0.4)
        window = max(1, min(smooth, len(values) // 4))
        mean = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(steps[window // 2 : window // 2 + len(mean)], mean, lw=1.8, color=line.get_color())
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].set_title(title or "training")
    axes[-1].set_xlabel("step")
    return fig


def plot_learning_curve(entries: Sequence[Mapping], cfg: float) -> Figure:
    """`tokenbridge.learning_curve` entries against training samples seen: class accuracy of
    samples at CFG 1 and at ``cfg``, and the generative-classification accuracy, on top (chance:
    the dashed line); FD-shapes of the guided samples below."""
    seen = [e["samples_seen"] for e in entries]
    fig = Figure(figsize=(6.5, 5.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    for key, label in ((f"cfg_{cfg:g}", f"samples, CFG {cfg:g}"), ("cfg_1", "samples, CFG 1")):
        top.plot(seen, [100 * e[key]["class_accuracy"] for e in entries], "o-", label=f"class accuracy ({label})")
    top.plot(seen, [100 * e["generative_accuracy"] for e in entries], "s--", label="generative classification")
    top.axhline(10, color="grey", ls=":", lw=1, label="chance")
    top.set_ylabel("accuracy (%)")
    top.set_ylim(0, 100)
    top.legend(fontsize=8)
    bottom.plot(seen, [e[f"cfg_{cfg:g}"]["fd_shapes"] for e in entries], "o-", color="tab:red")
    bottom.set_ylabel(f"FD-shapes (CFG {cfg:g})")
    bottom.set_xlabel("training samples seen")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    return fig


# ------------------------------------------------------------------------------------------------
# Token editing (notebook 06)
# ------------------------------------------------------------------------------------------------


def cell_edges(region: torch.Tensor, size: float) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Outline of the True cells of a bool token grid ``[h, w]`` over a square image ``size`` pixels
    wide: the cell sides between a selected and an unselected cell, as ``((x0, y0), (x1, y1))``
    segments in pixel coordinates (y down, as `imshow`). Sides on the image's edge are left out
    (the frame shows them), so a region of every cell has no outline."""
    r = torch.as_tensor(region).detach().cpu().bool().numpy()
    if r.ndim != 2:
        raise ValueError(f"region must be a bool token grid [h, w], got shape {list(r.shape)}")
    h, w = r.shape
    dx, dy = size / w, size / h
    segments = []
    for i, j in zip(*np.nonzero(r[1:] != r[:-1])):  # horizontal sides: between rows i and i + 1
        segments.append(((j * dx, (i + 1) * dy), ((j + 1) * dx, (i + 1) * dy)))
    for i, j in zip(*np.nonzero(r[:, 1:] != r[:, :-1])):  # vertical sides: between columns j and j + 1
        segments.append((((j + 1) * dx, i * dy), ((j + 1) * dx, (i + 1) * dy)))
    return segments


def plot_edits(
    rows: Mapping[str, torch.Tensor],
    regions: torch.Tensor | Mapping[str, torch.Tensor],
    column_labels: Sequence[str] | None = None,
    scale: float = 1.3,
    colour: str = "red",
) -> Figure:
    """Named rows of images ``[N, 3, H, W]`` in [-1, 1] (all of one shape), e.g. before and after
    an edit, top to bottom, with the edited token cells outlined (`cell_edges`). ``regions``: bool
    ``[h, w]`` (every image of every row) or ``[N, h, w]`` (per image), or a mapping row name →
    either (rows not named get no outline). Axes: ``len(rows) · N``."""
    if not rows:
        raise ValueError("rows must hold at least one batch of images")
    first = _check_dim(f"row {next(iter(rows))!r}", next(iter(rows.values())), 4, "[N, 3, H, W]")
    n, size = first.shape[0], first.shape[-1]
    for name, images in rows.items():
        if tuple(images.shape) != tuple(first.shape):
            raise ValueError(
                f"every row must have one shape, got {name!r} {list(images.shape)} and {list(first.shape)}"
            )
    per_row = regions if isinstance(regions, Mapping) else {name: regions for name in rows}
    grids = {}
    for name, region in per_row.items():
        if name not in rows:
            raise ValueError(f"regions names row {name!r}, the rows are {list(rows)}")
        region = torch.as_tensor(region)
        if region.dtype != torch.bool or region.dim() not in (2, 3) or (region.dim() == 3 and region.shape[0] != n):
            raise ValueError(
                f"the region of row {name!r} must be bool [h, w] or [{n}, h, w], got "
                f"{region.dtype} {list(region.shape)}"
            )
        grids[name] = region.expand(n, *region.shape[-2:])
    fig = plot_image_rows(rows, column_labels, scale)
    axes = np.asarray(fig.axes).reshape(len(rows), n)
    for r, name in enumerate(rows):
        for j in range(n if name in grids else 0):  # imshow puts pixel i at [i - 0.5, i + 0.5]
            segments = np.asarray(cell_edges(grids[name][j], size), dtype=float).reshape(-1, 2, 2) - 0.5
            axes[r, j].add_collection(matplotlib.collections.LineCollection(segments, colors=colour, linewidths=1.2))
    return fig
