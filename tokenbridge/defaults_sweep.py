"""Sampler defaults by measurement: sweep the settings that matter on a generator, keep the best.

    python -m tokenbridge.defaults_sweep      # in the repository: the shipped models -> results/sampler_defaults.json

Each setting of `GRID` generates ``--n`` class-balanced samples (row ``i`` seeded ``seed + i``, the
same seeds for every setting) and is measured by `tokenbridge.evaluation.generation_metrics`:
class accuracy (with its binomial standard error) and FD-shapes against as many held-out images.
The best row has the highest class accuracy, the lower FD-shapes breaking ties; the file records
its index and settings. The defaults of `tokenbridge.sampling.SamplerSettings` (the pipeline's,
the app's and the command line's) must equal that row (a test checks it), so re-run this command
whenever the shipped generator changes, and copy the settings it prints when they differ.

The grid is one factor at a time around `BASE` (MAR's official sampler: random order, no guidance,
16 steps), not a full product: 11 settings; at 200 samples each a few minutes for the embedded
icons generator on two cores.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from tokenbridge import checkpoints, cli
from tokenbridge.evaluation import generation_metrics
from tokenbridge.files import write_json
from tokenbridge.pipeline import SAMPLER_DEFAULTS, Pipeline, embedded_file

TABLE = Path(__file__).resolve().parent.parent / "results" / "sampler_defaults.json"
"""The table of the shipped generator."""
BASE = dict(
    num_steps=16, cfg=1.0, cfg_schedule="linear", cfg_mode="feature", temperature=1.0, order="random", gumbel=0.0
)
"""Every sampler keyword, so that a row never depends on the defaults it decides."""
GRID = (
    {},
    {"order": "confidence"},
    {"cfg": 2.0},
    {"cfg": 3.0},
    {"cfg": 3.0, "cfg_mode": "logit"},  # the mode acts only when guidance does
    {"order": "confidence", "cfg": 3.0},  # the defaults before this sweep
    {"temperature": 0.9},
    {"temperature": 0.7},
    {"temperature": 0.5},  # sharper tokens: the icons generator knows values roughly, not exactly
    {"order": "confidence", "temperature": 0.5},
    {"num_steps": 32},
)
"""Changes from `BASE`, one row each."""


def settings_grid() -> list[dict]:
    """Full sampler settings of every row of `GRID`."""
    return [{**BASE, **change} for change in GRID]


def best_index(rows: list[dict]) -> int:
    """The row with the highest class accuracy; the lower FD-shapes breaks a tie."""
    return min(range(len(rows)), key=lambda i: (-rows[i]["class_accuracy"], rows[i]["fd_shapes"]))


def sweep(pipe: Pipeline, classifier, count: int, seed: int = 0, settings: list[dict] | None = None, log=print) -> dict:
    """The measured rows of ``settings`` (default: `settings_grid`) and which one is best."""
    rows = []
    for sampler in settings or settings_grid():
        row = generation_metrics(pipe, classifier, count, seed=seed, **sampler)
        p = row["class_accuracy"]
        rows.append({**row, "class_accuracy_se": round(math.sqrt(p * (1 - p) / count), 4)})
        log(f"{_describe(sampler)}: class accuracy {p:.1%}, FD-shapes {row['fd_shapes']:.2f} ({row['seconds']} s)")
    best = best_index(rows)
    return {
        "rows": rows,
        "best": best,
        "best_sampler": rows[best]["sampler"],
        "rule": "highest class_accuracy; the lower fd_shapes breaks a tie",
    }


def _describe(sampler: dict) -> str:
    """The settings of a row that differ from `BASE` ("base" for none)."""
    changed = {k: v for k, v in sampler.items() if BASE[k] != v}
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "base"


def best_sampler(path: str | Path = TABLE) -> dict:
    """The best row's sampler settings of a sweep table (what `SAMPLER_DEFAULTS` must equal)."""
    return json.loads(Path(path).read_text())["best_sampler"]


def parse_args(argv=None):
    """The arguments, with the model files and the output path checked before anything loads."""
    p = cli.ArgumentParser(prog="python -m tokenbridge.defaults_sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--generator", default=embedded_file("generator"))
    p.add_argument("--vae", default=embedded_file("vae"))
    p.add_argument("--classifier", default="assets/classifier.safetensors")
    p.add_argument("--n", type=cli.number(int, 4), default=200, help="samples per setting (classes balanced)")
    p.add_argument("--seed", type=cli.number(int, 0), default=0, help="the first sample's seed")
    p.add_argument("--device", type=cli.device, default="cpu")
    p.add_argument("--out", default="results/sampler_defaults.json", help="JSON file to write (default: %(default)s)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    cli.check(p, "--out", cli.output_file, args.out)
    for kind in ("vae", "generator"):
        cli.check(p, f"--{kind}", cli.pipeline_file, getattr(args, kind), kind)
    cli.check(p, "--classifier", cli.model_file, args.classifier, "classifier")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    pipe = Pipeline.load(vae=args.vae, generator=args.generator, device=args.device)
    classifier = checkpoints.load_model(args.classifier, kind="classifier")
    start = time.time()
    result = sweep(pipe, classifier, args.n, args.seed)
    result = {
        "command": " ".join(["python -m tokenbridge.defaults_sweep", *args.argv]),
        "vae": args.vae,
        "generator": args.generator,
        "classifier": args.classifier,
        "samples": args.n,
        "seed": args.seed,
        **result,
        "seconds": round(time.time() - start, 1),
    }
    path = Path(args.out)
    write_json(path, result)
    same = result["best_sampler"] == SAMPLER_DEFAULTS
    print(
        f"wrote {path}; best: row {result['best']} ({_describe(result['best_sampler'])}); SAMPLER_DEFAULTS "
        + (
            "equal it"
            if same
            else f"differ: set the defaults of SamplerSettings (tokenbridge/sampling.py) to {result['best_sampler']}"
        )
    )


if __name__ == "__main__":
    main()
