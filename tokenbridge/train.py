"""Training: one loop for the VAE, the shapes classifier and the generator, plus the CLI.

    python -m tokenbridge.train vae --out runs/vae --steps 3000 --export assets/vae_small
    python -m tokenbridge.train classifier --out runs/classifier --steps 1500 --export assets/classifier
    torchrun --nproc_per_node=2 -m tokenbridge.train vae --out runs/vae ...   # DDP, gloo on CPU
    python -m tokenbridge.train plot runs/vae      # runs/vae/metrics.csv -> runs/vae/loss.png

What makes runs repeatable and resumable: the batch of step ``s`` and every random draw inside it
(posterior noise, masks, label drop) depend only on ``(seed, s, rank)``, and the state written
atomically every ``--checkpoint-every`` seconds holds model, EMA, optimizer and step. So a resumed
run continues bit-identically on the same device; one resumed with other settings (more
``--steps``, another ``--dropout``) records the earlier ones and the step they ran until. ``--export``
writes the EMA weights in our safetensors format with a JSON sidecar (command, data, steps, wall
time, device, metrics). Every run logs to ``metrics.csv`` in its folder as it goes (`MetricsLog`).
"""

from __future__ import annotations

import argparse
import copy
import csv
import datetime
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from tokenbridge import checkpoints, cli
from tokenbridge.data import HELDOUT_SEED, LATENT_CACHE_FORMAT, TRAIN_SEED, ImageFolderDataset, ShapesDataset
from tokenbridge.generator import ABSOLUTE_POSITIONS, CLASS_INPUTS, HEAD_INITS, LOCAL_MIXINGS, POSITION_BIASES
from tokenbridge.pipeline import pick_device

RECIPE_FIELDS = ("position_bias", "mask_ratio_min", "value_loss", "head_init", "local_mixing", "class_input",
                 "absolute_position")
"""Generator config fields a training option of the same name overrides (see `GeneratorConfig`)."""

# ------------------------------------------------------------------------------------------------
# Settings shared by every task
# ------------------------------------------------------------------------------------------------


@dataclass
class LoopSettings:
    """Optimization and bookkeeping; ``batch_size`` is global (split across DDP ranks).

    ``precision="bf16"`` runs the forward pass under bf16 autocast (weights, optimizer and EMA stay
    fp32): the usual choice on a GPU; on a CPU it pays only for wide models (the embedded preset's
    step is 0.86x as fast, `benchmarks/training.py`)."""

    steps: int = 1000
    batch_size: int = 32
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: float = 300.0
    log_every: int = 10
    snapshot_every: int = 0
    """Every this many steps (0: never), the EMA weights go to ``snapshots/step_NNNNNN.safetensors``
    in the run folder, for a learning curve (`tokenbridge.learning_curve`)."""
    device: str = "auto"
    precision: str = "fp32"


@dataclass
class Task:
    """What differs between trainings: the model, the data, the loss, and the export metrics.

    ``loss(model, batch, rng)`` calls ``model(...)`` (so DDP syncs gradients) and returns
    ``(loss, {name: float})``. ``export_metrics(model, device)`` measures the exported model.
    """

    kind: str
    build_model: Callable[[], nn.Module]
    dataset: object
    loss: Callable
    model_config: Callable[[nn.Module], dict]
    export_metrics: Callable[[nn.Module, torch.device], dict] = lambda model, device: {}
    prepare_export: Callable[[nn.Module, torch.device], nn.Module] = lambda model, device: model
    data_description: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    """Stored in the exported model file next to its config (e.g. class names)."""
    lr_scales: dict = field(default_factory=dict)
    """Learning-rate multipliers by parameter-name prefix (see `parameter_groups`)."""


# ------------------------------------------------------------------------------------------------
# Deterministic data order and randomness
# ------------------------------------------------------------------------------------------------


class StepBatches:
    """Batch of step ``s``: global positions ``s·B … s·B + B − 1`` through a per-epoch permutation.

    The permutation of epoch ``e`` is ``randperm(N)`` seeded by ``(seed, e)``; rank ``r`` of ``W``
    takes every ``W``-th item of the global batch (a distributed sampler without state).
    """

    def __init__(self, dataset, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        if len(dataset) == 0:
            raise ValueError("the training dataset is empty")
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} is not divisible by the {world} processes")
        self.dataset, self.batch_size, self.seed, self.rank, self.world = dataset, batch_size, seed, rank, world
        self._perms: dict[int, torch.Tensor] = {}

    def _index(self, position: int) -> int:
        n = len(self.dataset)
        epoch, offset = divmod(position, n)
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))}
        return int(self._perms[epoch][offset])

    def __call__(self, step: int) -> list[torch.Tensor]:
        start = step * self.batch_size
        items = [self.dataset[self._index(start + j)] for j in range(self.rank, self.batch_size, self.world)]
        return [torch.stack([torch.as_tensor(item[k]) for item in items]) for k in range(len(items[0]))]


def step_rng(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """The one `torch.Generator` for every random draw of a step (distinct per rank)."""
    return torch.Generator(device).manual_seed(((seed * 1_000_003 + step) * 1_009 + rank) % (2**63))


def lr_at(step: int, settings: LoopSettings) -> float:
    """Linear warmup to ``lr``, then cosine decay to 10% of it at the last step."""
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    return settings.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def parameter_groups(model: nn.Module, weight_decay: float, lr_scales: dict[str, float]) -> list[dict]:
    """AdamW groups: weight decay on matrices and tables only (not on biases and norms), and the
    learning rate times ``lr_scales[prefix]`` for parameters whose name starts with ``prefix``."""
    groups: dict[tuple[float, bool], list] = {}
    for name, p in model.named_parameters():
        scale = next((s for prefix, s in lr_scales.items() if name.startswith(prefix)), 1.0)
        groups.setdefault((scale, p.dim() < 2), []).append(p)
    return [{"params": groups[key], "weight_decay": 0.0 if key[1] else weight_decay, "lr_scale": key[0]}
            for key in sorted(groups)]  # without lr_scales: [matrices, the rest], as before


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


# ------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------


def _distributed() -> tuple[int, int]:
    """``(rank, world)``; initializes the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def replica_checksums(model: nn.Module) -> torch.Tensor:
    """Float64 sum and sum of squares of every floating tensor of the state dict, ``[2·T]``."""
    return torch.cat([torch.stack([t.detach().double().sum(), t.detach().double().pow(2).sum()])
                      for t in model.state_dict().values() if t.is_floating_point()])  # fmt: skip


def check_replicas_agree(model: nn.Module) -> None:
    """Under DDP, raise unless every rank holds the same weights: `replica_checksums` compared by an
    all-reduce MIN and MAX (two small collectives, no weight transfer)."""
    low = replica_checksums(model)
    high = low.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if not torch.equal(low, high):
        raise RuntimeError(f"DDP ranks ended with different weights ({int((low != high).sum())} checksums differ)")


def resume_state(out_dir: str | os.PathLike, kind: str, steps: int, resume: bool) -> dict | None:
    """The saved state of ``out_dir`` to continue (None for a new run), refusing what would silently
    go wrong: overwriting a run, "resuming" from nothing (a fresh start), another task's run, or a
    run already past ``steps``."""
    state_path = Path(out_dir) / "state.pt"
    if not resume:
        if state_path.exists():
            raise FileExistsError(f"{state_path} exists: pass --resume to continue it, or choose another --out")
        return None
    if not state_path.exists():
        raise FileNotFoundError(f"nothing to resume: no saved state {state_path} (drop --resume to start a new run)")
    state = checkpoints.read_torch_checkpoint(state_path)
    if state.get("kind") != kind:
        raise checkpoints.CheckpointError(f"{state_path} is a {state.get('kind')!r} run, not {kind!r}")
    if int(state["step"]) > steps:
        raise ValueError(f"{state_path} has run {int(state['step'])} steps, more than --steps {steps}: "
                         f"pass --steps {int(state['step'])} or more")  # fmt: skip
    return state


class MetricsLog:
    """``metrics.csv`` of a run: a row every ``log_every`` steps (step, loss, the task's logs, lr,
    seconds of training so far), each appended as it is logged. A resumed run keeps the rows before
    its saved step (later ones were logged past the last checkpoint and are about to run again);
    a new run starts the file afresh."""

    def __init__(self, path: Path, start: int):
        rows = []
        if start > 0 and path.exists():
            with open(path, newline="") as f:
                rows = [row for row in csv.DictReader(f) if int(row["step"]) < start]
        self.path, self.fields = path, None
        checkpoints.atomic_write(path, lambda tmp: self._append(tmp, rows))

    def write(self, row: dict) -> None:
        self._append(self.path, [row])

    def _append(self, path: str | os.PathLike, rows: list[dict]) -> None:
        """Append ``rows`` to ``path``; the header (the first row's names) goes first into an empty file."""
        with open(path, "a", newline="") as f:
            self.fields = self.fields or (list(rows[0]) if rows else None)
            if rows:
                writer = csv.DictWriter(f, self.fields, extrasaction="ignore")
                if f.tell() == 0:
                    writer.writeheader()
                writer.writerows(rows)


def read_metrics(path: str | os.PathLike) -> dict[str, list[float]]:
    """The columns of a run's ``metrics.csv`` (or of the ``metrics.csv`` in run folder ``path``)."""
    path = Path(path)
    path = path / "metrics.csv" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no training log {str(path)!r}")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} holds no rows yet")
    return {name: [float(row[name]) for row in rows] for name in rows[0]}


def restore(state: dict, source: str, model: nn.Module, ema: nn.Module, optimizer, settings: dict,
            model_config: dict) -> tuple[int, float, list]:  # fmt: skip
    """Load a saved state into ``model``, ``ema`` and ``optimizer``; ``(step, wall time, history)``,
    the history extended by the earlier settings and model config when this run changed them
    (e.g. more ``--steps`` or ``--dropout 0``: the sidecar keeps how the first steps ran)."""
    checkpoints.load_state_strict(model, state["model"], source)
    checkpoints.load_state_strict(ema, state["ema"], source)
    optimizer.load_state_dict(state["optimizer"])
    start, wall, history = int(state["step"]), float(state["wall_time_s"]), list(state.get("history", []))
    changed = {"until_step": start}
    if state.get("settings") != settings:
        changed["settings"] = state.get("settings")
    earlier_config = state.get("model_config", model_config)
    if earlier_config != model_config:
        changed["model_config"] = {k: v for k, v in earlier_config.items() if model_config.get(k) != v}
    if len(changed) > 1:
        history.append(changed)
    return start, wall, history


def optimize(loss: torch.Tensor, model: nn.Module, ema: nn.Module, optimizer, settings: LoopSettings,
             step: int) -> None:  # fmt: skip
    """One optimizer step on ``loss`` (gradients clipped to ``grad_clip``), then the EMA update
    (decay warmed up as ``(1 + step) / (10 + step)`` until it reaches ``ema_decay``)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if settings.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
    optimizer.step()
    update_ema(ema, model, min(settings.ema_decay, (1 + step) / (10 + step)))


def training_command() -> str:
    """The command line of this run as it would start afresh (``--resume`` dropped)."""
    return "python -m tokenbridge.train " + " ".join(a for a in sys.argv[1:] if a != "--resume")


def save_snapshot(task: Task, ema: nn.Module, out_dir: Path, step: int, batch_size: int, seconds: float) -> Path:
    """The EMA weights after ``step`` steps as a model file (fp32) whose ``extra`` also records the
    step, the training samples seen, the training seconds so far and the training command."""
    progress = {"step": step, "samples_seen": step * batch_size, "train_seconds": round(seconds, 1),
                "command": training_command()}
    return checkpoints.save_model(ema, out_dir / "snapshots" / f"step_{step:06d}.safetensors", task.kind,
                                  task.model_config(ema), extra={**task.extra, "snapshot": progress})


def train(task: Task, settings: LoopSettings, out_dir: str | os.PathLike, resume: bool = False,
          progress: bool = True) -> tuple[nn.Module, dict]:  # fmt: skip
    """Run (or continue) training; returns ``(ema_model, state_info)``.

    The training state lives in ``out_dir/state.pt``, the log in ``out_dir/metrics.csv``. With
    ``resume`` the saved state is continued; a missing one, or an existing one without it, is an
    error (see `resume_state`).
    """
    rank, world = _distributed()
    device = _training_device(settings.device, world)
    out_dir = Path(out_dir)
    state_path = out_dir / "state.pt"
    state = resume_state(out_dir, task.kind, settings.steps, resume)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = task.build_model().to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(parameter_groups(model, settings.weight_decay, task.lr_scales), lr=settings.lr,
                                  betas=(0.9, 0.95))  # fmt: skip
    start, wall, history = 0, 0.0, []
    model_config = json.loads(json.dumps(task.model_config(model)))  # plain lists, as a state file holds them
    if state is not None:
        start, wall, history = restore(state, str(state_path), model, ema, optimizer, vars(settings), model_config)

    def save(step: int) -> None:
        if rank == 0:
            checkpoints.save_training_state({"kind": task.kind, "step": step, "wall_time_s": wall + time.time() - t0,
                                             "model": model.state_dict(), "ema": ema.state_dict(),
                                             "optimizer": optimizer.state_dict(), "settings": vars(settings),
                                             "model_config": model_config, "history": history}, state_path)  # fmt: skip

    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    batches = StepBatches(task.dataset, settings.batch_size, settings.seed, rank, world)
    t0 = last_save = time.time()
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        log = MetricsLog(out_dir / "metrics.csv", start)
    bar = tqdm(range(start, settings.steps), initial=start, total=settings.steps, desc=f"train {task.kind}",
               disable=not progress or rank != 0, dynamic_ncols=True)  # fmt: skip
    model.train()
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, settings) * group["lr_scale"]
        batch = [t.to(device) for t in batches(step)]
        loss, logs = step_loss(task, net, batch, step_rng(settings.seed, step, rank, device), settings.precision)
        optimize(loss, model, ema, optimizer, settings, step)
        if step % settings.log_every == 0:
            report_step(bar, log if rank == 0 else None, step, loss.item(), logs, lr_at(step, settings),
                        wall + time.time() - t0)  # fmt: skip
        if settings.snapshot_every and rank == 0 and (step + 1) % settings.snapshot_every == 0:
            save_snapshot(task, ema, out_dir, step + 1, settings.batch_size, wall + time.time() - t0)
        if time.time() - last_save > settings.checkpoint_every:
            save(step + 1)
            last_save = time.time()
    save(settings.steps)
    if world > 1:
        check_replicas_agree(model)
        check_replicas_agree(ema)
    return ema.eval(), run_info(settings.steps, wall + time.time() - t0, world, device, history)


def report_step(bar, log: MetricsLog | None, step: int, loss: float, logs: dict, lr: float, seconds: float) -> None:
    """Show a logged step on the progress bar and append it to ``metrics.csv`` (``log``: rank 0 only)."""
    bar.set_postfix(loss=f"{loss:.4f}", **{k: f"{v:.4g}" for k, v in logs.items()})
    if log is not None:
        log.write({"step": step, "loss": f"{loss:.6g}", **{k: f"{v:.6g}" for k, v in logs.items()},
                   "lr": f"{lr:.6g}", "seconds": f"{seconds:.2f}"})  # fmt: skip


def _training_device(name: str, world: int) -> torch.device:
    """The device of ``name``; under DDP on CUDA, this process's GPU (``LOCAL_RANK``)."""
    device = pick_device(name)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def step_loss(task: Task, net: nn.Module, batch: list[torch.Tensor], rng: torch.Generator,
              precision: str) -> tuple[torch.Tensor, dict]:  # fmt: skip
    """``task.loss`` of one step, under bf16 autocast for ``precision="bf16"``. Dropout draws from
    torch's global RNG: it is seeded from ``rng`` inside a fork, so a resumed run repeats the same
    masks and nothing outside the loop sees the change."""
    device = rng.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(rng.initial_seed())
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            return task.loss(net, batch, rng)


def run_info(steps: int, wall: float, world: int, device: torch.device, history: list) -> dict:
    """What `train` reports about a finished run (the export sidecar's fields)."""
    info = {"steps": steps, "wall_time_s": round(wall, 1), "world_size": world,
            "device": device.type if device.type == "cpu" else torch.cuda.get_device_name(device)}  # fmt: skip
    if world > 1:
        info["replicas_identical"] = True  # `check_replicas_agree` passed
    if history:
        info["earlier_settings"] = history
    return info


def export(task: Task, ema: nn.Module, info: dict, settings: LoopSettings, export_path: str | os.PathLike,
           dtype: torch.dtype = torch.float16) -> Path:  # fmt: skip
    """Write ``<export_path>.safetensors`` (``dtype`` weights) and ``<export_path>.json``; metrics are
    measured on the model read back from the written file (what ships is what was measured)."""
    export_path = Path(export_path)
    device = next(ema.parameters()).device
    model = task.prepare_export(ema, device)
    weights = export_path.with_suffix(".safetensors")
    checkpoints.save_model(model, weights, task.kind, task.model_config(model), extra=task.extra, dtype=dtype)
    shipped = checkpoints.load_model(weights, kind=task.kind).to(device)
    sidecar = {
        "command": training_command(),
        "kind": task.kind,
        "data": task.data_description,
        "seed": settings.seed,
        "steps": info["steps"],
        **({"earlier_settings": info["earlier_settings"]} if "earlier_settings" in info else {}),
        "batch_size": settings.batch_size,
        "wall_time_s": info["wall_time_s"],
        "device": info["device"],
        "world_size": info["world_size"],
        "weights_dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "created": datetime.date.today().isoformat(),
        "metrics": task.export_metrics(shipped, device),
    }
    checkpoints.atomic_write(export_path.with_suffix(".json"),
                             lambda tmp: Path(tmp).write_text(json.dumps(sidecar, indent=2) + "\n"))  # fmt: skip
    return weights


# ------------------------------------------------------------------------------------------------
# Tasks
# ------------------------------------------------------------------------------------------------


def training_images(data: str, size: int):
    """``"shapes"`` (procedural, effectively endless) or an image folder (one sub-folder per class)."""
    if data == "shapes":
        return ShapesDataset(10_000_000, seed=TRAIN_SEED, size=size)
    return ImageFolderDataset(data, size=size)


def heldout_shapes(count: int, size: int) -> ShapesDataset:
    return ShapesDataset(count, seed=HELDOUT_SEED, size=size)


def _image_batches(dataset, count: int, batch_size: int = 64):
    for start in range(0, count, batch_size):
        items = [dataset[i] for i in range(start, min(count, start + batch_size))]
        yield torch.stack([it[0] for it in items]), torch.stack([it[1] for it in items])


def vae_overrides(args) -> dict:
    """Preset overrides from ``--image-size``, ``--latent-channels`` and ``--stride`` (the latent
    grid is image size / stride a side)."""
    from tokenbridge import vae as vae_module

    overrides = {"resolution": args.image_size}
    if args.latent_channels is not None:
        overrides.update(z_channels=args.latent_channels, embed_dim=args.latent_channels)
    if args.stride is not None:
        with torch.device("meta"):
            ch_mult = vae_module.PRESETS[args.preset]().config.ch_mult
        overrides["ch_mult"] = vae_module.levels_for_stride(ch_mult, args.stride)
    return overrides


def vae_task(args) -> Task:
    from tokenbridge import vae as vae_module
    from tokenbridge.metrics import psnr
    from tokenbridge.quantizer import GaussianQuantizer

    dataset = training_images(args.data, args.image_size)
    overrides = vae_overrides(args)

    def loss(net, batch, rng):
        images = batch[0]
        recon, posterior = net(images, rng)
        rec = (recon - images).abs().mean() if args.recon_loss == "l1" else (recon - images).pow(2).mean()
        kl = posterior.kl().mean()
        return rec + args.kl_weight * kl, {"rec": rec.item(), "kl": kl.item()}

    @torch.no_grad()
    def prepare_export(model, device):
        """Measure the latent std on training images; store ``scale_factor = 1 / std`` in the config."""
        latents = torch.cat([model.encode(x.to(device)).mean.cpu() for x, _ in _image_batches(dataset, 2048)])
        std = float(latents.float().std())
        config = vae_module.VAEConfig(**{**model.config.to_dict(), "scale_factor": round(1.0 / std, 6)})
        rebuilt = vae_module.build_vae(config).to(device)
        rebuilt.load_state_dict(model.state_dict())
        return rebuilt.eval()

    @torch.no_grad()
    def export_metrics(model, device):
        quantizer = GaussianQuantizer.official()
        cont, quant = [], []
        for x, _ in _image_batches(heldout_shapes(1000, args.image_size), 1000):
            x = x.to(device)
            z = model.encode_latents(x)
            cont.append(psnr(model.decode_latents(z), x))
            quant.append(psnr(model.decode_latents(quantizer.dequantize(quantizer.quantize(z))), x))
        return {"heldout_images": 1000, "psnr_continuous_db": round(float(torch.cat(cont).mean()), 3),
                "psnr_quantized_b64_db": round(float(torch.cat(quant).mean()), 3),
                "latent_scale_factor": model.config.scale_factor,
                "parameters": sum(p.numel() for p in model.parameters())}  # fmt: skip

    return Task(
        kind="vae",
        build_model=lambda: vae_module.PRESETS[args.preset](**overrides),
        dataset=dataset,
        loss=loss,
        model_config=lambda m: m.config.to_dict(),
        export_metrics=export_metrics,
        prepare_export=prepare_export,
        data_description={**getattr(dataset, "description", {"kind": "folder", "root": args.data}),
                          "recon_loss": args.recon_loss, "kl_weight": args.kl_weight},  # fmt: skip
    )


def classifier_task(args) -> Task:
    from tokenbridge.classifier import ClassifierConfig, build_classifier
    from tokenbridge.metrics import accuracy, classifier_outputs

    dataset = training_images(args.data, args.image_size)
    num_classes = len(dataset.classes)

    def loss(net, batch, rng):
        images, labels = batch[0], batch[1]
        ce = F.cross_entropy(net(images), labels)
        return ce, {}

    @torch.no_grad()
    def export_metrics(model, device):
        heldout = heldout_shapes(2000, args.image_size)
        labels = torch.tensor([heldout[i][1] for i in range(len(heldout))])
        _, predicted = classifier_outputs(model, (x for x, _ in _image_batches(heldout, len(heldout))), device)
        return {"heldout_images": len(heldout), "heldout_accuracy": round(accuracy(predicted, labels), 4),
                "parameters": sum(p.numel() for p in model.parameters())}  # fmt: skip

    return Task(
        kind="classifier",
        build_model=lambda: build_classifier(ClassifierConfig(num_classes=num_classes, image_size=args.image_size)),
        dataset=dataset,
        loss=loss,
        model_config=lambda m: m.config.to_dict(),
        export_metrics=export_metrics,
        data_description=getattr(dataset, "description", {"kind": "folder", "root": args.data}),
        extra={"classes": list(dataset.classes)},
    )


def latents_path(args) -> Path:
    """``--latents``, by default ``latents.safetensors`` in the run folder."""
    return Path(args.latents or Path(args.out) / "latents.safetensors")


def latent_cache(args) -> "LatentDataset":
    """The cached latents ``--latents``; written first (``--vae`` over ``--num-images`` training
    images of ``--data``) when the file does not exist yet."""
    from tokenbridge.data import LatentDataset, cache_latents

    path = latents_path(args)
    if not path.exists():
        vae = checkpoints.load_model(args.vae, kind="vae").to(pick_device(args.device))
        images = training_images(args.data, vae.config.resolution)
        subset = torch.utils.data.Subset(images, range(min(args.num_images, len(images))))
        subset.classes = images.classes
        subset.description = {**getattr(images, "description", {}), "num_samples": len(subset)}
        cache_latents(vae.encode_latents, subset, path, device=pick_device(args.device), num_workers=args.workers,
                      info={"vae": str(args.vae), "scale_factor": vae.config.scale_factor})  # fmt: skip
    return LatentDataset(path)


def latent_layout(meta: dict, image_size: int) -> dict:
    """The generator's data layout (``img_size``, ``vae_stride``, ``vae_embed_dim``) from a latent
    cache's metadata: the preset sets the network's sizes, the latents set what it models. The image
    size is the cached dataset's (``image_size`` when it does not say)."""
    channels, height, width = meta["latent_shape"]
    size = int(meta.get("dataset", {}).get("size", image_size))
    if height != width or size % height:
        raise ValueError(f"latents {meta['latent_shape']} of {size}x{size} images: the generator needs a square "
                         f"latent grid that divides the image size")
    return {"img_size": size, "vae_stride": size // height, "vae_embed_dim": channels}


def generator_task(args) -> Task:
    from tokenbridge.generator import GENERATORS, patchify
    from tokenbridge.spectral import frequency_order

    cache = latent_cache(args)  # its fit to the preset and to --vae: checked by `check_generator_inputs`
    latents = cache.latents.float()
    with torch.device("meta"):
        config = GENERATORS[args.preset]().config
    order = frequency_order(latents[:4096]) if args.channel_order == "frequency" else torch.arange(latents.shape[1])
    overrides = {**latent_layout(cache.metadata, args.image_size), "channel_order": tuple(order.tolist()),
                 "class_num": max(cache.num_classes, 1)}
    if args.dropout is not None:
        overrides.update(attn_dropout=args.dropout, proj_dropout=args.dropout)
    for name in RECIPE_FIELDS:  # recipe options left unset keep the preset's value
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    lr_scales = {} if args.head_lr_scale == 1.0 else {"channel_heads.": args.head_lr_scale}
    with torch.device("meta"):
        quantizer = GENERATORS[args.preset](**overrides).quantizer
    indices = quantizer.quantize(patchify(latents, config.patch_size))  # [N, L, C] uint8, VAE channel order
    dataset = torch.utils.data.TensorDataset(indices, cache.labels)

    def loss(net, batch, rng):
        indices_BNC, labels_B = batch
        ce, per_channel = net(indices_BNC.long(), labels_B, rng, return_channel_ce=True,
                              head_positions=args.head_positions)
        return ce, {"ce": per_channel.mean().item(), "ce_first": per_channel[0].item(), "ce_last": per_channel[-1].item()}

    @torch.no_grad()
    def export_metrics(model, device):
        from tokenbridge.evaluation import generation_metrics
        from tokenbridge.pipeline import Pipeline

        pipe = Pipeline(checkpoints.load_model(args.vae, kind="vae"), model, classes=cache.classes, device=device)
        return {"parameters": sum(p.numel() for p in model.parameters()),
                "channel_order": list(model.config.generation_order),
                "samples": {order: generation_metrics(pipe, checkpoints.load_model(args.classifier, kind="classifier"),
                                                      args.eval_samples, order=order)
                            for order in ("random", "confidence")}}  # fmt: skip

    return Task(
        kind="generator",
        build_model=lambda: GENERATORS[args.preset](**overrides),
        dataset=dataset,
        loss=loss,
        model_config=lambda m: m.config.to_dict(),
        export_metrics=export_metrics,
        data_description={"latents": cache.metadata, "channel_order": args.channel_order, "preset": args.preset,
                          "head_positions": args.head_positions},
        extra={"classes": cache.classes},
        lr_scales=lr_scales,
    )


TASKS: dict[str, Callable[[argparse.Namespace], Task]] = {"vae": vae_task, "classifier": classifier_task,
                                                          "generator": generator_task}


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------


PRESETS = {"vae": "small", "generator": "tokenbridge_small"}
"""Each task's default preset (the classifier has none)."""


def build_parser() -> cli.ArgumentParser:
    """The training command line; every value is range-checked as it is parsed."""
    parser = cli.ArgumentParser(prog="python -m tokenbridge.train", description=__doc__.split("\n\n")[0],
                                epilog="python -m tokenbridge.train plot RUN [--out PNG]: draw RUN/metrics.csv")  # fmt: skip
    count = cli.number(int, 1)
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--out", required=True, help="run folder (training state, metrics.csv; resumable)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--export", help="write EMA weights + JSON sidecar to this path (no extension)")
    parser.add_argument("--data", default="shapes", help="'shapes' or an image folder (one sub-folder per class)")
    parser.add_argument("--image-size", type=cli.number(int, 8), default=64)
    parser.add_argument("--preset", default=None,
                        help="model preset (vae: small; generator: tokenbridge_small; see the model modules)")
    parser.add_argument("--vae", default="assets/vae_small.safetensors", help="VAE whose latents a generator learns")
    parser.add_argument("--classifier", default="assets/classifier.safetensors", help="for the export metrics")
    parser.add_argument("--latents", help="latent cache (generator; written from --vae when missing)")
    parser.add_argument("--num-images", type=count, default=50_000, help="images encoded into a new latent cache")
    parser.add_argument("--workers", type=cli.number(int, 0), default=0,
                        help="processes rendering/reading images for a new latent cache (0: in the main process)")
    parser.add_argument("--channel-order", choices=("frequency", "identity"), default="frequency")
    parser.add_argument("--head-positions", type=count, default=None,
                        help="generator: masked positions per image fed to the channel head (default: all)")
    _add_generator_recipe_options(parser)
    parser.add_argument("--eval-samples", type=cli.number(int, 2), default=500,
                        help="samples per order in the export metrics")
    parser.add_argument("--kl-weight", type=cli.number(float, 0), default=5e-4,
                        help="weight of the mean per-element KL against the mean per-pixel reconstruction loss")
    parser.add_argument("--recon-loss", choices=("l1", "l2"), default="l1")
    parser.add_argument("--latent-channels", type=count, default=None,
                        help="vae: latent channels (default: the preset's; small: 16)")
    parser.add_argument("--stride", type=cli.number(int, 2), default=None,
                        help="vae: downsampling factor, a power of two (default: the preset's; small: 8)")
    _add_loop_options(parser)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _add_generator_recipe_options(parser: argparse.ArgumentParser) -> None:
    """The generator's recipe options (each overrides the preset's value; unset keeps it)."""
    parser.add_argument("--dropout", type=cli.number(float, 0, 1, high_open=True), default=None,
                        help="generator: attention and projection dropout (default: the preset's, 0.1 as official)")
    parser.add_argument("--position-bias", choices=POSITION_BIASES, default=None,
                        help="generator: 'relative' adds a learned 2-D relative position bias to the backbone "
                             "(default: the preset's; 'none' as official)")
    parser.add_argument("--mask-ratio-min", type=cli.number(float, 0, 1, high_open=True), default=None,
                        help="generator: least fraction of tokens masked in training (default: the preset's, 0.7)")
    parser.add_argument("--value-loss", type=float, default=None,
                        help="generator: weight of the auxiliary regression of masked values from the backbone "
                             "(default: the preset's, 0 as official)")
    architecture_options = {
        "--head-init": (HEAD_INITS, "'ordinal' starts the channel head's readouts and embeddings ordered by level value"),
        "--local-mixing": (LOCAL_MIXINGS, "'conv' adds a residual 3x3 depthwise convolution over the token grid "
                                          "after every decoder block"),
        "--class-input": (CLASS_INPUTS, "'buffer+decoder' also adds the class embedding to every decoder token"),
        "--absolute-position": (ABSOLUTE_POSITIONS, "'none' drops the learned absolute position tables (with "
                                                    "--position-bias relative and --local-mixing conv: a "
                                                    "translation-equivariant backbone)"),
    }
    for flag, (choices, effect) in architecture_options.items():
        parser.add_argument(flag, choices=choices, default=None,
                            help=f"generator: {effect} (default: the preset's; '{choices[0]}' as official)")
    parser.add_argument("--head-lr-scale", type=cli.number(float, 0, low_open=True), default=1.0,
                        help="generator: learning rate of the channel head's output layers (channel_heads) times this; "
                             "they must grow large to separate 64 close levels, which a common rate makes slow")


def _add_loop_options(parser: argparse.ArgumentParser) -> None:
    """One option per `LoopSettings` field, range-checked."""
    count, positive = cli.number(int, 1), cli.number(float, 0, low_open=True)
    loop_types = {"steps": count, "batch_size": count, "lr": positive, "weight_decay": cli.number(float, 0),
                  "warmup_steps": cli.number(int, 0), "ema_decay": cli.number(float, 0, 1, high_open=True),
                  "grad_clip": cli.number(float, 0), "seed": cli.number(int, 0),
                  "checkpoint_every": cli.number(float, 0), "log_every": count, "snapshot_every": cli.number(int, 0),
                  "device": cli.device}  # fmt: skip
    for name, value in vars(LoopSettings()).items():
        choices = ("fp32", "bf16") if name == "precision" else None
        parser.add_argument("--" + name.replace("_", "-"), type=loop_types.get(name, type(value)), default=value,
                            choices=choices)  # fmt: skip


def check_model_settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The preset exists for the task, and a VAE of ``--image-size`` builds (built on the meta device)."""
    from tokenbridge import vae as vae_module
    from tokenbridge.generator import GENERATORS

    presets = {"vae": vae_module.PRESETS, "generator": GENERATORS}.get(args.task, {})
    if args.preset is None:
        args.preset = PRESETS.get(args.task)
    if args.preset not in presets and (presets or args.preset is not None):
        valid = ", ".join(presets) if presets else f"none (the {args.task} has no presets)"
        parser.error(f"argument --preset: unknown {args.task} preset {args.preset!r}; valid: {valid}")
    if args.task == "vae":
        with torch.device("meta"):
            flag = "--stride" if args.stride is not None else "--image-size"
            cli.check(parser, flag, lambda: vae_module.PRESETS[args.preset](**vae_overrides(args)))


def _cache_metadata(path: Path) -> dict:
    """The JSON metadata of a latent cache, tensors left unread."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("tokenbridge", "{}"))
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{str(path)!r} is not a readable latent cache ({type(e).__name__}: {e})") from None
    if meta.get("format") != LATENT_CACHE_FORMAT:
        raise ValueError(f"{str(path)!r} is not a latent cache (written by tokenbridge.data.cache_latents)")
    return meta


def check_generator_inputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The latent cache (or the ``--vae`` that writes it) fits the preset and was made by ``--vae``;
    what the export measures with (``--vae``, ``--classifier``) loads."""
    from tokenbridge.generator import GENERATORS
    from tokenbridge.vae import VAEConfig

    path = latents_path(args)
    meta = cli.check(parser, "--latents", _cache_metadata, path) if path.exists() else None
    made_by = (meta or {}).get("info", {}).get("scale_factor")
    vae = None
    if meta is None or made_by is not None or args.export:
        header = cli.check(parser, "--vae", cli.model_file, args.vae, "vae")
        vae = cli.check(parser, "--vae", lambda: VAEConfig(**header["config"]))
    if meta is None:
        cli.check(parser, "--latents", cli.output_file, str(path))
        shape = [vae.embed_dim, vae.latent_size, vae.latent_size]
    else:
        shape = meta["latent_shape"]
        if vae is not None and (shape[0] != vae.embed_dim or made_by not in (None, vae.scale_factor)):
            parser.error(f"argument --latents: {str(path)!r} was made by another VAE ({shape[0]} channels, scale "
                         f"factor {made_by}) than --vae {args.vae!r} ({vae.embed_dim} channels, scale factor "
                         f"{vae.scale_factor}): pass the VAE it was made with, or another --latents")  # fmt: skip
    size = vae.resolution if vae is not None else args.image_size
    layout = cli.check(parser, "--latents", latent_layout, meta or {"latent_shape": shape}, size)
    with torch.device("meta"):
        cli.check(parser, "--preset", GENERATORS[args.preset], **layout)
    if args.export:
        cli.check(parser, "--classifier", cli.model_file, args.classifier, "classifier")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parsed and checked arguments: ranges, presets, files, folders and the saved state, so a run
    fails in its first second, not at export."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_model_settings(parser, args)
    cli.check(parser, "--out", cli.output_folder, args.out)
    if args.export:
        cli.check(parser, "--export", cli.output_file, str(Path(args.export).with_suffix(".safetensors")))
    if args.data != "shapes":
        cli.check(parser, "--data", cli.input_folder, args.data)
    cli.check(parser, "--resume" if args.resume else "--out", resume_state, args.out, args.task, args.steps,
              args.resume)  # fmt: skip
    if args.task == "generator":
        check_generator_inputs(parser, args)
    return args


def plot_main(argv: list[str]) -> None:
    """``plot RUN [--out PNG]``: the loss curve of ``RUN/metrics.csv`` (default ``RUN/loss.png``)."""
    from tokenbridge.viz import plot_training_curves

    parser = cli.ArgumentParser(prog="python -m tokenbridge.train plot", description=plot_main.__doc__)
    parser.add_argument("run", help="run folder (or its metrics.csv)")
    parser.add_argument("--out", help="PNG to write (default: loss.png next to metrics.csv)")
    args = parser.parse_args(argv)
    columns = cli.check(parser, "run", read_metrics, args.run)
    run = Path(args.run)
    out = Path(args.out or (run if run.is_dir() else run.parent) / "loss.png")
    cli.check(parser, "--out", cli.output_file, str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_training_curves(columns, title=str(run)).savefig(out, dpi=120)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["plot"]:
        return plot_main(argv[1:])
    args = parse_args(argv)
    settings = LoopSettings(**{k: getattr(args, k) for k in vars(LoopSettings())})
    task = TASKS[args.task](args)
    ema, info = train(task, settings, args.out, resume=args.resume, progress=not args.no_progress)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:
        print(f"trained {args.task}: {json.dumps(info)}", flush=True)
    if args.export and rank == 0:
        path = export(task, ema, info, settings, args.export)
        print(f"exported {path} and {path.with_suffix('.json')}")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
