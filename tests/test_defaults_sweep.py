"""Sampler defaults by measurement: `tokenbridge.defaults_sweep` and its table in ``results/``."""

import json
from pathlib import Path

import pytest

from tokenbridge import defaults_sweep
from tokenbridge.pipeline import SAMPLER_DEFAULTS

ROOT = Path(__file__).resolve().parents[1]
CLASSIFIER = str(ROOT / "assets" / "classifier.safetensors")


def test_the_defaults_are_the_best_row_of_the_shipped_generators_table():
    table = json.loads(defaults_sweep.TABLE.read_text())
    rows = table["rows"]
    assert SAMPLER_DEFAULTS == defaults_sweep.best_sampler() == rows[table["best"]]["sampler"], (
        "re-run `python -m tokenbridge.defaults_sweep` and set SAMPLER_DEFAULTS to its best row"
    )
    assert table["best"] == defaults_sweep.best_index(rows)
    assert table["generator"] == "assets/generator_icons.safetensors" and table["samples"] >= 200
    assert [row["sampler"] for row in rows] == defaults_sweep.settings_grid(), "the table is of the current grid"
    swept = {
        key: {row["sampler"][key] for row in rows} for key in ("order", "cfg", "cfg_mode", "temperature", "num_steps")
    }
    assert swept == {
        "order": {"random", "confidence"},
        "cfg": {1.0, 2.0, 3.0},
        "cfg_mode": {"feature", "logit"},
        "temperature": {0.5, 0.7, 0.9, 1.0},
        "num_steps": {16, 32},
    }


def test_best_row_has_the_highest_accuracy_and_fd_breaks_ties():
    rows = [
        {"class_accuracy": 0.15, "fd_shapes": 20.0},
        {"class_accuracy": 0.16, "fd_shapes": 31.0},
        {"class_accuracy": 0.16, "fd_shapes": 30.0},
        {"class_accuracy": 0.10, "fd_shapes": 10.0},
    ]
    assert defaults_sweep.best_index(rows) == 2


def test_sweep_command_writes_every_rows_metrics_and_the_best(tiny_pipeline_files, tmp_path, capsys):
    out = tmp_path / "sweep.json"
    argv = [
        "--vae",
        str(tiny_pipeline_files["vae"]),
        "--generator",
        str(tiny_pipeline_files["generator"]),
        "--classifier",
        CLASSIFIER,
        "--n",
        "4",
        "--out",
        str(out),
    ]
    with pytest.warns(UserWarning, match="strongly biased"):  # 4 samples: a test of the plumbing, not a measure
        defaults_sweep.main(argv)
    table = json.loads(out.read_text())
    assert table["command"] == "python -m tokenbridge.defaults_sweep " + " ".join(argv)
    assert [row["sampler"] for row in table["rows"]] == defaults_sweep.settings_grid()
    for row in table["rows"]:
        assert row["samples"] == 4 and 0 <= row["class_accuracy"] <= 1 and row["fd_shapes"] > 0
        p = row["class_accuracy"]
        assert row["class_accuracy_se"] == pytest.approx((p * (1 - p) / 4) ** 0.5, abs=1e-4), "binomial SE"
    assert table["best"] == defaults_sweep.best_index(table["rows"])
    assert table["best_sampler"] == table["rows"][table["best"]]["sampler"]
    said = capsys.readouterr().out.splitlines()
    assert len(said) == len(table["rows"]) + 1 and said[-1].startswith(f"wrote {out}; best: row {table['best']}")
