"""Evaluation CLI: reconstruction (continuous vs quantized latents) and generation quality.

    python -m tokenbridge.evaluate reconstruction --out results/reconstruction.json
    python -m tokenbridge.evaluate generation --order random confidence --out results/generation.json
    python -m tokenbridge.evaluate foreground --n 300 --out results/confidence_proxy.json

Held-out shapes images (``HELDOUT_SEED``) are encoded once by the VAE (posterior mean, scaled),
then decoded continuously and after quantizing with every requested setting. Each row reports
PSNR (dB, mean over images), FD-shapes of the reconstructions against the originals, and the
latent round-trip MSE. A second, disjoint held-out set gives FD-shapes between two real sets of
the same size: the noise floor of the metric at this sample count. ``generation`` also measures
the tokenizer's reconstructions like samples (``tokenizer_ceiling``): the best a generator can score.

The measurements live in `tokenbridge.evaluation`, `tokenbridge.foreground` and
`tokenbridge.statistics`; this module parses arguments, runs them and writes the JSON.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
import time
from pathlib import Path

import torch

from tokenbridge import checkpoints, cli
from tokenbridge.devices import pick_device
from tokenbridge.evaluation import (
    FINGERPRINTS,
    encode_in_batches,
    generation_metrics,
    real_noise_floor,
    reconstruction_table,
    sample_fingerprints,
    settings_grid,
    shapes_images,
    tokenizer_ceiling,
)
from tokenbridge.files import write_json
from tokenbridge.foreground import (
    BORDER,
    EDGE_BAND,
    FLOOR,
    REFITS,
    foreground_samples,
    foreground_validation,
    image_measures,
)
from tokenbridge.pipeline import SAMPLER_DEFAULTS, Pipeline, embedded_file
from tokenbridge.quantizer import ASSIGN_RULES, BIN_KINDS, CALIBRATIONS, MAX_LEVELS
from tokenbridge.sampling import ORDERS
from tokenbridge.shapes import HELDOUT_SEED, TRAIN_SEED, ShapesDataset
from tokenbridge.statistics import mean_sem, median_ci, median_difference_ci, rounded_list

RECONSTRUCTION_VAE = "assets/vae_small.safetensors"
"""The 16-channel VAE whose bits notebook 03 studies (the embedded tokenizer is its 4-channel projection)."""
DEFAULT_CLASSIFIER = "assets/classifier.safetensors"


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
    # per-channel calibration is fitted on training images, never the held-out ones
    fit_latents = encode_in_batches(vae, shapes_images(args.n, 0, vae.config.resolution, seed=TRAIN_SEED))
    labels = torch.arange(args.n) % len(ShapesDataset.classes)  # held-out image i is of class i % 10
    rows = reconstruction_table(vae, classifier, images, grid, fit_latents, labels=labels)
    return {
        "command": _command(args),
        "vae": args.vae,
        "classifier": args.classifier,
        "images": args.n,
        "heldout_seed": HELDOUT_SEED,
        "fd_shapes_real_vs_real": round(real_noise_floor(classifier, args.n, device, vae.config.resolution), 4),
        "rows": rows,
        "seconds": round(time.time() - start, 1),
    }


def _generation(args) -> dict:
    pipe = Pipeline.load(vae=args.vae, generator=args.generator, device=args.device)
    classifier = checkpoints.load_model(args.classifier, kind="classifier")
    rows = []
    for sampling_order, cfg_scale, cfg_mode, temperature in itertools.product(
        args.order, args.cfg, args.cfg_mode, args.temperature
    ):
        sampler = dict(
            order=sampling_order, cfg=cfg_scale, cfg_mode=cfg_mode, temperature=temperature, num_steps=args.steps
        )
        rows.append(
            {
                **generation_metrics(pipe, classifier, args.n, seed=args.seed, **sampler),
                "fingerprints": sample_fingerprints(pipe, classifier, FINGERPRINTS, args.seed, **sampler),
            }
        )
    return {
        "command": _command(args),
        "vae": args.vae,
        "generator": args.generator,
        "classifier": args.classifier,
        "dataset": pipe.dataset,
        "tokenizer_ceiling": tokenizer_ceiling(pipe, classifier, args.n),
        "rows": rows,
    }


def _image_row(name: str, images: torch.Tensor, summarize) -> dict:
    """A results row of the proxy measured on images that were not sampled (real, reconstructed)."""
    measures = {k: summarize(v) for k, v in image_measures(images).items()}
    return {"name": name, "sampler": None, "samples": len(images), "summary": measures}


def _differences_vs_random(measured: dict, resamples: int, seed: int) -> dict:
    """Per setting but random order, per measure: the median difference to random order, with its interval."""
    random = measured["random"]
    return {
        name: {k: median_difference_ci(v, random[k], resamples, seed) for k, v in values.items()}
        for name, values in measured.items()
        if name != "random"
    }


def _foreground(args) -> dict:
    pipe = Pipeline.load(vae=args.vae, generator=args.generator, device=args.device)
    data = ShapesDataset(args.n, seed=HELDOUT_SEED, size=pipe.image_size, with_mask=True, kind=pipe.dataset)
    real, _, masks = (torch.stack(column) for column in zip(*[data[i] for i in range(args.n)]))
    reconstructions = torch.cat([pipe.reconstruct(x) for x in real.split(250)])
    summarize = functools.partial(median_ci, resamples=args.bootstrap, seed=args.seed)
    start = time.time()
    per_sample, step_share, first_step = {}, {}, {}
    rows = [
        _image_row(name, images, summarize)
        for name, images in (("real", real), ("VAE reconstruction", reconstructions))
    ]
    settings = [("random", dict(order="random"))] + [
        ("confidence" + (f", gumbel {g:g}" if g else ""), dict(order="confidence", gumbel=g)) for g in args.gumbel
    ]
    measured = {}
    for name, sampler in settings:
        setting_start = time.time()
        out = foreground_samples(pipe, args.n, args.seed, args.batch_size, num_steps=args.steps, **sampler)
        measured[name] = out["measures"]
        rows.append(
            {
                "name": name,
                "sampler": {**SAMPLER_DEFAULTS, "num_steps": args.steps, **sampler},
                "samples": args.n,
                "summary": {k: summarize(v) for k, v in out["measures"].items()},
                "seconds": round(time.time() - setting_start, 1),
            }
        )
        per_sample[name] = {
            "seed": out["seeds"].tolist(),
            "label": out["labels"].tolist(),
            **{k: rounded_list(v) for k, v in out["measures"].items()},
        }
        step_share[name] = mean_sem(out["step_share"])
        first_step[name] = {k: summarize(v) for k, v in out["first_step_score"].items()}
    return {
        "command": _command(args),
        "vae": args.vae,
        "generator": args.generator,
        "dataset": pipe.dataset,
        "samples": args.n,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "heldout_seed": HELDOUT_SEED,
        "bootstrap_resamples": args.bootstrap,
        "proxy": {"floor": FLOOR, "border": BORDER, "refits": REFITS, "edge_band": EDGE_BAND},
        "validation": foreground_validation(real, masks, reconstructions),
        "rows": rows,
        "differences_vs_random": _differences_vs_random(measured, args.bootstrap, args.seed),
        "step_foreground_share": step_share,
        "first_step_score": first_step,
        "seconds": round(time.time() - start, 1),
        "per_sample": per_sample,
    }


def build_parser() -> cli.ArgumentParser:
    """The three subcommands and their options, each value range-checked as it is parsed."""
    parser = cli.ArgumentParser(prog="python -m tokenbridge.evaluate", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    commands = (_add_reconstruction(sub), _add_generation(sub), _add_foreground(sub))
    for command in commands:
        command.add_argument("--device", type=cli.device, default="cpu")
        command.add_argument("--out", required=True, help="JSON file to write")
    return parser


def _add_reconstruction(sub) -> argparse.ArgumentParser:
    """``reconstruction``: the VAE and quantizer settings to measure."""
    samples = cli.number(int, 2)
    rec_cmd = sub.add_parser("reconstruction", help="PSNR and FD-shapes, continuous vs quantized")
    rec_cmd.add_argument("--vae", default=RECONSTRUCTION_VAE, help="default: %(default)s, the 16-channel VAE")
    rec_cmd.add_argument("--classifier", default=DEFAULT_CLASSIFIER)
    rec_cmd.add_argument("--n", type=samples, default=2000, help="held-out images")
    rec_cmd.add_argument("--levels", type=cli.number(int, 2, MAX_LEVELS), nargs="+", default=[4, 8, 16, 32, 64, 128])
    rec_cmd.add_argument("--assign", nargs="+", choices=ASSIGN_RULES, default=list(ASSIGN_RULES))
    rec_cmd.add_argument("--calibration", nargs="+", choices=CALIBRATIONS, default=list(CALIBRATIONS))
    rec_cmd.add_argument("--bins", nargs="+", choices=BIN_KINDS, default=["gaussian"])
    rec_cmd.add_argument("--value-range", type=cli.number(float, 0, low_open=True), nargs="+", default=[5.0])
    return rec_cmd


def _add_generation(sub) -> argparse.ArgumentParser:
    """``generation``: the models and the grid of sampler settings to sample with."""
    samples = cli.number(int, 2)
    gen_cmd = sub.add_parser(
        "generation", help="class accuracy and FD-shapes of samples, over a grid of sampler settings"
    )
    gen_cmd.add_argument("--generator", default=embedded_file("generator"))
    gen_cmd.add_argument("--vae", default=embedded_file("vae"))
    gen_cmd.add_argument("--classifier", default=DEFAULT_CLASSIFIER)
    gen_cmd.add_argument("--n", type=samples, default=2000, help="samples per setting (classes balanced)")
    gen_cmd.add_argument("--seed", type=cli.number(int, 0), default=0)
    # the sampler's flags, checked as the sampler checks them; the defaults are the kit's measured sampler
    # defaults (`SamplerSettings`), every order
    cli.sampler_argument(gen_cmd, "num_steps", default=SAMPLER_DEFAULTS["num_steps"])
    cli.sampler_argument(gen_cmd, "order", nargs="+", default=list(ORDERS))
    for knob in ("cfg", "cfg_mode", "temperature"):
        cli.sampler_argument(gen_cmd, knob, nargs="+", default=[SAMPLER_DEFAULTS[knob]])
    return gen_cmd


def _add_foreground(sub) -> argparse.ArgumentParser:
    """``foreground``: the models, the samples and the Gumbel scales of confidence order."""
    count, samples = cli.number(int, 1), cli.number(int, 2)
    fg_cmd = sub.add_parser("foreground", help="foreground/background proxy of samples: random vs confidence order")
    fg_cmd.add_argument("--generator", default=embedded_file("generator"))
    fg_cmd.add_argument("--vae", default=embedded_file("vae"))
    fg_cmd.add_argument(
        "--n", type=samples, default=300, help="samples per setting (classes balanced), and real images"
    )
    fg_cmd.add_argument(
        "--seed", type=cli.number(int, 0), default=0, help="first sample's seed (also seeds the bootstrap)"
    )
    fg_cmd.add_argument("--batch-size", type=count, default=8)
    cli.sampler_argument(fg_cmd, "num_steps", default=16)
    cli.sampler_argument(
        fg_cmd,
        "gumbel",
        nargs="+",
        default=[0.0, 4.5],
        help="confidence order's Gumbel noise scales (4.5: MaskGIT's choice temperature)",
    )
    fg_cmd.add_argument("--bootstrap", type=count, default=2000, help="bootstrap resamples of each median")
    return fg_cmd


def parse_args(argv=None) -> argparse.Namespace:
    """Parsed arguments, with every value, input file and the output path checked before a model loads."""
    parser = build_parser()
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
    write_json(path, result)
    for row in result["rows"]:
        print(generation_line(result["dataset"], row) if args.what == "generation" else row)
    if args.what == "generation":
        print(ceiling_line(result["tokenizer_ceiling"]))
    print(f"wrote {path}")


def generation_line(dataset: str, row: dict) -> str:
    """One generation row for the terminal: the sampler, then the measures against ``dataset``."""
    sampler = row["sampler"]
    return (
        f"{row['samples']} samples, order {sampler['order']}, CFG {sampler['cfg']:g} ({sampler['cfg_mode']}), "
        f"temperature {sampler['temperature']:g}: class accuracy {row['class_accuracy']:.1%}, FD-shapes "
        f"{row['fd_shapes']:.2f}, precision {row['precision']:.2f}, recall {row['recall']:.2f} "
        f"(against held-out {dataset}, the generator's training dataset)"
    )


def ceiling_line(ceiling: dict) -> str:
    """`tokenizer_ceiling` for the terminal: the scores a generator of perfect tokens would reach."""
    return (
        f"tokenizer ceiling ({ceiling['images']} reconstructions of held-out images): class accuracy "
        f"{ceiling['class_accuracy']:.1%}, FD-shapes {ceiling['fd_shapes']:.2f}, precision {ceiling['precision']:.2f}, "
        f"recall {ceiling['recall']:.2f}"
    )


if __name__ == "__main__":
    main()
