"""Learning curve: snapshots measured once each, generative classification as its definition says."""

import json

import pytest
import torch

from tokenbridge.data import cache_latents
from tokenbridge.learnability import masked_cross_entropy, random_mask
from tokenbridge.learning_curve import (
    KNOWN_FRACTION,
    MASKS_PER_IMAGE,
    generative_accuracy,
    main,
    samples_to_reach,
    update_curve,
)
from tokenbridge.shapes import CLASS_NAMES
from tokenbridge.train import parse_run
from tokenbridge.training_loop import train
from tokenbridge.training_tasks import generator_task


def test_generative_accuracy_is_the_argmin_of_per_image_cross_entropy(tiny_pipeline):
    """Against a per-image, per-label loop over the same masks."""
    model = tiny_pipeline.generator
    rng = torch.Generator().manual_seed(1)
    indices = torch.randint(0, 64, (6, model.config.seq_len, model.config.token_dim), generator=rng)
    labels = torch.arange(6) % 10
    rng = torch.Generator().manual_seed(0)
    known = round(KNOWN_FRACTION * model.config.seq_len)
    masks = [random_mask(6, model.config.seq_len, known, rng) for _ in range(MASKS_PER_IMAGE)]
    predicted = []
    for i in range(6):
        ce = [
            sum(
                float(masked_cross_entropy(model, indices[i : i + 1], torch.tensor([k]), m[i : i + 1]).sum())
                for m in masks
            )
            for k in range(10)
        ]
        predicted.append(min(range(10), key=ce.__getitem__))
    expected = sum(p == int(t) for p, t in zip(predicted, labels)) / 6
    assert generative_accuracy(model, indices, labels, seed=0) == pytest.approx(expected, abs=1e-4)


@pytest.fixture
def snapshot_run(tmp_path):
    """A 4-step `tokenbridge_tiny` run on random 10-class latents with snapshots after steps 2 and 4."""
    images = torch.utils.data.TensorDataset(torch.zeros(20, 3, 64, 64), torch.arange(20) % 10)
    images.classes = list(CLASS_NAMES)
    latents = cache_latents(lambda x: torch.randn(len(x), 16, 8, 8), images, tmp_path / "latents.safetensors")
    run = parse_run(
        [
            "generator",
            "--out",
            str(tmp_path / "run"),
            "--preset",
            "tokenbridge_tiny",
            "--latents",
            str(latents),
            "--batch-size",
            "4",
            "--steps",
            "4",
            "--snapshot-every",
            "2",
        ]
    )
    train(generator_task(run.recipe), run.settings, run.out, progress=False)
    return tmp_path / "run"


@pytest.mark.filterwarnings("ignore:FD-shapes from 10 samples")
def test_update_curve_measures_each_snapshot_once(snapshot_run, tiny_pipeline_files, tmp_path):
    from tokenbridge.checkpoints import save_model
    from tokenbridge.classifier import ClassifierConfig, build_classifier

    classifier = build_classifier(ClassifierConfig(num_classes=10, image_size=64))
    classifier_path = save_model(classifier, tmp_path / "c.safetensors", "classifier", classifier.config.to_dict())
    out = tmp_path / "curve.json"
    curve = update_curve(
        snapshot_run, tiny_pipeline_files["vae"], classifier_path, out, samples=10, cfg=2.0, heldout=10, device="cpu"
    )
    entries = curve["entries"]
    assert [e["step"] for e in entries] == [2, 4] and [e["samples_seen"] for e in entries] == [8, 16]
    assert set(entries[0]) >= {"cfg_1", "cfg_2", "generative_accuracy", "value_precision", "train_seconds", "command"}
    assert 0 <= entries[0]["cfg_2"]["class_accuracy"] <= 1 and 0 <= entries[1]["generative_accuracy"] <= 1
    assert entries[0]["cfg_2"]["sampler"]["cfg"] == 2.0 and entries[0]["cfg_1"]["sampler"]["order"] == "random"
    assert json.loads(out.read_text()) == curve
    again = update_curve(
        snapshot_run, tiny_pipeline_files["vae"], classifier_path, out, samples=10, cfg=2.0, heldout=10, device="cpu"
    )
    assert again["entries"] == entries  # nothing re-measured (eval_seconds would differ)
    with pytest.raises(ValueError, match="choose another --out"):
        update_curve(snapshot_run, tiny_pipeline_files["vae"], classifier_path, out, samples=20, device="cpu")


def test_cli_without_snapshots_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    assert exit_info.value.code == 2
    assert "train with --snapshot-every" in capsys.readouterr().err


def test_compare_prints_recipes_side_by_side_at_equal_samples(tmp_path, capsys):
    """``compare``: one line per (samples seen, recipe), a recipe without that point left out."""

    def entry(samples, acc):
        return {
            "samples_seen": samples,
            "cfg_1": {"class_accuracy": acc},
            "cfg_3": {"class_accuracy": acc / 2},
            "generative_accuracy": 0.5,
            "value_precision": {"median_value_error": 0.07, "median_p_true": 0.1},
        }

    long_name = "b_named_longer_than_twenty_four_letters"
    curves = {"a": [entry(100, 0.2), entry(200, 0.4)], long_name: [entry(200, 0.6)]}
    paths = []
    for name, entries in curves.items():
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps({"settings": {"cfg": 3.0}, "entries": entries}))
    main(["compare", *map(str, paths)])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0].split()[:3] == ["samples", "recipe", "CFG"]
    assert lines[1].split()[:4] == ["100", "a", "20.0%", "10.0%"]
    assert [line.split()[1] for line in lines[2:]] == ["a", long_name] and lines[3].split()[2] == "60.0%"
    assert len({line.index("%") for line in lines[1:]}) == 1, "the CFG 1 column moves with the name's length"
    assert lines[3].split()[-2:] == ["0.070", "0.100"]
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(SystemExit):
        main(["compare", str(tmp_path / "other.json")])
    assert "is not a learning-curve file" in capsys.readouterr().err


def _logistic_entries(slope: float, half: float, seen=(10_000, 20_000, 40_000, 80_000)) -> list[dict]:
    """Entries whose accuracy above chance is exactly logistic in ln(samples) (half-way at ``half``)."""
    acc = [0.1 + 0.9 / (1 + (half / n) ** slope) for n in seen]
    return [{"samples_seen": n, "train_seconds": n / 50, "cfg_1": {"class_accuracy": a}} for n, a in zip(seen, acc)]


def test_extrapolation_recovers_an_exact_logistic_curve_and_refuses_a_flat_one(tmp_path, capsys):
    entries = _logistic_entries(slope=1.5, half=30_000)
    # (0.9 - 0.1) / 0.9 = 8/9 above chance: logit ln 8, reached at 30,000 * 8 ** (1 / 1.5)
    fit = samples_to_reach(entries, 0.9)
    assert fit["slope"] == pytest.approx(1.5, abs=1e-3) and fit["samples"] == pytest.approx(
        30_000 * 8 ** (1 / 1.5), rel=1e-3
    )
    flat = [dict(e, cfg_1={"class_accuracy": 0.3}) for e in entries]
    assert samples_to_reach(flat, 0.9)["samples"] is None and "slope <= 0" in samples_to_reach(flat, 0.9)["reason"]
    at_chance = [dict(e, cfg_1={"class_accuracy": 0.1}) for e in entries]
    assert samples_to_reach(at_chance, 0.9)["reason"].startswith(f"0 of {len(entries)} entries")
    assert fit["reason"] is None
    accuracies = [e["cfg_1"]["class_accuracy"] for e in entries]
    falling = [dict(e, cfg_1={"class_accuracy": a}) for e, a in zip(entries, reversed(accuracies))]
    assert samples_to_reach(falling, 0.9)["slope"] < 0 and samples_to_reach(falling, 0.9)["samples"] is None
    path = tmp_path / "curve.json"
    path.write_text(json.dumps({"settings": {}, "entries": entries}))
    main(["extrapolate", str(path), "--gpu-samples-per-s", "5000"])
    stored = json.loads(path.read_text())["extrapolation"]
    assert stored["run_samples_per_s"] == 50 and stored["run_hours"] == pytest.approx(
        stored["samples"] / 50 / 3600, abs=0.01
    )
    assert stored["gpu_hours"] == pytest.approx(stored["samples"] / 5000 / 3600, abs=0.01)
    with pytest.raises(SystemExit):
        main(["extrapolate", str(path), "--target", "1.0"])
    assert "must be below 1" in capsys.readouterr().err
