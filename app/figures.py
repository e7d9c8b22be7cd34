"""Plotly figures of the app (interactive: hover shows values). Inputs are plain tensors/arrays.

Positions are drawn on the ``grid × grid`` token map with row 0 at the top, like the image.
Matplotlib figures shared with the notebooks live in `tokenbridge.viz`; these are app-only.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

MASKED, EARLIER, NOW = 0, 1, 2
STATE_COLOURS = ((MASKED, "#d9d9d9"), (EARLIER, "#4c78a8"), (NOW, "#f58518"))
_MARGIN = dict(l=10, r=10, t=40, b=10)


def _grid(values: np.ndarray, grid: int) -> np.ndarray:
    return np.asarray(values).reshape(grid, grid)


def _square(fig: go.Figure, height: int = 300) -> go.Figure:
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain", showgrid=False, zeroline=False)
    fig.update_xaxes(constrain="domain", showgrid=False, zeroline=False)
    fig.update_layout(height=height, margin=_MARGIN)
    return fig


def _square_subplots(fig: go.Figure, count: int, columns: int) -> None:
    """Square cells and image orientation in every subplot (each y axis anchored to its own x)."""
    for i in range(count):
        fig.update_yaxes(
            autorange="reversed",
            scaleanchor=f"x{i + 1 if i else ''}",
            showticklabels=False,
            row=i // columns + 1,
            col=i % columns + 1,
        )
    fig.update_xaxes(showticklabels=False)


def empty(title: str, height: int = 300) -> go.Figure:
    """A blank figure that says why it is blank."""
    fig = go.Figure()
    fig.add_annotation(text=title, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=height, margin=_MARGIN)
    return fig


def committed_map(
    mask_N: np.ndarray, committed_N: np.ndarray, commit_step_N: np.ndarray, grid: int, title: str
) -> go.Figure:
    """Masked (grey) / committed earlier (blue) / committed at this step (orange), per position."""
    state = np.where(committed_N, NOW, np.where(mask_N, MASKED, EARLIER))
    names = {MASKED: "masked", EARLIER: "committed before", NOW: "committed now"}
    text = [f"{names[s]}" + (f" (step {k + 1})" if k >= 0 else "") for s, k in zip(state, commit_step_N)]
    n = len(STATE_COLOURS)
    scale = []
    for i, (_, colour) in enumerate(STATE_COLOURS):  # piecewise-constant colour scale over 0..2
        scale += [[i / n, colour], [(i + 1) / n, colour]]
    fig = go.Figure(
        go.Heatmap(
            z=_grid(state, grid),
            zmin=-0.5,
            zmax=n - 0.5,
            colorscale=scale,
            showscale=False,
            xgap=1,
            ygap=1,
            text=_grid(np.array(text, dtype=object), grid),
            hovertemplate="row %{y}, col %{x}: %{text}<extra></extra>",
        )
    )
    key = " ".join(f"<span style='color:{colour}'>■</span> {names[value]}" for value, colour in STATE_COLOURS)
    fig.update_layout(title=dict(text=f"{title}<br><sup>{key}</sup>"), showlegend=False)
    return _square(fig)


MAPS_NOTE = (
    "**preview**: the tokens committed so far, decoded (masked positions at the prior mean 0) · "
    "**confidence**: log p, the joint log-probability of a token's channel values in nats (higher = "
    "surer; plus Gumbel noise when set), for committed tokens the one they were committed with, for "
    "masked ones this step's candidate (confidence order)"
)
"""What the preview and the confidence map show, under them in the Generate and Edit tabs."""


def confidence_map(
    score_N: np.ndarray, known_N: np.ndarray, committed_N: np.ndarray, grid: int, title: str
) -> go.Figure:
    """Every position's score (log p, see `MAPS_NOTE`): the one it was committed with
    where ``known_N`` (committed up to this step), else this step's candidate (confidence order;
    blank where none was decoded); x = committed at this step."""
    score = np.asarray(score_N, dtype=np.float64)
    text = np.where(np.asarray(known_N, dtype=bool), "committed with", "candidate, still masked:").astype(object)
    fig = go.Figure(
        go.Heatmap(
            z=_grid(score, grid),
            text=_grid(text, grid),
            colorscale="Viridis",
            xgap=1,
            ygap=1,
            colorbar=dict(title="log p", thickness=12),
            hovertemplate="row %{y}, col %{x}: %{text} log p %{z:.2f}<extra></extra>",
        )
    )
    rows, cols = np.nonzero(_grid(committed_N, grid))
    fig.add_trace(
        go.Scatter(
            x=cols,
            y=rows,
            mode="markers",
            name="committed",
            hoverinfo="skip",
            marker=dict(symbol="x-thin", size=9, line=dict(width=2, color="white")),
        )
    )
    fig.update_layout(
        title=dict(text=f"{title}<br><sup>log p of each token (nats) · × committed now</sup>"), showlegend=False
    )
    return _square(fig)


def remaining_plot(planned: Sequence[int], recorded: Sequence[int], current: int, total: int) -> go.Figure:
    """Positions still masked after each step: the cosine plan (dashed) and what ran (dots)."""
    steps = list(range(1, len(planned) + 1))
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, *steps], y=[total, *planned], mode="lines", name="plan", line=dict(dash="dash", color="#999999")
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[0, *steps[: len(recorded)]],
            y=[total, *recorded],
            mode="lines+markers",
            name="sampled",
            line=dict(color="#4c78a8"),
        )
    )
    if 0 <= current < len(recorded):
        fig.add_trace(
            go.Scatter(
                x=[current + 1],
                y=[recorded[current]],
                mode="markers",
                name="shown",
                marker=dict(size=12, color="#f58518"),
            )
        )
    fig.update_layout(
        title="masked positions left",
        height=220,
        margin=_MARGIN,
        showlegend=False,
        xaxis_title="step",
        yaxis=dict(range=[0, total * 1.05]),
    )
    return fig


def channel_heatmaps(latents_Chw: np.ndarray, channel_order: Sequence[int], columns: int = 4) -> go.Figure:
    """One heatmap per latent channel, in generation order, on one symmetric colour scale."""
    c = len(channel_order)
    rows = math.ceil(c / columns)
    titles = [f"#{i + 1}: c{ch}" for i, ch in enumerate(channel_order)]
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=titles, horizontal_spacing=0.03, vertical_spacing=0.06)
    limit = float(np.abs(latents_Chw).max()) or 1.0
    for i, ch in enumerate(channel_order):
        fig.add_trace(
            go.Heatmap(
                z=latents_Chw[ch],
                zmin=-limit,
                zmax=limit,
                colorscale="RdBu_r",
                showscale=i == 0,
                colorbar=dict(thickness=10, len=0.6),
                name=f"c{ch}",
                hovertemplate=f"c{ch} row %{{y}}, col %{{x}}: %{{z:.3f}}<extra></extra>",
            ),
            row=i // columns + 1,
            col=i % columns + 1,
        )
    _square_subplots(fig, c, columns)
    fig.update_annotations(font_size=11)
    fig.update_layout(height=170 * rows + 40, margin=_MARGIN, title="latent channels (generation order)")
    return fig


def lowfreq_bars(channel_order: Sequence[int], series: dict[str, np.ndarray], cutoff: float) -> go.Figure:
    """Low-frequency energy ratio per channel, channels in generation order; one bar group per series."""
    labels = [f"c{ch}" for ch in channel_order]
    fig = go.Figure()
    for name, ratio in series.items():
        fig.add_trace(
            go.Bar(
                x=labels,
                y=[float(ratio[ch]) for ch in channel_order],
                name=name,
                hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>",
            )
        )
    fig.update_layout(
        title=f"low-frequency energy ratio (radius ≤ {cutoff:g}·Nyquist), model order →",
        height=300,
        margin=_MARGIN,
        barmode="group",
        yaxis=dict(range=[0, 1]),
        legend=dict(orientation="h", y=1.12, x=1, xanchor="right"),
    )
    return fig


def channel_distributions(
    probs_CV: np.ndarray, tokens_C: np.ndarray, channel_order: Sequence[int], title: str, columns: int = 4
) -> go.Figure:
    """The channel head's B-way distribution of each channel (generation order); sampled bin in orange."""
    c, v = probs_CV.shape
    rows = math.ceil(c / columns)
    titles = [f"#{i + 1}: c{ch} → {int(tokens_C[ch])}" for i, ch in enumerate(channel_order)]
    fig = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=titles,
        horizontal_spacing=0.04,
        vertical_spacing=0.09,
        shared_xaxes=True,
    )
    bins = np.arange(v)
    for i, ch in enumerate(channel_order):
        colours = np.where(bins == tokens_C[ch], "#f58518", "#4c78a8")
        fig.add_trace(
            go.Bar(
                x=bins,
                y=probs_CV[ch],
                marker_color=colours,
                name=f"c{ch}",
                showlegend=False,
                hovertemplate=f"c{ch} bin %{{x}}: p = %{{y:.4f}}<extra></extra>",
            ),
            row=i // columns + 1,
            col=i % columns + 1,
        )
    fig.update_annotations(font_size=11)
    fig.update_layout(title=title, height=150 * rows + 50, margin=_MARGIN, bargap=0)
    return fig


def _quantizer_traces(boundaries: np.ndarray, values: np.ndarray, top: float) -> list[go.Scatter]:
    """The bin edges as vertical lines up to ``top`` and the bin values as dots on the axis."""
    edge_x = np.repeat(boundaries, 3).astype(object)
    edge_y = np.tile(np.array([0.0, top, None], dtype=object), len(boundaries))
    edge_x[2::3] = None
    edges = go.Scatter(
        x=edge_x,
        y=edge_y,
        mode="lines",
        name=f"bin edges ({len(boundaries)})",
        line=dict(color="#999999", width=0.6),
        hoverinfo="skip",
    )
    dots = go.Scatter(
        x=values,
        y=np.full(len(values), top * 0.02),
        mode="markers",
        name="bin values γ",
        marker=dict(color="#e45756", size=4),
        hovertemplate="γ = %{x:.3f}<extra></extra>",
    )
    return [edges, dots]


def bin_histogram(
    u_calibration: np.ndarray,
    u_image: np.ndarray,
    boundaries: np.ndarray,
    values: np.ndarray,
    std_range: float,
    title: str,
) -> go.Figure:
    """Histogram of one channel's normalized values u with the quantizer's bin edges and values."""
    lo, hi = -std_range - 0.5, std_range + 0.5
    edges = np.linspace(lo, hi, 81)
    density, _ = np.histogram(np.clip(u_calibration, lo, hi), bins=edges, density=True)
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=0.5 * (edges[:-1] + edges[1:]),
            y=density,
            width=edges[1] - edges[0],
            name="calibration batch",
            marker_color="#4c78a8",
            opacity=0.6,
            hovertemplate="u ≈ %{x:.2f}: density %{y:.3f}<extra></extra>",
        )
    )
    grid = np.linspace(lo, hi, 400)
    fig.add_trace(
        go.Scatter(
            x=grid, y=np.exp(-0.5 * grid**2) / math.sqrt(2 * math.pi), name="N(0, 1)", line=dict(color="black", width=1)
        )
    )
    top = max(0.45, float(density.max()) * 1.05)
    fig.add_traces(_quantizer_traces(boundaries, values, top))
    fig.add_trace(
        go.Scatter(
            x=np.clip(u_image, lo, hi),
            y=np.full(len(u_image), -0.02),
            mode="markers",
            name="this image",
            marker=dict(color="#f58518", size=5, symbol="line-ns-open"),
            hovertemplate="u = %{x:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        height=320,
        margin=_MARGIN,
        xaxis_title="normalized latent u (clamped to ±r)",
        legend=dict(orientation="h", y=-0.25),
        yaxis=dict(range=[-0.04, top * 1.05]),
        bargap=0,
    )
    return fig


def bin_usage(usage_C: np.ndarray, entropy_C: np.ndarray, levels: int, title: str) -> go.Figure:
    """Per-channel fraction of bins used and index entropy (bits, at most log2 B)."""
    labels = [f"c{c}" for c in range(len(usage_C))]
    titles = ("bins used (fraction)", f"entropy (bits; max {math.log2(levels):.2f})")
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles)
    fig.add_trace(
        go.Bar(
            x=labels, y=usage_C, name="usage", marker_color="#4c78a8", hovertemplate="%{x}: %{y:.3f}<extra></extra>"
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(
            x=labels,
            y=entropy_C,
            name="entropy",
            marker_color="#54a24b",
            hovertemplate="%{x}: %{y:.3f} bits<extra></extra>",
        ),
        row=1,
        col=2,
    )
    fig.add_hline(y=math.log2(levels), line=dict(dash="dash", color="#999999"), row=1, col=2)
    fig.update_yaxes(range=[0, 1.05], row=1, col=1)
    fig.update_yaxes(range=[0, math.log2(levels) * 1.05], row=1, col=2)
    fig.update_layout(title=title, height=280, margin=_MARGIN, showlegend=False)
    return fig


def error_maps(maps: dict[str, np.ndarray]) -> go.Figure:
    """Per-pixel absolute error maps (8-bit levels, mean over RGB) on one colour scale."""
    fig = make_subplots(rows=1, cols=len(maps), subplot_titles=list(maps), horizontal_spacing=0.08)
    top = max(float(m.max()) for m in maps.values()) or 1.0
    for i, m in enumerate(maps.values()):
        fig.add_trace(
            go.Heatmap(
                z=m,
                zmin=0,
                zmax=top,
                colorscale="Inferno",
                showscale=i == len(maps) - 1,
                colorbar=dict(thickness=10, title="|Δ|"),
                hovertemplate="x %{x}, y %{y}: %{z:.1f}<extra></extra>",
            ),
            row=1,
            col=i + 1,
        )
    _square_subplots(fig, len(maps), len(maps))
    fig.update_layout(height=300, margin=_MARGIN, title="absolute error (0–255 levels, mean over RGB)")
    return fig
