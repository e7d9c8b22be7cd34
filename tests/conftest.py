"""Shared pytest settings: a CI hypothesis profile (no deadline; 2 slow cores), a GPU marker, the
`seeded` model builder and the `tiny_pipeline` most pipeline-level tests run on (also as files)."""

import pytest
import torch
from hypothesis import settings

from tokenbridge.checkpoints import save_model
from tokenbridge.generator import tokenbridge_tiny
from tokenbridge.pipeline import Pipeline
from tokenbridge.shapes import CLASS_NAMES
from tokenbridge.vae import small

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


@pytest.fixture(scope="session")
def tiny_pipeline() -> Pipeline:
    """The small VAE + `tokenbridge_tiny` (8×8 tokens × 16 channels × 64 levels, the 10 shapes
    classes) on the CPU, random weights drawn in that order from seed 0 (the global RNG restored
    afterwards). Shared by every test module: use it read-only (build another pipeline to change one)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        vae, generator = small(), tokenbridge_tiny(class_num=10)
    return Pipeline(vae, generator, classes=CLASS_NAMES, device="cpu")


@pytest.fixture(scope="session")
def tiny_pipeline_files(tiny_pipeline, tmp_path_factory) -> dict:
    """`tiny_pipeline` as our model files: ``{"vae": path, "generator": path}`` (the generator's header
    carries the class names), for the command lines and `Pipeline.load`. Read-only, as the pipeline."""
    root = tmp_path_factory.mktemp("tiny_pipeline")
    vae, generator = tiny_pipeline.vae, tiny_pipeline.generator
    return {
        "vae": save_model(vae, root / "vae.safetensors", "vae", vae.config.to_dict()),
        "generator": save_model(
            generator,
            root / "gen.safetensors",
            "generator",
            generator.config.to_dict(),
            extra={"classes": list(CLASS_NAMES)},
        ),
    }
