"""Pipeline, the sample CLI and the evaluation helpers on tiny random models (CPU, seconds)."""

import argparse

import pytest
import torch
from PIL import Image

from tokenbridge import pipeline as pipeline_module
from tokenbridge.__main__ import main as cli_main
from tokenbridge.classifier import ClassifierConfig, ShapesClassifier
from tokenbridge.evaluation import QuantSetting, generation_metrics, reconstruction_table, settings_grid, shapes_images
from tokenbridge.generator import tokenbridge_tiny
from tokenbridge.pipeline import SAMPLER_DEFAULTS, Pipeline
from tokenbridge.shapes import CLASS_NAMES


@pytest.fixture(scope="module")
def pipe(tiny_pipeline):
    return tiny_pipeline


def test_same_seed_same_images_and_rows_independent_of_batch(pipe):
    a = pipe.generate([1, 2, 3, 4], seed=5, num_steps=4)
    b = pipe.generate([1, 2, 3, 4], seed=5, num_steps=4)
    assert torch.equal(a, b)
    assert a.shape == (4, 3, 64, 64) and a.min() >= -1 and a.max() <= 1
    batch = pipe.generate_tokens([1, 2, 3, 4], seed=5, num_steps=4)
    for i in range(4):  # row i is seeded seed + i: the same as generating it alone
        assert torch.equal(batch[i : i + 1], pipe.generate_tokens([i + 1], seed=5 + i, num_steps=4))
    assert not torch.equal(batch, pipe.generate_tokens([1, 2, 3, 4], seed=6, num_steps=4))


def test_steps_commit_every_position_once_with_previews(pipe):
    steps = list(pipe.steps([7], seed=0, preview=True, num_steps=5, order="confidence"))
    assert len(steps) == 5
    committed = torch.stack([s.step.committed for s in steps]).sum(dim=0)
    assert torch.equal(committed, torch.ones_like(committed))
    assert all(s.preview.shape == (1, 3, 64, 64) for s in steps)
    assert not steps[-1].step.mask.any() and (steps[-1].step.tokens >= 0).all()
    final = pipe.decode(pipe.tokens_to_latents(steps[-1].step.tokens))
    assert torch.allclose(steps[-1].preview, final, atol=1e-5)


def test_bad_inputs_name_the_problem(pipe, seeded):
    with pytest.raises(ValueError, match="class 10 out of range"):
        pipe.generate([10])
    with pytest.raises(ValueError, match="class -1 out of range"):
        pipe.generate([-1])
    with pytest.raises(ValueError, match="temperature"):
        pipe.generate([1], temperature=0.0)
    vae = pipe.vae
    with pytest.raises(ValueError, match="latent channels"):
        Pipeline(vae, seeded(lambda: tokenbridge_tiny(vae_embed_dim=8)), device="cpu")
    with pytest.raises(ValueError, match="no generator"):
        Pipeline(vae, None, device="cpu").generate([1])
    with pytest.raises(ValueError, match="unknown pipeline"):
        Pipeline.load("mystery")


def test_reconstruct_and_describe(pipe):
    x = shapes_images(2)
    continuous = pipe.reconstruct(x, quantized=False)
    assert torch.allclose(continuous, pipe.decode(pipe.encode(x)))
    quantized = pipe.reconstruct(x)
    assert quantized.shape == x.shape and not torch.equal(quantized, continuous)
    info = pipe.describe()
    assert info["quantizer"]["levels"] == 64 and info["channel_order"] == list(range(16))
    assert info["generator"]["parameters"] == sum(p.numel() for p in pipe.generator.parameters())


def test_load_from_files_matches_in_memory(tmp_path, pipe, tiny_pipeline_files, monkeypatch):
    vae_file, generator = tiny_pipeline_files["vae"], pipe.generator
    loaded = Pipeline.load(vae=vae_file, generator=tiny_pipeline_files["generator"], device="cpu")
    assert loaded.classes == list(CLASS_NAMES)
    assert torch.equal(loaded.generate_tokens([3], seed=1, num_steps=3), pipe.generate_tokens([3], seed=1, num_steps=3))
    # an official-format (MAR) checkpoint of the same weights loads through the same call
    torch.save(
        {
            "model": generator.state_dict(),
            "model_ema": generator.state_dict(),
            "epoch": 1,
            "args": argparse.Namespace(model="tiny"),
        },
        tmp_path / "checkpoint-last.pth",
    )
    official = Pipeline.load(vae=vae_file, generator=tmp_path / "checkpoint-last.pth", device="cpu")
    assert torch.equal(
        official.generate_tokens([3], seed=1, num_steps=3), pipe.generate_tokens([3], seed=1, num_steps=3)
    )
    # the embedded default names its missing files instead of failing somewhere deeper
    monkeypatch.setitem(pipeline_module.EMBEDDED, "vae", vae_file)
    monkeypatch.setitem(pipeline_module.EMBEDDED, "generator", tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="embedded generator"):
        Pipeline.load("embedded")


def test_sample_cli_writes_a_grid(tmp_path, tiny_pipeline_files, capsys):
    models = ["--vae", str(tiny_pipeline_files["vae"]), "--generator", str(tiny_pipeline_files["generator"])]
    out = tmp_path / "grid.png"
    cli_main(
        [
            "sample",
            "--class-name",
            "star",
            "--n",
            "3",
            "--columns",
            "2",
            "--steps",
            "2",
            "--device",
            "cpu",
            *models,
            "--out",
            str(out),
        ]
    )
    width, height = Image.open(out).size
    assert height == 2 * 66 + 2 and width > 2 * 66 + 2 + 20  # two rows of tiles, their class names on the left
    cli_main(["sample", "--per-class", "2", "--steps", "2", "--device", "cpu", *models, "--out", str(out)])
    assert Image.open(out).size[1] == len(CLASS_NAMES) * 66 + 2  # one row per class
    with pytest.raises(SystemExit) as exit_info:  # bad inputs: see tests/test_editing.py
        cli_main(["sample", "--class-name", "blob", *models])
    assert exit_info.value.code == 2 and "unknown class 'blob'" in capsys.readouterr().err


def test_reconstruction_table_orders_by_bits(pipe, seeded):
    vae = pipe.vae
    classifier = seeded(lambda: ShapesClassifier(ClassifierConfig(widths=(8, 8, 8, 16))))
    images = shapes_images(24)
    grid = [QuantSetting(None), QuantSetting(4), QuantSetting(128), QuantSetting(16, calibration="per_channel")]
    rows = reconstruction_table(vae, classifier, images, grid, batch_size=10)
    assert [r["levels"] for r in rows] == [None, 4, 128, 16]
    assert rows[0]["latent_mse"] == 0 and rows[0]["mean_entropy_bits"] is None
    assert rows[1]["latent_mse"] > rows[2]["latent_mse"] > 0
    assert rows[1]["mean_entropy_bits"] <= 2.0 + 1e-6
    assert len(settings_grid([4, 8], ["nearest", "interval"], ["fixed"], ["gaussian"], [5.0])) == 1 + 4
    assert "class_accuracy" not in rows[0]


def test_reconstruction_table_class_accuracy_is_the_classifiers_on_the_reconstructions(pipe, seeded):
    classifier = seeded(lambda: ShapesClassifier(ClassifierConfig(widths=(8, 8, 8, 16))))
    images, labels = shapes_images(20), torch.arange(20) % 10
    (row,) = reconstruction_table(pipe.vae, classifier, images, [QuantSetting(64)], labels=labels)
    latents = pipe.vae.encode_latents(images)
    recon = pipe.vae.decode_latents(QuantSetting(64).build(latents)(latents))
    expected = float((classifier(recon).argmax(dim=1) == labels).float().mean())
    assert row["class_accuracy"] == pytest.approx(expected, abs=1e-4)


def test_a_generator_file_names_the_dataset_its_evaluations_use(tmp_path, pipe, tiny_pipeline_files, seeded):
    """The header's ``dataset`` (written by training on a procedural dataset) becomes `Pipeline.dataset`,
    and `generation_metrics` measures against held-out images of it; files that do not say: shapes."""
    from tokenbridge.checkpoints import save_model

    icons_file = save_model(
        pipe.generator,
        tmp_path / "icons.safetensors",
        "generator",
        pipe.generator.config.to_dict(),
        extra={"classes": list(CLASS_NAMES), "dataset": "icons"},
    )
    icons = Pipeline.load(vae=tiny_pipeline_files["vae"], generator=icons_file, device="cpu")
    plain = Pipeline.load(vae=tiny_pipeline_files["vae"], generator=tiny_pipeline_files["generator"], device="cpu")
    assert (icons.dataset, plain.dataset) == ("icons", "shapes")
    classifier = seeded(lambda: ShapesClassifier(ClassifierConfig(widths=(8, 8, 8, 16))))
    with pytest.warns(UserWarning, match="strongly biased"):
        on_icons, on_shapes = (generation_metrics(p, classifier, 4, num_steps=2) for p in (icons, plain))
    assert (on_icons["dataset"], on_shapes["dataset"]) == ("icons", "shapes")
    assert on_icons["class_accuracy"] == on_shapes["class_accuracy"]  # the same samples...
    assert on_icons["fd_shapes"] != on_shapes["fd_shapes"]  # ...against another reference


def test_generation_metrics_are_seeded(pipe, seeded):
    classifier = seeded(lambda: ShapesClassifier(ClassifierConfig(widths=(8, 8, 8, 16))))
    with pytest.warns(UserWarning, match="strongly biased"):  # 6 samples: the caller is told FD means little
        a = generation_metrics(pipe, classifier, 6, batch_size=4, num_steps=2)
        b = generation_metrics(pipe, classifier, 6, batch_size=3, num_steps=2)
    assert a["samples"] == 6
    labels = torch.arange(6)  # cycling through the 10 classes; row i seeded 0 + i
    with torch.no_grad():
        predicted = classifier(pipe.generate(labels, seed=0, num_steps=2)).argmax(dim=1)
    assert a["class_accuracy"] == round(float((predicted == labels).float().mean()), 4)
    rigged = seeded(lambda: ShapesClassifier(ClassifierConfig(widths=(8, 8, 8, 16))))
    with torch.no_grad():  # answers class 1 for any image: exactly one of the 6 samples is right
        rigged.head.weight.zero_()
        rigged.head.bias.zero_()
        rigged.head.bias[1] = 1.0
    with pytest.warns(UserWarning, match="strongly biased"):
        assert generation_metrics(pipe, rigged, 6, num_steps=2)["class_accuracy"] == round(1 / 6, 4)
    assert (a["class_accuracy"], a["fd_shapes"]) == (b["class_accuracy"], b["fd_shapes"])  # batch-independent
    assert a["sampler"] == {**SAMPLER_DEFAULTS, "num_steps": 2}, "the settings used, defaults included"
