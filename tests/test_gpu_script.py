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
    done = subprocess.run([sys.executable, "benchmarks/gpu.py", "--quick", "--out", str(out)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
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
    done = subprocess.run([sys.executable, "benchmarks/gpu.py", "--out", str(tmp_path / "gpu.json")], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1 and "no CUDA device" in done.stderr
    assert not (tmp_path / "gpu.json").exists()
