"""Generator training step time with and without dropout, side by side in one run.

    python benchmarks/training.py [--preset tokenbridge_small] [--batch-size 64] [--head-positions 16]

One optimizer step (forward, backward, AdamW) of a generator preset on random tokens, median of
``--repeats`` steps after two warm-up steps, with the preset's dropout (0.1, as official) and with
``--dropout 0``; prints a table with seconds per step and steps per hour, and the speedup. On the
CPU, dropout's Bernoulli draws are a large share of a small model's step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tokenbridge.generator import GENERATORS


def seconds_per_step(preset: str, dropout: float | None, batch_size: int, head_positions: int, repeats: int) -> float:
    """Median wall time of one training step of ``preset`` (dropout overridden unless None)."""
    overrides = {} if dropout is None else dict(attn_dropout=dropout, proj_dropout=dropout)
    torch.manual_seed(0)
    model = GENERATORS[preset](**overrides).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    config = model.config
    indices = torch.randint(0, config.quant_levels, (batch_size, config.seq_len, config.token_dim))
    labels = torch.randint(0, config.class_num, (batch_size,))
    generator = torch.Generator().manual_seed(0)
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        model(indices, labels, generator, head_positions=head_positions).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tokenbridge_small", choices=sorted(GENERATORS))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--head-positions", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.preset}, batch {args.batch_size}, head positions {args.head_positions}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    timings = {label: seconds_per_step(args.preset, dropout, args.batch_size, args.head_positions, args.repeats)
               for label, dropout in (("dropout 0.1", None), ("dropout 0", 0.0))}  # fmt: skip
    print(f"{'setting':<12} {'s/step':>7} {'steps/h':>8}")
    for label, seconds in timings.items():
        print(f"{label:<12} {seconds:>7.3f} {3600 / seconds:>8.0f}")
    print(f"dropout 0 speedup: {timings['dropout 0.1'] / timings['dropout 0']:.2f}x")


if __name__ == "__main__":
    main()
