"""Evaluation CLI: reconstruction (continuous vs quantized latents) and generation quality.

    python -m tokenbridge.evaluate reconstruction --out results/reconstruction.json
    python -m tokenbridge.evaluate generation --order random confidence --out results/generation.json
    python -m tokenbridge.evaluate foreground --n 300 --out results/confidence_proxy.json

Held-out shapes images (``HELDOUT_SEED``) are encoded once by the VAE (posterior mean, scaled),
then decoded continuously and after quantizing with every requested setting. Each row reports
PSNR (dB, mean over images), FD-shapes of the reconstructions against the originals, and the
latent round-trip MSE. A second, disjoint held-out set gives FD-shapes between two real sets of
the same size: the noise floor of the metric at this sample count.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch

from tokenbridge import checkpoints, cli
from tokenbridge.data import HELDOUT_SEED, TRAIN_SEED, ShapesDataset
from tokenbridge.foreground import (BORDER, EDGE_BAND, FLOOR, REFITS, committed_share, estimate_foreground, mask_iou,
                                    proxy_measures, region_means, token_coverage)
from tokenbridge.metrics import (
    classifier_outputs,
    feature_statistics,
    frechet_distance,
    precision_recall,
    psnr,
    warn_if_few,
)
from tokenbridge.pipeline import pick_device
from tokenbridge.quantizer import ASSIGN_RULES, BIN_KINDS, CALIBRATIONS, MAX_LEVELS, GaussianQuantizer
from tokenbridge.sampling import CFG_MODES, ORDERS

DEFAULT_VAE = "assets/vae_small.safetensors"
DEFAULT_CLASSIFIER = "assets/classifier.safetensors"


@dataclass(frozen=True)
class QuantSetting:
    """One quantizer configuration to evaluate; ``levels=None`` means the continuous latents."""

    levels: int | None
    assign: str = "nearest"
    calibration: str = "fixed"
    bins: str = "gaussian"
    value_range: float = 5.0

    def build(self, fit_latents: torch.Tensor) -> GaussianQuantizer:
        q = GaussianQuantizer(self.levels, value_range=self.value_range, assign=self.assign,
                              calibration=self.calibration, bins=self.bins)  # fmt: skip
        return q.fit(fit_latents) if self.calibration == "per_channel" else q


def settings_grid(levels, assigns, calibrations, bins, value_ranges) -> list[QuantSetting]:
    """The continuous baseline followed by every combination of the given options."""
    grid = [QuantSetting(None)]
    for b, a, c, k, r in itertools.product(levels, assigns, calibrations, bins, value_ranges):
        grid.append(QuantSetting(b, a, c, k, r))
    return grid


def _batches(images: torch.Tensor, size: int):
    return (images[i : i + size] for i in range(0, len(images), size))


def shapes_images(count: int, offset: int = 0, size: int = 64, seed: int = HELDOUT_SEED) -> torch.Tensor:
    """``[count, 3, size, size]`` shapes images in [-1, 1] (held-out split by default)."""
    data = ShapesDataset(count, seed=seed, offset=offset, size=size)
    return torch.stack([data[i][0] for i in range(count)])


@torch.no_grad()
def reconstruction_table(vae, classifier, images: torch.Tensor, settings: list[QuantSetting],
                         fit_latents: torch.Tensor | None = None, batch_size: int = 250) -> list[dict]:  # fmt: skip
    """One row per setting: PSNR, FD-shapes vs ``images``, latent MSE, mean entropy (bits).

    ``fit_latents`` (scaled, ``[N, C, h, w]``) calibrate ``per_channel`` settings; by default the
    evaluated latents themselves (the CLI passes latents of training images instead).
    """
    device = next(vae.parameters()).device
    latents = torch.cat([vae.encode_latents(x.to(device)).cpu() for x in _batches(images, batch_size)])
    fit_latents = latents if fit_latents is None else fit_latents
    real_feats, _ = classifier_outputs(classifier, _batches(images, batch_size), device)
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
        recon = torch.cat([vae.decode_latents(z.to(device)).cpu() for z in _batches(z_hat, batch_size)])
        feats, _ = classifier_outputs(classifier, _batches(recon, batch_size), device)
        rows.append({**asdict(setting),
                     "psnr_db": round(float(psnr(recon, images).mean()), 3),
                     "fd_shapes": round(frechet_distance(feature_statistics(feats), real_stats), 4),
                     "latent_mse": round(float((z_hat - latents).pow(2).mean()), 6),
                     "mean_entropy_bits": entropy})  # fmt: skip
    return rows


@torch.no_grad()
def generation_metrics(pipe, classifier, count: int, seed: int = 0, batch_size: int = 50, **sampler) -> dict:
    """Class accuracy, FD-shapes and k-NN precision/recall (vs ``count`` held-out real images) of
    ``count`` samples.

    Labels cycle through the classes (balanced); row ``i`` is seeded ``seed + i``, so the samples
    do not depend on ``batch_size``. ``sampler`` overrides `tokenbridge.pipeline.SAMPLER_DEFAULTS`.
    """
    from tokenbridge.pipeline import SAMPLER_DEFAULTS

    start = time.time()
    labels = torch.arange(count) % len(pipe.classes)
    images = torch.cat([pipe.generate(labels[i : i + batch_size], seed=seed + i, **sampler)
                        for i in range(0, count, batch_size)])  # fmt: skip
    feats, predicted = classifier_outputs(classifier, _batches(images, 250), pipe.device)
    warn_if_few(*feats.shape)
    real = shapes_images(count, 0, pipe.image_size)
    real_feats, _ = classifier_outputs(classifier, _batches(real, 250), pipe.device)
    return {"samples": count, "seed": seed, "sampler": {**SAMPLER_DEFAULTS, **sampler},
            "class_accuracy": round(float((predicted == labels).float().mean()), 4),
            "fd_shapes": round(frechet_distance(feature_statistics(feats), feature_statistics(real_feats)), 4),
            **{k: round(v, 4) for k, v in precision_recall(real_feats, feats).items()},
            "seconds": round(time.time() - start, 1)}  # fmt: skip


@torch.no_grad()
def sample_fingerprints(pipe, classifier, count: int, seed: int = 0, **sampler) -> list[dict]:
    """For the first ``count`` samples of `generation_metrics` (label ``i % classes``, seed
    ``seed + i``): the label, the classifier's prediction and the sum of the token indices."""
    labels = torch.arange(count) % len(pipe.classes)
    tokens = pipe.generate_tokens(labels, seed=seed, **sampler)
    _, predicted = classifier_outputs(classifier, [pipe.decode(pipe.tokens_to_latents(tokens))], pipe.device)
    return [{"label": int(label), "predicted": int(p), "token_sum": int(t.sum())}
            for label, p, t in zip(labels, predicted.cpu(), tokens)]  # fmt: skip


def real_noise_floor(classifier, count: int, device, size: int = 64) -> float:
    """FD-shapes between two disjoint held-out sets of ``count`` real images."""
    a = shapes_images(count, 0, size)
    b = shapes_images(count, count, size)
    fa, _ = classifier_outputs(classifier, _batches(a, 250), device)
    fb, _ = classifier_outputs(classifier, _batches(b, 250), device)
    return frechet_distance(feature_statistics(fa), feature_statistics(fb))


# ------------------------------------------------------------------ token editing (notebook 06)
def _region_BN(region: torch.Tensor, batch: int, seq_len: int) -> torch.Tensor:
    """A bool region ``[h, w]`` or ``[B, h, w]`` (h·w = N) → ``[B, N]``."""
    region = torch.as_tensor(region)
    shape_ok = (region.dim() == 2 and region.numel() == seq_len) or (
        region.dim() == 3 and region.shape[0] == batch and region[0].numel() == seq_len)  # fmt: skip
    if region.dtype != torch.bool or not shape_ok:
        raise ValueError(f"region must be bool [h, w] or [{batch}, h, w] with h·w = {seq_len} tokens, got "
                         f"{region.dtype} {list(region.shape)}")  # fmt: skip
    return region.reshape(-1, seq_len).expand(batch, seq_len)


def token_agreement(edited: torch.Tensor, original: torch.Tensor, region: torch.Tensor,
                    tolerance: int = 0) -> torch.Tensor:  # fmt: skip
    """Per image ``[B]``: the share of the channel indices of the tokens in ``region`` (bool
    ``[h, w]`` or ``[B, h, w]`` on the token grid) where ``edited`` ``[B, N, C]`` lies within
    ``tolerance`` levels of ``original`` (0: the same index). NaN for an image with an empty region."""
    if edited.shape != original.shape or edited.dim() != 3:
        raise ValueError(f"edited and original must be [B, N, C] of one shape, got {list(edited.shape)} and "
                         f"{list(original.shape)}")  # fmt: skip
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
        raise ValueError(f"before and after must be [B, 3, H, W] of one shape, got {list(before.shape)} and "
                         f"{list(after.shape)}")  # fmt: skip
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
        raise ValueError(f"target must be a non-empty bool token grid [h, w], got {target.dtype} "
                         f"{list(target.shape)}")  # fmt: skip
    bad = [k for k in keep if not 0.0 <= float(k) <= 1.0]
    if bad:
        raise ValueError(f"keep shares must lie in 0..1, got {bad}")
    outside = (~target).reshape(-1).nonzero()[:, 0]
    order = outside[torch.randperm(len(outside), generator=torch.Generator().manual_seed(seed))]
    regions = {}
    for k in keep:
        region = target.reshape(-1).clone()
        region[order[: len(order) - round(float(k) * len(order))]] = True
        regions[k] = region.reshape(target.shape)
    return regions


def _command(args) -> str:
    """The command line as run (``args.argv`` is set by `parse_args`), stored in every result."""
    return "python -m tokenbridge.evaluate " + " ".join(args.argv)


def _reconstruction(args) -> dict:
    device = pick_device(args.device)
    vae = checkpoints.load_model(args.vae, kind="vae").to(device)
    classifier = checkpoints.load_model(args.classifier, kind="classifier").to(device)
    images = shapes_images(args.n, 0, vae.config.resolution)
    grid = settings_grid(args.levels, args.assign, args.calibration, args.bins, args.value_range)
    start = time.time()
    with torch.no_grad():  # per-channel calibration is fitted on training images, never the held-out ones
        train_images = shapes_images(args.n, 0, vae.config.resolution, seed=TRAIN_SEED)
        fit_latents = torch.cat([vae.encode_latents(x.to(device)).cpu() for x in _batches(train_images, 250)])
    rows = reconstruction_table(vae, classifier, images, grid, fit_latents)
    return {
        "command": _command(args),
        "vae": args.vae, "classifier": args.classifier, "images": args.n, "heldout_seed": HELDOUT_SEED,
        "fd_shapes_real_vs_real": round(real_noise_floor(classifier, args.n, device, vae.config.resolution), 4),
        "rows": rows, "seconds": round(time.time() - start, 1),
    }  # fmt: skip


FINGERPRINTS = 8
"""Samples per generation result whose fingerprints are stored, so a reader can regenerate them."""


def _generation(args) -> dict:
    from tokenbridge.pipeline import Pipeline

    pipe = Pipeline.load(vae=args.vae, generator=args.generator, device=args.device)
    classifier = checkpoints.load_model(args.classifier, kind="classifier")
    rows = []
    for order, cfg, mode, temp in itertools.product(args.order, args.cfg, args.cfg_mode, args.temperature):
        sampler = dict(order=order, cfg=cfg, cfg_mode=mode, temperature=temp, num_steps=args.steps)
        rows.append({**generation_metrics(pipe, classifier, args.n, seed=args.seed, **sampler),
                     "fingerprints": sample_fingerprints(pipe, classifier, FINGERPRINTS, args.seed, **sampler)})
    return {"command": _command(args), "vae": args.vae,
            "generator": args.generator, "classifier": args.classifier, "rows": rows}  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Foreground proxy (notebook 05): random vs confidence-guided order
# ------------------------------------------------------------------------------------------------


def _bootstrap_medians(values: torch.Tensor, resamples: int, generator: torch.Generator) -> torch.Tensor:
    """Medians ``[R]`` of ``resamples`` resamples (with replacement) of the finite ``values``."""
    finite = values[values.isfinite()]
    picks_RN = torch.randint(len(finite), (resamples, len(finite)), generator=generator)
    return finite[picks_RN].median(dim=1).values


def median_ci(values: torch.Tensor, resamples: int = 2000, seed: int = 0) -> dict:
    """Median of the finite values ``[N]`` (the lower one for an even count, as torch), its
    percentile-bootstrap 95% interval, and how many values were undefined (NaN: e.g. no
    foreground found)."""
    finite = values[values.isfinite()]
    if len(finite) == 0:
        return {"median": None, "n": 0, "undefined": len(values), "ci95": [None, None]}
    medians = _bootstrap_medians(values, resamples, torch.Generator().manual_seed(seed))
    return {"median": round(float(finite.median()), 5), "n": len(finite), "undefined": len(values) - len(finite),
            "ci95": [round(float(q), 5) for q in medians.quantile(torch.tensor([0.025, 0.975]))]}  # fmt: skip


def median_difference_ci(a: torch.Tensor, b: torch.Tensor, resamples: int = 2000, seed: int = 0) -> dict:
    """median(a) − median(b) of the finite values of two independent samples, with a
    percentile-bootstrap 95% interval (None where either has no finite value)."""
    if not (a.isfinite().any() and b.isfinite().any()):
        return {"difference": None, "ci95": [None, None]}
    gen = torch.Generator().manual_seed(seed)
    diffs = _bootstrap_medians(a, resamples, gen) - _bootstrap_medians(b, resamples, gen)
    point = a[a.isfinite()].median() - b[b.isfinite()].median()
    return {"difference": round(float(point), 5),
            "ci95": [round(float(q), 5) for q in diffs.quantile(torch.tensor([0.025, 0.975]))]}  # fmt: skip


def _concat(parts: list):
    """Concatenate along dim 0 a list of tensors, or of equally nested dicts of tensors."""
    if isinstance(parts[0], dict):
        return {k: _concat([p[k] for p in parts]) for k in parts[0]}
    return torch.cat(parts)


def image_measures(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """`foreground.proxy_measures` of images ``[B, 3, H, W]``, in batches of 250."""
    return _concat([proxy_measures(x) for x in _batches(images, 250)])


@torch.no_grad()
def foreground_samples(pipe, count: int, seed: int = 0, batch_size: int = 8, **sampler) -> dict:
    """Proxy measures of ``count`` generated samples, and where their commits fall.

    Labels cycle through the classes; row ``i`` is seeded ``seed + i`` (as `generation_metrics`).
    Returns ``{"measures": {name: [N]}, "step_share": [N, T]`` (foreground share of the tokens
    committed at each step, against the final image's estimated mask), ``"first_step_score":
    {"foreground"|"background": [N]}`` (mean step-0 score, `SamplingStep.confidence`, of the
    decoded foreground / background tokens), ``"images": [N, 3, H, W], "labels": [N], "seeds": [N]}``.
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
        parts.append({"images": images, "measures": proxy_measures(images, estimate),
                      "step_share": committed_share(committed_BTN, coverage_BN),
                      "first_step_score": region_means(steps[0].confidence.cpu(), coverage_BN)})  # fmt: skip
    return {**_concat(parts), "labels": labels, "seeds": seed + torch.arange(count)}


def _rounded(values: torch.Tensor, digits: int = 5) -> list[float | None]:
    return [None if v != v else round(v, digits) for v in values.tolist()]


def _mean_sem(values_NT: torch.Tensor) -> dict:
    """Per-column mean and standard error of ``[N, T]`` values (NaNs skipped)."""
    n_T = values_NT.isfinite().sum(dim=0)
    mean_T = values_NT.nanmean(dim=0)
    sem_T = ((values_NT - mean_T).square().nansum(dim=0) / (n_T - 1).clamp_min(1)).sqrt() / n_T.clamp_min(1).sqrt()
    return {"mean": _rounded(mean_T, 4), "sem": _rounded(sem_T, 4)}


def foreground_validation(images: torch.Tensor, masks: torch.Tensor, reconstructions: torch.Tensor) -> dict:
    """IoU of the estimated masks with the ground-truth masks ``[N, H, W]``, on real images and
    on their VAE reconstructions (same masks)."""
    out = {}
    for name, x in (("real", images), ("reconstruction", reconstructions)):
        iou = torch.cat([mask_iou(estimate_foreground(xb).mask, mb)
                         for xb, mb in zip(_batches(x, 250), _batches(masks, 250))])  # fmt: skip
        out[name] = {"iou_mean": round(float(iou.mean()), 4), "iou_min": round(float(iou.min()), 4),
                     "iou_p01": round(float(iou.quantile(0.01)), 4),
                     "share_iou_above_0.9": round(float((iou > 0.9).float().mean()), 4)}  # fmt: skip
    return out


def _foreground(args) -> dict:
    from tokenbridge.pipeline import SAMPLER_DEFAULTS, Pipeline

    pipe = Pipeline.load(vae=args.vae, generator=args.generator, device=args.device)
    data = ShapesDataset(args.n, seed=HELDOUT_SEED, size=pipe.image_size, with_mask=True)
    real, _, masks = (torch.stack(column) for column in zip(*[data[i] for i in range(args.n)]))
    reconstructions = torch.cat([pipe.reconstruct(x) for x in _batches(real, 250)])
    summarize = functools.partial(median_ci, resamples=args.bootstrap, seed=args.seed)
    start = time.time()
    rows, per_sample, step_share, first_step = [], {}, {}, {}
    for name, images in (("real", real), ("VAE reconstruction", reconstructions)):
        rows.append({"name": name, "sampler": None, "samples": args.n,
                     "summary": {k: summarize(v) for k, v in image_measures(images).items()}})  # fmt: skip
    settings = [("random", dict(order="random"))] + [
        ("confidence" + (f", gumbel {g:g}" if g else ""), dict(order="confidence", gumbel=g)) for g in args.gumbel]
    measured = {}
    for name, sampler in settings:
        setting_start = time.time()
        out = foreground_samples(pipe, args.n, args.seed, args.batch_size, num_steps=args.steps, **sampler)
        measured[name] = out["measures"]
        rows.append({"name": name, "sampler": {**SAMPLER_DEFAULTS, "num_steps": args.steps, **sampler}, "samples": args.n,
                     "summary": {k: summarize(v) for k, v in out["measures"].items()},
                     "seconds": round(time.time() - setting_start, 1)})  # fmt: skip
        per_sample[name] = {"seed": out["seeds"].tolist(), "label": out["labels"].tolist(),
                            **{k: _rounded(v) for k, v in out["measures"].items()}}  # fmt: skip
        step_share[name] = _mean_sem(out["step_share"])
        first_step[name] = {k: summarize(v) for k, v in out["first_step_score"].items()}
    differences = {name: {k: median_difference_ci(v, measured["random"][k], args.bootstrap, args.seed)
                          for k, v in measured[name].items()}
                   for name in measured if name != "random"}  # fmt: skip
    return {
        "command": _command(args), "vae": args.vae,
        "generator": args.generator, "samples": args.n, "seed": args.seed, "batch_size": args.batch_size,
        "heldout_seed": HELDOUT_SEED, "bootstrap_resamples": args.bootstrap,
        "proxy": {"floor": FLOOR, "border": BORDER, "refits": REFITS, "edge_band": EDGE_BAND},
        "validation": foreground_validation(real, masks, reconstructions),
        "rows": rows, "differences_vs_random": differences, "step_foreground_share": step_share,
        "first_step_score": first_step, "seconds": round(time.time() - start, 1), "per_sample": per_sample,
    }  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    """Parsed arguments, with every value, input file and the output path checked before a model loads."""
    count, samples = cli.number(int, 1), cli.number(int, 2)
    parser = cli.ArgumentParser(prog="python -m tokenbridge.evaluate", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    rec = sub.add_parser("reconstruction", help="PSNR and FD-shapes, continuous vs quantized")
    rec.add_argument("--vae", default=DEFAULT_VAE)
    rec.add_argument("--classifier", default=DEFAULT_CLASSIFIER)
    rec.add_argument("--n", type=samples, default=2000, help="held-out images")
    rec.add_argument("--levels", type=cli.number(int, 2, MAX_LEVELS), nargs="+", default=[4, 8, 16, 32, 64, 128])
    rec.add_argument("--assign", nargs="+", choices=ASSIGN_RULES, default=list(ASSIGN_RULES))
    rec.add_argument("--calibration", nargs="+", choices=CALIBRATIONS, default=list(CALIBRATIONS))
    rec.add_argument("--bins", nargs="+", choices=BIN_KINDS, default=["gaussian"])
    rec.add_argument("--value-range", type=cli.number(float, 0, low_open=True), nargs="+", default=[5.0])
    gen = sub.add_parser("generation", help="class accuracy and FD-shapes of samples, over a grid of sampler settings")
    gen.add_argument("--generator", default="assets/generator_small.safetensors")
    gen.add_argument("--vae", default=DEFAULT_VAE)
    gen.add_argument("--classifier", default=DEFAULT_CLASSIFIER)
    gen.add_argument("--n", type=samples, default=2000, help="samples per setting (classes balanced)")
    gen.add_argument("--seed", type=cli.number(int, 0), default=0)
    gen.add_argument("--steps", type=count, default=16)
    gen.add_argument("--order", nargs="+", choices=ORDERS, default=["random", "confidence"])
    gen.add_argument("--cfg", type=cli.number(float, 0), nargs="+", default=[3.0])
    gen.add_argument("--cfg-mode", nargs="+", choices=CFG_MODES, default=["feature"])
    gen.add_argument("--temperature", type=cli.number(float, 0, low_open=True), nargs="+", default=[1.0])
    fg = sub.add_parser("foreground", help="foreground/background proxy of samples: random vs confidence order")
    fg.add_argument("--generator", default="assets/generator_small.safetensors")
    fg.add_argument("--vae", default=DEFAULT_VAE)
    fg.add_argument("--n", type=samples, default=300, help="samples per setting (classes balanced), and real images")
    fg.add_argument("--seed", type=cli.number(int, 0), default=0, help="first sample's seed (also seeds the bootstrap)")
    fg.add_argument("--batch-size", type=count, default=8)
    fg.add_argument("--steps", type=count, default=16)
    fg.add_argument("--gumbel", type=cli.number(float, 0), nargs="+", default=[0.0, 4.5],
                    help="confidence order's Gumbel noise scales (4.5: MaskGIT's choice temperature)")
    fg.add_argument("--bootstrap", type=count, default=2000, help="bootstrap resamples of each median")
    for command in (rec, gen, fg):
        command.add_argument("--device", type=cli.device, default="cpu")
        command.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as run, recorded in the results
    cli.check(parser, "--out", cli.output_file, args.out)
    official = args.what != "reconstruction"  # Pipeline.load also reads the official checkpoints
    cli.check(parser, "--vae", cli.pipeline_file if official else cli.model_file, args.vae, "vae")
    if args.what != "reconstruction":
        cli.check(parser, "--generator", cli.pipeline_file, args.generator, "generator")
    if args.what != "foreground":
        cli.check(parser, "--classifier", cli.model_file, args.classifier, "classifier")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    run = {"reconstruction": _reconstruction, "generation": _generation, "foreground": _foreground}[args.what]
    result = run(args)
    path = Path(args.out)
    checkpoints.atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1) + "\n"))
    for row in result["rows"]:
        print(row)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
