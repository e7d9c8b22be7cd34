"""Generator training step time: dropout on/off and fp32 vs bf16 autocast, side by side in one run;
with ``--candidates``, the embedded tokenizer candidates (latent grid × channels) and backbones instead.

    python benchmarks/training.py [--preset tokenbridge_small] [--batch-size 64] [--head-positions 16]
    python benchmarks/training.py --candidates

One optimizer step (forward, backward, AdamW) of a generator preset on random tokens, median of
``--repeats`` steps after two warm-up steps, with the preset's dropout (0.1, as official) and with
``--dropout 0``, both in fp32, then ``--dropout 0`` under bf16 autocast (``--precision bf16``);
prints a table with seconds per step and steps per hour, and the lines ``dropout 0 speedup:`` and
``bf16 speedup: <ratio>x``. On the CPU, dropout's Bernoulli draws are a large share of a small
model's step, and bf16 matrix products are several times faster where the CPU has avx512_bf16.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tokenbridge.generator import PRESETS, build_generator


def seconds_per_step(
    preset: str,
    dropout: float | None,
    batch_size: int,
    head_positions: int,
    repeats: int,
    device: str = "cpu",
    precision: str = "fp32",
    **config,
) -> float:
    """Median wall time of one training step of ``preset`` (dropout overridden unless None; other
    config fields by ``config``) on ``device``, the forward under bf16 autocast when
    ``precision="bf16"`` (benchmarks/gpu.py)."""
    overrides = dict(config) if dropout is None else dict(config, attn_dropout=dropout, proj_dropout=dropout)
    torch.manual_seed(0)
    model = build_generator(preset, **overrides).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    config = model.config
    indices = torch.randint(0, config.quant_levels, (batch_size, config.seq_len, config.token_dim)).to(device)
    labels = torch.randint(0, config.class_num, (batch_size,)).to(device)
    rng = torch.Generator(device).manual_seed(0)
    device_type = torch.device(device).type
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(indices, labels, rng, head_positions=head_positions)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device_type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


LAYOUTS = {
    "8x8x16 (shipped)": dict(vae_stride=8, vae_embed_dim=16),
    "8x8x8": dict(vae_stride=8, vae_embed_dim=8),
    "8x8x4": dict(vae_stride=8, vae_embed_dim=4),
    "16x16x4": dict(vae_stride=4, vae_embed_dim=4),
}
"""Latent layouts of the embedded tokenizer candidates (64×64 images)."""
CANDIDATE_PRESETS = ("tokenbridge_small", "tokenbridge_ablation")
CANDIDATE_RECIPE = dict(head_init="ordinal", local_mixing="conv", class_input="buffer+decoder")
"""The CPU recipe the candidates train with (dropout 0)."""


def candidates_table(batch_size: int, head_positions: int, repeats: int) -> None:
    """Seconds per step and training samples per second of every layout × backbone, with the ratio
    of samples/s to the shipped layout on the same backbone."""
    print(f"{'layout':<17} {'backbone':<21} {'tokens':>6} {'s/step':>7} {'samples/s':>9} {'vs shipped':>10}")
    for preset in CANDIDATE_PRESETS:
        shipped = None
        for name, layout in LAYOUTS.items():
            seconds = seconds_per_step(preset, 0.0, batch_size, head_positions, repeats, **layout, **CANDIDATE_RECIPE)
            shipped = shipped or seconds
            tokens = (64 // layout["vae_stride"]) ** 2
            print(
                f"{name:<17} {preset:<21} {tokens:>6} {seconds:>7.3f} {batch_size / seconds:>9.1f} "
                f"{shipped / seconds:>9.2f}x",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tokenbridge_small", choices=sorted(PRESETS))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--head-positions", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--candidates", action="store_true", help="time the embedded tokenizer candidates instead")
    args = parser.parse_args()
    subject = "embedded candidates" if args.candidates else args.preset
    print(
        f"{subject}, batch {args.batch_size}, head positions {args.head_positions}, {torch.get_num_threads()} threads"
    )
    if args.candidates:
        return candidates_table(args.batch_size, args.head_positions, args.repeats)
    settings = {"dropout 0.1, fp32": (None, "fp32"), "dropout 0, fp32": (0.0, "fp32"), "dropout 0, bf16": (0.0, "bf16")}
    timings = {
        label: seconds_per_step(
            args.preset, dropout, args.batch_size, args.head_positions, args.repeats, precision=precision
        )
        for label, (dropout, precision) in settings.items()
    }
    print(f"{'setting':<18} {'s/step':>7} {'steps/h':>8}")
    for label, seconds in timings.items():
        print(f"{label:<18} {seconds:>7.3f} {3600 / seconds:>8.0f}")
    print(f"dropout 0 speedup: {timings['dropout 0.1, fp32'] / timings['dropout 0, fp32']:.2f}x")
    print(f"bf16 speedup: {timings['dropout 0, fp32'] / timings['dropout 0, bf16']:.2f}x")


if __name__ == "__main__":
    main()
