"""Sampling benchmarks.

    python benchmarks/sampling.py [--positions 1024] [--repeats 3] [--device cpu|cuda]

(a) Channel-head decoding of ``--positions`` spatial positions (16 channels, 64 levels, random
    weights), KV-cached (C single-position steps) vs uncached (the official loop: the whole prefix
    re-run at every channel, 1 + 2 + … + C position forwards), at the official base head size
    (768 wide, 4 deep, 8 heads) and at the `tokenbridge_small` head size. Both paths run the
    sampler's own channel decoding with the same uniforms and must return identical tokens.
    Prints a table and the lines ``cache speedup base: <ratio>x`` / ``cache speedup small: <ratio>x``.

(b) End-to-end `Pipeline.generate` of 16 images on the embedded default (16 steps, CFG 3, random
    and confidence order): median seconds and images/s. Without the shipped files it says so and
    times a randomly initialised `tokenbridge_small` + `small` VAE of the same sizes instead.
(c) Only with CUDA: the official ``large`` preset (random weights), batch 64, 64 steps, bf16
    autocast, images/s with the KV cache on and off (tokens only; no VAE decode).

Each part is one function returning table rows, so more parts can be added next to it (and
``benchmarks/gpu.py`` runs them at other sizes).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tokenbridge.generator import PRESETS, TokenBridge, build_generator, tokenbridge_small, tokenbridge_tiny
from tokenbridge.sampling import ORDERS, decode_channels


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, repeats: int, device: str) -> tuple[float, object]:
    """Median seconds over ``repeats`` runs after one warm-up, and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        result = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def head_sizes(preset: str) -> dict:
    """The channel-head sizes of a generator preset."""
    config = PRESETS[preset]
    return dict(
        channel_embed_dim=config.channel_embed_dim,
        channel_depth=config.channel_depth,
        channel_heads=config.channel_heads,
    )


def channel_head_model(head: dict, device: str) -> TokenBridge:
    """A model with the given channel-head sizes (16 channels, 64 levels), tiny backbone, random weights."""
    model = tokenbridge_tiny(quant_levels=64, vae_embed_dim=16, **head)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():  # not the init: its zero AdaLN gates make every block an identity
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model.to(device).eval()


@torch.no_grad()
def bench_channel_cache(
    positions: int, repeats: int, device: str, presets=("tokenbridge_base", "tokenbridge_small"), exact: bool = True
) -> list[dict]:
    """Part (a): cached vs uncached channel decoding; one row per head size (of ``presets``) and path.

    Each row also has ``agreement``, the share of positions whose C tokens both paths decode alike;
    ``exact`` raises unless it is 1 (GPU kernels, or bf16, may flip a token: see tokenbridge.sampling).
    """
    rows = []
    for preset in presets:
        name, head = preset.removeprefix("tokenbridge_"), head_sizes(preset)
        model = channel_head_model(head, device)
        g = torch.Generator().manual_seed(1)
        z_MD = torch.randn(positions, model.config.decoder_embed_dim, generator=g).to(device)
        uniform_MC = torch.rand(positions, model.config.token_dim, generator=g).to(device)
        seconds, tokens = {}, {}
        for use_cache in (True, False):
            seconds[use_cache], (tokens[use_cache], _, _) = timed(
                lambda: decode_channels(model, z_MD, None, 1.0, 1.0, uniform_MC, use_cache, False), repeats, device
            )
        agreement = float((tokens[True] == tokens[False]).all(dim=1).float().mean())
        if exact and agreement < 1:
            raise AssertionError(f"{name}: cached and uncached decoding disagree")
        rows += [
            dict(
                head=name,
                size="{channel_embed_dim}×{channel_depth}".format(**head),
                path="cached" if use_cache else "uncached",
                seconds=seconds[use_cache],
                agreement=agreement,
            )
            for use_cache in (True, False)
        ]
    return rows


def embedded_or_random_pipeline(device: str):
    """``(pipeline, label)``: the shipped embedded default, or same-sized random weights."""
    from tokenbridge.pipeline import EMBEDDED, Pipeline
    from tokenbridge.shapes import CLASS_NAMES
    from tokenbridge.vae import small

    if all(path.is_file() for path in EMBEDDED.values()):
        return Pipeline.load("embedded", device=device), "embedded"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        vae, generator = small(), tokenbridge_small(class_num=len(CLASS_NAMES))
    return Pipeline(vae, generator, classes=CLASS_NAMES, device=device), "random weights (embedded files missing)"


def bench_pipeline(repeats: int, device: str) -> list[dict]:
    """Part (b): 16 images, 16 steps, CFG 3, in every order (`ORDERS`)."""
    pipe, label = embedded_or_random_pipeline(device)
    labels = list(range(16))
    labels = [c % len(pipe.classes) for c in labels]
    rows = []
    for order in ORDERS:
        seconds, _ = timed(lambda: pipe.generate(labels, seed=0, num_steps=16, cfg=3.0, order=order), repeats, device)
        rows.append(dict(model=label, order=order, seconds=seconds, images_per_s=len(labels) / seconds))
    return rows


@torch.no_grad()
def bench_preset(
    preset: str, repeats: int, device: str = "cuda", batch_size: int = 64, num_steps: int = 64
) -> list[dict]:
    """Part (c): a preset with random weights, CFG 3, KV cache on and off; bf16 autocast on CUDA
    (float32 elsewhere, as `Pipeline`). Built on ``device`` directly: the large preset's CPU init is slow."""
    from tokenbridge.sampling import generate

    with torch.device(device):
        model = build_generator(preset).eval()
    labels = torch.arange(batch_size, device=device) % model.config.class_num
    on_cuda = torch.device(device).type == "cuda"
    rows = []
    for use_cache in (True, False):

        def run():
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=on_cuda):
                return generate(
                    model,
                    labels,
                    rng=torch.Generator(device).manual_seed(0),
                    num_steps=num_steps,
                    cfg=3.0,
                    use_cache=use_cache,
                )

        seconds, _ = timed(run, repeats, device)
        rows.append(
            dict(
                preset=preset.removeprefix("tokenbridge_"),
                cache=use_cache,
                seconds=seconds,
                images_per_s=batch_size / seconds,
            )
        )
    return rows


def cache_speedup(rows: list[dict]) -> float:
    """Uncached over cached seconds of one model's two rows (part (a): ``path``, part (c): ``cache``)."""
    seconds = {row.get("path", "cached" if row.get("cache") else "uncached"): row["seconds"] for row in rows}
    return seconds["uncached"] / seconds["cached"]


def print_rows(rows: list[dict]) -> None:
    """A plain table of dict rows (floats to 3 decimals)."""
    keys = list(rows[0])
    print("  ".join(f"{k:>14s}" for k in keys))
    for row in rows:
        print("  ".join(f"{row[k]:14.3f}" if isinstance(row[k], float) else f"{str(row[k]):>14s}" for k in keys))


def print_table(rows: list[dict]) -> None:
    print(f"{'head':6s} {'size':8s} {'path':9s} {'seconds':>9s}")
    for row in rows:
        print(f"{row['head']:6s} {row['size']:8s} {row['path']:9s} {row['seconds']:9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--positions", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("a", "b", "c"), help="run one part")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    parts = {args.only} if args.only else {"a", "b", "c"}

    if "a" in parts:
        print(
            f"(a) channel-head decoding, {args.positions} positions, device {args.device}, "
            f"{torch.get_num_threads()} CPU thread(s)"
        )
        rows = bench_channel_cache(args.positions, args.repeats, args.device)
        print_table(rows)
        for name in ("base", "small"):
            print(f"cache speedup {name}: {cache_speedup([row for row in rows if row['head'] == name]):.1f}x")
    if "b" in parts:
        print(f"\n(b) Pipeline.generate, 16 images, 16 steps, CFG 3, device {args.device}")
        print_rows(bench_pipeline(args.repeats, args.device))
    if "c" in parts and args.device.startswith("cuda"):
        print("\n(c) official large preset (random weights), batch 64, 64 steps, bf16")
        rows = bench_preset("tokenbridge_large", args.repeats)
        print_rows(rows)
        print(f"cache speedup large end-to-end: {cache_speedup(rows):.1f}x")
    elif "c" in parts:
        print("\n(c) skipped: needs a CUDA device")


if __name__ == "__main__":
    main()
