"""A few-channel tokenizer from a trained VAE: its latents projected on their top principal components.

    python -m tokenbridge.latent_projection --vae assets/vae_small.safetensors --data icons \
        --channels 4 --export assets/vae_icons

The embedded 16-channel VAE is nearly rank 4 (top 4 principal components: 98 % of the variance),
so most of its channels are noise for a generator to model. Whitening the top ``k`` components
(``z = Λ^{-1/2} Uᵀ (x − m)`` on scaled latents ``x``; unit variance each, as the quantizer's
Gaussian bins expect) and folding the projection into the VAE's 1×1 ``quant_conv`` /
``post_quant_conv`` gives an ordinary `AutoencoderKL` with ``embed_dim = k`` and ``scale_factor``
1: every loader, the pipeline and the app read it as any VAE, no new model kind. The posterior
mean is exact; the log-variance rows are a linear approximation (the projected variance is a sum
of exponentials, not a 1×1 convolution): a weighted mean of the source log-variances plus the
log of the squared projection weights (Jensen: a lower bound), used only when sampling a latent.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from dataclasses import dataclass, replace

import torch

from tokenbridge import checkpoints, cli
from tokenbridge.evaluation import QuantSetting, encode_in_batches, reconstruction_table, shapes_images
from tokenbridge.files import write_json
from tokenbridge.shapes import DATASETS, HELDOUT_SEED, NUM_CLASSES, TRAIN_SEED
from tokenbridge.vae import AutoencoderKL, build_vae


@dataclass(frozen=True)
class Projection:
    """Whitened PCA of scaled latents: ``mean [C]``, ``basis [C, k]`` (orthonormal columns, by
    decreasing variance), ``variance [k]``; ``explained``: the top k's share of the total variance."""

    mean: torch.Tensor
    basis: torch.Tensor
    variance: torch.Tensor
    explained: float

    def project(self, latents: torch.Tensor) -> torch.Tensor:
        """``[B, C, h, w]`` scaled latents → whitened components ``[B, k, h, w]``."""
        x = latents.permute(0, 2, 3, 1).double() - self.mean
        return ((x @ self.basis) / self.variance.sqrt()).permute(0, 3, 1, 2).to(latents.dtype)


def fit_projection(latents: torch.Tensor, channels: int) -> Projection:
    """The top ``channels`` principal components of latents ``[N, C, h, w]`` (every position a sample)."""
    if not 1 <= channels <= latents.shape[1]:
        raise ValueError(f"channels must be in 1..{latents.shape[1]}, got {channels}")
    x = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).double()
    mean = x.mean(dim=0)
    eigenvalues, vectors = torch.linalg.eigh(torch.cov((x - mean).T))
    eigenvalues, vectors = eigenvalues.flip(0), vectors.flip(1)  # decreasing variance
    explained = float(eigenvalues[:channels].sum() / eigenvalues.sum())
    return Projection(mean, vectors[:, :channels], eigenvalues[:channels], explained)


@torch.no_grad()
def projected_vae(vae: AutoencoderKL, projection: Projection) -> AutoencoderKL:
    """``vae`` with the projection folded into its 1×1 convolutions: encoder, decoder and the
    convolutions' other weights unchanged; ``encode_latents`` gives ``projection.project(vae.encode_latents)``."""
    c, k = projection.basis.shape
    s = vae.config.scale_factor
    to_z = (projection.basis / projection.variance.sqrt()).T  # [k, C]: scaled latent -> component
    from_z = projection.basis * projection.variance.sqrt()  # [C, k]: component -> scaled latent
    w_in, b_in = vae.quant_conv.weight[:, :, 0, 0].double(), vae.quant_conv.bias.double()
    w_mean, w_logvar, b_mean, b_logvar = w_in[:c], w_in[c:], b_in[:c], b_in[c:]
    squared = (to_z * s) ** 2  # the variance of component k is sum_j squared[k, j] * var_j
    weights = squared / squared.sum(dim=1, keepdim=True)
    w_post, b_post = vae.post_quant_conv.weight[:, :, 0, 0].double(), vae.post_quant_conv.bias.double()

    new_in = torch.cat([to_z @ (s * w_mean), weights @ w_logvar])
    new_in_bias = torch.cat([to_z @ (s * b_mean - projection.mean), weights @ b_logvar + squared.sum(dim=1).log()])
    state = {
        **vae.state_dict(),
        "quant_conv.weight": new_in[:, :, None, None],
        "quant_conv.bias": new_in_bias,
        "post_quant_conv.weight": (w_post @ from_z / s)[:, :, None, None],
        "post_quant_conv.bias": w_post @ projection.mean / s + b_post,
    }
    model = build_vae(replace(vae.config, embed_dim=k, scale_factor=1.0))
    model.load_state_dict({name: t.float() for name, t in state.items()})
    return model.eval()


@torch.no_grad()
def tokenizer_metrics(vae: AutoencoderKL, classifier, count: int, levels: tuple[int, ...] = (64, 16)) -> dict:
    """Per procedural dataset, on ``count`` held-out images: PSNR (dB) and the classifier's accuracy
    on continuous and on quantized reconstructions (each of ``levels``, official Gaussian bins)."""
    settings = [QuantSetting(None), *(QuantSetting(b) for b in levels)]
    names = ["continuous", *(f"b{b}" for b in levels)]
    result = {}
    for kind in DATASETS:
        images = shapes_images(count, size=vae.config.resolution, seed=HELDOUT_SEED, kind=kind)
        rows = reconstruction_table(vae, classifier, images, settings, labels=torch.arange(count) % NUM_CLASSES)
        result[kind] = {name: {k: row[k] for k in ("psnr_db", "class_accuracy")} for name, row in zip(names, rows)}
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        prog="python -m tokenbridge.latent_projection",
        description="Fold a whitened PCA of a VAE's latents into a few-channel VAE (see the module docstring).",
    )
    parser.add_argument("--vae", default="assets/vae_small.safetensors", help="the source VAE (our safetensors)")
    parser.add_argument("--data", default="icons", choices=list(DATASETS), help="the fit's training images")
    parser.add_argument("--images", type=cli.number(int, low=10), default=2000, help="training images to fit on")
    parser.add_argument("--channels", type=cli.number(int, low=1), default=4, help="components kept")
    parser.add_argument("--classifier", default="assets/classifier.safetensors", help="for the metrics")
    parser.add_argument("--heldout", type=cli.number(int, low=10), default=500, help="held-out images per dataset")
    parser.add_argument("--export", required=True, help="output path without suffix (.safetensors and .json)")
    args = parser.parse_args(argv)
    header = cli.check(parser, "--vae", cli.model_file, args.vae, "vae")
    if args.channels > header["config"]["embed_dim"]:
        parser.error(f"argument --channels: {args.channels} is more than the VAE's {header['config']['embed_dim']}")
    cli.check(parser, "--classifier", cli.model_file, args.classifier, "classifier")
    cli.check(parser, "--export", cli.output_file, args.export + ".safetensors")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    source = checkpoints.load_model(args.vae, kind="vae")
    images = shapes_images(args.images, size=source.config.resolution, seed=TRAIN_SEED, kind=args.data)
    projection = fit_projection(encode_in_batches(source, images), args.channels)
    model = projected_vae(source, projection)
    weights = checkpoints.save_model(
        model, args.export + ".safetensors", "vae", model.config.to_dict(), dtype=torch.float16
    )
    shipped = checkpoints.load_model(weights, kind="vae")
    classifier = checkpoints.load_model(args.classifier, kind="classifier")
    sidecar = {
        "command": shlex.join(["python", "-m", "tokenbridge.latent_projection", *(argv or sys.argv[1:])]),
        "kind": "vae",
        "derived_from": {"vae": args.vae, "method": "whitened PCA folded into quant_conv / post_quant_conv"},
        "data": {"kind": args.data, "num_samples": args.images, "seed": TRAIN_SEED, "size": source.config.resolution},
        "weights_dtype": "float16",
        "torch": torch.__version__,
        "created": datetime.date.today().isoformat(),
        "metrics": {
            "explained_variance": round(projection.explained, 4),
            "component_variance": [round(float(v), 4) for v in projection.variance],
            "heldout_images": args.heldout,
            "reconstruction": tokenizer_metrics(shipped, classifier, args.heldout),
        },
    }
    write_json(args.export + ".json", sidecar, indent=2)
    print(f"wrote {weights} ({args.channels} channels, {projection.explained:.1%} of the variance)")
    print(sidecar["metrics"]["reconstruction"])


if __name__ == "__main__":
    main()
