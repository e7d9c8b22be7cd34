"""Sampling benchmarks.

    python benchmarks/sampling.py [--positions 1024] [--repeats 3] [--device cpu|cuda]

(a) Channel-head decoding of ``--positions`` spatial positions (16 channels, 64 levels, random
    weights), KV-cached (C single-position steps) vs uncached (the official loop: the whole prefix
    re-run at every channel, 1 + 2 + … + C position forwards), at the official base head size
    (768 wide, 4 deep, 8 heads) and at the `tokenbridge_small` head size. Both paths run the
    sampler's own channel decoding with the same uniforms and must return identical tokens.
    Prints a table and the lines ``cache speedup base: <ratio>x`` / ``cache speedup small: <ratio>x``.

Each part is one function returning table rows, so more parts can be added next to it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tokenbridge.generator import TokenBridge, tokenbridge_small, tokenbridge_tiny
from tokenbridge.sampling import _decode_channels

BASE_HEAD = dict(channel_embed_dim=768, channel_depth=4, channel_heads=8)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, repeats: int, device: str) -> tuple[float, object]:
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


def channel_head_model(head: dict, device: str) -> TokenBridge:
    """A model with the given channel-head sizes (16 channels, 64 levels), tiny backbone, random weights."""
    model = tokenbridge_tiny(quant_levels=64, vae_embed_dim=16, **head)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():  # not the init: its zero AdaLN gates make every block an identity
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model.to(device).eval()


@torch.no_grad()
def bench_channel_cache(positions: int, repeats: int, device: str) -> list[dict]:
    """Part (a): cached vs uncached channel decoding; one row per head size and path."""
    small = tokenbridge_small().config
    heads = {
        "base": BASE_HEAD,
        "small": dict(channel_embed_dim=small.channel_embed_dim, channel_depth=small.channel_depth,
                      channel_heads=small.channel_heads),
    }
    rows = []
    for name, head in heads.items():
        model = channel_head_model(head, device)
        g = torch.Generator().manual_seed(1)
        z_MD = torch.randn(positions, model.config.decoder_embed_dim, generator=g).to(device)
        uniform_MC = torch.rand(positions, model.config.token_dim, generator=g).to(device)
        tokens = {}
        for use_cache in (True, False):
            seconds, (tokens[use_cache], _, _) = _timed(
                lambda: _decode_channels(model, z_MD, None, 1.0, 1.0, uniform_MC, use_cache, False), repeats, device
            )
            rows.append(dict(head=name, size="{channel_embed_dim}×{channel_depth}".format(**head),
                             path="cached" if use_cache else "uncached", seconds=seconds))
        if not torch.equal(tokens[True], tokens[False]):
            raise AssertionError(f"{name}: cached and uncached decoding disagree")
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'head':6s} {'size':8s} {'path':9s} {'seconds':>9s}")
    for row in rows:
        print(f"{row['head']:6s} {row['size']:8s} {row['path']:9s} {row['seconds']:9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--positions", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    print(f"(a) channel-head decoding, {args.positions} positions, device {args.device}, "
          f"{torch.get_num_threads()} CPU thread(s)")
    rows = bench_channel_cache(args.positions, args.repeats, args.device)
    print_table(rows)
    for name in ("base", "small"):
        seconds = {row["path"]: row["seconds"] for row in rows if row["head"] == name}
        print(f"cache speedup {name}: {seconds['uncached'] / seconds['cached']:.1f}x")


if __name__ == "__main__":
    main()
