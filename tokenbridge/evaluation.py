"""Measurements: reconstruction (continuous vs quantized latents), sample quality, token editing.

    rows = reconstruction_table(vae, classifier, shapes_images(1000), settings_grid([16, 64], ...))
    row = generation_metrics(pipe, classifier, 2000, seed=0, order="confidence")

Images are ``[B, 3, H, W]`` float in [-1, 1]; latents are *scaled* (what the quantizer sees).
Held-out shapes images (`tokenbridge.shapes.HELDOUT_SEED`) are the reference set: reconstruction
rows report PSNR (dB, mean over images), FD-shapes of the reconstructions against the originals
and the latent round-trip MSE; generation rows report class accuracy, FD-shapes and k-NN
precision/recall against as many real images as samples. `real_noise_floor` gives FD-shapes
between two real sets of one size: the noise floor of the metric at that sample count;
`tokenizer_ceiling` the best a generator of tokens can score (the tokenizer's reconstructions).
The command line over these is `tokenbridge.evaluate`.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from tokenbridge.metrics import (
    classifier_outputs,
    feature_statistics,
    frechet_distance,
    precision_recall,
    psnr,
    warn_if_few,
)
from tokenbridge.pipeline import SAMPLER_DEFAULTS
from tokenbridge.quantizer import GaussianQuantizer
from tokenbridge.shapes import HELDOUT_SEED, ShapesDataset

FINGERPRINTS = 8
"""Samples per generation result whose fingerprints are stored, so a reader can regenerate them."""


# ------------------------------------------------------------------------------------------------
# Reconstruction
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantSetting:
    """One quantizer configuration to evaluate; ``levels=None`` means the continuous latents."""

    levels: int | None
    assign: str = "nearest"
    calibration: str = "fixed"
    bins: str = "gaussian"
    value_range: float = 5.0

    def build(self, fit_latents: torch.Tensor) -> GaussianQuantizer:
        q = GaussianQuantizer(
            self.levels, value_range=self.value_range, assign=self.assign, calibration=self.calibration, bins=self.bins
        )
        return q.fit(fit_latents) if self.calibration == "per_channel" else q


def settings_grid(levels, assigns, calibrations, bins, value_ranges) -> list[QuantSetting]:
    """The continuous baseline followed by every combination of the given options."""
    grid = [QuantSetting(None)]
    for b, a, c, k, r in itertools.product(levels, assigns, calibrations, bins, value_ranges):
        grid.append(QuantSetting(b, a, c, k, r))
    return grid


def shapes_images(
    count: int, offset: int = 0, size: int = 64, seed: int = HELDOUT_SEED, kind: str = "shapes"
) -> torch.Tensor:
    """``[count, 3, size, size]`` images of procedural dataset ``kind`` in [-1, 1] (held-out split
    by default); image i is of class ``(offset + i) % 10``."""
    data = ShapesDataset(count, seed=seed, offset=offset, size=size, kind=kind)
    return torch.stack([data[i][0] for i in range(count)])


@torch.no_grad()
def encode_in_batches(vae, images: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """Scaled latents ``[N, C, h, w]`` (posterior mean, on the CPU) of images ``[N, 3, H, W]``,
    encoded ``batch_size`` at a time on the VAE's device."""
    device = next(vae.parameters()).device
    return torch.cat([vae.encode_latents(x.to(device)).cpu() for x in images.split(batch_size)])


@torch.no_grad()
def reconstruction_table(
    vae,
    classifier,
    images: torch.Tensor,
    settings: list[QuantSetting],
    fit_latents: torch.Tensor | None = None,
    batch_size: int = 250,
    labels: torch.Tensor | None = None,
) -> list[dict]:
    """One row per setting: PSNR, FD-shapes vs ``images``, latent MSE, mean entropy (bits), and
    with ``labels`` the classifier's accuracy on the reconstructions (does the class survive?).

    ``fit_latents`` (scaled, ``[N, C, h, w]``) calibrate ``per_channel`` settings; by default the
    evaluated latents themselves (the CLI passes latents of training images instead).
    """
    device = next(vae.parameters()).device
    latents = encode_in_batches(vae, images, batch_size)
    fit_latents = latents if fit_latents is None else fit_latents
    real_feats, _ = classifier_outputs(classifier, images.split(batch_size), device)
    real_stats = feature_statistics(real_feats)
    warn_if_few(*real_feats.shape)
    rows = []
    for setting in settings:
        if setting.levels is None:
            z_hat, entropy = latents, None
        else:
            q = setting.build(fit_latents)
            z_hat = q(latents)
            entropy = round(float(q.stats(latents).entropy_bits.mean()), 3)
        recon = torch.cat([vae.decode_latents(z.to(device)).cpu() for z in z_hat.split(batch_size)])
        feats, predicted = classifier_outputs(classifier, recon.split(batch_size), device)
        rows.append(
            {
                **asdict(setting),
                "psnr_db": round(float(psnr(recon, images).mean()), 3),
                "fd_shapes": round(frechet_distance(feature_statistics(feats), real_stats), 4),
                "latent_mse": round(float((z_hat - latents).pow(2).mean()), 6),
                "mean_entropy_bits": entropy,
            }
        )
        if labels is not None:
            rows[-1]["class_accuracy"] = round(float((predicted.cpu() == labels).float().mean()), 4)
    return rows


def real_noise_floor(classifier, count: int, device, size: int = 64, kind: str = "shapes") -> float:
    """FD-shapes between two disjoint held-out sets of ``count`` real images of dataset ``kind``."""
    a = shapes_images(count, 0, size, kind=kind)
    b = shapes_images(count, count, size, kind=kind)
    fa, _ = classifier_outputs(classifier, a.split(250), device)
    fb, _ = classifier_outputs(classifier, b.split(250), device)
    return frechet_distance(feature_statistics(fa), feature_statistics(fb))


# ------------------------------------------------------------------------------------------------
# Generation
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleOutputs:
    """What the sample metrics of one generated set are computed from (N samples, D features):
    the classifier's features of the samples ``[N, D]`` and of as many held-out real images of the
    generator's dataset ``[N, D]``, and whether each sample is classified as its requested class ``[N]``."""

    features: torch.Tensor
    real_features: torch.Tensor
    correct: torch.Tensor


@torch.no_grad()
def sample_outputs(pipe, classifier, count: int, seed: int = 0, batch_size: int = 50, **sampler) -> SampleOutputs:
    """Generate ``count`` samples (labels cycle through the classes; row ``i`` seeded ``seed + i``,
    so the samples do not depend on ``batch_size``) and classify them beside ``count`` held-out
    real images of `Pipeline.dataset`. ``sampler`` overrides `tokenbridge.pipeline.SAMPLER_DEFAULTS`."""
    labels = torch.arange(count) % len(pipe.classes)
    images = torch.cat(
        [pipe.generate(labels[i : i + batch_size], seed=seed + i, **sampler) for i in range(0, count, batch_size)]
    )
    return _against_reals(pipe, classifier, images, labels)


def _against_reals(pipe, classifier, images: torch.Tensor, labels: torch.Tensor) -> SampleOutputs:
    """`SampleOutputs` of ``images`` ``[N, 3, H, W]`` meant as classes ``labels`` ``[N]``, beside the
    first N held-out real images of `Pipeline.dataset` (the reference every generation row uses)."""
    feats, predicted = classifier_outputs(classifier, images.split(250), pipe.device)
    warn_if_few(*feats.shape)
    real = shapes_images(len(images), 0, pipe.image_size, kind=pipe.dataset)
    real_feats, _ = classifier_outputs(classifier, real.split(250), pipe.device)
    return SampleOutputs(feats, real_feats, predicted == labels.to(predicted.device))


@torch.no_grad()
def tokenizer_ceiling(pipe, classifier, count: int, batch_size: int = 50) -> dict:
    """What samples would score if the generator drew the tokens of real images: `summary_metrics`
    of the tokenizer's quantized reconstructions (`Pipeline.reconstruct`) of ``count`` held-out
    images disjoint from the reference (indices count…2·count-1), against the reference of every
    generation row. The tokenizer's blur alone moves FD-shapes and precision, so a sample row is
    read against this one, not against the real images' perfect scores."""
    images = shapes_images(count, count, pipe.image_size, kind=pipe.dataset)
    recon = torch.cat([pipe.reconstruct(batch) for batch in images.split(batch_size)])
    labels = (count + torch.arange(count)) % len(ShapesDataset.classes)
    return {"images": count, "offset": count, **summary_metrics(_against_reals(pipe, classifier, recon, labels))}


def summary_metrics(outputs: SampleOutputs) -> dict[str, float]:
    """Class accuracy, FD-shapes and k-NN precision/recall of one `SampleOutputs` (4 digits)."""
    real_stats = feature_statistics(outputs.real_features)
    return {
        "class_accuracy": round(float(outputs.correct.float().mean()), 4),
        "fd_shapes": round(frechet_distance(feature_statistics(outputs.features), real_stats), 4),
        **{k: round(v, 4) for k, v in precision_recall(outputs.real_features, outputs.features).items()},
    }


@torch.no_grad()
def generation_metrics(pipe, classifier, count: int, seed: int = 0, batch_size: int = 50, **sampler) -> dict:
    """Class accuracy, FD-shapes and k-NN precision/recall (vs ``count`` held-out real images of the
    dataset the generator learnt, `Pipeline.dataset`) of ``count`` samples (`sample_outputs`)."""
    start = time.time()
    outputs = sample_outputs(pipe, classifier, count, seed, batch_size, **sampler)
    return generation_row(pipe, count, seed, sampler, outputs, time.time() - start)


def generation_row(pipe, count: int, seed: int, sampler: dict, outputs: SampleOutputs, seconds: float) -> dict:
    """The JSON row of one measured sample set: what was sampled and how, and its `summary_metrics`."""
    return {
        "dataset": pipe.dataset,
        "samples": count,
        "seed": seed,
        "sampler": {**SAMPLER_DEFAULTS, **sampler},
        **summary_metrics(outputs),
        "seconds": round(seconds, 1),
    }


@torch.no_grad()
def sample_fingerprints(pipe, classifier, count: int, seed: int = 0, **sampler) -> list[dict]:
    """For the first ``count`` samples of `generation_metrics` (label ``i % classes``, seed
    ``seed + i``): the label, the classifier's prediction and the sum of the token indices."""
    labels = torch.arange(count) % len(pipe.classes)
    tokens = pipe.generate_tokens(labels, seed=seed, **sampler)
    _, predicted = classifier_outputs(classifier, [pipe.decode(pipe.tokens_to_latents(tokens))], pipe.device)
    return [
        {"label": int(label), "predicted": int(p), "token_sum": int(t.sum())}
        for label, p, t in zip(labels, predicted.cpu(), tokens)
    ]


def fingerprints_match(live: list[dict], stored: list[dict], flips: int = 2) -> bool:
    """Whether regenerated `sample_fingerprints` are the stored ones: all but at most ``flips`` identical.

    Why not all: the last bit of a matrix product depends on the number of CPU threads (and the
    machine), and a channel value drawn at the edge of a bin then flips one token, which as
    context changes the rest of its sample; other weights or settings change nearly every sample.
    """
    if len(live) != len(stored):
        raise ValueError(f"{len(live)} live fingerprints against {len(stored)} stored ones")
    return sum(a == b for a, b in zip(live, stored)) >= len(live) - flips


# ------------------------------------------------------------------------------------------------
# Token editing (notebook 06)
# ------------------------------------------------------------------------------------------------


def _region_BN(region: torch.Tensor, batch: int, seq_len: int) -> torch.Tensor:
    """A bool region ``[h, w]`` or ``[B, h, w]`` (h·w = N) → ``[B, N]``."""
    region = torch.as_tensor(region)
    shape_ok = (region.dim() == 2 and region.numel() == seq_len) or (
        region.dim() == 3 and region.shape[0] == batch and region[0].numel() == seq_len
    )
    if region.dtype != torch.bool or not shape_ok:
        raise ValueError(
            f"region must be bool [h, w] or [{batch}, h, w] with h·w = {seq_len} tokens, got "
            f"{region.dtype} {list(region.shape)}"
        )
    return region.reshape(-1, seq_len).expand(batch, seq_len)


def token_agreement(
    edited: torch.Tensor, original: torch.Tensor, region: torch.Tensor, tolerance: int = 0
) -> torch.Tensor:
    """Per image ``[B]``: the share of the channel indices of the tokens in ``region`` (bool
    ``[h, w]`` or ``[B, h, w]`` on the token grid) where ``edited`` ``[B, N, C]`` lies within
    ``tolerance`` levels of ``original`` (0: the same index). NaN for an image with an empty region."""
    if edited.shape != original.shape or edited.dim() != 3:
        raise ValueError(
            f"edited and original must be [B, N, C] of one shape, got {list(edited.shape)} and {list(original.shape)}"
        )
    b, n, c = edited.shape
    mask_BN = _region_BN(region, b, n).float()
    close_BN = ((edited.long() - original.long()).abs() <= tolerance).float().mean(dim=2)
    count_B = mask_BN.sum(dim=1)
    return (close_BN * mask_BN).sum(dim=1) / count_B.where(count_B > 0, float("nan"))


def pixel_change(before: torch.Tensor, after: torch.Tensor, region: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean absolute pixel difference per image ``[B]`` (images ``[B, 3, H, W]`` in [-1, 1]) on the
    patches of the ``region``'s cells (bool ``[h, w]`` or ``[B, h, w]``, H divisible by h) and on
    the rest: ``{"inside": ..., "outside": ...}`` (NaN where a part is empty). Kept tokens come
    back bit for bit, but the VAE decoder mixes neighbouring latents, so "outside" need not be 0."""
    if before.shape != after.shape or before.dim() != 4:
        raise ValueError(
            f"before and after must be [B, 3, H, W] of one shape, got {list(before.shape)} and {list(after.shape)}"
        )
    b, _, h, w = before.shape
    region = torch.as_tensor(region)
    grid = region.shape[-1]
    if h != w or h % grid:
        raise ValueError(f"{h}×{w} images do not split into the region's {grid}×{grid} token grid")
    mask_BHW = _region_BN(region, b, grid * grid).reshape(b, grid, grid)
    mask_BHW = mask_BHW.repeat_interleave(h // grid, 1).repeat_interleave(w // grid, 2).float()
    diff_BHW = (after - before).abs().mean(dim=1)
    out = {}
    for name, m in (("inside", mask_BHW), ("outside", 1 - mask_BHW)):
        count = m.sum(dim=(1, 2))
        out[name] = (diff_BHW * m).sum(dim=(1, 2)) / count.where(count > 0, float("nan"))
    return out


def widened_regions(target: torch.Tensor, keep: Sequence[float], seed: int = 0) -> dict[float, torch.Tensor]:
    """For each share in ``keep`` (0..1) of the cells outside ``target`` (bool ``[h, w]``) to keep
    as context: ``target`` plus the other outside cells, drawn in one seeded random order, so a
    smaller share keeps a subset of a larger one's cells. Share 1: ``target`` alone; 0: every cell."""
    target = torch.as_tensor(target)
    if target.dtype != torch.bool or target.dim() != 2 or not bool(target.any()):
        raise ValueError(f"target must be a non-empty bool token grid [h, w], got {target.dtype} {list(target.shape)}")
    bad = [k for k in keep if not 0.0 <= float(k) <= 1.0]
    if bad:
        raise ValueError(f"keep shares must lie in 0..1, got {bad}")
    outside = (~target).reshape(-1).nonzero()[:, 0]
    shuffled = outside[torch.randperm(len(outside), generator=torch.Generator().manual_seed(seed))]
    regions = {}
    for k in keep:
        region = target.reshape(-1).clone()
        region[shuffled[: len(shuffled) - round(float(k) * len(shuffled))]] = True
        regions[k] = region.reshape(target.shape)
    return regions
