"""Training: deterministic batches, the LR schedule, bit-identical resume, export, and DDP (gloo)."""

import copy
import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tokenbridge import train as train_module
from tokenbridge import training_loop, training_tasks
from tokenbridge.checkpoints import CheckpointError, load_model, read_torch_checkpoint
from tokenbridge.metrics import psnr
from tokenbridge.quantizer import GaussianQuantizer
from tokenbridge.train import parse_args, parse_run
from tokenbridge.training_loop import LoopSettings, StepBatches, lr_at, train
from tokenbridge.training_tasks import classifier_task, generator_task, vae_task

ROOT = Path(__file__).resolve().parents[1]


def cli(task, out, *extra):
    return parse_run(
        [
            task,
            "--out",
            str(out),
            "--image-size",
            "32",
            "--steps",
            "4",
            "--batch-size",
            "2",
            "--warmup-steps",
            "2",
            "--checkpoint-every",
            "0",
            "--no-progress",
            *extra,
        ]
    )


def tiny_vae_argv(out, *extra) -> list[str]:
    """``tokenbridge.train`` arguments of a tiny-preset VAE run on 32-pixel images, 2 per batch, into ``out``."""
    return [
        "vae",
        "--preset",
        "tiny",
        "--image-size",
        "32",
        "--batch-size",
        "2",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def vae_args(out, *extra):
    return cli("vae", out, "--preset", "tiny", *extra)


def all_tensors(obj, prefix=""):
    """Every tensor in a nested training state, by path."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return {}
    out = {}
    for k, v in items:
        out.update(all_tensors(v, f"{prefix}/{k}"))
    return out


# ------------------------------------------------------------------ deterministic batches
def toy(n):
    return [(torch.tensor(float(i)), torch.tensor(i % 3)) for i in range(n)]


def test_step_batches_are_a_function_of_the_step():
    data = toy(10)
    a, b = StepBatches(data, 4, seed=3), StepBatches(data, 4, seed=3)
    for step in (0, 5, 1, 0):  # any order, fresh or reused instances
        assert all(torch.equal(x, y) for x, y in zip(a(step), b(step)))
    x, y = a(1)
    assert x.shape == (4,) and y.dtype == torch.int64 and torch.equal(y, x.long() % 3)
    assert not torch.equal(a(0)[0], StepBatches(data, 4, seed=4)(0)[0])


def test_step_batches_ranks_partition_the_global_batch():
    data = toy(12)
    whole = StepBatches(data, 6, seed=0)
    for step in range(4):
        parts = [StepBatches(data, 6, seed=0, rank=r, world=3)(step)[0] for r in range(3)]
        assert all(len(p) == 2 for p in parts)
        interleaved = torch.stack(parts, dim=1).reshape(-1)  # rank r takes items r, r+W, …
        assert torch.equal(interleaved, whole(step)[0])


def test_step_batches_epochs_are_permutations():
    data = toy(6)
    batches = StepBatches(data, 3, seed=1)
    epoch0 = torch.cat([batches(0)[0], batches(1)[0]])
    epoch1 = torch.cat([batches(2)[0], batches(3)[0]])
    assert sorted(epoch0.tolist()) == sorted(epoch1.tolist()) == list(map(float, range(6)))
    assert not torch.equal(epoch0, epoch1)
    straddle = StepBatches(toy(5), 2, seed=1)  # positions 4, 5 = last of epoch 0, first of epoch 1
    first = torch.cat([straddle(s)[0] for s in range(3)])[:5]
    assert sorted(first.tolist()) == list(map(float, range(5)))


def test_step_batches_errors():
    with pytest.raises(ValueError, match="empty"):
        StepBatches([], 2, seed=0)
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        StepBatches(toy(4), 4, seed=0, rank=0, world=3)


# ------------------------------------------------------------------ learning rate
def test_lr_schedule_warmup_and_cosine():
    s = LoopSettings(steps=110, lr=1.0, warmup_steps=10)
    assert lr_at(0, s) == pytest.approx(0.1) and lr_at(4, s) == pytest.approx(0.5)
    assert lr_at(9, s) == pytest.approx(1.0) and lr_at(10, s) == pytest.approx(1.0)
    assert lr_at(60, s) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the cosine
    assert lr_at(110, s) == pytest.approx(0.1) and lr_at(500, s) == pytest.approx(0.1)  # floor: 10 %
    after = [lr_at(t, s) for t in range(10, 111)]
    assert all(b <= a for a, b in zip(after, after[1:]))
    assert lr_at(0, LoopSettings(steps=5, lr=2.0, warmup_steps=0)) == pytest.approx(2.0)


def test_parse_args_validation():
    args = parse_args(["vae", "--out", "x", "--checkpoint-every", "0", "--lr", "1e-3"])
    assert args.checkpoint_every == 0.0 and args.lr == 1e-3 and args.preset == "small" and not args.resume
    for bad in (["--steps", "0"], ["--batch-size", "0"], ["--lr", "0"]):
        with pytest.raises(SystemExit):
            parse_args(["vae", "--out", "x", *bad])
    with pytest.raises(SystemExit):
        parse_args(["generator-that-does-not-exist", "--out", "x"])
    for bad in ("-0.1", "1.0"):
        with pytest.raises(SystemExit):
            parse_args(["generator", "--out", "x", "--dropout", bad])


@pytest.fixture
def tiny_latents(tmp_path):
    """A latent cache of 8 random ``[16, 8, 8]`` latents in 2 classes (the embedded layout)."""
    from tokenbridge.data import cache_latents

    images = torch.utils.data.TensorDataset(torch.zeros(8, 3, 64, 64), torch.arange(8) % 2)
    images.classes = ["a", "b"]
    rng = torch.Generator().manual_seed(0)
    return cache_latents(
        lambda x: torch.randn(len(x), 16, 8, 8, generator=rng), images, tmp_path / "latents.safetensors"
    )


def generator_args(out, latents, *extra):
    return parse_run(
        [
            "generator",
            "--out",
            str(out),
            "--preset",
            "tokenbridge_tiny",
            "--latents",
            str(latents),
            "--batch-size",
            "4",
            "--no-progress",
            *extra,
        ]
    )


def test_generator_task_dropout_override(tmp_path, tiny_latents):
    """``--dropout`` reaches both dropouts of the built model; without it the preset's 0.1 stays."""
    for flag, expected in (([], 0.1), (["--dropout", "0"], 0.0)):
        config = generator_task(generator_args(tmp_path, tiny_latents, *flag).recipe).build_model().config
        assert (config.attn_dropout, config.proj_dropout, config.class_num) == (expected, expected, 2)


def test_generator_recipe_levels_and_readout_reach_the_model(tmp_path, tiny_latents):
    """``--quant-levels`` and ``--readout`` override the preset: the built model's levels and readout."""
    run = generator_args(tmp_path, tiny_latents, "--quant-levels", "16", "--readout", "gaussian")
    model = generator_task(run.recipe).build_model()
    assert (model.config.quant_levels, model.config.readout) == (16, "gaussian")
    assert model.channel_heads[0].out_features == 16 and len(model.value_readouts) == 16


def test_procedural_datasets_are_named_by_data(tmp_path):
    """``--data icons`` trains on icons (any DATASETS name; anything else must be a folder)."""
    icons = training_tasks.training_images("icons", 64)
    assert (
        icons.description["kind"] == "icons" and icons.classes == training_tasks.training_images("shapes", 64).classes
    )
    assert parse_run(["vae", "--out", str(tmp_path / "v"), "--data", "icons"]).recipe.data == "icons"


# ------------------------------------------------------------------ resume
class Interrupted(Exception):
    pass


def interrupted_after(task, steps):
    """The task, with its loss raising on call ``steps`` (a crash mid-run)."""
    calls = []

    def loss(net, batch, generator):
        if len(calls) == steps:
            raise Interrupted
        calls.append(1)
        return task.loss(net, batch, generator)

    return dataclasses.replace(task, loss=loss)


def test_resume_continues_bit_identically(tmp_path):
    args = vae_args(tmp_path / "a")
    task, settings = vae_task(args.recipe), args.settings

    with pytest.raises(Interrupted):
        train(interrupted_after(task, 2), settings, tmp_path / "a", progress=False)
    halfway = read_torch_checkpoint(tmp_path / "a" / "state.pt")
    assert halfway["step"] == 2 and halfway["kind"] == "vae"

    with pytest.raises(FileExistsError, match="pass --resume"):
        train(task, settings, tmp_path / "a", progress=False)

    ema_resumed, info = train(task, settings, tmp_path / "a", resume=True, progress=False)
    ema_straight, _ = train(task, settings, tmp_path / "b", progress=False)
    assert info["steps"] == 4 and info["world_size"] == 1 and info["device"] == "cpu"

    resumed = read_torch_checkpoint(tmp_path / "a" / "state.pt")
    straight = read_torch_checkpoint(tmp_path / "b" / "state.pt")
    assert resumed["step"] == straight["step"] == 4
    tensors_r, tensors_s = all_tensors(resumed), all_tensors(straight)
    assert set(tensors_r) == set(tensors_s) and any(k.startswith("/optimizer/state") for k in tensors_r)
    different = [k for k in tensors_r if not torch.equal(tensors_r[k], tensors_s[k])]
    assert not different, different[:5]
    assert resumed["optimizer"]["param_groups"] == straight["optimizer"]["param_groups"]
    for e1, e2 in zip(ema_resumed.state_dict().values(), ema_straight.state_dict().values()):
        assert torch.equal(e1, e2)
    # … and the last two steps really moved the weights (the equality above is not vacuous).
    moved = [k for k, v in halfway["model"].items() if not torch.equal(v, resumed["model"][k])]
    assert len(moved) == len(halfway["model"])


def test_resume_records_a_changed_model_config(tmp_path, tiny_latents):
    """A run resumed with ``--dropout 0`` keeps how its first steps ran (dropout 0.1, 1 step)."""
    first = generator_args(tmp_path / "run", tiny_latents, "--steps", "1")
    train(generator_task(first.recipe), first.settings, tmp_path / "run", progress=False)
    again = generator_args(tmp_path / "run", tiny_latents, "--steps", "1", "--resume")
    _, info = train(generator_task(again.recipe), again.settings, tmp_path / "run", resume=True, progress=False)
    assert "earlier_settings" not in info  # nothing changed, nothing recorded
    more = generator_args(tmp_path / "run", tiny_latents, "--steps", "2", "--dropout", "0", "--resume")
    _, info = train(generator_task(more.recipe), more.settings, tmp_path / "run", resume=True, progress=False)
    (earlier,) = info["earlier_settings"]
    assert earlier["until_step"] == 1 and earlier["settings"]["steps"] == 1
    assert earlier["model_config"] == {"attn_dropout": 0.1, "proj_dropout": 0.1}
    state = read_torch_checkpoint(tmp_path / "run" / "state.pt")
    assert state["model_config"]["attn_dropout"] == 0.0 and state["history"] == [earlier]


def test_resume_refuses_another_task(tmp_path):
    args = vae_args(tmp_path, "--steps", "1")
    train(vae_task(args.recipe), args.settings, tmp_path, progress=False)
    cargs = cli("classifier", tmp_path / "unused", "--steps", "1")
    with pytest.raises(CheckpointError, match="is a 'vae' run, not 'classifier'"):
        train(classifier_task(cargs.recipe), cargs.settings, tmp_path, resume=True, progress=False)


def test_main_requires_resume_for_existing_state(tmp_path, capsys):
    argv = tiny_vae_argv(tmp_path)
    train_module.main([*argv, "--steps", "1"])
    assert read_torch_checkpoint(tmp_path / "state.pt")["step"] == 1
    with pytest.raises(SystemExit) as refused:
        train_module.main([*argv, "--steps", "2"])
    assert refused.value.code == 2 and "state.pt exists: pass --resume" in capsys.readouterr().err
    train_module.main([*argv, "--steps", "2", "--resume"])
    state = read_torch_checkpoint(tmp_path / "state.pt")
    assert state["step"] == 2
    # extending a run keeps the settings its first steps ran under
    assert state["history"] == [{"until_step": 1, "settings": {**state["settings"], "steps": 1}}]
    train_module.main([*argv, "--steps", "2", "--resume"])  # same settings: nothing new to record
    assert len(read_torch_checkpoint(tmp_path / "state.pt")["history"]) == 1


# ------------------------------------------------------------------ metrics.csv and its curve
def test_metrics_csv_is_written_continued_on_resume_and_plotted(tmp_path):
    import csv

    argv = tiny_vae_argv(tmp_path, "--log-every", "1", "--warmup-steps", "2")
    train_module.main([*argv, "--steps", "2"])
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "loss", "rec", "kl", "lr", "seconds"]
    assert [int(r["step"]) for r in rows] == [0, 1] and float(rows[1]["lr"]) == pytest.approx(2e-4)
    assert all(math.isfinite(float(r["loss"])) and float(r["seconds"]) > 0 for r in rows)
    with open(tmp_path / "metrics.csv", "a") as f:  # logged after the last checkpoint, then a crash
        f.write("2,9,9,9,9,9\n")
    train_module.main([*argv, "--steps", "4", "--resume"])
    columns = training_loop.read_metrics(tmp_path)
    assert columns["step"] == [0, 1, 2, 3] and columns["loss"][:2] == [float(r["loss"]) for r in rows]
    assert columns["loss"][2] != 9 and columns["seconds"][2] >= columns["seconds"][1]

    train_module.main(["plot", str(tmp_path)])
    from PIL import Image

    assert Image.open(tmp_path / "loss.png").size[0] > 300


# ------------------------------------------------------------------ export
@pytest.fixture
def few_eval_images(monkeypatch):
    """Export measures thousands of images; a handful keeps the test fast (same code path)."""
    real_batches, real_heldout = training_tasks._image_batches, training_tasks.heldout_shapes
    monkeypatch.setattr(training_tasks, "heldout_shapes", lambda count, size: real_heldout(min(count, 8), size))
    monkeypatch.setattr(
        training_tasks,
        "_image_batches",
        lambda dataset, count, batch_size=64: real_batches(dataset, min(count, len(dataset), 8), 4),
    )


def test_vae_export_writes_weights_and_sidecar(tmp_path, few_eval_images):
    args = vae_args(tmp_path / "run", "--steps", "2")
    task, settings = vae_task(args.recipe), args.settings
    ema, info = train(task, settings, tmp_path / "run", progress=False)
    weights = training_loop.export(task, ema, info, settings, tmp_path / "vae_tiny")
    assert weights == tmp_path / "vae_tiny.safetensors" and weights.is_file()
    sidecar = json.loads((tmp_path / "vae_tiny.json").read_text())
    assert sidecar["kind"] == "vae" and sidecar["steps"] == 2 and sidecar["batch_size"] == 2
    assert sidecar["weights_dtype"] == "float16" and sidecar["data"]["kind"] == "shapes"
    m = sidecar["metrics"]
    model = load_model(weights, kind="vae")
    images = torch.stack([item[0] for item in training_tasks.heldout_shapes(8, model.config.resolution)])
    quantizer = GaussianQuantizer.official()
    with torch.no_grad():  # the 8 held-out images `few_eval_images` leaves, through the exported (fp16) weights:
        # within 1e-3 dB (the metrics are rounded to 3 decimals), closer than the two PSNRs are to each other
        z = model.encode_latents(images)
        continuous = psnr(model.decode_latents(z), images).mean()
        quantized = psnr(model.decode_latents(quantizer.dequantize(quantizer.quantize(z))), images).mean()
    assert m["psnr_continuous_db"] == pytest.approx(float(continuous), abs=1e-3)
    assert m["psnr_quantized_b64_db"] == pytest.approx(float(quantized), abs=1e-3)
    assert model.config.scale_factor == m["latent_scale_factor"] != 1.0  # measured, not the placeholder
    assert m["parameters"] == sum(p.numel() for p in model.parameters())
    for name, t in model.state_dict().items():  # the EMA weights, rounded to fp16
        assert torch.allclose(t, ema.state_dict()[name], rtol=1e-3, atol=1e-3), name


def test_classifier_task_smoke_and_export(tmp_path, few_eval_images):
    args = cli("classifier", tmp_path / "run", "--steps", "2")
    task = classifier_task(args.recipe)
    assert task.kind == "classifier" and len(task.dataset) > 0
    ema, info = train(task, args.settings, tmp_path / "run", progress=False)
    assert read_torch_checkpoint(tmp_path / "run" / "state.pt")["kind"] == "classifier"
    with torch.no_grad():
        logits = ema(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    # rig the head to answer one class whatever the image: the held-out accuracy is then known exactly
    labels = [int(label) for _, label in training_tasks.heldout_shapes(8, 32)]  # the export's 8 (few_eval_images)
    answer = labels[0]
    with torch.no_grad():
        ema.head.weight.zero_()
        ema.head.bias.zero_()
        ema.head.bias[answer] = 1.0
    weights = training_loop.export(task, ema, info, args.settings, tmp_path / "clf")
    sidecar = json.loads((tmp_path / "clf.json").read_text())
    assert sidecar["metrics"]["heldout_images"] == 8
    assert sidecar["metrics"]["heldout_accuracy"] == round(labels.count(answer) / 8, 4) > 0
    assert load_model(weights, kind="classifier").config.image_size == 32


# ------------------------------------------------------------------ DDP
@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tmp_path):
    """torchrun, 2 ranks, gloo: the run finishes, every rank ends with the same weights (train()
    checks it with an all-reduce and reports it), and rank 0 wrote the state."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "tokenbridge.train",
        "vae",
        "--preset",
        "tiny",
        "--image-size",
        "32",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--out",
        str(out),
        "--no-progress",
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = next(row for row in result.stdout.splitlines() if row.startswith("trained vae: "))
    info = json.loads(line.removeprefix("trained vae: "))
    assert info["world_size"] == 2 and info["replicas_identical"] is True and info["steps"] == 2
    assert result.stdout.count("trained vae: ") == 1  # only rank 0 reports
    state = read_torch_checkpoint(out / "state.pt")
    assert state["step"] == 2 and state["settings"]["batch_size"] == 4
    initial = vae_task(vae_args(tmp_path / "unused").recipe).build_model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        start = initial().state_dict()
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert any(not torch.equal(v, start[k]) for k, v in state["model"].items())


def test_check_replicas_agree_detects_divergence(monkeypatch):
    """The end-of-training DDP check, with a simulated second rank: equal weights pass, one changed
    value anywhere fails."""
    from tokenbridge import vae

    torch.manual_seed(0)
    mine = vae.tiny()
    other = copy.deepcopy(mine)

    def second_rank_holds(model):
        theirs = training_loop.replica_checksums(model)

        def all_reduce(tensor, op):
            combine = torch.minimum if op == training_loop.dist.ReduceOp.MIN else torch.maximum
            tensor.copy_(combine(tensor, theirs))

        monkeypatch.setattr(training_loop.dist, "all_reduce", all_reduce)

    second_rank_holds(other)
    training_loop.check_replicas_agree(mine)
    with torch.no_grad():
        other.decoder.conv_out.bias[0] += 1e-6
    second_rank_holds(other)
    with pytest.raises(RuntimeError, match="different weights"):
        training_loop.check_replicas_agree(mine)


# ------------------------------------------------------------------ tokenizer layout and snapshots
def test_vae_stride_and_latent_channels_shape_the_latent_grid(tmp_path):
    """``--stride 4 --latent-channels 4`` on 32×32 images: latents [4, 8, 8]; a stride that is not a
    power of two is a one-line error."""
    from tokenbridge.vae import levels_for_stride

    model = vae_task(vae_args(tmp_path, "--stride", "4", "--latent-channels", "4").recipe).build_model()
    assert model.encode_latents(torch.zeros(1, 3, 32, 32)).shape == (1, 4, 8, 8)
    assert levels_for_stride((1, 2, 2, 4), 4) == (1, 2, 4) and levels_for_stride((1, 2, 2, 4), 8) == (1, 2, 2, 4)
    with pytest.raises(SystemExit):
        vae_args(tmp_path / "x", "--stride", "3")


def test_generator_layout_follows_the_latents(tmp_path):
    """A cache of [4, 16, 16] latents of 64×64 images trains a 256-token, 4-channel generator
    from a preset made for 8×8×16."""
    from tokenbridge.data import cache_latents

    images = torch.utils.data.TensorDataset(torch.zeros(4, 3, 64, 64), torch.arange(4) % 2)
    images.classes = ["a", "b"]
    latents = cache_latents(lambda x: torch.randn(len(x), 4, 16, 16), images, tmp_path / "l.safetensors")
    config = generator_task(generator_args(tmp_path / "run", latents).recipe).build_model().config
    assert (config.seq_len, config.token_dim, config.vae_stride, config.img_size) == (256, 4, 4, 64)


def test_snapshots_hold_the_ema_and_the_progress(tmp_path, tiny_latents):
    """``--snapshot-every 2`` over 4 steps writes the EMA after steps 2 and 4, each loadable, with
    step, samples seen and seconds; the last equals the returned EMA."""
    from tokenbridge.checkpoints import read_header

    args = generator_args(tmp_path / "run", tiny_latents, "--steps", "4", "--snapshot-every", "2")
    ema, _ = train(generator_task(args.recipe), args.settings, tmp_path / "run", progress=False)
    paths = sorted((tmp_path / "run" / "snapshots").iterdir())
    assert [p.name for p in paths] == ["step_000002.safetensors", "step_000004.safetensors"]
    progress = read_header(paths[0])["extra"]["snapshot"]
    assert progress["step"] == 2 and progress["samples_seen"] == 8 and progress["train_seconds"] >= 0
    for name, value in load_model(paths[1], kind="generator").state_dict().items():
        assert torch.equal(value, ema.state_dict()[name]), name
    first = load_model(paths[0], kind="generator").state_dict()
    assert any(not torch.equal(first[k], v) for k, v in ema.state_dict().items())
