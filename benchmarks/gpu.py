"""Every GPU check of the project in one run (about 2 minutes on an H100), results in one JSON file.

    PYTHONPATH=. python benchmarks/gpu.py --out gpu.json        # needs CUDA
    python benchmarks/gpu.py --quick --out /tmp/gpu_quick.json  # tiny sizes on the CPU: every code path

Parts, in order (each in `parts`; a failing part records its error and the next one still runs;
the JSON is rewritten after each part, so a run cut short keeps what it finished):

- ``training``: benchmarks/training.py's step, `tokenbridge_small`, 16 head positions, dropout 0,
  bf16 autocast: optimizer steps/s at batch 64 and 512 (first: benchmarks/gpu_session.sh sizes
  its training runs by it).
- ``pytest_gpu``: ``pytest -m gpu -q`` over the test files with GPU tests, in a subprocess.
- ``pipeline``: the embedded default (`Pipeline.load("embedded")`, bf16 autocast on CUDA) makes
  64 images in every order of `ORDERS` (`SAMPLER_DEFAULTS` otherwise): seconds, images/s,
  whether every pixel is finite, class accuracy by the shipped classifier (labels and seeds as
  `tokenbridge.evaluation.generation_metrics`, so comparable to results/generation.json).
- ``kv_cache_large``, ``kv_cache_base``: benchmarks/sampling.py part (c), official preset with random
  weights, batch 64, 64 steps, CFG 3, bf16, KV cache on vs off: ``kv_cache_speedup_end_to_end``.
- ``kv_cache_channel_head``: benchmarks/sampling.py part (a) at the large head size, channel
  decoding alone: ``kv_cache_speedup_channel_head`` (bf16 autocast, as end to end) and
  ``kv_cache_speedup_channel_head_fp32`` (float32, as part (a) on the CPU).

``--quick`` runs the same code on the CPU with `tokenbridge_tiny` models, a few images and steps.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # `benchmarks` is a folder of the repository, not an installed package

import torch  # noqa: E402

from benchmarks.sampling import bench_channel_cache, bench_preset, cache_speedup, timed  # noqa: E402
from benchmarks.training import seconds_per_step  # noqa: E402
from tokenbridge import checkpoints  # noqa: E402
from tokenbridge.evaluate import DEFAULT_CLASSIFIER  # noqa: E402
from tokenbridge.files import write_json  # noqa: E402
from tokenbridge.metrics import accuracy, classifier_outputs  # noqa: E402
from tokenbridge.pipeline import SAMPLER_DEFAULTS, Pipeline  # noqa: E402
from tokenbridge.sampling import ORDERS  # noqa: E402

PYTEST_TIMEOUT_S = 90
HEAD_POSITIONS = 16


@dataclass(frozen=True)
class Sizes:
    """How much each part does: `FULL` on the GPU, `QUICK` on the CPU."""

    device: str
    images: int  # pipeline images per order
    presets: tuple[str, ...]  # end-to-end KV-cache benchmark, one part each
    batch_size: int
    num_steps: int
    head_preset: str  # channel-head-only benchmark
    positions: int
    train_preset: str
    train_batches: tuple[int, ...]
    train_steps: int  # timed steps (after 2 warm-up steps)
    repeats: int  # timed runs after one warm-up run (median)


FULL = Sizes(
    device="cuda",
    images=64,
    presets=("tokenbridge_large", "tokenbridge_base"),
    batch_size=64,
    num_steps=64,
    head_preset="tokenbridge_large",
    positions=1024,
    train_preset="tokenbridge_small",
    train_batches=(64, 512),
    train_steps=10,
    repeats=2,
)
QUICK = Sizes(
    device="cpu",
    images=4,
    presets=("tokenbridge_tiny",),
    batch_size=2,
    num_steps=4,
    head_preset="tokenbridge_tiny",
    positions=16,
    train_preset="tokenbridge_tiny",
    train_batches=(4, 8),
    train_steps=2,
    repeats=1,
)


def check_pytest() -> dict:
    """The GPU-marked tests, in a subprocess so their failures cannot stop this run. Only the test
    files that hold such tests are collected: the others import the app's packages (Gradio,
    Playwright), which a GPU machine need not have."""
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py") if "mark.gpu" in p.read_text())
    command = ["pytest", "-m", "gpu", "-q", *files]
    done = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=PYTEST_TIMEOUT_S
    )
    lines = done.stdout.strip().splitlines()
    result = {"command": shlex.join(command), "returncode": done.returncode, "summary": lines[-1] if lines else ""}
    if done.returncode:
        result["output_tail"] = (done.stdout + done.stderr)[-4000:]
    return result


def check_pipeline(sizes: Sizes) -> dict:
    """Speed and sanity of the embedded default as the app loads it, scored by the shipped classifier."""
    pipe = Pipeline.load("embedded", device=sizes.device)
    classifier = checkpoints.load_model(ROOT / DEFAULT_CLASSIFIER, kind="classifier")
    labels = torch.arange(sizes.images) % len(pipe.classes)
    result = {"images": sizes.images, "dtype": pipe.describe()["dtype"]}
    for order in ORDERS:
        seconds, images = timed(lambda: pipe.generate(labels, seed=0, order=order), sizes.repeats, sizes.device)
        _, predicted = classifier_outputs(classifier, [images], sizes.device)
        result[order] = {
            "sampler": {**SAMPLER_DEFAULTS, "order": order},
            "seconds": round(seconds, 4),
            "images_per_s": round(sizes.images / seconds, 2),
            "finite": bool(images.isfinite().all()),
            "class_accuracy": accuracy(predicted, labels),
        }
    return result


def check_kv_cache_end_to_end(sizes: Sizes, preset: str) -> dict:
    """Sampling part (c) for ``preset``: whole sampling runs (tokens, no VAE decode), cache on vs off."""
    rows = bench_preset(preset, sizes.repeats, sizes.device, sizes.batch_size, sizes.num_steps)
    return {
        "benchmark": "benchmarks/sampling.py part (c), random weights, CFG 3",
        "preset": preset,
        "batch_size": sizes.batch_size,
        "num_steps": sizes.num_steps,
        "precision": "bf16 autocast" if sizes.device == "cuda" else "float32",
        "rows": rows,
        "kv_cache_speedup_end_to_end": round(cache_speedup(rows), 3),
    }


def check_kv_cache_channel_head(sizes: Sizes) -> dict:
    """Sampling part (a) at ``sizes.head_preset``'s head: channel decoding alone, cache on vs off,
    in bf16 autocast and in float32 (tokens may differ between the paths: ``agreement``)."""
    result = {
        "benchmark": "benchmarks/sampling.py part (a)",
        "head_preset": sizes.head_preset,
        "positions": sizes.positions,
    }
    for suffix, bf16 in (("", True), ("_fp32", False)):
        with torch.autocast(sizes.device, dtype=torch.bfloat16, enabled=bf16):
            rows = bench_channel_cache(sizes.positions, sizes.repeats, sizes.device, (sizes.head_preset,), exact=False)
        result[f"rows{suffix}"] = rows
        result[f"kv_cache_speedup_channel_head{suffix}"] = round(cache_speedup(rows), 3)
    return result


def check_training(sizes: Sizes) -> dict:
    """Optimizer steps/s of one training step (benchmarks/training.py), under ``batch_<size>`` for
    each batch size (benchmarks/gpu_session.sh reads ``batch_512``)."""
    result = {
        "benchmark": "benchmarks/training.py",
        "preset": sizes.train_preset,
        "head_positions": HEAD_POSITIONS,
        "dropout": 0.0,
        "precision": "bf16 autocast",
        "warmup_steps": 2,
        "timed_steps": sizes.train_steps,
    }
    for batch in sizes.train_batches:
        seconds = seconds_per_step(
            sizes.train_preset, 0.0, batch, HEAD_POSITIONS, sizes.train_steps, device=sizes.device, precision="bf16"
        )
        result[f"batch_{batch}"] = {
            "seconds_per_step": round(seconds, 5),
            "steps_per_s": round(1 / seconds, 2),
            "images_per_s": round(batch / seconds, 1),
        }
    return result


def parts(sizes: Sizes) -> dict:
    """Part name -> zero-argument check, in run order."""
    return {
        "training": lambda: check_training(sizes),
        "pytest_gpu": check_pytest,
        "pipeline": lambda: check_pipeline(sizes),
        **{
            f"kv_cache_{p.removeprefix('tokenbridge_')}": (lambda p=p: check_kv_cache_end_to_end(sizes, p))
            for p in sizes.presets
        },
        "kv_cache_channel_head": lambda: check_kv_cache_channel_head(sizes),
    }


def run_part(check) -> dict:
    """``check()`` plus its wall time; an exception becomes ``error``/``traceback`` entries instead."""
    start = time.perf_counter()
    try:
        result = check()
    except Exception as exc:  # noqa: BLE001 - one failing part must not lose the others
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
    result["part_seconds"] = round(time.perf_counter() - start, 1)
    return result


def header(sizes: Sizes, quick: bool) -> dict:
    """Where and how this run ran."""
    on_cuda = sizes.device == "cuda"
    return {
        "device": torch.cuda.get_device_name() if on_cuda else f"cpu ({torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "command": shlex.join(["python", *sys.argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "sizes": asdict(sizes),
        "complete": False,
        "elapsed_seconds": 0.0,
        "parts": {},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--quick", action="store_true", help="tiny sizes on the CPU (checks the script itself)")
    args = parser.parse_args()
    if not args.quick and not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py: no CUDA device here; run it on a GPU machine, or pass --quick for a CPU smoke run")
    sizes = QUICK if args.quick else FULL
    start = time.perf_counter()
    report = header(sizes, args.quick)
    for name, check in parts(sizes).items():
        print(f"{name} ...", flush=True)
        report["parts"][name] = run_part(check)
        report["elapsed_seconds"] = round(time.perf_counter() - start, 1)
        write_json(args.out, report)
        print(json.dumps(report["parts"][name])[:2000], flush=True)
    report["complete"] = True
    write_json(args.out, report)
    print(f"wrote {args.out} ({report['elapsed_seconds']} s)")


if __name__ == "__main__":
    main()
