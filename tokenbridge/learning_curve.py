"""Learning curve: what a generator can do against the training samples it has seen.

    python -m tokenbridge.train generator --out runs/gen ... --snapshot-every 250
    python -m tokenbridge.learning_curve runs/gen --vae V --out results/learning_curve.json
    python -m tokenbridge.learning_curve compare results/recipes/*.json   # recipes at equal samples
    python -m tokenbridge.learning_curve extrapolate results/learning_curve.json --target 0.9

The training loop writes the EMA weights every ``--snapshot-every`` steps to ``snapshots/`` in
its run folder (`tokenbridge.training_loop.save_snapshot`). This module measures each snapshot:

- the class accuracy of ``samples`` samples (classes balanced, fixed seeds, random order, the
  other sampler settings at their defaults, stored with them) at CFG 1 and at the guided scale
  ``cfg``, and their FD-shapes against as many held-out images;
- the generative-classification accuracy on held-out tokens: each image is given the label whose
  teacher-forced cross-entropy (a quarter of its tokens known, the same masks for every label and
  every snapshot) is lowest. It rises as soon as the model uses the label, long before samples
  show the class, so it tells recipes apart early;
- the value precision on the same held-out tokens (`tokenbridge.learnability.value_precision`);
- samples seen and training seconds (from the snapshot file).

Entries already in the output file are kept (keyed by step), so the command can be re-run while
the run goes on; the JSON is rewritten after each snapshot, and a plot is drawn beside it.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch

from tokenbridge import checkpoints, cli
from tokenbridge.devices import pick_device
from tokenbridge.evaluation import generation_metrics
from tokenbridge.files import write_json
from tokenbridge.generator import TokenBridge
from tokenbridge.learnability import heldout_tokens, masked_cross_entropy, random_mask, value_precision
from tokenbridge.pipeline import Pipeline, load_generator

KNOWN_FRACTION = 0.25
"""Fraction of tokens known when classifying by likelihood (training sees 0 to 30 % known)."""
SAMPLE_COLUMNS = ("class_accuracy", "fd_shapes", "precision", "recall", "sampler")
"""What an entry keeps of `generation_metrics` per CFG scale (``sampler``: the settings it sampled with)."""
VALUE_COLUMNS = ("median_value_error", "median_p_true")
"""The value-precision measures `comparison_table` shows."""
MASKS_PER_IMAGE = 2
"""Random masks per held-out image; the per-label CE is summed over them."""


def snapshot_paths(run: str | Path) -> list[Path]:
    """The snapshot files of a run folder, in step order."""
    folder = Path(run) / "snapshots"
    if not folder.is_dir():
        raise FileNotFoundError(f"{str(folder)!r} does not exist: train with --snapshot-every N")
    paths = sorted(folder.glob("step_*.safetensors"))
    if not paths:
        raise FileNotFoundError(f"{str(folder)!r} holds no snapshots yet")
    return paths


@torch.no_grad()
def generative_accuracy(model: TokenBridge, indices_BNC: torch.Tensor, labels_B: torch.Tensor, seed: int = 0) -> float:
    """Accuracy of classifying each map by the label of least teacher-forced CE (`KNOWN_FRACTION`
    of the tokens known, `MASKS_PER_IMAGE` masks drawn from ``seed``, shared by all labels)."""
    n = model.config.seq_len
    rng = torch.Generator().manual_seed(seed)
    masks = [random_mask(len(indices_BNC), n, round(KNOWN_FRACTION * n), rng) for _ in range(MASKS_PER_IMAGE)]
    masks = [mask_BN.to(indices_BNC.device) for mask_BN in masks]
    ce_BK = torch.zeros(len(indices_BNC), model.config.class_num, device=indices_BNC.device)
    for label in range(model.config.class_num):
        labels = torch.full_like(labels_B, label)
        for mask_BN in masks:
            ce_M = masked_cross_entropy(model, indices_BNC, labels, mask_BN).sum(dim=1)
            ce_BK[:, label].index_add_(0, mask_BN.nonzero()[:, 0], ce_M)
    return round(float((ce_BK.argmin(dim=1) == labels_B).float().mean()), 4)


def measure_snapshot(
    path: Path,
    vae,
    classifier,
    samples: int,
    cfg: float,
    heldout: tuple[torch.Tensor, torch.Tensor],
    device: str = "auto",
) -> dict:
    """One learning-curve entry for the snapshot file ``path`` (see the module docstring);
    ``heldout``: the held-out `heldout_tokens` and labels, shared by a run's snapshots."""
    start = time.time()
    model, classes, dataset = load_generator(path)
    pipe = Pipeline(vae, model, classes=classes, device=pick_device(device), dataset=dataset)
    tokens, labels = heldout
    entry = dict(checkpoints.read_header(path)["extra"]["snapshot"])
    for scale in dict.fromkeys((1.0, cfg)):
        metrics = generation_metrics(pipe, classifier, samples, order="random", cfg=scale)
        entry[f"cfg_{scale:g}"] = {k: metrics[k] for k in SAMPLE_COLUMNS}
    entry["generative_accuracy"] = generative_accuracy(pipe.generator, tokens.to(pipe.device), labels.to(pipe.device))
    entry["value_precision"] = value_precision(pipe.generator, tokens.to(pipe.device), labels.to(pipe.device))
    entry["eval_seconds"] = round(time.time() - start, 1)
    return entry


def update_curve(
    run: str | Path,
    vae_path: str,
    classifier_path: str,
    out: str | Path,
    samples: int = 200,
    cfg: float = 3.0,
    heldout: int = 200,
    command: str = "",
    device: str = "auto",
) -> dict:
    """Measure every snapshot of ``run`` not yet in ``out`` and rewrite ``out`` after each; the curve."""
    out = Path(out)
    curve = json.loads(out.read_text()) if out.exists() else {}
    settings = {"run": str(run), "samples": samples, "cfg": cfg, "heldout": heldout}
    if curve and curve.get("settings") != settings:
        raise ValueError(
            f"{str(out)!r} holds a curve measured with {curve.get('settings')}, not {settings}: choose another --out"
        )
    curve = {"settings": settings, "command": command, "entries": curve.get("entries", [])}
    done = {entry["step"] for entry in curve["entries"]}
    vae = checkpoints.load_model(vae_path, kind="vae")
    classifier = checkpoints.load_model(classifier_path, kind="classifier")
    tokens = None  # one run's snapshots share the VAE and the quantizer: encode the held-out images once
    for path in snapshot_paths(run):
        if int(path.stem.removeprefix("step_")) in done:
            continue
        if tokens is None:
            model, _, dataset = load_generator(path)
            tokens = heldout_tokens(Pipeline(vae, model, device=pick_device(device), dataset=dataset), heldout)
        entry = measure_snapshot(path, vae, classifier, samples, cfg, tokens, device)
        curve["entries"] = sorted(curve["entries"] + [entry], key=lambda e: e["step"])
        write_json(out, curve, indent=2)
        print(format_entry(entry, cfg), flush=True)
    return curve


def format_entry(entry: dict, cfg: float) -> str:
    """One line: step, samples seen, class accuracy at CFG 1 and ``cfg``, generative accuracy."""
    return (
        f"step {entry['step']:>6}  samples {entry['samples_seen']:>8,}  class acc CFG 1 "
        f"{entry['cfg_1']['class_accuracy']:6.1%}  CFG {cfg:g} {entry[f'cfg_{cfg:g}']['class_accuracy']:6.1%}  "
        f"generative {entry['generative_accuracy']:6.1%}  FD-shapes {entry[f'cfg_{cfg:g}']['fd_shapes']:.2f}"
    )


def comparison_table(curves: dict[str, dict]) -> str:
    """Recipes side by side at equal samples seen: one line per (samples seen, recipe) with class
    accuracy at CFG 1 and the curve's guided scale, generative accuracy and the value error (the
    recipe column as wide as the longest name, so the columns stay aligned)."""
    width = max(len("recipe"), *map(len, curves))
    columns = f"{'CFG 1':>6} {'CFG w':>6} {'generative':>10} {'|E[v]-v|':>9} {'p(true)':>8}"
    lines = [f"{'samples':>8}  {'recipe':<{width}} {columns}"]
    seen = sorted({e["samples_seen"] for curve in curves.values() for e in curve["entries"]})
    for samples in seen:
        for name, curve in curves.items():
            entry = next((e for e in curve["entries"] if e["samples_seen"] == samples), None)
            if entry is None:
                continue
            cfg = curve["settings"]["cfg"]
            error, p_true = (entry.get("value_precision", {}).get(k, float("nan")) for k in VALUE_COLUMNS)
            lines.append(
                f"{samples:>8,}  {name:<{width}} {entry['cfg_1']['class_accuracy']:>6.1%} "
                f"{entry[f'cfg_{cfg:g}']['class_accuracy']:>6.1%} {entry['generative_accuracy']:>10.1%} "
                f"{error:>9.3f} {p_true:>8.3f}"
            )
    return "\n".join(lines)


def compare_main(argv: list[str]) -> None:
    """``compare CURVE.json...``: print `comparison_table` (each curve named by its file's stem)."""
    parser = cli.ArgumentParser(prog="python -m tokenbridge.learning_curve compare", description=compare_main.__doc__)
    parser.add_argument("curves", nargs="+", type=cli.existing_file, help="learning-curve JSON files")
    args = parser.parse_args(argv)
    curves = {}
    for path in args.curves:
        curve = cli.check(parser, "curves", lambda p: json.loads(p.read_text()), path)
        if not isinstance(curve, dict) or "entries" not in curve or "settings" not in curve:
            parser.error(f"argument curves: {str(path)!r} is not a learning-curve file")
        curves[path.stem] = curve
    print(comparison_table(curves))


CHANCE = 0.1
"""Class accuracy of a generator that ignores its label (10 classes)."""

GPU_SAMPLES_PER_S = 2903.8
"""Training samples per second of `tokenbridge_small` at batch 512 on one H100 (bf16 autocast;
`results/gpu.json`, parts.training.batch_512): the kit's one measured GPU training rate."""


def samples_to_reach(entries: list[dict], target: float, scale: str = "cfg_1") -> dict:
    """Samples seen at which the class accuracy (at ``scale``) reaches ``target``, extrapolated by
    a logistic fit in log-samples: logit((acc − chance) / (1 − chance)) = a + b·ln(samples), least
    squares over the entries strictly between chance and 1. The fit's ``slope`` b says how fast it
    rises; ``samples`` is None when it does not rise (b ≤ 0) or fewer than two entries can be fit,
    and ``reason`` then says which."""
    points = [(math.log(e["samples_seen"]), (e[scale]["class_accuracy"] - CHANCE) / (1 - CHANCE)) for e in entries]
    points = [(x, math.log(y / (1 - y))) for x, y in points if 0 < y < 1]
    fit = {"target": target, "scale": scale, "points": len(points), "slope": None, "samples": None, "reason": None}
    if len(points) < 2 or len({x for x, _ in points}) < 2:
        needed = "2 at different samples seen needed"
        fit["reason"] = f"{len(points)} of {len(entries)} entries lie strictly between chance and 1 ({needed})"
        return fit
    mean_x, mean_y = (sum(v) / len(points) for v in zip(*points))
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    fit["slope"] = round(slope, 4)
    if slope > 0:
        goal = (target - CHANCE) / (1 - CHANCE)
        fit["samples"] = round(math.exp(mean_x + (math.log(goal / (1 - goal)) - mean_y) / slope))
    else:
        fit["reason"] = "the fit does not rise with samples seen (slope <= 0)"
    return fit


def extrapolation(curve: dict, target: float, gpu_samples_per_s: float = GPU_SAMPLES_PER_S) -> dict:
    """`samples_to_reach` for ``curve``, with the hours it means at the run's own rate (samples seen
    over training seconds of its last entry: 2 CPU cores for the kit's runs) and on one GPU."""
    fit = samples_to_reach(curve["entries"], target)
    last = curve["entries"][-1]
    rate = last["samples_seen"] / last["train_seconds"]
    hours = {"run_hours": rate, "gpu_hours": gpu_samples_per_s}
    return {
        **fit,
        "run_samples_per_s": round(rate, 1),
        **{
            k: None if fit["samples"] is None else round(fit["samples"] / per_s / 3600, 2) for k, per_s in hours.items()
        },
    }


def extrapolate_main(argv: list[str]) -> None:
    """``extrapolate CURVE.json``: print `extrapolation` and store it in the file (key ``extrapolation``)."""
    parser = cli.ArgumentParser(
        prog="python -m tokenbridge.learning_curve extrapolate", description=extrapolate_main.__doc__
    )
    parser.add_argument("curve", type=cli.existing_file, help="a learning-curve JSON file")
    parser.add_argument("--target", type=cli.number(float, CHANCE), default=0.9, help="class accuracy to reach")
    parser.add_argument("--gpu-samples-per-s", type=cli.number(float, 1.0), default=GPU_SAMPLES_PER_S)
    args = parser.parse_args(argv)
    if args.target >= 1:
        parser.error(f"argument --target: must be below 1, got {args.target:g}")
    curve = cli.check(parser, "curve", lambda p: json.loads(p.read_text()), args.curve)
    if not isinstance(curve, dict) or not curve.get("entries"):
        parser.error(f"argument curve: {str(args.curve)!r} is not a learning-curve file with entries")
    result = extrapolation(curve, args.target, args.gpu_samples_per_s)
    write_json(args.curve, {**curve, "extrapolation": result}, indent=2)
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> None:
    from tokenbridge.viz import plot_learning_curve

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["compare"]:
        return compare_main(argv[1:])
    if argv[:1] == ["extrapolate"]:
        return extrapolate_main(argv[1:])

    parser = cli.ArgumentParser(prog="python -m tokenbridge.learning_curve", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="generator run folder trained with --snapshot-every")
    parser.add_argument("--vae", default="assets/vae_small.safetensors", help="the VAE the run's latents came from")
    parser.add_argument("--classifier", default="assets/classifier.safetensors")
    parser.add_argument("--samples", type=cli.number(int, 10), default=200, help="samples per CFG scale")
    parser.add_argument(
        "--cfg", type=cli.number(float, 1.0), default=3.0, help="the guided scale measured beside CFG 1"
    )
    parser.add_argument("--heldout", type=cli.number(int, 10), default=200, help="held-out images classified")
    parser.add_argument("--out", default="results/learning_curve.json")
    parser.add_argument("--device", type=cli.device, default="auto")
    args = parser.parse_args(argv)
    cli.check(parser, "run", snapshot_paths, args.run)
    cli.check(parser, "--vae", cli.model_file, args.vae, "vae")
    cli.check(parser, "--classifier", cli.model_file, args.classifier, "classifier")
    cli.check(parser, "--out", cli.output_file, args.out)
    command = "python -m tokenbridge.learning_curve " + shlex.join(argv)
    curve = cli.check(
        parser,
        "--out",
        update_curve,
        args.run,
        args.vae,
        args.classifier,
        args.out,
        args.samples,
        args.cfg,
        args.heldout,
        command,
        args.device,
    )
    figure = Path(args.out).with_suffix(".png")
    plot_learning_curve(curve["entries"], args.cfg).savefig(figure, dpi=120)
    print(f"wrote {args.out} ({len(curve['entries'])} entries) and {figure}")


if __name__ == "__main__":
    main()
