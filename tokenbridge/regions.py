"""Token-grid regions as text: ``"ROWS,COLUMNS"``, each a half-open range ``a:b`` (either end may be
left out) or one index, e.g. ``2:6,2:6``, ``3,0:8``, ``2:,:``.

The command line's ``edit --region`` and the app's Edit tab (several regions joined by ``;``) read
them with `parse_cells` and mark them with `cells_mask`. The command line parses before the models
load, so it checks the grid only in `cells_mask`; the app knows the grid and passes it to
`parse_cells`, whose messages then quote the range as typed.
"""

from __future__ import annotations

import re

import torch

Span = tuple[int, int | None]
"""A half-open range ``(start, stop)`` on one axis; ``stop`` None: to the grid's edge."""

_RANGE = re.compile(r"\s*(\d*)\s*(?:(:)\s*(\d*))?\s*")
"""An index or a range: digits, then optionally a colon and digits, spaces allowed around them."""


def parse_cells(text: str, grid: int | None = None) -> tuple[Span, Span]:
    """``"ROWS,COLUMNS"`` → ``(rows, columns)`` spans; ValueError quoting the bad part.

    With ``grid``, every span must lie on the ``grid``×``grid`` token grid, and an open end is its edge.
    """
    axes = text.split(",")
    if len(axes) != 2:
        raise ValueError(
            f"must be ROWS,COLUMNS on the token grid, e.g. 2:6,2:6 (half-open ranges a:b, or single "
            f"indices), got {text!r}"
        )
    return _span(axes[0], text, grid), _span(axes[1], text, grid)


def _span(axis: str, text: str, grid: int | None) -> Span:
    """One axis of ``text``: an index or a range, not empty (and on the grid, when given)."""
    m = _RANGE.fullmatch(axis)
    if not m or not (m[1] or m[2]):
        raise ValueError(f"cannot read {axis.strip()!r} in {text!r}: use an index or a range a:b")
    start = int(m[1] or 0)
    stop = (int(m[3]) if m[3] else grid) if m[2] else start + 1
    if (stop is not None and stop <= start) or (grid is not None and stop > grid):
        on_grid = "" if grid is None else f" or leaves the {grid}×{grid} token grid (indices 0..{grid - 1})"
        raise ValueError(f"the range {axis.strip()!r} in {text!r} is empty{on_grid}")
    return start, stop


def cells_mask(spans: tuple[Span, Span], grid: int) -> torch.Tensor:
    """``(rows, columns)`` spans → bool ``[grid, grid]``, True inside; ValueError past the grid."""
    mask = torch.zeros(grid, grid, dtype=torch.bool)
    bounds = []
    for axis, (start, stop) in zip(("rows", "columns"), spans):
        stop = grid if stop is None else stop
        if stop > grid or start >= grid:
            raise ValueError(f"{axis} {start}:{stop} reach past the {grid}×{grid} token grid (indices 0..{grid - 1})")
        bounds.append(slice(start, stop))
    mask[bounds[0], bounds[1]] = True
    return mask
