"""Shared pytest settings: a CI hypothesis profile (no deadline; 2 slow cores) and a GPU marker."""

import pytest
import torch
from hypothesis import settings

settings.register_profile("kit", deadline=None, max_examples=60)
settings.load_profile("kit")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
