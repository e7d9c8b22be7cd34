"""Pictures worth keeping, as uint8 ``[H, W, 3]`` arrays: labelled sample grids, before | after of
an edit with its region outlined, nearest-neighbour enlarging. Used by the command line
(``python -m tokenbridge sample|edit``) and the app; fonts are Pillow's built-in one (nothing fetched).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from tokenbridge.data import image_grid, to_uint8_image

OUTLINE = (228, 26, 28)
"""Colour of a region's outline."""
GAP = 2
"""White pixels between the pictures of a grid or a before | after pair (× the scale)."""


def enlarge(pixels: np.ndarray, factor: int) -> np.ndarray:
    """``[H, W, 3]`` uint8 enlarged ``factor`` times by repeating pixels (no blur)."""
    if factor < 1:
        raise ValueError(f"the scale must be an integer >= 1, got {factor}")
    return pixels.repeat(factor, axis=0).repeat(factor, axis=1)


def outline(big: np.ndarray, grid: int, cells: np.ndarray, colour=OUTLINE, width: int = 2) -> np.ndarray:
    """A copy of ``big`` (``[S, S, 3]``, S a multiple-ish of ``grid``) with the border of the cell set
    ``cells`` (bool ``[grid, grid]``) drawn ``width`` pixels wide just inside its cells."""
    big = big.copy()
    e = (np.arange(grid + 1) * big.shape[0]) // grid
    padded = np.pad(np.asarray(cells, dtype=bool), 1)
    for r, c in zip(*np.nonzero(cells)):
        top, bottom, left, right = e[r], e[r + 1], e[c], e[c + 1]
        if not padded[r, c + 1]:
            big[top : top + width, left:right] = colour
        if not padded[r + 2, c + 1]:
            big[bottom - width : bottom, left:right] = colour
        if not padded[r + 1, c]:
            big[top:bottom, left : left + width] = colour
        if not padded[r + 1, c + 2]:
            big[top:bottom, right - width : right] = colour
    return big


def _font(scale: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=10 + 2 * scale)


def labelled_grid(
    images: torch.Tensor, columns: int, row_labels: Sequence[str] | None = None, scale: int = 1
) -> np.ndarray:
    """``[B, 3, H, W]`` in [-1, 1] as one picture, ``scale`` × enlarged, ``columns`` per row, each row's
    label (e.g. its class) written left of it. One image alone comes back bare (no border, no label):
    a picture to edit, not a grid."""
    if len(images) == 1:
        return enlarge(to_uint8_image(images[0]), scale)
    grid = enlarge(image_grid(images, columns=columns, padding=GAP), scale)
    if not row_labels:
        return grid
    rows = -(-len(images) // min(columns, len(images)))
    if len(row_labels) != rows:
        raise ValueError(f"{len(row_labels)} row labels for {rows} rows")
    font, row_height = _font(scale), (images.shape[-2] + GAP) * scale
    width = max(int(font.getlength(text)) for text in row_labels) + 4 * scale
    picture = Image.new("RGB", (width + grid.shape[1], grid.shape[0]), "white")
    picture.paste(Image.fromarray(grid), (width, 0))
    draw = ImageDraw.Draw(picture)
    for r, text in enumerate(row_labels):
        draw.text(
            (2 * scale, GAP * scale + r * row_height + row_height // 2), text, fill="black", font=font, anchor="lm"
        )
    return np.asarray(picture)


def before_after(before: torch.Tensor, after: torch.Tensor, region: torch.Tensor, scale: int = 1) -> np.ndarray:
    """One image ``[3, H, W]`` before and after an edit, side by side (``GAP`` white pixels between),
    ``scale`` × enlarged, the edited cells (bool ``[h, w]`` token grid) outlined in both."""
    cells = torch.as_tensor(region).numpy()
    shown = [
        outline(enlarge(to_uint8_image(x), scale), cells.shape[0], cells, width=max(1, scale)) for x in (before, after)
    ]
    gap = np.full((shown[0].shape[0], GAP * scale, 3), 255, np.uint8)
    return np.concatenate([shown[0], gap, shown[1]], axis=1)
