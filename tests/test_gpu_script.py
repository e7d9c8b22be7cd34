"""benchmarks/gpu.py: its CPU smoke run (``--quick``) runs every part without an error, so the GPU
run only spends device time on the GPU itself."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_quick_run_writes_every_part(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu.py", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    parts = report["parts"]
    assert report["complete"]
    assert list(parts) == ["training", "pytest_gpu", "pipeline", "kv_cache_tiny", "kv_cache_channel_head"]
    assert {name: part["error"] for name, part in parts.items() if "error" in part} == {}
    assert parts["pytest_gpu"]["returncode"] == 0
    assert parts["pipeline"]["random"]["finite"] and parts["pipeline"]["confidence"]["finite"]
    assert parts["kv_cache_tiny"]["kv_cache_speedup_end_to_end"] > 0
    assert parts["kv_cache_channel_head"]["kv_cache_speedup_channel_head"] > 0
    assert parts["training"]["batch_4"]["steps_per_s"] > 0 and parts["training"]["batch_8"]["steps_per_s"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where CUDA is absent")
def test_full_run_without_cuda_says_so(tmp_path):
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu.py", "--out", str(tmp_path / "gpu.json")],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "no CUDA device" in done.stderr
    assert not (tmp_path / "gpu.json").exists()


@pytest.mark.slow
def test_embedded_session_rehearsal_brings_back_every_file(tmp_path):
    """benchmarks/gpu_embedded.sh with GPU_QUICK=1: VAE, latent cache, generator with snapshots and
    its learning curve run on the CPU at tiny sizes, and every file the GPU run must return is in $OUT."""
    out = tmp_path / "out"
    env = {
        **ENV,
        "GPU_QUICK": "1",
        "GPU_SECONDS": "300",
        "PYTHONPATH": str(ROOT),
        "OUT": str(out),
        "WORK": str(tmp_path / "work"),
    }
    done = subprocess.run(
        ["bash", "benchmarks/gpu_embedded.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0 and "FAILED" not in done.stdout, done.stdout + done.stderr[-2000:]
    assert {p.name for p in out.iterdir()} >= {"vae_grid16.safetensors", "vae_grid16.json", "absolute", "equivariant"}
    for recipe in ("absolute", "equivariant"):
        names = {p.name for p in (out / recipe).iterdir()}
        assert names >= {"generator_grid16.safetensors", "learning_curve.json", "learning_curve.png", "metrics.csv"}
        curve = json.loads((out / recipe / "learning_curve.json").read_text())
        assert len(curve["entries"]) == 8 and curve["entries"][-1]["samples_seen"] > curve["entries"][0]["samples_seen"]
        assert (
            f"--absolute-position {'none' if recipe == 'equivariant' else 'learned'}" in curve["entries"][0]["command"]
        )
    assert json.loads((out / "vae_grid16.json").read_text())["command"].count("--stride 4 --latent-channels 4") == 1
