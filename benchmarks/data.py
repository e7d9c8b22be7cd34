"""Shapes rendering throughput: how fast the procedural dataset feeds training.

    python benchmarks/data.py [--n 1000] [--repeats 3]

Times `render_shape` alone and `ShapesDataset.__getitem__` (render + conversion to a [-1, 1]
tensor) in this process, median of ``--repeats`` runs of ``--n`` images each, and prints a table
with images/s and the ratio to the target of 2,000 images/s on one idle core.
"""

from __future__ import annotations

import argparse
import statistics
import time

from tokenbridge.shapes import ShapesDataset, render_shape

TARGET_PER_S = 2000.0


def images_per_second(load, n: int, repeats: int) -> float:
    """Median rate of ``load(i)`` for i in 0…n-1, after one warm-up call."""
    load(0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            load(i)
        times.append(time.perf_counter() - start)
    return n / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    dataset = ShapesDataset(args.n)
    rates = {
        "render_shape": images_per_second(lambda i: render_shape(0, i), args.n, args.repeats),
        "ShapesDataset[i]": images_per_second(dataset.__getitem__, args.n, args.repeats),
    }
    print(f"{'what':<18} {'images/s':>9} {'vs target':>10}")
    for name, rate in rates.items():
        print(f"{name:<18} {rate:>9.0f} {rate / TARGET_PER_S:>9.2f}x")


if __name__ == "__main__":
    main()
