"""Learnability harness: how fast a generator training recipe learns to use its context.

    python -m tokenbridge.experiments learnability --steps 400 -- --lr 3e-3 --position-bias relative

A recipe is a list of ``tokenbridge.train generator`` arguments. It is trained for a few hundred
steps on the cached shapes latents (the real task: a token model costs the same per step whatever
its tokens mean, so a proxy task would not be faster), then measured on held-out images:

- held-out cross-entropy by the number of known tokens (teacher-forced, nats per channel, and the
  first generated channel alone): a model that uses its context gets better as more is known;
  one that treats the context as a bag of values stops improving after a few tokens;
- the copy test: one position masked, every other one known; the probability the model gives the
  true index of the first generated channel (median over images);
- the class accuracy of samples (both sampling orders), the number the quality bar is about.

``--task constant`` trains on the simplest context task instead: every position of a map holds
the same random vector, so one known token gives every masked one away. A recipe that cannot
learn this within a few hundred steps cannot learn to use context at all (the official recipe
sits at the uniform 4.16 nats for ~400 steps there); it runs in about a minute with
``--preset tokenbridge_tiny``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from tokenbridge import checkpoints
from tokenbridge.data import cache_latents
from tokenbridge.evaluation import generation_metrics, shapes_images
from tokenbridge.generator import TokenBridge, build_generator, patchify
from tokenbridge.pipeline import Pipeline
from tokenbridge.sampling import ORDERS
from tokenbridge.shapes import HELDOUT_SEED, TRAIN_SEED, ShapesDataset
from tokenbridge.train import parse_run
from tokenbridge.training_loop import train
from tokenbridge.training_tasks import generator_task

KNOWN_COUNTS = (0, 4, 8, 16, 32, 48)
"""Numbers of known tokens at which held-out CE is measured (training sees 0 to 30% known)."""
CLASS_USE_KNOWN = 16
"""Known tokens when measuring `class_use`: enough of the shape to tell which class it is."""

TASKS = ("shapes", "constant")
RESERVED_OPTIONS = ("--steps", "--out", "--latents", "--export", "--resume")
"""Training options the harness sets itself; a recipe may not."""
CONSTANT_MAPS = 10_000
"""Training maps of the constant task (held-out maps: ``heldout``, another seed)."""


def constant_maps(count: int, seed: int, channels: int = 16, grid: int = 8, classes: int = 10):
    """The constant task: latents ``[count, channels, grid, grid]`` whose positions all hold one
    vector ~ N(0, 1) per map, and labels ``i % classes`` (they carry no information)."""
    values = torch.randn(count, channels, 1, 1, generator=torch.Generator().manual_seed(seed))
    return values.expand(count, channels, grid, grid).contiguous(), torch.arange(count) % classes


def constant_cache(path: Path, count: int = CONSTANT_MAPS) -> str:
    """`constant_maps` (training seed) written as a latent cache that ``--latents`` can read."""

    latents, labels = constant_maps(count, TRAIN_SEED)
    maps = torch.utils.data.TensorDataset(latents, labels)
    maps.classes = list(ShapesDataset.classes)
    maps.description = {"kind": "constant maps", "num_samples": count, "seed": TRAIN_SEED}
    return str(cache_latents(lambda x: x, maps, path, info={"task": "constant"}))


def train_recipe(recipe: list[str], steps: int, out_dir: Path, latents: str) -> tuple[TokenBridge, dict]:
    """Train ``tokenbridge.train generator <recipe>`` for ``steps`` steps in ``out_dir``; the EMA
    model and the run's info. The recipe may not set ``--steps``, ``--out`` or ``--latents``."""
    for reserved in RESERVED_OPTIONS:
        if reserved in recipe:
            raise ValueError(f"the recipe may not set {reserved}: the harness sets it")
    run = parse_run(["generator", "--out", str(out_dir), "--latents", latents, "--steps", str(steps), *recipe])
    return train(generator_task(run.recipe), run.settings, out_dir, progress=False)


@torch.no_grad()
def teacher_forced_logits(
    model: TokenBridge, indices_BNC: torch.Tensor, labels_B: torch.Tensor, mask_BN: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits [M, C, V], targets [M, C])`` in generation order at the masked positions of
    ``mask_BN`` given the unmasked ones; no label drop, no dropout."""
    model.eval()
    z_BND = model.forward_backbone(model.dequantize(indices_BNC), labels_B, mask_BN)
    order = torch.tensor(model.config.generation_order, device=indices_BNC.device)
    targets_MC = indices_BNC[mask_BN].long()[:, order]
    return model.forward_channel_head(z_BND[mask_BN], targets_MC), targets_MC


def masked_cross_entropy(
    model: TokenBridge, indices_BNC: torch.Tensor, labels_B: torch.Tensor, mask_BN: torch.Tensor
) -> torch.Tensor:
    """Teacher-forced CE ``[M, C]`` (nats; generation order) at the masked positions of ``mask_BN``
    given the unmasked ones (`teacher_forced_logits`)."""
    logits_MCV, targets_MC = teacher_forced_logits(model, indices_BNC, labels_B, mask_BN)
    return F.cross_entropy(logits_MCV.flatten(0, 1).float(), targets_MC.flatten(), reduction="none").view_as(targets_MC)


def random_mask(batch: int, seq_len: int, known: int, rng: torch.Generator) -> torch.Tensor:
    """``[B, N]`` bool, True = unknown: ``known`` positions per row are known, drawn uniformly."""
    permutation_BN = torch.rand(batch, seq_len, generator=rng).argsort(dim=1)
    return torch.ones(batch, seq_len, dtype=torch.bool).scatter_(1, permutation_BN[:, :known], False)


def cross_entropy_by_known(
    model: TokenBridge, indices_BNC: torch.Tensor, labels_B: torch.Tensor, known_counts=KNOWN_COUNTS, seed: int = 0
) -> dict:
    """``{known: {"ce": all channels, "ce_first": first generated channel}}`` on held-out tokens,
    the same masks for every model (drawn from ``seed``)."""
    rng = torch.Generator().manual_seed(seed)
    result = {}
    for known in known_counts:
        mask_BN = random_mask(len(indices_BNC), model.config.seq_len, known, rng)
        ce_MC = masked_cross_entropy(model, indices_BNC, labels_B, mask_BN)
        result[known] = {"ce": round(float(ce_MC.mean()), 4), "ce_first": round(float(ce_MC[:, 0].mean()), 4)}
    return result


def copy_test(model: TokenBridge, indices_BNC: torch.Tensor, labels_B: torch.Tensor, seed: int = 0) -> dict:
    """One position per image masked, all others known: the median probability of the true index
    of the first generated channel, and the mean CE of that channel."""
    n = model.config.seq_len
    mask_BN = random_mask(len(indices_BNC), n, n - 1, torch.Generator().manual_seed(seed))
    ce_first_M = masked_cross_entropy(model, indices_BNC, labels_B, mask_BN)[:, 0]
    return {
        "median_p_first": round(float(torch.exp(-ce_first_M).median()), 4),
        "ce_first": round(float(ce_first_M.mean()), 4),
    }


def class_use(
    model: TokenBridge, indices_BNC: torch.Tensor, labels_B: torch.Tensor, known: int = CLASS_USE_KNOWN, seed: int = 0
) -> float:
    """How much the class label lowers held-out CE (nats per channel, all channels) with ``known``
    tokens known: CE under the next class's label minus CE under the true one. Near 0, the model
    ignores the label, and guidance has nothing to amplify: samples cannot show their class."""
    mask_BN = random_mask(len(indices_BNC), model.config.seq_len, known, torch.Generator().manual_seed(seed))
    wrong_B = (labels_B + 1) % model.config.class_num
    wrong = masked_cross_entropy(model, indices_BNC, wrong_B, mask_BN).mean()
    return round(float(wrong - masked_cross_entropy(model, indices_BNC, labels_B, mask_BN).mean()), 4)


@torch.no_grad()
def value_precision(
    model: TokenBridge, indices_BNC: torch.Tensor, labels_B: torch.Tensor, known_fraction: float = 0.3, seed: int = 0
) -> dict:
    """How precisely the model knows a value: teacher-forced on the first generated channel with
    ``known_fraction`` of the tokens known, the medians over masked positions of ``|E_p[v] - v|``
    (v the true level's value, in the quantizer's N(0, 1) units: 64 Gaussian levels are ~0.04 apart
    near 0), of the predicted distribution's standard deviation, and of p(true index). A model that
    knows roughly, not exactly, samples noisy tokens even when its loss looks fine."""
    n = model.config.seq_len
    mask_BN = random_mask(len(indices_BNC), n, round(known_fraction * n), torch.Generator().manual_seed(seed))
    logits_MCV, targets_MC = teacher_forced_logits(model, indices_BNC, labels_B, mask_BN.to(indices_BNC.device))
    probs_MV = logits_MCV[:, 0].float().softmax(dim=-1)
    values_V = model.reconstruction_values.float()
    expected_M = probs_MV @ values_V
    spread_M = (probs_MV @ values_V.pow(2) - expected_M.pow(2)).clamp_min(0).sqrt()
    true_M = targets_MC[:, 0]
    return {
        "median_value_error": round(float((expected_M - values_V[true_M]).abs().median()), 4),
        "median_spread": round(float(spread_M.median()), 4),
        "median_p_true": round(float(probs_MV.gather(1, true_M[:, None]).median()), 4),
    }


def context_measures(model: TokenBridge, indices_BNC: torch.Tensor, labels_B: torch.Tensor) -> dict:
    """Held-out CE by known tokens, the copy test, the class use and the value precision on these tokens."""
    return {
        "ce_by_known": cross_entropy_by_known(model, indices_BNC, labels_B),
        "copy_test": copy_test(model, indices_BNC, labels_B),
        "class_use": class_use(model, indices_BNC, labels_B),
        "value_precision": value_precision(model, indices_BNC, labels_B),
    }


def heldout_tokens(pipe, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantized tokens ``[count, N, C]`` (long) and labels of the first ``count`` held-out images
    of the procedural dataset ``pipe``'s generator learnt (`Pipeline.dataset`), through its VAE and
    its generator's quantizer, on ``pipe``'s device."""
    images = shapes_images(count, size=pipe.image_size, kind=pipe.dataset)  # image i is of class i % 10
    tokens = pipe.quantize(patchify(pipe.encode(images), pipe.generator.config.patch_size)).long()
    return tokens.to(pipe.device), (torch.arange(count) % len(ShapesDataset.classes)).to(pipe.device)


def report(model: TokenBridge, vae, classifier, heldout: int = 500, samples: int = 200) -> dict:
    """Every measure of the module docstring for one model trained on shapes latents."""
    if model.config.class_num != len(ShapesDataset.classes):
        raise ValueError(
            f"the harness measures on held-out shapes ({len(ShapesDataset.classes)} classes); the model "
            f"has {model.config.class_num}: train it on shapes latents"
        )
    pipe = Pipeline(vae, model, classes=ShapesDataset.classes, device="cpu")
    out = context_measures(model, *heldout_tokens(pipe, heldout))
    if samples:
        out["class_accuracy"] = {
            order: generation_metrics(pipe, classifier, samples, order=order)["class_accuracy"] for order in ORDERS
        }
    return out


def run(
    recipe: list[str],
    steps: int,
    latents: str,
    vae_path: str,
    classifier_path: str,
    heldout: int = 500,
    samples: int = 200,
    out_dir: str | None = None,
    task: str = "shapes",
) -> dict:
    """Train ``recipe`` for ``steps`` steps on ``task`` (in ``out_dir``, or a temporary folder)
    and measure it: `report` for shapes latents, `context_measures` for the constant task."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    with tempfile.TemporaryDirectory() as tmp:
        if task == "constant":
            latents = constant_cache(Path(tmp) / "constant.safetensors")
        model, info = train_recipe(recipe, steps, Path(out_dir or tmp), latents)
    model = model.float().cpu()
    head = {"task": task, "recipe": recipe, "steps": steps, "wall_time_s": info["wall_time_s"]}
    if task == "constant":
        latents_NCHW, labels = constant_maps(heldout, HELDOUT_SEED)
        indices = model.quantizer.quantize(patchify(latents_NCHW, model.config.patch_size)).long()
        return {**head, **context_measures(model, indices, labels)}
    vae = checkpoints.load_model(vae_path, kind="vae")
    classifier = checkpoints.load_model(classifier_path, kind="classifier")
    return {**head, **report(model, vae, classifier, heldout, samples)}


def trained_generator(path: str) -> tuple[TokenBridge, str]:
    """A generator file, or a generator run's ``state.pt`` (its EMA weights: a run in progress
    can be measured without stopping it); and a label naming it (with the run's step)."""
    if checkpoints.file_format(path) != "torch":
        return checkpoints.load_model(path, kind="generator"), path
    state = checkpoints.read_torch_checkpoint(path)
    if state.get("kind") != "generator" or "ema" not in state:
        raise checkpoints.CheckpointError(f"{path}: neither a generator file nor a generator run's state.pt")
    model = build_generator(state["model_config"])
    checkpoints.load_state_strict(model, state["ema"], path)
    return model, f"{path} (EMA at step {int(state['step'])})"


def measure(
    trained: str | tuple[TokenBridge, str], vae_path: str, classifier_path: str, heldout: int = 500, samples: int = 200
) -> dict:
    """`report` for a generator trained on shapes latents: a path for `trained_generator` (a file,
    e.g. the shipped one, or a run's state), or what it returned (the CLI loads it once, to check it)."""
    model, label = trained if isinstance(trained, tuple) else trained_generator(trained)
    vae = checkpoints.load_model(vae_path, kind="vae")
    classifier = checkpoints.load_model(classifier_path, kind="classifier")
    return {"task": "shapes", "model": label, **report(model.float().cpu(), vae, classifier, heldout, samples)}


def format_report(result: dict) -> str:
    """A few lines for the terminal: CE by known tokens, the copy test, the class use and accuracy."""
    known = result["ce_by_known"]
    if "model" in result:
        title = f"shapes task, model {result['model']}"
    else:
        title = (
            f"{result['task']} task, recipe: {' '.join(result['recipe']) or '(defaults)'}; {result['steps']} "
            f"steps, {result['wall_time_s']:.0f} s"
        )
    lines = [
        title,
        "known tokens      " + " ".join(f"{k:>6}" for k in known),
        "held-out CE       " + " ".join(f"{v['ce']:>6.3f}" for v in known.values()),
        "  first channel   " + " ".join(f"{v['ce_first']:>6.3f}" for v in known.values()),
        f"copy test: median p(first channel) {result['copy_test']['median_p_first']:.3f}, "
        f"CE {result['copy_test']['ce_first']:.3f}",
        f"class use (CE with the wrong label - with the true one, {CLASS_USE_KNOWN} known): "
        f"{result['class_use']:.4f} nats",
    ]
    if "value_precision" in result:
        v = result["value_precision"]
        lines.append(
            f"value precision (first channel, 30% known): median |E[v] - v| {v['median_value_error']:.3f}, "
            f"spread {v['median_spread']:.3f}, p(true) {v['median_p_true']:.3f}"
        )
    if "class_accuracy" in result:
        acc = result["class_accuracy"]
        lines.append(f"class accuracy: random {acc['random']:.1%}, confidence {acc['confidence']:.1%}")
    return "\n".join(lines)
