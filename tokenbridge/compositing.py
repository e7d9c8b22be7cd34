"""Paste an edit back into the original pixels: the decoded image inside the edited token cells,
the original farther than ``feather`` pixels from them, a linear blend in between.

Why: kept tokens come back bit for bit, but the VAE decoder mixes neighbouring latents, so a
decoded edit also changes pixels far from its region (notebook 06). Inpainting tools paste the
original back outside the mask with a soft edge; `paste_back` does that.

    after = paste_back(images, decoded, region, feather=4)   # region: bool [h, w] or [B, h, w] token cells
"""

from __future__ import annotations

import torch

FEATHER = 4
"""Default width (pixels) of the blend outside the region."""


def region_weight(region: torch.Tensor, size: int, feather: float = FEATHER) -> torch.Tensor:
    """The decoded image's weight per pixel, ``[B, 1, size, size]`` (``[1, 1, ...]`` for a ``[h, w]`` region).

    1 on the pixels of the region's cells (bool ``[h, w]`` or ``[B, h, w]`` on the token grid,
    ``size`` divisible by ``h``); outside, ``1 − d / feather`` for a pixel whose centre lies ``d``
    pixels from the region (Euclidean), so exactly 0 from ``d ≥ feather`` on. ``feather=0``: a hard edge.
    """
    region = torch.as_tensor(region)
    grid = region.shape[-1]
    if region.dtype != torch.bool or region.dim() not in (2, 3) or region.shape[-2] != grid or size % grid:
        raise ValueError(
            f"region must be a bool token grid [h, h] or [B, h, h] with h dividing {size}, got "
            f"{region.dtype} {list(region.shape)}"
        )
    if feather < 0:
        raise ValueError(f"feather must be >= 0 pixels, got {feather}")
    patch = size // grid
    centre = torch.arange(size, dtype=torch.float32) + 0.5
    start = torch.arange(grid, dtype=torch.float32) * patch
    # gap[p, k]: distance along one axis from the centre of pixel p to the span of cell k
    gap = (start[None, :] - centre[:, None]).clamp(min=0) + (centre[:, None] - start[None, :] - patch).clamp(min=0)
    nearest = []
    for cells in region.reshape(-1, grid, grid):  # one image at a time: [size, size, cells] stays small
        rows, cols = cells.nonzero(as_tuple=True)
        dist2 = gap[:, None, rows] ** 2 + gap[None, :, cols] ** 2
        nearest.append(dist2.amin(dim=-1).sqrt() if len(rows) else torch.full((size, size), torch.inf))
    nearest = torch.stack(nearest)  # [B, size, size]: distance from each pixel centre to the region
    weight = (nearest == 0).float() if feather == 0 else (1 - nearest / feather).clamp(min=0)
    return weight[:, None]


def paste_back(
    original: torch.Tensor, decoded: torch.Tensor, region: torch.Tensor, feather: float = FEATHER
) -> torch.Tensor:
    """``decoded`` ``[B, 3, H, W]`` inside ``region``, ``original`` (same shape) elsewhere, blended by
    `region_weight`; pixels of weight 0 are ``original``'s bit for bit, of weight 1 ``decoded``'s."""
    if original.shape != decoded.shape or original.dim() != 4 or original.shape[-1] != original.shape[-2]:
        raise ValueError(
            f"original and decoded must be square [B, 3, H, H] images of one shape, got "
            f"{list(original.shape)} and {list(decoded.shape)}"
        )
    weight = region_weight(region, original.shape[-1], feather).to(original.device)
    return torch.where(weight > 0, torch.lerp(original, decoded.to(original.dtype), weight), original)
