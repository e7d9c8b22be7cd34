"""GaussianQuantizer.quantize vs the official brute-force argmin over an N×B distance tensor.

    python benchmarks/quantizer.py [--device cpu|cuda] [--repeats 5]

Times both on latents of shape 256×16×16×16 (and a quarter of that: bytes per value show how
memory scales with N), checks that they return identical indices, and prints a table. Peak memory is the extra
resident memory (CPU, read from /proc in a fresh process per measurement) or the peak CUDA
allocation above the input. The last line reads ``speedup: <ratio>x`` at the full size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from tokenbridge.quantizer import GaussianQuantizer

SHAPE = (256, 16, 16, 16)


def brute_force_quantize(q: GaussianQuantizer, x: torch.Tensor) -> torch.Tensor:
    """The official method: normalize, clamp, argmin over |u - gamma| for all B values."""
    r = q.config.std_range
    u = q.normalize(x).clamp(-r, r)
    return (u.unsqueeze(-1) - q.values.to(x.device)).abs().argmin(dim=-1)


KIT, OFFICIAL = "kit (lookup grid)", "official (N×B argmin)"
METHODS = {KIT: lambda q, x: q.quantize(x), OFFICIAL: brute_force_quantize}


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def measure(method: str, batch: int, device: str, repeats: int) -> dict:
    """Median seconds and peak extra memory (bytes) of one method, in this process."""
    q = GaussianQuantizer.official()
    x = torch.randn((batch,) + SHAPE[1:], generator=torch.Generator().manual_seed(0)).to(device)
    fn = METHODS[method]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    fn(q, x)  # warm-up: tables on the device, kernels compiled
    sync()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset the peak-RSS counter (VmHWM) to the current RSS
        base = _rss_kib("VmRSS") * 1024
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(q, x)
        sync()
        times.append(time.perf_counter() - start)
        del out
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _rss_kib("VmHWM") * 1024 - base
    checksum = int(fn(q, x).long().sum())
    return {"seconds": statistics.median(times), "peak_bytes": max(peak, 0), "checksum": checksum}


def measure_in_subprocess(method: str, batch: int, device: str, repeats: int) -> dict:
    code = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); import quantizer as b; "
        f"print(json.dumps(b.measure({method!r}, {batch}, {device!r}, {repeats})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rows = []
    for batch in (SHAPE[0] // 4, SHAPE[0]):
        n = batch * SHAPE[1] * SHAPE[2] * SHAPE[3]
        results = {m: measure_in_subprocess(m, batch, args.device, args.repeats) for m in METHODS}
        checksums = {r["checksum"] for r in results.values()}
        if len(checksums) != 1:
            raise SystemExit(f"methods disagree at N={n}: checksums {checksums}")
        for method, r in results.items():
            rows.append((method, n, r["seconds"], n / r["seconds"] / 1e6, r["peak_bytes"] / 2**20))

    print(
        f"device: {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"levels 64, median of {args.repeats}"
    )
    print(f"{'method':<24}{'values N':>12}{'seconds':>10}{'Mvalues/s':>12}{'peak MiB':>10}{'bytes/value':>13}")
    for method, n, sec, rate, mib in rows:
        print(f"{method:<24}{n:>12,}{sec:>10.4f}{rate:>12.1f}{mib:>10.1f}{mib * 2**20 / n:>13.1f}")
    n_full = max(row[1] for row in rows)
    full = {method: (sec, mib) for method, n, sec, _, mib in rows if n == n_full}
    print(f"memory ratio official/kit: {full[OFFICIAL][1] / max(full[KIT][1], 1e-9):.1f}x")
    print(f"speedup: {full[OFFICIAL][0] / full[KIT][0]:.1f}x")


if __name__ == "__main__":
    main()
