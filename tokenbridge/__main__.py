"""Command line: sample a grid of images, or re-sample a region of an image's tokens.

    python -m tokenbridge sample --per-class 8 --scale 2 --out grid.png     # one labelled row per class
    python -m tokenbridge edit --image in.png --region 2:6,2:6 --class star --out before_after.png --out-after after.png

``--vae``/``--generator`` default to the embedded models; either one alone is paired with the
embedded other when they fit. Bad arguments end in one line and exit status 2 (`tokenbridge.cli`),
checked before the models load from the headers of our model files (an official torch checkpoint
is only checked once loaded). Training and evaluation have their own entry points
(``python -m tokenbridge.train``, ``python -m tokenbridge.evaluate``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from PIL import Image

from tokenbridge import checkpoints, cli, pictures
from tokenbridge.compositing import FEATHER
from tokenbridge.data import load_image, to_uint8_image
from tokenbridge.generator import GeneratorConfig
from tokenbridge.pipeline import EMBEDDED, Pipeline
from tokenbridge.regions import Span, cells_mask, parse_cells
from tokenbridge.sampling import KNOBS, SamplerSettings
from tokenbridge.vae import VAEConfig


@dataclass
class Models:
    """What the arguments are checked against: the generator's class names, token grid side, image side."""

    classes: list[str]
    grid: int
    image_size: int


# ------------------------------------------------------------------------------------------------
# Parser
# ------------------------------------------------------------------------------------------------


def region_spans(text: str) -> tuple[Span, Span]:
    """The ``--region`` type: `regions.parse_cells` (the grid is checked once the models are known)."""
    try:
        return parse_cells(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_model_flags(p: argparse.ArgumentParser, out: str, seed: str, what: str) -> None:
    """Flags every sub-command shares: models, device, seed, output file and scale, the sampler settings."""
    p.add_argument("--vae", type=cli.existing_file, help="VAE file (default: the embedded one)")
    p.add_argument("--generator", type=cli.existing_file, help="generator file (default: the embedded one)")
    p.add_argument("--device", type=cli.device, default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=cli.number(int, 0), default=0, help=seed)
    p.add_argument("--out", type=cli.output_image, default=out, help=f"image file to write: {what} (default: {out})")
    p.add_argument(
        "--scale",
        type=cli.number(int, 1, 16),
        default=1,
        help="enlarge the written images N times, nearest neighbour (default: 1)",
    )
    defaults = SamplerSettings()
    for name in KNOBS:  # unset flags leave the sampler's settings to the pipeline
        cli.sampler_argument(p, name, dest=name, default=None, help=f"default: {getattr(defaults, name)}")


def build_parser() -> cli.ArgumentParser:
    """``sample`` and ``edit``; each checks the syntax and ranges of its arguments as they are parsed."""
    parser = cli.ArgumentParser(prog="python -m tokenbridge", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    count = cli.number(int, 1)

    s = sub.add_parser("sample", help="generate a grid of images")
    which = s.add_mutually_exclusive_group()
    which.add_argument(
        "--class", "--class-name", dest="class_", help="class name or id, e.g. star or 3 (omit for unconditional)"
    )
    which.add_argument("--per-class", type=count, help="a grid with this many samples of every class, one row each")
    s.add_argument("--n", type=count, default=16, help="number of images")
    s.add_argument("--columns", type=count, default=8, help="images per grid row")
    _add_model_flags(
        s,
        "samples.png",
        "image i uses seed + i",
        "a grid, each row labelled with its class (one image: that image alone, no border)",
    )
    s.set_defaults(run=_sample, parser=s)

    e = sub.add_parser("edit", help="re-sample a region of an image's tokens, keeping the rest")
    e.add_argument(
        "--image",
        type=cli.existing_file,
        required=True,
        help="image file (its centre square is resized to the model's image size)",
    )
    e.add_argument(
        "--region",
        type=region_spans,
        required=True,
        help="ROWS,COLUMNS on the token grid to re-sample, half-open: 2:6,2:6 (or 3,0:8; 2:,: ...)",
    )
    e.add_argument("--class", dest="class_", help="class name or id of the new content (omit: unconditional)")
    e.add_argument(
        "--feather",
        type=cli.number(float, 0),
        default=FEATHER,
        help=f"pixels over which the edit blends into the original outside the region; farther "
        f"pixels stay the input's exactly (default: {FEATHER}; 0: a hard edge)",
    )
    e.add_argument(
        "--no-paste-back",
        dest="paste",
        action="store_false",
        help="write the raw decode instead: the decoder then changes pixels outside the region too",
    )
    e.add_argument("--out-after", type=cli.output_image, help="also write the edited image alone to this file")
    _add_model_flags(
        e, "edited.png", "the sampler's seed (same seed, same edit)", "before | after side by side, the region outlined"
    )
    e.set_defaults(run=_edit, parser=e)
    return parser


# ------------------------------------------------------------------------------------------------
# Checks against the models (their headers before loading, or the loaded pipeline)
# ------------------------------------------------------------------------------------------------


def models_from_headers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Models | None:
    """The models' facts from the headers of our files, after checking kind and fit; None for official files."""
    builders = {"vae": lambda config: VAEConfig(**config), "generator": GeneratorConfig.from_dict}
    configs = {}
    for kind, build in builders.items():
        path = getattr(args, kind) or EMBEDDED[kind]
        flag = f"--{kind}" if getattr(args, kind) else f"--{kind} (default: the embedded {kind})"
        if cli.check(parser, flag, checkpoints.file_format, path) == "torch":
            return None  # an official checkpoint: checked when it loads
        header = cli.check(parser, flag, cli.model_file, path, kind)
        configs[kind] = (header, cli.check(parser, flag, build, header.get("config", {})))
    (_, vae_config), (header, generator_config) = configs["vae"], configs["generator"]
    needed = (generator_config.vae_embed_dim, generator_config.vae_stride)
    if needed != (vae_config.embed_dim, vae_config.downsampling_factor):
        parser.error(_misfit(args, generator_config, vae_config))
    classes = header.get("extra", {}).get("classes") or [f"class {i}" for i in range(generator_config.class_num)]
    return Models(list(classes), generator_config.grid_size, generator_config.img_size)


def _misfit(args: argparse.Namespace, generator_config, vae_config) -> str:
    """Which file does not fit which, and what the generator needs."""
    needs = f"a VAE with {generator_config.vae_embed_dim} latent channels and stride {generator_config.vae_stride}"
    has = f"{vae_config.embed_dim} channels and stride {vae_config.downsampling_factor}"
    if args.vae is None:
        return f"argument --generator: it needs {needs}, the embedded VAE has {has}: pass its VAE with --vae"
    if args.generator is None:
        return (
            f"argument --vae: the embedded generator needs {needs}, this VAE has {has}: pass a generator "
            f"trained on its latents with --generator"
        )
    return f"argument --vae: the generator needs {needs}, this VAE has {has}"


def class_id(value: str | None, classes: list[str]) -> int | None:
    """A class given by name or id → its id (None stays None: unconditional)."""
    if value is None:
        return None
    if value.isdigit() and int(value) < len(classes):
        return int(value)
    if value in classes:
        return classes.index(value)
    raise ValueError(f"unknown class {value!r}; valid: {', '.join(classes)} (or an id 0..{len(classes) - 1})")


def check_values(parser: argparse.ArgumentParser, args: argparse.Namespace, models: Models) -> None:
    """Check what depends on the models; set ``args.label`` (``edit``: ``args.region_mask``, ``args.images``)."""
    args.label = cli.check(parser, "--class", class_id, args.class_, models.classes)
    to_sample = models.grid**2
    if args.command == "edit":
        args.region_mask = cli.check(parser, "--region", cells_mask, args.region, models.grid)
        to_sample = int(args.region_mask.sum())
        args.images = cli.check(parser, "--image", _load_image, args.image, models.image_size)
    if args.num_steps is not None and args.num_steps > to_sample:
        parser.error(f"argument --steps: must be <= {to_sample}, the number of tokens to sample, got {args.num_steps}")


def _load_image(path, size: int):
    """``[1, 3, size, size]`` in [-1, 1]."""
    return load_image(path, size=size)[None]


# ------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------


def _sample(pipe, args: argparse.Namespace) -> str:
    if args.per_class is not None:  # one row per class
        labels = [c for c in range(len(pipe.classes)) for _ in range(args.per_class)]
        args.columns, what = args.per_class, f"{args.per_class} per class, one row each"
    elif args.label is not None:
        labels, what = [args.label] * args.n, f"class {pipe.classes[args.label]}"
    else:
        labels, what = None, "unconditional"
    count = len(labels) if labels is not None else args.n
    images = pipe.generate(labels, seed=args.seed, batch_size=count, **_sampler(args))
    columns = min(args.columns, count)
    row_labels = None if labels is None else [pipe.classes[c] for c in labels[::columns]]
    Image.fromarray(pictures.labelled_grid(images, columns, row_labels, args.scale)).save(args.out)
    return f"wrote {args.out} ({count} image{'s' if count != 1 else ''}, {what})"


def _edit(pipe, args: argparse.Namespace) -> str:
    labels = None if args.label is None else [args.label]
    edited = pipe.edit(
        args.images, args.region_mask, labels, seed=args.seed, feather=args.feather, paste=args.paste, **_sampler(args)
    )
    Image.fromarray(pictures.before_after(args.images[0], edited[0], args.region_mask, args.scale)).save(args.out)
    written = f"{args.out} (before | after)"
    if args.out_after is not None:
        Image.fromarray(pictures.enlarge(to_uint8_image(edited[0]), args.scale)).save(args.out_after)
        written += f" and {args.out_after} (after)"
    (r0, r1), (c0, c1) = [(a, b if b is not None else pipe.generator.config.grid_size) for a, b in args.region]
    what = "unconditional" if args.label is None else f"class {pipe.classes[args.label]}"
    pasted = f"pasted back with a {args.feather:g}-pixel feather" if args.paste else "the raw decode"
    return (
        f"wrote {written}: rows {r0}:{r1}, columns {c0}:{c1}: {int(args.region_mask.sum())} of "
        f"{args.region_mask.numel()} tokens re-sampled, {what}, {pasted}"
    )


def _sampler(args: argparse.Namespace) -> dict:
    """The sampler flags that were given (the pipeline fills in the rest)."""
    return {k: getattr(args, k) for k in KNOBS if getattr(args, k) is not None}


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    parser = args.parser  # the sub-command's parser: its errors name it
    models = models_from_headers(parser, args)
    if models is not None:
        check_values(parser, args, models)
    pipe = cli.check(
        parser,
        "--vae/--generator",
        Pipeline.load,
        vae=args.vae or EMBEDDED["vae"],
        generator=args.generator or EMBEDDED["generator"],
        device=args.device,
    )
    if models is None:
        check_values(parser, args, Models(pipe.classes, pipe.generator.config.grid_size, pipe.image_size))
    try:
        print(args.run(pipe, args))
    except ValueError as e:  # a setting the loaded models refuse, said by the sampler
        parser.error(str(e))


if __name__ == "__main__":
    sys.exit(main())
