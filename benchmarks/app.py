"""App latency: from the Generate call (HTTP API, as a click sends it) to the first streamed step
and to the final images.

    python benchmarks/app.py [--repeats 5] [--batch 1 4 16] [--steps 16] [--device cpu] [--tiny]

Serves `app.main.build_demo` in-process on a free port and calls ``/generate`` with
`gradio_client` (the same queue, SSE stream and PNG encoding a browser gets). For comparison the
same settings run directly through `Pipeline.steps(preview=True)` (no server). Medians of
``--repeats`` runs after one warm-up. The pipeline is the embedded default when its files are
present; otherwise a randomly initialised model of the same sizes (``tokenbridge_small`` + the
``small`` VAE: same compute, noise images), or with ``--tiny`` the test-size ``tokenbridge_tiny``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import astuple
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # `app` is the app package, not this file

import torch  # noqa: E402

from app.main import build_demo, launch  # noqa: E402
from tokenbridge import generator as generators  # noqa: E402
from tokenbridge import vae as vaes  # noqa: E402
from tokenbridge.pipeline import Pipeline  # noqa: E402
from tokenbridge.sampling import SamplerSettings  # noqa: E402
from tokenbridge.shapes import CLASS_NAMES  # noqa: E402

DEFAULTS = SamplerSettings()


def load(device: str, tiny: bool) -> tuple[Pipeline, str]:
    if not tiny:
        try:
            return Pipeline.load("embedded", device=device), "embedded (assets/)"
        except FileNotFoundError:
            pass
    with torch.random.fork_rng():
        torch.manual_seed(0)
        gen = generators.tokenbridge_tiny(class_num=10) if tiny else generators.tokenbridge_small()
        vae = vaes.small()
    name = "tokenbridge_tiny" if tiny else "tokenbridge_small"
    label = f"RANDOM-INIT {name} + small VAE (embedded files missing or --tiny: latency only, noise images)"
    return Pipeline(vae, gen.eval(), classes=CLASS_NAMES, device=device), label


def via_api(client, batch: int, steps: int) -> tuple[float, float, int]:
    """Seconds to the first streamed step and to the final images, and the number of updates."""
    # the Generate tab's inputs: class, seed, the sampler's knobs in field order, batch size, image shown
    args = [CLASS_NAMES[0], 0, *astuple(DEFAULTS.replace(num_steps=steps)), batch, 1]
    start = time.perf_counter()
    job = client.submit(*args, api_name="/generate")
    first, updates = None, 0
    for _ in job:
        updates += 1
        if first is None:
            first = time.perf_counter() - start
    final = job.result()
    total = time.perf_counter() - start
    if not final[6]:
        raise RuntimeError("the run ended without final images")
    return first, total, updates


def direct(pipeline: Pipeline, batch: int, steps: int) -> tuple[float, float]:
    start = time.perf_counter()
    first = None
    for _ in pipeline.steps([0] * batch, seed=0, preview=True, batch_size=batch, record_probs=True, num_steps=steps):
        if first is None:
            first = time.perf_counter() - start
    return first, time.perf_counter() - start


def main(argv=None) -> None:
    from gradio_client import Client

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--steps", type=int, default=DEFAULTS.num_steps)
    p.add_argument("--device", default="auto")
    p.add_argument("--tiny", action="store_true", help="time the test-size random model instead")
    args = p.parse_args(argv)

    pipeline, label = load(args.device, args.tiny)
    demo = build_demo(pipeline)
    url = launch(demo)
    client = Client(url, verbose=False)
    print(
        f"pipeline: {label}\ndevice: {pipeline.device}, torch threads: {torch.get_num_threads()}, "
        f"steps: {args.steps}, order: {DEFAULTS.order}, CFG {DEFAULTS.cfg}, "
        f"median of {args.repeats} after 1 warm-up\n"
    )
    header = (
        f"{'batch':>5} | {'API: first step':>15} | {'API: final':>10} | {'updates':>7} | "
        f"{'direct: first':>13} | {'direct: all':>11}"
    )
    print(header)
    print("-" * len(header))
    try:
        for batch in args.batch:
            via_api(client, batch, args.steps)  # warm-up
            api = [via_api(client, batch, args.steps) for _ in range(args.repeats)]
            raw = [direct(pipeline, batch, args.steps) for _ in range(args.repeats)]
            med = [statistics.median(col) for col in zip(*api)]
            med_raw = [statistics.median(col) for col in zip(*raw)]
            print(
                f"{batch:>5} | {1000 * med[0]:>12.0f} ms | {med[1]:>8.2f} s | {int(med[2]):>7} | "
                f"{1000 * med_raw[0]:>10.0f} ms | {med_raw[1]:>9.2f} s",
                flush=True,
            )
    finally:
        demo.close()


if __name__ == "__main__":
    main()
