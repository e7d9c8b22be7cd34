"""Learnability harness: masks with a given number of known tokens, the CLI, and a smoke run."""

import math

import pytest
import torch

from tokenbridge import experiments, learnability
from tokenbridge.checkpoints import CheckpointError, read_torch_checkpoint
from tokenbridge.data import cache_latents
from tokenbridge.shapes import ShapesDataset


def test_random_mask_keeps_exactly_the_known_count():
    g = torch.Generator().manual_seed(0)
    for known in (0, 1, 17, 63):
        mask = learnability.random_mask(5, 64, known, g)
        assert mask.shape == (5, 64) and ((~mask).sum(dim=1) == known).all()


def test_cli_takes_the_recipe_after_the_separator():
    args = experiments.parse_args(["learnability", "--steps", "3", "--", "--lr", "1e-3", "--position-bias", "relative"])
    assert args.recipe == ["--lr", "1e-3", "--position-bias", "relative"] and args.steps == 3
    with pytest.raises(SystemExit):
        experiments.parse_args(["learnability", "--steps", "0"])


def test_recipe_may_not_set_what_the_harness_sets(tmp_path):
    with pytest.raises(ValueError, match="--steps"):
        learnability.train_recipe(["--steps", "9"], 3, tmp_path, "unused.safetensors")


@pytest.fixture
def random_latents(tmp_path):
    """20 random latents in the embedded layout ([16, 8, 8]) and the shapes' 10 classes."""
    images = torch.utils.data.TensorDataset(torch.zeros(20, 3, 64, 64), torch.arange(20) % 10)
    images.classes = list(ShapesDataset.classes)
    rng = torch.Generator().manual_seed(0)
    return cache_latents(lambda x: torch.randn(len(x), 16, 8, 8, generator=rng), images, tmp_path / "lat.safetensors")


def test_smoke_run_reports_every_measure(tmp_path, random_latents):
    result = learnability.run(
        [
            "--preset",
            "tokenbridge_tiny",
            "--batch-size",
            "4",
            "--dropout",
            "0",
            "--position-bias",
            "relative",
            "--precision",
            "bf16",
        ],
        3,
        str(random_latents),
        "assets/vae_small.safetensors",
        "assets/classifier.safetensors",
        heldout=6,
        samples=0,
        out_dir=str(tmp_path / "run"),
    )
    assert list(result["ce_by_known"]) == list(learnability.KNOWN_COUNTS)
    # an untrained 64-level model is near uniform: CE close to log(64) nats everywhere
    for row in result["ce_by_known"].values():
        assert abs(row["ce"] - math.log(64)) < 1.0 and abs(row["ce_first"] - math.log(64)) < 1.0
    assert 0.0 < result["copy_test"]["median_p_first"] < 0.2
    assert "class_accuracy" not in result and result["steps"] == 3
    assert "copy test" in learnability.format_report(result) and "class use" in learnability.format_report(result)
    assert "value precision" in learnability.format_report(result) and result["value_precision"]["median_spread"] > 0
    state_path = tmp_path / "run" / "state.pt"  # a run's state measures as its EMA weights
    model, label = learnability.trained_generator(str(state_path))
    assert label == f"{state_path} (EMA at step 3)"
    ema = read_torch_checkpoint(state_path)["ema"]
    assert all(torch.equal(t, ema[k]) for k, t in model.state_dict().items())
    torch.save({"kind": "vae", "step": 1}, tmp_path / "vae_state.pt")
    with pytest.raises(CheckpointError, match="neither a generator file nor"):
        learnability.trained_generator(str(tmp_path / "vae_state.pt"))


def test_measure_reports_a_trained_model_like_a_recipe_run(tiny_pipeline_files):
    """``--model``: the same measures for an existing generator file, titled by its path."""
    result = learnability.measure(
        tiny_pipeline_files["generator"],
        tiny_pipeline_files["vae"],
        "assets/classifier.safetensors",
        heldout=6,
        samples=0,
    )
    assert list(result["ce_by_known"]) == list(learnability.KNOWN_COUNTS) and "class_use" in result
    assert learnability.format_report(result).startswith(f"shapes task, model {tiny_pipeline_files['generator']}")


def test_class_use_is_zero_when_every_class_embeds_alike_and_not_otherwise():
    """`class_use` compares CE under the true and the next label: a model whose class embeddings
    are all equal cannot tell them apart (exactly 0); distinct embeddings give a nonzero value."""
    from tokenbridge.generator import tokenbridge_tiny

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = tokenbridge_tiny(class_input="buffer+decoder").eval()
    indices = torch.randint(0, 64, (12, 64, 16), generator=torch.Generator().manual_seed(1))
    labels = torch.arange(12) % 10
    with torch.no_grad():
        model.class_emb.weight.normal_(std=1.0, generator=torch.Generator().manual_seed(2))
    assert learnability.class_use(model, indices, labels) != 0.0
    with torch.no_grad():
        model.class_emb.weight.copy_(model.class_emb.weight[:1].expand_as(model.class_emb.weight))
    assert learnability.class_use(model, indices, labels) == 0.0


def test_value_precision_of_a_model_that_predicts_the_prior():
    """A Gaussian-readout model at init predicts the N(0, 1) prior over levels everywhere, so the
    value error is |E_prior[v] - v_true|, the spread the prior's and p(true) the prior's mass."""
    from tokenbridge.generator import tokenbridge_tiny

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = tokenbridge_tiny(readout="gaussian", vae_embed_dim=4).eval()
    indices = torch.randint(0, 64, (12, 64, 4), generator=torch.Generator().manual_seed(1))
    result = learnability.value_precision(model, indices, torch.arange(12) % 10)
    values = model.reconstruction_values
    prior = torch.softmax(-0.5 * (values / values.std()) ** 2, dim=0)
    mean = prior @ values
    assert result["median_spread"] == pytest.approx(float((prior @ (values - mean) ** 2).sqrt()), abs=1e-3)
    first = model.config.generation_order[0]
    mask = learnability.random_mask(12, 64, round(0.3 * 64), torch.Generator().manual_seed(0))
    true = indices[mask][:, first]
    assert result["median_value_error"] == pytest.approx(float((mean - values[true]).abs().median()), abs=1e-3)
    assert result["median_p_true"] == pytest.approx(float(prior[true].median()), abs=1e-3)
