"""Shared pytest settings: a CI hypothesis profile (no deadline; 2 slow cores), a GPU marker, and
the `seeded` model builder."""

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


@pytest.fixture(scope="session")
def seeded():
    """``seeded(build, seed=0)``: the module ``build()`` returns, its random init drawn from
    ``seed`` (the global RNG restored afterwards), in eval mode."""

    def build_seeded(build, seed=0):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return build().eval()

    return build_seeded
