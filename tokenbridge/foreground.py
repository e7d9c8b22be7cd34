"""Foreground / background estimation on images without masks, and the proxy measures built on it.

Why: the paper says confidence-guided sampling gives "well-defined foregrounds on simple
backgrounds" (Sec. 4.3, Fig. 8). Generated images carry no mask, so the background is estimated
from the image itself, in the spirit of the shapes data (one shape fully inside the image, on a
smooth gradient plus soft shading):

1. fit a low-order colour surface (per channel, quadratic in x, y) to the border ring;
2. the deviation of a pixel is the Euclidean RGB distance from that surface ([-1, 1] units);
   Otsu's threshold on the deviations (never below ``floor``) splits off a first foreground;
3. half maximum: the foreground's level is the median deviation of its pixels, and the
   threshold becomes half of it. The shapes data compose ``image = bg + alpha·(fg − bg)``, so
   ``deviation = alpha·|fg − bg|`` and "deviation above half the level" is "coverage ≥ 0.5",
   the ground-truth mask's own definition (`tokenbridge.shapes.render_shape`);
4. refit the surface on every pixel below the threshold (the interior of a radial gradient is
   better seen from inside), recompute the deviations, and repeat 3-4: ``refits`` fits in all.

Images are ``[B, 3, H, W]`` float in [-1, 1] (the package's convention); masks ``[B, H, W]`` bool.
Validated against the ground-truth masks of real shapes images in ``tests/test_foreground.py``
and notebook 05 (`foreground_validation`); `foreground_samples` measures a pipeline's samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

FLOOR = 0.6
"""Least first-pass threshold (RGB distance, [-1, 1] units), so that an image without a shape
does not get its shading split off as foreground. The shapes data guarantee a luminance contrast
≥ 0.3 (of 1) against the background, an RGB distance ≥ 0.9 here; their stripes and noise
mostly stay below 0.6, though not always (hence Otsu's threshold rather than this one)."""
BORDER = 2
"""Width in pixels of the border ring the first background fit sees."""
REFITS = 2
"""Background fits in all: the border fit, then fits on the pixels below the threshold (more
change nothing measurable on real images)."""
EDGE_BAND = 2
"""Pixels within this distance of the mask are neither foreground nor clean background (the
anti-aliased or blurred edge), so they do not count in `background_rms`."""
MEASURES = ("background_rms", "foreground_level", "separation", "edge_fraction", "foreground_fraction")


@dataclass
class ForegroundEstimate:
    """background ``[B, 3, H, W]``; deviation ``[B, H, W]`` (RGB distance from it); mask
    ``[B, H, W]`` bool; threshold ``[B]`` (the final, half-maximum threshold per image)."""

    background: torch.Tensor
    deviation: torch.Tensor
    mask: torch.Tensor
    threshold: torch.Tensor


def quadratic_basis(height: int, width: int) -> torch.Tensor:
    """``[H·W, 6]`` float64 rows ``(1, x, y, x², xy, y²)`` at pixel centres, x, y in [-1, 1]."""
    y = (torch.arange(height, dtype=torch.float64) + 0.5) / height * 2 - 1
    x = (torch.arange(width, dtype=torch.float64) + 0.5) / width * 2 - 1
    yy, xx = (t.reshape(-1) for t in torch.meshgrid(y, x, indexing="ij"))
    return torch.stack([torch.ones_like(xx), xx, yy, xx * xx, xx * yy, yy * yy], dim=1)


def border_ring(height: int, width: int, border: int = BORDER) -> torch.Tensor:
    """``[H, W]`` bool, True on the ``border`` outermost pixels of every side."""
    if not 1 <= border <= min(height, width) // 2:
        raise ValueError(f"border must be in 1..{min(height, width) // 2} pixels, got {border}")
    ring = torch.ones(height, width, dtype=torch.bool)
    ring[border:-border, border:-border] = False
    return ring


def fit_background(images: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Least-squares quadratic colour surface ``[B, 3, H, W]`` fitted, per image and channel, to
    the pixels where ``support`` (``[B, H, W]`` or one ``[H, W]`` for all) is True (float64 normal
    equations with a tiny ridge, so an almost empty support still gives a finite, near-flat surface)."""
    b, _, h, w = images.shape
    basis_PK = quadratic_basis(h, w).to(images.device)
    pixels_BPC = images.double().reshape(b, 3, h * w).transpose(1, 2)
    weight_BP = support.expand(b, h, w).reshape(b, h * w).double()
    gram_BKK = torch.einsum("pk,bp,pl->bkl", basis_PK, weight_BP, basis_PK)
    gram_BKK = gram_BKK + 1e-6 * torch.eye(basis_PK.shape[1], dtype=torch.float64, device=images.device)
    rhs_BKC = torch.einsum("pk,bp,bpc->bkc", basis_PK, weight_BP, pixels_BPC)
    surface_BPC = basis_PK @ torch.linalg.solve(gram_BKK, rhs_BKC)
    return surface_BPC.transpose(1, 2).reshape(b, 3, h, w).to(images.dtype)


def estimate_foreground(
    images: torch.Tensor, floor: float = FLOOR, border: int = BORDER, refits: int = REFITS
) -> ForegroundEstimate:
    """Background, deviation and foreground mask of images ``[B, 3, H, W]`` in [-1, 1] (steps in
    the module docstring). An image with no pixel above the first threshold keeps it and gets an
    empty mask. Deterministic: no random draws."""
    _check_images(images)
    if refits < 1:
        raise ValueError(f"refits must be >= 1, got {refits}")
    b, _, h, w = images.shape
    images = images.float()
    support = border_ring(h, w, border).to(images.device)
    threshold_B = None
    for _ in range(refits):
        background = fit_background(images, support)
        deviation = (images - background).norm(dim=1)
        if threshold_B is None:
            threshold_B = otsu_threshold(deviation).clamp_min(floor)
        mask = deviation > threshold_B[:, None, None]
        threshold_B = torch.where(mask.flatten(1).any(dim=1), _masked_median(deviation, mask) / 2, threshold_B)
        support = deviation <= threshold_B[:, None, None]
    mask = deviation > threshold_B[:, None, None]
    return ForegroundEstimate(background, deviation, mask, threshold_B)


def otsu_threshold(values: torch.Tensor) -> torch.Tensor:
    """Otsu's threshold ``[B]`` of each image's values ``[B, H, W]``: the split of the sorted
    values that maximizes the between-class variance (midway between the two values it falls
    between). Exact, over all H·W − 1 splits."""
    sorted_BP = values.flatten(1).double().sort(dim=1).values
    p = sorted_BP.shape[1]
    below = torch.arange(1, p, dtype=torch.float64, device=values.device)  # values below each split
    sum_below = sorted_BP.cumsum(dim=1)[:, :-1]
    mean_below = sum_below / below
    mean_above = (sorted_BP.sum(dim=1, keepdim=True) - sum_below) / (p - below)
    split_B1 = (below * (p - below) * (mean_below - mean_above) ** 2).argmax(dim=1, keepdim=True)
    return ((sorted_BP.gather(1, split_B1) + sorted_BP.gather(1, split_B1 + 1)) / 2)[:, 0].to(values.dtype)


def proxy_measures(images: torch.Tensor, estimate: ForegroundEstimate | None = None) -> dict[str, torch.Tensor]:
    """Per-image measures ``{name: [B] float32}`` (names in `MEASURES`; NaN where undefined):

    - ``background_rms``: RMS deviation of the clean background (outside the mask by more than
      `EDGE_BAND` pixels) from the fitted surface: 0 for a pure quadratic gradient; lower = cleaner.
    - ``foreground_level``: median deviation of the foreground pixels (how far the shape's colour
      is from the background); NaN with no foreground.
    - ``separation``: ``foreground_level / background_rms``, a contrast-to-noise ratio; higher =
      the shape stands out more clearly from its background.
    - ``edge_fraction``: share of the image's pixels deviating by 25-75% of the foreground level
      (a soft-mask margin: an anti-aliased edge is a thin ring, a blurred or hazy one is wide).
    - ``foreground_fraction``: share of the image in the mask.
    """
    est = estimate if estimate is not None else estimate_foreground(images)
    dev_BHW, mask_BHW = est.deviation, est.mask
    clean_BHW = ~_dilate(mask_BHW, EDGE_BAND)
    level_B = _masked_median(dev_BHW, mask_BHW)
    background_rms_B = (_masked_mean(dev_BHW.square(), clean_BHW)).sqrt()
    relative_BHW = dev_BHW / level_B[:, None, None]
    edge_B = ((relative_BHW > 0.25) & (relative_BHW < 0.75)).flatten(1).float().mean(dim=1)
    return {
        "background_rms": background_rms_B,
        "foreground_level": level_B,
        "separation": level_B / background_rms_B.clamp_min(1e-6),
        "edge_fraction": torch.where(level_B.isnan(), float("nan"), edge_B),
        "foreground_fraction": mask_BHW.flatten(1).float().mean(dim=1),
    }


def mask_iou(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Intersection over union ``[B]`` of two bool masks ``[B, H, W]`` (1 where both are empty)."""
    if predicted.shape != target.shape:
        raise ValueError(f"mask shapes differ: {tuple(predicted.shape)} vs {tuple(target.shape)}")
    inter = (predicted & target).flatten(1).sum(dim=1).float()
    union = (predicted | target).flatten(1).sum(dim=1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), 1.0)


def token_coverage(mask: torch.Tensor, grid: int) -> torch.Tensor:
    """Foreground share ``[B, grid²]`` of each token's patch (row-major positions, as
    `tokenbridge.generator.patchify`), from a mask ``[B, H, W]`` with H = W divisible by ``grid``."""
    b, h, w = mask.shape
    if h != w or h % grid:
        raise ValueError(f"a {h}×{w} mask does not split into a {grid}×{grid} token grid")
    return F.avg_pool2d(mask.float()[:, None], h // grid).reshape(b, grid * grid)


def committed_share(committed_BTN: torch.Tensor, coverage_BN: torch.Tensor) -> torch.Tensor:
    """Mean foreground share ``[B, T]`` of the tokens committed at each sampling step, from the
    steps' committed maps ``[B, T, N]`` bool and the final image's `token_coverage` ``[B, N]``
    (NaN at a step that commits nothing). Random order gives the base rate in expectation."""
    committed_BTN = committed_BTN.float()
    count_BT = committed_BTN.sum(dim=2)
    return (committed_BTN * coverage_BN[:, None]).sum(dim=2) / count_BT.where(count_BT > 0, float("nan"))


def region_means(values_BN: torch.Tensor, coverage_BN: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image means ``[B]`` of token values ``[B, N]`` (NaNs skipped) over the foreground tokens
    (coverage ≥ 0.5) and the background tokens (coverage 0); NaN where a region has no value."""
    regions = {"foreground": coverage_BN >= 0.5, "background": coverage_BN == 0}
    return {name: values_BN.where(inside, float("nan")).nanmean(dim=1) for name, inside in regions.items()}


# ------------------------------------------------------------------------------------------------
# Measuring image sets and generated samples (the ``evaluate foreground`` command, notebook 05)
# ------------------------------------------------------------------------------------------------


def image_measures(images: torch.Tensor, batch_size: int = 250) -> dict[str, torch.Tensor]:
    """`proxy_measures` ``{name: [N]}`` of images ``[N, 3, H, W]``, ``batch_size`` at a time."""
    return _concat([proxy_measures(x) for x in images.split(batch_size)])


@torch.no_grad()
def foreground_samples(pipe, count: int, seed: int = 0, batch_size: int = 8, **sampler) -> dict:
    """Proxy measures of ``count`` samples of a `tokenbridge.pipeline.Pipeline`, and where their
    commits fall.

    Labels cycle through the classes; row ``i`` is seeded ``seed + i`` (as
    `tokenbridge.evaluation.generation_metrics`). Returns ``{"measures": {name: [N]},
    "step_share": [N, T]`` (foreground share of the tokens committed at each step, against the
    final image's estimated mask), ``"first_step_score": {"foreground"|"background": [N]}`` (mean
    step-0 score, `SamplingStep.confidence`, of the decoded foreground / background tokens),
    ``"images": [N, 3, H, W], "labels": [N], "seeds": [N]}``.
    """
    grid = int(pipe.generator.config.seq_len**0.5)
    labels = torch.arange(count) % len(pipe.classes)
    parts = []
    for i in range(0, count, batch_size):
        steps = [s.step for s in pipe.steps(labels[i : i + batch_size], seed=seed + i, **sampler)]
        images = pipe.decode(pipe.tokens_to_latents(steps[-1].tokens))
        estimate = estimate_foreground(images)
        coverage_BN = token_coverage(estimate.mask, grid)
        committed_BTN = torch.stack([s.committed.cpu() for s in steps], dim=1)
        parts.append(
            {
                "images": images,
                "measures": proxy_measures(images, estimate),
                "step_share": committed_share(committed_BTN, coverage_BN),
                "first_step_score": region_means(steps[0].confidence.cpu(), coverage_BN),
            }
        )
    return {**_concat(parts), "labels": labels, "seeds": seed + torch.arange(count)}


def foreground_validation(
    images: torch.Tensor, masks: torch.Tensor, reconstructions: torch.Tensor, batch_size: int = 250
) -> dict:
    """IoU of the estimated masks with the ground-truth masks ``[N, H, W]``, on real images and
    on their VAE reconstructions (same masks)."""
    out = {}
    for name, x in (("real", images), ("reconstruction", reconstructions)):
        iou = torch.cat(
            [mask_iou(estimate_foreground(xb).mask, mb) for xb, mb in zip(x.split(batch_size), masks.split(batch_size))]
        )
        out[name] = {
            "iou_mean": round(float(iou.mean()), 4),
            "iou_min": round(float(iou.min()), 4),
            "iou_p01": round(float(iou.quantile(0.01)), 4),
            "share_iou_above_0.9": round(float((iou > 0.9).float().mean()), 4),
        }
    return out


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def _check_images(images: torch.Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 3 or min(images.shape[2:]) < 8:
        raise ValueError(f"images must be [B, 3, H, W] with H, W >= 8, got shape {tuple(images.shape)}")


def _masked_median(values_BHW: torch.Tensor, mask_BHW: torch.Tensor) -> torch.Tensor:
    """Per-image median ``[B]`` of the values where the mask holds (lower median; NaN if none)."""
    return values_BHW.flatten(1).where(mask_BHW.flatten(1), float("nan")).nanmedian(dim=1).values


def _masked_mean(values_BHW: torch.Tensor, mask_BHW: torch.Tensor) -> torch.Tensor:
    """Per-image mean ``[B]`` of the values where the mask holds (NaN if none)."""
    return values_BHW.flatten(1).where(mask_BHW.flatten(1), float("nan")).nanmean(dim=1)


def _dilate(mask_BHW: torch.Tensor, pixels: int) -> torch.Tensor:
    """Mask grown by ``pixels`` in every direction (square neighbourhood)."""
    grown = F.max_pool2d(mask_BHW.float()[:, None], 2 * pixels + 1, stride=1, padding=pixels)
    return grown[:, 0] > 0


def _concat(parts: list):
    """Concatenate along dim 0 a list of tensors, or of equally nested dicts of tensors."""
    if isinstance(parts[0], dict):
        return {k: _concat([p[k] for p in parts]) for k in parts[0]}
    return torch.cat(parts)
