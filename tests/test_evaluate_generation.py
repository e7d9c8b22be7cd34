"""`python -m tokenbridge.evaluate generation`: one row per sampler setting, each regenerable."""

import json
import warnings

import torch

from tokenbridge import checkpoints, evaluate
from tokenbridge.data import CLASS_NAMES
from tokenbridge.generator import tokenbridge_tiny
from tokenbridge.vae import small


STORED_TOKEN_SUMS = [[31738, 31115, 32140, 32315, 32715, 31356, 32395, 33173],  # CFG 1
                     [31614, 31011, 32142, 32361, 32587, 31485, 32405, 33184]]  # CFG 4: guidance changes the samples
"""Token-index sums of samples 0..7 (label i, seed i, 3 random-order steps) of the seed-0 tiny models."""


def test_generation_cli_stores_regenerable_fingerprints_per_setting(tmp_path):
    from tokenbridge.classifier import ClassifierConfig, ShapesClassifier
    from tokenbridge.pipeline import Pipeline

    with torch.random.fork_rng():
        torch.manual_seed(0)
        vae, generator = small().eval(), tokenbridge_tiny(class_num=10).eval()
        classifier = ShapesClassifier(ClassifierConfig(widths=(8, 8, 8, 16))).eval()
    paths = {name: tmp_path / f"{name}.safetensors" for name in ("vae", "gen", "cls")}
    checkpoints.save_model(vae, paths["vae"], "vae", vae.config.to_dict())
    checkpoints.save_model(classifier, paths["cls"], "classifier", classifier.config.to_dict())
    checkpoints.save_model(generator, paths["gen"], "generator", generator.config.to_dict(),
                           extra={"classes": list(CLASS_NAMES)})  # fmt: skip
    out = tmp_path / "generation.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FD from 10 samples warns, rightly
        evaluate.main(["generation", "--n", "10", "--steps", "3", "--order", "random", "--cfg", "1", "4",
                       "--vae", str(paths["vae"]), "--generator", str(paths["gen"]), "--classifier", str(paths["cls"]),
                       "--out", str(out)])  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    assert [r["sampler"]["cfg"] for r in rows] == [1.0, 4.0]
    # stored values (CPU, these seeds): the CLI's fingerprints, and the same again from sample_fingerprints
    expected = [[{"label": i, "predicted": 2, "token_sum": t} for i, t in enumerate(sums)]
                for sums in STORED_TOKEN_SUMS]  # fmt: skip
    assert [r["fingerprints"] for r in rows] == expected
    pipe = Pipeline(vae, generator, classes=CLASS_NAMES, device="cpu")
    assert [evaluate.sample_fingerprints(pipe, classifier, 8, 0, **r["sampler"]) for r in rows] == expected
