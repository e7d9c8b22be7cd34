"""Training from the command line: one command for the VAE, the shapes classifier and the generator.

    python -m tokenbridge.train vae --out runs/vae --steps 3000 --export assets/vae_small
    python -m tokenbridge.train classifier --out runs/classifier --steps 1500 --export assets/classifier
    torchrun --nproc_per_node=2 -m tokenbridge.train vae --out runs/vae ...   # DDP, gloo on CPU
    python -m tokenbridge.train plot runs/vae      # runs/vae/metrics.csv -> runs/vae/loss.png

Options become a typed recipe (`tokenbridge.training_tasks`) and `LoopSettings`; every value, preset,
file and folder is checked before the first step (`parse_run`), so a run fails in its first second.
The loop (`tokenbridge.training_loop`) makes runs resumable (``--resume``) and bit-identical on the
same device; ``--export`` writes the EMA weights with a JSON sidecar.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import torch.distributed as dist
from safetensors import safe_open

from tokenbridge import cli
from tokenbridge import vae as vae_module
from tokenbridge.data import LATENT_CACHE_FORMAT
from tokenbridge.generator import (
    ABSOLUTE_POSITIONS,
    CLASS_INPUTS,
    HEAD_INITS,
    LOCAL_MIXINGS,
    POSITION_BIASES,
    READOUTS,
    preset_config,
)
from tokenbridge.generator import PRESETS as GENERATOR_PRESETS
from tokenbridge.shapes import DATASETS
from tokenbridge.training_loop import LoopSettings, export, read_metrics, resume_state, train
from tokenbridge.training_tasks import (
    TASKS,
    ClassifierRecipe,
    GeneratorRecipe,
    VAERecipe,
    latent_layout,
    vae_overrides,
)
from tokenbridge.vae import VAEConfig
from tokenbridge.viz import plot_training_curves

PRESETS = {"vae": vae_module.PRESETS, "generator": GENERATOR_PRESETS}
"""Each task's presets (the classifier has none); the default is its recipe's ``preset``."""


@dataclass(frozen=True)
class Run:
    """One checked training command: the task, its recipe, the loop's settings and where it goes."""

    task: str
    recipe: VAERecipe | ClassifierRecipe | GeneratorRecipe
    settings: LoopSettings
    out: str
    resume: bool = False
    export: str | None = None
    progress: bool = True


def build_parser() -> cli.ArgumentParser:
    """The training command line; every value is range-checked as it is parsed."""
    parser = cli.ArgumentParser(
        prog="python -m tokenbridge.train",
        description=__doc__.split("\n\n")[0],
        epilog="python -m tokenbridge.train plot RUN [--out PNG]: draw RUN/metrics.csv",
    )
    count = cli.number(int, 1)
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--out", required=True, help="run folder (training state, metrics.csv; resumable)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--export", help="write EMA weights + JSON sidecar to this path (no extension)")
    parser.add_argument(
        "--data",
        default=GeneratorRecipe.data,
        help=f"a procedural dataset ({', '.join(DATASETS)}) or an image folder (one sub-folder per class)",
    )
    parser.add_argument("--image-size", type=cli.number(int, 8), default=GeneratorRecipe.image_size)
    parser.add_argument(
        "--preset", default=None, help="model preset (vae: small; generator: tokenbridge_small; see the model modules)"
    )
    parser.add_argument("--vae", default=GeneratorRecipe.vae, help="VAE whose latents a generator learns")
    parser.add_argument("--classifier", default=GeneratorRecipe.classifier, help="for the export metrics")
    parser.add_argument("--latents", help="latent cache (generator; written from --vae when missing)")
    parser.add_argument(
        "--num-images", type=count, default=GeneratorRecipe.num_images, help="images encoded into a new latent cache"
    )
    parser.add_argument(
        "--workers",
        type=cli.number(int, 0),
        default=GeneratorRecipe.workers,
        help="processes rendering/reading images for a new latent cache (0: in the main process)",
    )
    parser.add_argument("--channel-order", choices=("frequency", "identity"), default=GeneratorRecipe.channel_order)
    parser.add_argument(
        "--head-positions",
        type=count,
        default=None,
        help="generator: masked positions per image fed to the channel head (default: all)",
    )
    _add_generator_recipe_options(parser)
    parser.add_argument(
        "--eval-samples",
        type=cli.number(int, 2),
        default=GeneratorRecipe.eval_samples,
        help="samples per order in the export metrics",
    )
    _add_vae_options(parser)
    _add_loop_options(parser)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _add_vae_options(parser: argparse.ArgumentParser) -> None:
    """The VAE's recipe options: its loss and its latent grid (unset: the preset's)."""
    parser.add_argument(
        "--kl-weight",
        type=cli.number(float, 0),
        default=VAERecipe.kl_weight,
        help="weight of the mean per-element KL against the mean per-pixel reconstruction loss",
    )
    parser.add_argument("--recon-loss", choices=("l1", "l2"), default=VAERecipe.recon_loss)
    parser.add_argument(
        "--latent-channels",
        type=cli.number(int, 1),
        default=None,
        help="vae: latent channels (default: the preset's; small: 16)",
    )
    parser.add_argument(
        "--stride",
        type=cli.number(int, 2),
        default=None,
        help="vae: downsampling factor, a power of two (default: the preset's; small: 8)",
    )


def _add_generator_recipe_options(parser: argparse.ArgumentParser) -> None:
    """The generator's recipe options (each overrides the preset's value; unset keeps it)."""
    parser.add_argument(
        "--dropout",
        type=cli.number(float, 0, 1, high_open=True),
        default=None,
        help="generator: attention and projection dropout (default: the preset's, 0.1 as official)",
    )
    parser.add_argument(
        "--position-bias",
        choices=POSITION_BIASES,
        default=None,
        help="generator: 'relative' adds a learned 2-D relative position bias to the backbone "
        "(default: the preset's; 'none' as official)",
    )
    parser.add_argument(
        "--mask-ratio-min",
        type=cli.number(float, 0, 1, high_open=True),
        default=None,
        help="generator: least fraction of tokens masked in training (default: the preset's, 0.7)",
    )
    parser.add_argument(
        "--value-loss",
        type=float,
        default=None,
        help="generator: weight of the auxiliary regression of masked values from the backbone "
        "(default: the preset's, 0 as official)",
    )
    _add_architecture_options(parser)


def _add_architecture_options(parser: argparse.ArgumentParser) -> None:
    """The generator's architecture options (each overrides the preset's value; unset keeps it)."""
    architecture_options = {
        "--head-init": (
            HEAD_INITS,
            "'ordinal' starts the channel head's readouts and embeddings ordered by level value",
        ),
        "--local-mixing": (
            LOCAL_MIXINGS,
            "'conv' adds a residual 3x3 depthwise convolution over the token grid after every decoder block",
        ),
        "--class-input": (CLASS_INPUTS, "'buffer+decoder' also adds the class embedding to every decoder token"),
        "--absolute-position": (
            ABSOLUTE_POSITIONS,
            "'none' drops the learned absolute position tables (with "
            "--position-bias relative and --local-mixing conv: a "
            "translation-equivariant backbone)",
        ),
        "--readout": (
            READOUTS,
            "'gaussian' adds to each channel's logits a Gaussian over the level values "
            "(centre and width from the features)",
        ),
    }
    for flag, (choices, effect) in architecture_options.items():
        parser.add_argument(
            flag,
            choices=choices,
            default=None,
            help=f"generator: {effect} (default: the preset's; '{choices[0]}' as official)",
        )
    parser.add_argument(
        "--quant-levels",
        type=cli.number(int, 2, 256),
        default=None,
        help="generator: quantization levels B of its tokens (default: the preset's, 64 as official)",
    )
    parser.add_argument(
        "--head-lr-scale",
        type=cli.number(float, 0, low_open=True),
        default=GeneratorRecipe.head_lr_scale,
        help="generator: learning rate of the channel head's output layers (channel_heads) times this; "
        "they must grow large to separate 64 close levels, which a common rate makes slow",
    )


def _add_loop_options(parser: argparse.ArgumentParser) -> None:
    """One option per `LoopSettings` field, range-checked."""
    count, positive = cli.number(int, 1), cli.number(float, 0, low_open=True)
    loop_types = {
        "steps": count,
        "batch_size": count,
        "lr": positive,
        "weight_decay": cli.number(float, 0),
        "warmup_steps": cli.number(int, 0),
        "ema_decay": cli.number(float, 0, 1, high_open=True),
        "grad_clip": cli.number(float, 0),
        "seed": cli.number(int, 0),
        "checkpoint_every": cli.number(float, 0),
        "log_every": count,
        "snapshot_every": cli.number(int, 0),
        "device": cli.device,
    }
    for name, value in vars(LoopSettings()).items():
        choices = ("fp32", "bf16") if name == "precision" else None
        parser.add_argument(
            "--" + name.replace("_", "-"), type=loop_types.get(name, type(value)), default=value, choices=choices
        )


def check_model_settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The preset exists for the task, and a VAE of ``--image-size`` (and ``--stride``) is valid."""
    presets = PRESETS.get(args.task, {})
    if args.preset is None:
        args.preset = getattr(TASKS[args.task][0], "preset", None)
    if args.preset not in presets and (presets or args.preset is not None):
        valid = ", ".join(presets) if presets else f"none (the {args.task} has no presets)"
        parser.error(f"argument --preset: unknown {args.task} preset {args.preset!r}; valid: {valid}")
    if args.task == "vae":
        flag = "--stride" if args.stride is not None else "--image-size"
        cli.check(parser, flag, lambda: vae_module.preset_config(args.preset, **vae_overrides(recipe_of(args))))


def _cache_metadata(path: Path) -> dict:
    """The JSON metadata of a latent cache, tensors left unread."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("tokenbridge", "{}"))
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{str(path)!r} is not a readable latent cache ({type(e).__name__}: {e})") from None
    if meta.get("format") != LATENT_CACHE_FORMAT:
        raise ValueError(f"{str(path)!r} is not a latent cache (written by tokenbridge.data.cache_latents)")
    return meta


def check_generator_inputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The latent cache (or the ``--vae`` that writes it) fits the preset and was made by ``--vae``;
    what the export measures with (``--vae``, ``--classifier``) loads."""
    path = latents_path(args)
    meta = cli.check(parser, "--latents", _cache_metadata, path) if path.exists() else None
    made_by = (meta or {}).get("info", {}).get("scale_factor")
    vae = None
    if meta is None or made_by is not None or args.export:
        header = cli.check(parser, "--vae", cli.model_file, args.vae, "vae")
        vae = cli.check(parser, "--vae", lambda: VAEConfig(**header["config"]))
    if meta is None:
        cli.check(parser, "--latents", cli.output_file, str(path))
        shape = [vae.embed_dim, vae.latent_size, vae.latent_size]
    else:
        shape = meta["latent_shape"]
        if vae is not None and (shape[0] != vae.embed_dim or made_by not in (None, vae.scale_factor)):
            parser.error(
                f"argument --latents: {str(path)!r} was made by another VAE ({shape[0]} channels, scale "
                f"factor {made_by}) than --vae {args.vae!r} ({vae.embed_dim} channels, scale factor "
                f"{vae.scale_factor}): pass the VAE it was made with, or another --latents"
            )
    size = vae.resolution if vae is not None else args.image_size
    layout = cli.check(parser, "--latents", latent_layout, meta or {"latent_shape": shape}, size)
    cli.check(parser, "--preset", preset_config, args.preset, **layout)
    if args.export:
        cli.check(parser, "--classifier", cli.model_file, args.classifier, "classifier")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parsed and checked arguments: ranges, presets, files, folders and the saved state, so a run
    fails in its first second, not at export."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_model_settings(parser, args)
    cli.check(parser, "--out", cli.output_folder, args.out)
    if args.export:
        cli.check(parser, "--export", cli.output_file, str(Path(args.export).with_suffix(".safetensors")))
    if args.data not in DATASETS:
        cli.check(parser, "--data", cli.input_folder, args.data)
    cli.check(
        parser, "--resume" if args.resume else "--out", resume_state, args.out, args.task, args.steps, args.resume
    )
    if args.task == "generator":
        check_generator_inputs(parser, args)
    return args


def plot_main(argv: list[str]) -> None:
    """``plot RUN [--out PNG]``: the loss curve of ``RUN/metrics.csv`` (default ``RUN/loss.png``)."""
    parser = cli.ArgumentParser(prog="python -m tokenbridge.train plot", description=plot_main.__doc__)
    parser.add_argument("run", help="run folder (or its metrics.csv)")
    parser.add_argument("--out", help="PNG to write (default: loss.png next to metrics.csv)")
    args = parser.parse_args(argv)
    columns = cli.check(parser, "run", read_metrics, args.run)
    run = Path(args.run)
    out = Path(args.out or (run if run.is_dir() else run.parent) / "loss.png")
    cli.check(parser, "--out", cli.output_file, str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_training_curves(columns, title=str(run)).savefig(out, dpi=120)
    print(f"wrote {out}")


def latents_path(args: argparse.Namespace) -> Path:
    """``--latents``, by default ``latents.safetensors`` in the run folder."""
    return Path(args.latents or Path(args.out) / "latents.safetensors")


def recipe_of(args: argparse.Namespace):
    """The task's typed recipe from parsed options (``--latents`` defaults to the run folder's cache)."""
    recipe_type = TASKS[args.task][0]
    values = {f.name: getattr(args, f.name) for f in fields(recipe_type) if f.name != "latents"}
    if args.task == "generator":
        values["latents"] = str(latents_path(args))
    return recipe_type(**values)


def parse_run(argv: list[str]) -> Run:
    """A checked training command (`parse_args`) as typed objects: what `main` runs."""
    args = parse_args(argv)
    settings = LoopSettings(**{f.name: getattr(args, f.name) for f in fields(LoopSettings)})
    return Run(
        task=args.task,
        recipe=recipe_of(args),
        settings=settings,
        out=args.out,
        resume=args.resume,
        export=args.export,
        progress=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["plot"]:
        return plot_main(argv[1:])
    run = parse_run(argv)
    task = TASKS[run.task][1](run.recipe)
    ema, info = train(task, run.settings, run.out, resume=run.resume, progress=run.progress)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:
        print(f"trained {run.task}: {json.dumps(info)}", flush=True)
    if run.export and rank == 0:
        path = export(task, ema, info, run.settings, run.export)
        print(f"exported {path} and {path.with_suffix('.json')}")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
