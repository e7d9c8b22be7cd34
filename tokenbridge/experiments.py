"""The paper's ablations at small scale: one training command per variant, one shared budget.

    python -m tokenbridge.experiments ablations                       # train every variant in turn
    python -m tokenbridge.experiments ablations --only parallel_head  # one variant
    python -m tokenbridge.experiments ablations --print               # show the commands, run nothing
    python -m tokenbridge.experiments evaluate --n 500 --out results/ablations.json
    python -m tokenbridge.experiments learnability --steps 400 -- --lr 3e-3 --position-bias relative

Each variant is `tokenbridge.train generator` on the same cached shapes latents with the same
steps, batch, learning-rate schedule and seed (`ABLATION_BUDGET`); only the named model setting
changes. Runs live in ``runs/ablations/<name>`` (resumable: an interrupted variant continues where
its last checkpoint left it) and export to ``assets/ablations/<name>.safetensors`` + ``.json``.
A variant whose export exists is skipped. The comparisons (`COMPARISONS`) pair each variant with
the ablation baseline, which serves all four. ``evaluate`` measures every exported variant with
`tokenbridge.evaluation.generation_metrics` (random and confidence order), the baseline once more on
disjoint seeds (how much FD-shapes moves from sampling alone), the held-out teacher-forced CE of
each model (`heldout_cross_entropy`), and fingerprints of the first samples so a reader can
regenerate them and check the file.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from tokenbridge import checkpoints, cli, learnability, train
from tokenbridge.evaluation import FINGERPRINTS, generation_row, sample_fingerprints, sample_outputs
from tokenbridge.files import write_json
from tokenbridge.generator import patchify
from tokenbridge.pipeline import Pipeline
from tokenbridge.sample_intervals import LOWER_IS_BETTER as SAMPLE_LOWER_IS_BETTER
from tokenbridge.sample_intervals import RESAMPLES, difference_intervals, direction, metric_intervals
from tokenbridge.sampling import ORDERS
from tokenbridge.shapes import HELDOUT_SEED, ShapesDataset

ABLATION_BUDGET = {
    "steps": 1000,
    "batch-size": 64,
    "lr": 3e-3,
    "ema-decay": 0.998,
    "dropout": 0,
    "head-init": "ordinal",
    "local-mixing": "conv",
    "readout": "gaussian",
    "seed": 0,
    "eval-samples": 200,
}
"""Identical for every variant, so differences come from the model setting alone: the embedded
generator's recipe (`assets/generator_icons.json`) on a shorter schedule, 64,000 samples each."""

DATA = "icons"
"""The embedded generator's dataset: the variants learn what it learnt."""

VAE = "assets/vae_icons.safetensors"
"""The embedded 4-channel tokenizer whose latents every variant learns."""

LATENTS = "runs/latents/icons_vae_icons.safetensors"
"""Shared latent cache (written from `VAE` by the first variant that needs it)."""


@dataclass(frozen=True)
class Variant:
    """One ablation model: a generator preset and channel order; ``what`` says what it tests."""

    preset: str
    channel_order: str
    what: str


VARIANTS: dict[str, Variant] = {
    "baseline": Variant("tokenbridge_ablation", "frequency", "AR head 128x2, B=64, frequency order"),
    "parallel_head": Variant("tokenbridge_ablation_parallel", "frequency", "channels predicted independently"),
    "levels_16": Variant("tokenbridge_ablation_b16", "frequency", "B=16 quantization levels (4 bits)"),
    "identity_order": Variant("tokenbridge_ablation", "identity", "channels in VAE order"),
    "big_head": Variant("tokenbridge_ablation_bighead", "frequency", "channel head 256x3"),
}


@dataclass(frozen=True)
class Comparison:
    """Two variants and the paper's FID for the matching settings (ImageNet 256, lower is better)."""

    baseline: str
    variant: str
    paper_fid: tuple[float, float]


COMPARISONS: dict[str, Comparison] = {
    "channel head: autoregressive vs parallel": Comparison("baseline", "parallel_head", (1.94, 15.7)),
    "levels: B=64 vs B=16": Comparison("baseline", "levels_16", (1.94, 2.03)),
    "channel order: frequency vs identity": Comparison("baseline", "identity_order", (1.89, 1.94)),
    "head capacity: 128x2 vs 256x3": Comparison("baseline", "big_head", (2.88, 1.94)),
}
"""The paper's heads are 3M vs 94M parameters; its default order is the identity."""

NOISE_MULTIPLE = 2.0
"""A difference counts when it exceeds this many times the baseline's reseed difference."""


def train_command(name: str, runs: Path, assets: Path) -> list[str]:
    """The ``python -m tokenbridge.train generator ...`` argument list of variant ``name``."""
    variant = VARIANTS[name]
    args = [
        sys.executable,
        "-m",
        "tokenbridge.train",
        "generator",
        "--out",
        str(runs / name),
        "--export",
        str(assets / name),
        "--data",
        DATA,
        "--vae",
        VAE,
        "--latents",
        LATENTS,
        "--preset",
        variant.preset,
        "--channel-order",
        variant.channel_order,
        "--no-progress",
    ]
    for key, value in ABLATION_BUDGET.items():
        args += [f"--{key}", str(value)]
    if (runs / name / "state.pt").exists():
        args.append("--resume")
    return args


def run_ablations(names: list[str], runs: Path, assets: Path, dry_run: bool = False) -> None:
    """Train (or resume) and export each named variant whose export does not exist yet."""
    for name in names:
        if (assets / f"{name}.safetensors").exists():
            print(f"{name}: {assets / name}.safetensors exists, skipped", flush=True)
            continue
        command = train_command(name, runs, assets)
        print(f"{name} ({VARIANTS[name].what}): {shlex.join(command)}", flush=True)
        if not dry_run:
            (runs / name).mkdir(parents=True, exist_ok=True)
            Path(LATENTS).parent.mkdir(parents=True, exist_ok=True)
            code = subprocess.run(command).returncode
            if code != 0:
                raise SystemExit(f"{name}: training exited with code {code}; run the same command again to resume")


@torch.no_grad()
def heldout_cross_entropy(pipe, count: int, seed: int = 0, batch_size: int = 250) -> dict:
    """Teacher-forced cross-entropy of the generator on ``count`` held-out images of its dataset: the
    training loss (MAR masks and orders drawn from ``seed``, the same for every model), in nats per
    channel token, overall and per channel in generation order. It needs no sampling, so it is far
    less noisy than sample metrics; it compares models with the same quantizer only."""
    data = ShapesDataset(count, seed=HELDOUT_SEED, size=pipe.image_size, kind=pipe.dataset)
    images, labels = (torch.stack(column) for column in zip(*[data[i][:2] for i in range(count)]))
    model = pipe.generator.eval()
    rng = torch.Generator().manual_seed(seed)
    total, per_channel = 0.0, torch.zeros(model.config.vae_embed_dim, dtype=torch.float64)
    for start in range(0, count, batch_size):
        latents = pipe.encode(images[start : start + batch_size])
        indices = pipe.quantize(patchify(latents, model.config.patch_size)).long()
        ce, ce_C = model(
            indices.to(pipe.device), labels[start : start + batch_size].to(pipe.device), rng, return_channel_ce=True
        )
        total += float(ce) * len(latents)
        per_channel += ce_C.double().cpu() * len(latents)
    return {
        "images": count,
        "seed": seed,
        "ce_nats": round(total / count, 5),
        "ce_per_channel": [round(v, 5) for v in (per_channel / count).tolist()],
    }


@torch.no_grad()
def evaluate_ablations(
    assets: Path,
    classifier_path: str,
    vae_path: str,
    count: int,
    sampling_orders: tuple[str, ...] = tuple(ORDERS),
    fingerprints: int | None = None,
    resamples: int = RESAMPLES,
    command: str | None = None,
) -> dict:
    """Sample metrics with bootstrap intervals of every exported variant (seeds 0…count-1; the
    baseline also on seeds count…2·count-1), its held-out CE on two draws of the training masks,
    and per comparison the verdicts on samples (`sample_verdicts`), on the held-out CE, and the
    commands that made them (`comparison_commands`; ``command``: this evaluation's). Prints a line
    per measured sample set, since a full evaluation takes minutes per model."""
    classifier = checkpoints.load_model(classifier_path, kind="classifier")
    fingerprints = FINGERPRINTS if fingerprints is None else fingerprints
    rows, outputs = [], {}
    for name in VARIANTS:
        weights = assets / f"{name}.safetensors"
        if not weights.exists():
            continue
        pipe = Pipeline.load(vae=vae_path, generator=weights, device="cpu")
        heldout = [heldout_cross_entropy(pipe, min(count, 1000), seed=s) for s in (0, 1)]
        seeds = (0, count) if name == "baseline" else (0,)
        for sampling_order in sampling_orders:
            for seed in seeds:
                start = time.time()
                sampled = sample_outputs(pipe, classifier, count, seed=seed, order=sampling_order)
                row = generation_row(pipe, count, seed, {"order": sampling_order}, sampled, time.time() - start)
                row.update(
                    variant=name,
                    quant_levels=pipe.generator.config.quant_levels,
                    intervals=metric_intervals(sampled, resamples),
                    heldout=heldout[0],
                    heldout_ce=heldout[0]["ce_nats"],
                    heldout_ce_reseeded=heldout[1]["ce_nats"],
                    fingerprints=sample_fingerprints(pipe, classifier, fingerprints, seed, order=sampling_order),
                )
                rows.append(row)
                print(
                    f"{name}, {sampling_order} order, seeds {seed}-{seed + count - 1}: class accuracy "
                    f"{row['class_accuracy']:.1%}, FD-shapes {row['fd_shapes']:.2f} ({row['seconds']:.0f} s)",
                    flush=True,
                )
                if seed == 0:
                    outputs[name, sampling_order] = sampled
    return {
        "budget": ABLATION_BUDGET,
        "resamples": resamples,
        "comparisons": {k: asdict(c) for k, c in COMPARISONS.items()},
        "rows": rows,
        "verdicts": comparison_verdicts(rows, outputs, assets, sampling_orders, resamples, command),
    }


def comparison_verdicts(
    rows: list[dict], outputs: dict, assets: Path, sampling_orders: tuple[str, ...], resamples: int, command: str | None
) -> dict:
    """Per comparison whose two models were measured: the verdicts on samples (`sample_verdicts`),
    on the held-out CE (`compare`), and the commands that made them (`comparison_commands`)."""
    return {
        name: {
            **sample_verdicts(outputs, comparison, sampling_orders, resamples),
            "heldout_ce": compare(rows, name, sampling_orders[0], "heldout_ce"),
            "commands": comparison_commands(assets, comparison, command),
        }
        for name, comparison in COMPARISONS.items()
        if all((v, sampling_orders[0]) in outputs for v in (comparison.baseline, comparison.variant))
    }


def comparison_commands(assets: Path, comparison: Comparison, evaluate: str | None) -> dict:
    """What reproduces a comparison: the training command of both models, as their exports'
    sidecars (``<name>.json``) record it (None where an export has no sidecar), and ``evaluate``."""
    train = {}
    for name in (comparison.baseline, comparison.variant):
        sidecar = assets / f"{name}.json"
        train[name] = json.loads(sidecar.read_text()).get("command") if sidecar.exists() else None
    return {"train": train, "evaluate": evaluate}


VERDICT_METRICS = ("class_accuracy", "fd_shapes")
"""The sample metrics a comparison's overall verdict reads (the kit's FID and whether samples show
their class); precision and recall are judged and listed too, but do not count."""


def sample_verdicts(outputs: dict, comparison: Comparison, sampling_orders: tuple[str, ...], resamples: int) -> dict:
    """Per order and sample metric, the variant − baseline difference with its paired bootstrap
    interval and whether the paper's direction "holds", is "reversed", or is "undecided" (the
    interval holds zero); ``verdict_samples`` over the `VERDICT_METRICS` of both orders: "holds" or
    "reversed" when every decided one agrees, "mixed" when they disagree, else "undecided"."""
    paper_variant_better = comparison.paper_fid[1] < comparison.paper_fid[0]
    judged = []
    for sampling_order in sampling_orders:
        base, other = outputs[comparison.baseline, sampling_order], outputs[comparison.variant, sampling_order]
        for metric, difference in difference_intervals(base, other, resamples).items():
            way = direction(metric, difference)
            agrees = {"better": paper_variant_better, "worse": not paper_variant_better}.get(way)
            verdict = "undecided" if agrees is None else "holds" if agrees else "reversed"
            judged.append({"order": sampling_order, "metric": metric, **difference, "verdict": verdict})
    decided = {j["verdict"] for j in judged if j["metric"] in VERDICT_METRICS} - {"undecided"}
    overall = "undecided" if not decided else decided.pop() if len(decided) == 1 else "mixed"
    return {"verdict_samples": overall, "samples": judged}


def _row(rows: list[dict], variant: str, sampling_order: str, seed: int = 0) -> dict:
    for row in rows:
        if row["variant"] == variant and row["sampler"]["order"] == sampling_order and row["seed"] == seed:
            return row
    raise KeyError(f"no row for variant {variant!r}, order {sampling_order!r}, seed {seed}: evaluate it first")


LOWER_IS_BETTER = {**SAMPLE_LOWER_IS_BETTER, "heldout_ce": True}
"""The metrics `compare` judges, and which way each one improves."""


def yardstick(metric: str, row: dict, remeasured: float) -> float:
    """How much ``metric`` of ``row`` moves when measured again (``remeasured``: the same model and
    settings on other seeds or masks). For class accuracy at least the binomial standard error of
    a difference of two such estimates, sqrt(2·p·(1 − p) / samples): one re-measurement can land
    close by chance."""
    noise = abs(remeasured - row[metric])
    if metric == "class_accuracy":
        p = row[metric]
        noise = max(noise, math.sqrt(2 * p * (1 - p) / row["samples"]))
    return noise


def compare(rows: list[dict], name: str, sampling_order: str, metric: str = "fd_shapes") -> dict:
    """One comparison from `evaluate_ablations` rows: both values, the difference, the noise
    yardstick and a verdict on whether the paper's direction reproduces: "reproduces", "reverses",
    "within noise", or "not comparable" (held-out CE of models with different quantizers).

    The yardstick (`yardstick`) is the baseline's change when re-measured on disjoint sampling
    seeds for sample metrics (the larger of the two orders' changes). For ``heldout_ce``, where
    both models see the same masks, it is how much the paired difference moves on a second draw
    of the masks (the CE level itself moves with the draw, for both models alike)."""
    comparison = COMPARISONS[name]
    base, other = _row(rows, comparison.baseline, sampling_order), _row(rows, comparison.variant, sampling_order)
    delta = other[metric] - base[metric]
    if metric == "heldout_ce":
        noise = abs(other["heldout_ce_reseeded"] - base["heldout_ce_reseeded"] - delta)
    else:  # one re-measurement is itself a noisy estimate of the noise: the larger over the orders
        noise = max(
            yardstick(metric, r, _row(rows, r["variant"], r["sampler"]["order"], seed=r["samples"])[metric])
            for r in rows
            if r["variant"] == comparison.baseline and r["seed"] == 0
        )
    paper_better = comparison.paper_fid[1] < comparison.paper_fid[0]  # the paper's variant is the better one
    variant_better = (delta < 0) == LOWER_IS_BETTER[metric]
    if metric == "heldout_ce" and base["quant_levels"] != other["quant_levels"]:
        verdict = "not comparable"
    elif abs(delta) <= NOISE_MULTIPLE * noise:
        verdict = "within noise"
    else:
        verdict = "reproduces" if variant_better == paper_better else "reverses"
    return {
        "comparison": name,
        "order": sampling_order,
        "metric": metric,
        comparison.baseline: base[metric],
        comparison.variant: other[metric],
        "difference": round(delta, 4),
        "noise": round(noise, 4),
        "paper_fid": comparison.paper_fid,
        "verdict": verdict,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parsed arguments, with values, input files and output paths checked before anything trains or loads."""
    parser = cli.ArgumentParser(prog="python -m tokenbridge.experiments", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    abl = sub.add_parser("ablations", help="train the ablation generators (same budget each)")
    abl.add_argument("--only", nargs="+", choices=sorted(VARIANTS), help="variants to train (default: all)")
    abl.add_argument("--runs", default="runs/ablations", help="folder of the resumable training runs")
    abl.add_argument("--assets", default="assets/ablations", help="folder of the exported models")
    abl.add_argument("--print", dest="dry_run", action="store_true", help="print the commands, run nothing")
    ev = sub.add_parser("evaluate", help="measure every exported ablation variant")
    ev.add_argument("--assets", default="assets/ablations")
    ev.add_argument("--vae", default=VAE)
    ev.add_argument("--classifier", default="assets/classifier.safetensors")
    ev.add_argument(
        "--n", type=cli.number(int, 10), default=1000, help="samples per variant and order (classes balanced)"
    )
    ev.add_argument("--out", required=True, help="JSON file to write")
    learn = sub.add_parser(
        "learnability", help="train a recipe briefly and measure how it uses context (tokenbridge.learnability)"
    )
    learn.add_argument(
        "--task",
        choices=learnability.TASKS,
        default="shapes",
        help="shapes latents, or maps whose tokens are all equal (the simplest context task)",
    )
    learn.add_argument("--steps", type=cli.number(int, 1), default=400)
    learn.add_argument("--latents", default="runs/latents/shapes_vae_small.safetensors")
    learn.add_argument("--vae", default="assets/vae_small.safetensors")
    learn.add_argument("--classifier", default="assets/classifier.safetensors")
    learn.add_argument(
        "--heldout", type=cli.number(int, 1), default=500, help="held-out images for CE and the copy test"
    )
    learn.add_argument(
        "--samples", type=cli.number(int, 0), default=200, help="samples per order for class accuracy (0: none)"
    )
    learn.add_argument("--run-dir", help="keep the training run here (default: a temporary folder)")
    learn.add_argument(
        "--model",
        help="measure this trained generator (shapes latents) instead of training a recipe: "
        "a model file, or a generator run's state.pt (its EMA, mid-run too)",
    )
    learn.add_argument("--json", help="also write the result to this JSON file")
    learn.add_argument(
        "recipe", nargs=argparse.REMAINDER, help="after '--': arguments of 'python -m tokenbridge.train generator'"
    )
    args = parser.parse_args(argv)
    {"ablations": check_ablations, "evaluate": check_evaluate, "learnability": check_learnability}[args.what](
        parser, args
    )
    return args


def check_ablations(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Both folders can be written (the runs resume there, the exports land there)."""
    if not args.dry_run:
        cli.check(parser, "--runs", cli.output_folder, args.runs)
        cli.check(parser, "--assets", cli.output_folder, args.assets)


def check_evaluate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The exports' folder exists; the VAE and classifier are what they claim; the JSON can be written."""
    cli.check(parser, "--assets", cli.input_folder, args.assets)
    if not any((Path(args.assets) / f"{name}.safetensors").exists() for name in VARIANTS):
        parser.error(
            f"argument --assets: no exported variants in {args.assets!r}: train them first "
            f"(python -m tokenbridge.experiments ablations)"
        )
    cli.check(parser, "--vae", cli.model_file, args.vae, "vae")
    cli.check(parser, "--classifier", cli.model_file, args.classifier, "classifier")
    cli.check(parser, "--out", cli.output_file, args.out)


def check_learnability(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The measuring models load, the outputs can be written, and the recipe parses as the training
    command the harness runs (a bad recipe answers with `tokenbridge.train`'s own one-line error)."""
    args.recipe = args.recipe[1:] if args.recipe[:1] == ["--"] else args.recipe
    cli.check(parser, "--vae", cli.model_file, args.vae, "vae")
    cli.check(parser, "--classifier", cli.model_file, args.classifier, "classifier")
    if args.json:
        cli.check(parser, "--json", cli.output_file, args.json)
    if args.run_dir:
        cli.check(parser, "--run-dir", cli.output_folder, args.run_dir)
    if args.model:
        args.trained = cli.check(parser, "--model", learnability.trained_generator, args.model)
        if args.recipe or args.task != "shapes":
            parser.error("--model measures a trained generator on shapes: give no recipe and no --task constant")
    reserved = sorted(set(args.recipe) & set(learnability.RESERVED_OPTIONS))
    if reserved:
        parser.error(f"the recipe may not set {', '.join(reserved)}: the harness sets it")
    latents = ["--latents", args.latents] if args.task == "shapes" else []  # the constant task writes its own
    with tempfile.TemporaryDirectory() as tmp:  # the argument list `learnability.train_recipe` builds
        train.parse_args(
            [
                "generator",
                "--out",
                args.run_dir or tmp,
                *latents,
                "--steps",
                str(args.steps),
                "--no-progress",
                *args.recipe,
            ]
        )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.what == "ablations":
        run_ablations(args.only or list(VARIANTS), Path(args.runs), Path(args.assets), dry_run=args.dry_run)
        return
    if args.what == "learnability":
        if args.model:
            result = learnability.measure(args.trained, args.vae, args.classifier, args.heldout, args.samples)
        else:
            result = learnability.run(
                args.recipe,
                args.steps,
                args.latents,
                args.vae,
                args.classifier,
                args.heldout,
                args.samples,
                args.run_dir,
                args.task,
            )
        print(learnability.format_report(result))
        if args.json:
            write_json(args.json, result, indent=2)
        return
    command = "python -m tokenbridge.experiments " + shlex.join(sys.argv[1:] if argv is None else argv)
    result = evaluate_ablations(Path(args.assets), args.classifier, args.vae, args.n, command=command)
    result["command"] = command
    write_json(args.out, result, indent=2)
    print(f"wrote {args.out} ({len(result['rows'])} rows)")


if __name__ == "__main__":
    main()
