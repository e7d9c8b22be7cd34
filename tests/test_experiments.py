"""Ablation commands: one shared budget, and each variant changes exactly the setting it tests."""

import json
import math
import warnings
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from tokenbridge import checkpoints, experiments
from tokenbridge.classifier import ClassifierConfig, ShapesClassifier
from tokenbridge.evaluation import SampleOutputs, sample_fingerprints
from tokenbridge.experiments import ABLATION_BUDGET, COMPARISONS, VARIANTS, train_command
from tokenbridge.generator import PRESETS, tokenbridge_tiny
from tokenbridge.pipeline import Pipeline
from tokenbridge.shapes import CLASS_NAMES
from tokenbridge.vae import small

EXPECTED_CHANGES = {  # variant -> the config fields (and channel order) that differ from the baseline
    "parallel_head": {"head"},
    "levels_16": {"quant_levels"},
    "identity_order": {"channel_order"},
    "big_head": {"channel_embed_dim", "channel_depth", "channel_heads"},
}


def _settings(name: str) -> dict:
    variant = VARIANTS[name]
    config = asdict(PRESETS[variant.preset])
    config["channel_order"] = variant.channel_order
    return config


@pytest.mark.parametrize("name", sorted(EXPECTED_CHANGES))
def test_each_variant_changes_only_what_it_tests(name):
    base, other = _settings("baseline"), _settings(name)
    assert {k for k in base if base[k] != other[k]} == EXPECTED_CHANGES[name]


def test_every_comparison_uses_known_variants_and_the_baseline():
    assert all(c.baseline == "baseline" and c.variant in VARIANTS for c in COMPARISONS.values())
    assert {c.variant for c in COMPARISONS.values()} == set(VARIANTS) - {"baseline"}


def _fake_row(variant, fd, seed=0, order="random"):
    return {"variant": variant, "fd_shapes": fd, "seed": seed, "samples": 100, "sampler": {"order": order}}


@pytest.mark.parametrize("variant_fd, verdict", [(5.0, "reproduces"), (1.02, "within noise"), (0.5, "reverses")])
def test_compare_judges_against_the_reseed_noise(variant_fd, verdict):
    rows = [_fake_row("baseline", 1.0), _fake_row("baseline", 1.05, seed=100), _fake_row("parallel_head", variant_fd)]
    result = experiments.compare(rows, "channel head: autoregressive vs parallel", "random")
    assert result["verdict"] == verdict and result["noise"] == pytest.approx(0.05)
    assert result["difference"] == pytest.approx(variant_fd - 1.0)
    # the paper's bigger head is the better one: a lower FD for big_head reproduces it
    rows[2] = _fake_row("big_head", 0.5)
    assert experiments.compare(rows, "head capacity: 128x2 vs 256x3", "random")["verdict"] == "reproduces"
    with pytest.raises(KeyError, match="confidence"):
        experiments.compare(rows, "head capacity: 128x2 vs 256x3", "confidence")
    # the yardstick is the larger of the orders' reseed changes: a lucky small one does not count
    rows += [
        _fake_row("baseline", 3.0, order="confidence"),
        _fake_row("baseline", 3.001, seed=100, order="confidence"),
        _fake_row("big_head", 2.5, order="confidence"),
    ]
    assert experiments.compare(rows, "head capacity: 128x2 vs 256x3", "confidence")["noise"] == pytest.approx(0.05)


def test_compare_heldout_ce_and_accuracy_directions():
    def row(variant, ce, accuracy, levels=64, seed=0, redrawn=0.001):
        return {
            "variant": variant,
            "seed": seed,
            "samples": 100,
            "sampler": {"order": "random"},
            "quant_levels": levels,
            "heldout_ce": ce,
            "heldout_ce_reseeded": ce + redrawn,
            "class_accuracy": accuracy,
        }

    rows = [
        row("baseline", 2.0, 0.5),
        row("baseline", 2.0, 0.52, seed=100),
        row("parallel_head", 2.3, 0.7, redrawn=-0.5),
        row("levels_16", 1.2, 0.3, levels=16),
    ]
    head = "channel head: autoregressive vs parallel"
    # the second mask draw lowers both CEs' level; only the paired difference's move is noise:
    # draw 1 +0.3, draw 2 +0.3 - 0.501 + 0.001 = -0.2, so the yardstick is 0.5 and 0.3 is within it
    ce = experiments.compare(rows, head, "random", "heldout_ce")
    assert ce["verdict"] == "within noise" and ce["noise"] == pytest.approx(0.501)
    rows[2] = row("parallel_head", 2.3, 0.7, redrawn=0.031)
    ce = experiments.compare(rows, head, "random", "heldout_ce")
    assert ce["verdict"] == "reproduces" and ce["noise"] == pytest.approx(0.03)  # parallel head: higher CE
    # higher accuracy is better, so a more accurate parallel head goes against the paper
    assert experiments.compare(rows, head, "random", "class_accuracy")["verdict"] == "reverses"
    # a 5-point accuracy gain from 100 samples is within the binomial noise, however close the reseed
    rows[2] = row("parallel_head", 2.3, 0.45)
    small = experiments.compare(rows, head, "random", "class_accuracy")
    assert small["verdict"] == "within noise" and small["noise"] == pytest.approx(math.sqrt(2 * 0.25 / 100), abs=1e-4)
    # 16 levels: fewer bits per token, a lower CE says nothing about the model
    assert experiments.compare(rows, "levels: B=64 vs B=16", "random", "heldout_ce")["verdict"] == "not comparable"


def test_heldout_cross_entropy_is_the_training_loss_on_fixed_masks(tiny_pipeline):
    pipe = tiny_pipeline
    first = experiments.heldout_cross_entropy(pipe, 8, seed=0, batch_size=4)
    assert first == experiments.heldout_cross_entropy(pipe, 8, seed=0, batch_size=4)  # seeded masks
    assert first != experiments.heldout_cross_entropy(pipe, 8, seed=1, batch_size=4)
    # an untrained model is close to uniform over the 64 levels
    assert abs(first["ce_nats"] - math.log(64)) < 0.5 and len(first["ce_per_channel"]) == 16
    assert first["ce_nats"] == pytest.approx(sum(first["ce_per_channel"]) / 16, abs=1e-4)


def _options(command: list[str]) -> dict:
    flags = command[command.index("generator") + 1 :]
    return {flag: value for flag, value in zip(flags, flags[1:] + [""]) if flag.startswith("--")}


def test_commands_share_the_budget_and_resume_existing_runs(tmp_path):
    commands = {name: _options(train_command(name, tmp_path / "runs", tmp_path / "assets")) for name in VARIANTS}
    for name, options in commands.items():
        assert all(options[f"--{key}"] == str(value) for key, value in ABLATION_BUDGET.items())
        assert options["--out"] == str(tmp_path / "runs" / name) and "--resume" not in options
    (tmp_path / "runs" / "levels_16").mkdir(parents=True)
    (tmp_path / "runs" / "levels_16" / "state.pt").write_bytes(b"")
    assert "--resume" in _options(train_command("levels_16", tmp_path / "runs", tmp_path / "assets"))


def test_print_runs_nothing_and_exported_variants_are_skipped(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(experiments.subprocess, "run", lambda *a, **k: pytest.fail("must not train"))
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "baseline.safetensors").write_bytes(b"")
    experiments.main(["ablations", "--print", "--runs", str(tmp_path / "runs"), "--assets", str(assets)])
    out = capsys.readouterr().out
    assert "baseline: " in out and "skipped" in out.splitlines()[0]
    assert sum("tokenbridge.train generator" in line for line in out.splitlines()) == len(VARIANTS) - 1
    assert not (tmp_path / "runs").exists()


def test_a_failed_training_stops_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setattr(experiments.subprocess, "run", lambda *a, **k: type("R", (), {"returncode": 3})())
    with pytest.raises(SystemExit, match="parallel_head: training exited with code 3"):
        experiments.run_ablations(["parallel_head"], tmp_path / "runs", tmp_path / "assets")
    assert Path(tmp_path / "runs" / "parallel_head").is_dir()


def export_tiny_variants(tmp_path: Path) -> Path:
    """A seeded VAE and classifier (``vae.safetensors``, ``cls.safetensors``) and two tiny generators,
    baseline and parallel head, exported to ``assets/`` as the ablations' export writes them."""
    heads = {"baseline": "autoregressive", "parallel_head": "parallel"}
    with torch.random.fork_rng():  # seed 0, drawn in this order: the stored values below depend on it
        torch.manual_seed(0)
        vae, classifier = small().eval(), ShapesClassifier(ClassifierConfig(widths=(8, 8, 8, 16))).eval()
        generators = {name: tokenbridge_tiny(class_num=10, head=head).eval() for name, head in heads.items()}
    checkpoints.save_model(vae, tmp_path / "vae.safetensors", "vae", vae.config.to_dict())
    checkpoints.save_model(classifier, tmp_path / "cls.safetensors", "classifier", classifier.config.to_dict())
    assets = tmp_path / "assets"
    for name, generator in generators.items():
        extra = {"classes": list(CLASS_NAMES)}
        checkpoints.save_model(
            generator, assets / f"{name}.safetensors", "generator", generator.config.to_dict(), extra=extra
        )
    (assets / "baseline.json").write_text(json.dumps({"command": "python -m tokenbridge.train generator --steps 1"}))
    return assets


def test_evaluate_measures_exported_variants_and_fingerprints_regenerate(tmp_path, capsys):
    assets = export_tiny_variants(tmp_path)
    out = tmp_path / "ablations.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FD from 10 samples warns, rightly
        experiments.main(
            [
                "evaluate",
                "--assets",
                str(assets),
                "--vae",
                str(tmp_path / "vae.safetensors"),
                "--classifier",
                str(tmp_path / "cls.safetensors"),
                "--n",
                "10",
                "--out",
                str(out),
            ]
        )
    result = json.loads(out.read_text())
    progress = [line for line in capsys.readouterr().out.splitlines() if "class accuracy" in line]
    assert progress[1].startswith("baseline, random order, seeds 10-19: class accuracy") and len(progress) == 6
    rows = [(r["variant"], r["seed"], r["sampler"]["order"]) for r in result["rows"]]
    assert rows == [
        ("baseline", 0, "random"),
        ("baseline", 10, "random"),
        ("baseline", 0, "confidence"),
        ("baseline", 10, "confidence"),
        ("parallel_head", 0, "random"),
        ("parallel_head", 0, "confidence"),
    ]
    assert result["command"].startswith("python -m tokenbridge.experiments evaluate")
    row = result["rows"][4]
    assert {"class_accuracy", "fd_shapes", "precision", "recall", "heldout_ce"} <= set(row) and len(
        row["fingerprints"]
    ) == 8
    assert row["heldout_ce"] != row["heldout_ce_reseeded"] and row["quant_levels"] == 64
    for metric, (low, high) in row["intervals"].items():  # each bootstrap interval holds the full set's value
        assert low <= row[metric] + 1e-4 and row[metric] - 1e-4 <= high
    # only the parallel head was exported: one comparison, judged per order and sample metric
    (head,) = result["verdicts"]
    verdict = result["verdicts"][head]
    assert head == "channel head: autoregressive vs parallel" and len(verdict["samples"]) == 2 * 4
    assert verdict["verdict_samples"] in {"holds", "reversed", "mixed", "undecided"}
    assert verdict["heldout_ce"]["metric"] == "heldout_ce" and result["resamples"] == experiments.RESAMPLES
    train = {"baseline": "python -m tokenbridge.train generator --steps 1", "parallel_head": None}  # no sidecar
    assert verdict["commands"] == {"train": train, "evaluate": result["command"]}
    pipe = Pipeline.load(vae=tmp_path / "vae.safetensors", generator=assets / "parallel_head.safetensors", device="cpu")
    # stored values (CPU, seed 0 models, SAMPLER_DEFAULTS but the order): the exported row, and the same again
    # from sample_fingerprints
    sums = [32152, 32339, 31673, 31407, 30816, 31395, 31517, 32222]  # distinct samples, not one repeated image
    expected = [{"label": i, "predicted": 7, "token_sum": t} for i, t in enumerate(sums)]
    assert row["fingerprints"] == expected
    again = sample_fingerprints(
        pipe, checkpoints.load_model(tmp_path / "cls.safetensors", kind="classifier"), 8, seed=0, order="random"
    )
    assert again == expected


def _outputs(correct: float, shift: float, n: int = 200) -> SampleOutputs:
    """Samples whose share ``correct`` is classified right and whose features sit ``shift`` away
    from the real ones (the same draw of noise for every call: paired sets)."""
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(n, 4, generator=gen), torch.randn(n, 4, generator=gen)
    return SampleOutputs(fake + shift, real, torch.arange(n) < round(correct * n))


@pytest.mark.parametrize(
    "variant, correct, shift, verdict",
    [
        ("parallel_head", 0.6, 1.0, "holds"),  # the parallel head is worse, as in the paper
        ("parallel_head", 0.95, 0.0, "reversed"),
        ("big_head", 0.6, 1.0, "reversed"),  # the paper's bigger head is the better one
        ("big_head", 0.9, 0.0, "undecided"),  # the baseline again: every interval holds zero
        ("big_head", 0.99, 1.0, "mixed"),  # more accurate, farther from the data
    ],
)
def test_sample_verdicts_read_the_paired_intervals(variant, correct, shift, verdict):
    outputs = {}
    for sampling_order in ("random", "confidence"):
        outputs["baseline", sampling_order] = _outputs(0.9, 0.0)
        outputs[variant, sampling_order] = _outputs(correct, shift)
    name = next(k for k, c in COMPARISONS.items() if c.variant == variant)
    result = experiments.sample_verdicts(outputs, COMPARISONS[name], ("random", "confidence"), resamples=200)
    assert result["verdict_samples"] == verdict
    accuracy = next(j for j in result["samples"] if j["metric"] == "class_accuracy")
    assert accuracy["difference"] == pytest.approx(correct - 0.9, abs=1e-6)


def test_evaluate_refuses_a_folder_without_exported_variants(tmp_path, capsys):
    (tmp_path / "none").mkdir()
    with pytest.raises(SystemExit) as refused:
        experiments.main(["evaluate", "--assets", str(tmp_path / "none"), "--out", str(tmp_path / "ablations.json")])
    assert refused.value.code == 2 and "no exported variants" in capsys.readouterr().err
