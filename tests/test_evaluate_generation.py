"""`python -m tokenbridge.evaluate generation`: one row per sampler setting, each regenerable."""

import json
import warnings

import pytest

from tokenbridge import checkpoints, evaluate
from tokenbridge.classifier import ClassifierConfig, ShapesClassifier
from tokenbridge.evaluation import fingerprints_match, sample_fingerprints, tokenizer_ceiling
from tokenbridge.pipeline import ASSETS, Pipeline

STORED_TOKEN_SUMS = [
    [31738, 31115, 32140, 32315, 32715, 31356, 32395, 33173],  # CFG 1
    [31614, 31011, 32142, 32361, 32587, 31485, 32405, 33184],
]  # CFG 4: guidance changes the samples
"""Token-index sums of samples 0..7 (label i, seed i, 3 random-order steps) of `tiny_pipeline`."""


def test_generation_cli_stores_regenerable_fingerprints_per_setting(
    tmp_path, seeded, tiny_pipeline, tiny_pipeline_files
):
    classifier = seeded(lambda: ShapesClassifier(ClassifierConfig(widths=(8, 8, 8, 16))))
    classifier_file = checkpoints.save_model(
        classifier, tmp_path / "cls.safetensors", "classifier", classifier.config.to_dict()
    )
    out = tmp_path / "generation.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FD from 10 samples warns, rightly
        evaluate.main(
            [
                "generation",
                "--n",
                "10",
                "--steps",
                "3",
                "--order",
                "random",
                "--cfg",
                "1",
                "4",
                "--temperature",  # the stored sums were drawn at temperature 1
                "1",
                "--vae",
                str(tiny_pipeline_files["vae"]),
                "--generator",
                str(tiny_pipeline_files["generator"]),
                "--classifier",
                str(classifier_file),
                "--out",
                str(out),
            ]
        )
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [r["sampler"]["cfg"] for r in rows] == [1.0, 4.0]
    ceiling = result["tokenizer_ceiling"]
    assert ceiling["images"] == ceiling["offset"] == 10 and set(rows[0]) >= set(ceiling) - {"images", "offset"}
    # stored values (CPU, these seeds; the random classifier answers 1 to all): the CLI's fingerprints, and
    # the same again from sample_fingerprints
    expected = [
        [{"label": i, "predicted": 1, "token_sum": t} for i, t in enumerate(sums)] for sums in STORED_TOKEN_SUMS
    ]
    assert [r["fingerprints"] for r in rows] == expected
    assert [sample_fingerprints(tiny_pipeline, classifier, 8, 0, **r["sampler"]) for r in rows] == expected


def test_fingerprints_match_allows_a_few_flipped_samples_not_other_settings():
    cfg1, cfg4 = (
        [{"label": i, "predicted": 1, "token_sum": t} for i, t in enumerate(sums)] for sums in STORED_TOKEN_SUMS
    )
    one_flipped = [*cfg1[:3], {**cfg1[3], "token_sum": cfg1[3]["token_sum"] + 3}, *cfg1[4:]]
    assert fingerprints_match(cfg1, cfg1) and fingerprints_match(one_flipped, cfg1)
    assert not fingerprints_match(cfg4, cfg1), "another CFG scale changes nearly every sample"
    assert not fingerprints_match(one_flipped, cfg1, flips=0)
    with pytest.raises(ValueError, match="7 live fingerprints against 8 stored"):
        fingerprints_match(cfg1[:7], cfg1)


def test_tokenizer_ceiling_of_the_embedded_pair_keeps_the_class_and_stays_near_the_reals():
    """The embedded tokenizer keeps every icon's class (100 % measured at B = 64, `assets/vae_icons.json`),
    so its reconstructions, labelled as their own held-out images, are classified right; labels off by
    one image would put accuracy near chance. Their FD-shapes to the reference lies far below the
    shipped samples' (1.72 at 500) and above two real sets' (0.01 at 500)."""
    pipe = Pipeline.load("embedded", device="cpu")
    classifier = checkpoints.load_model(ASSETS / "classifier.safetensors", kind="classifier")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FD from 100 samples warns, rightly
        ceiling = tokenizer_ceiling(pipe, classifier, 100)
    assert ceiling["class_accuracy"] >= 0.97
    assert 0.02 < ceiling["fd_shapes"] < 1.0 and ceiling["precision"] > 0.1 and ceiling["recall"] > 0.5
