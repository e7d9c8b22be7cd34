"""The training loop: one for the VAE, the shapes classifier and the generator (what differs is a `Task`).

What makes runs repeatable and resumable: the batch of step ``s`` and every random draw inside it
(posterior noise, masks, label drop) depend only on ``(seed, s, rank)``, and the state written
atomically every ``checkpoint_every`` seconds holds model, EMA, optimizer and step. So a resumed
run continues bit-identically on the same device; one resumed with other settings (more
``steps``, another dropout) records the earlier ones and the step they ran until. `export`
writes the EMA weights in our safetensors format with a JSON sidecar (command, data, steps, wall
time, device, metrics). Every run logs to ``metrics.csv`` in its folder as it goes (`MetricsLog`).
Under torchrun the loop runs data-parallel (DDP; gloo on CPU).
"""

from __future__ import annotations

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
from torch import nn
from tqdm.auto import tqdm

from tokenbridge import checkpoints
from tokenbridge.devices import pick_device
from tokenbridge.files import atomic_write, write_json

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
            self._perms = {
                epoch: torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))
            }
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
    return [
        {"params": groups[key], "weight_decay": 0.0 if key[1] else weight_decay, "lr_scale": key[0]}
        for key in sorted(groups)
    ]  # without lr_scales: [matrices, the rest], as before


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
    return torch.cat(
        [
            torch.stack([t.detach().double().sum(), t.detach().double().pow(2).sum()])
            for t in model.state_dict().values()
            if t.is_floating_point()
        ]
    )


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
        raise ValueError(
            f"{state_path} has run {int(state['step'])} steps, more than --steps {steps}: "
            f"pass --steps {int(state['step'])} or more"
        )
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
        atomic_write(path, lambda tmp: self._append(tmp, rows))

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


def restore(
    state: dict, source: str, model: nn.Module, ema: nn.Module, optimizer, settings: dict, model_config: dict
) -> tuple[int, float, list]:
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


def optimize(
    loss: torch.Tensor, model: nn.Module, ema: nn.Module, optimizer, settings: LoopSettings, step: int
) -> None:
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
    progress = {
        "step": step,
        "samples_seen": step * batch_size,
        "train_seconds": round(seconds, 1),
        "command": training_command(),
    }
    return checkpoints.save_model(
        ema,
        out_dir / "snapshots" / f"step_{step:06d}.safetensors",
        task.kind,
        task.model_config(ema),
        extra={**task.extra, "snapshot": progress},
    )


def train(
    task: Task, settings: LoopSettings, out_dir: str | os.PathLike, resume: bool = False, progress: bool = True
) -> tuple[nn.Module, dict]:
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

    model, ema, optimizer = _models_and_optimizer(task, settings, device)
    start, wall, history = 0, 0.0, []
    model_config = json.loads(json.dumps(task.model_config(model)))  # plain lists, as a state file holds them
    if state is not None:
        start, wall, history = restore(state, str(state_path), model, ema, optimizer, vars(settings), model_config)

    def save(step: int) -> None:
        if rank == 0:
            training_state = {"kind": task.kind, "step": step, "wall_time_s": wall + time.time() - t0}
            training_state.update(model=model.state_dict(), ema=ema.state_dict(), optimizer=optimizer.state_dict())
            training_state.update(settings=vars(settings), model_config=model_config, history=history)
            checkpoints.save_training_state(training_state, state_path)

    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    batches = StepBatches(task.dataset, settings.batch_size, settings.seed, rank, world)
    t0 = last_save = time.time()
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        log = MetricsLog(out_dir / "metrics.csv", start)
    bar = _progress_bar(task.kind, start, settings.steps, show=progress and rank == 0)
    model.train()
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, settings) * group["lr_scale"]
        batch = [t.to(device) for t in batches(step)]
        loss, logs = step_loss(task, net, batch, step_rng(settings.seed, step, rank, device), settings.precision)
        optimize(loss, model, ema, optimizer, settings, step)
        if step % settings.log_every == 0:
            report_step(
                bar, log if rank == 0 else None, step, loss.item(), logs, lr_at(step, settings), wall + time.time() - t0
            )
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


def _models_and_optimizer(task: Task, settings: LoopSettings, device: torch.device):
    """``(model, ema, optimizer)``: the task's model built from ``settings.seed`` (torch's global RNG
    left as it was), its EMA copy, and AdamW over `parameter_groups`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = task.build_model().to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    groups = parameter_groups(model, settings.weight_decay, task.lr_scales)
    return model, ema, torch.optim.AdamW(groups, lr=settings.lr, betas=(0.9, 0.95))


def _progress_bar(kind: str, start: int, steps: int, show: bool) -> tqdm:
    """The steps ``start..steps − 1`` as a progress bar (hidden unless ``show``)."""
    return tqdm(
        range(start, steps), initial=start, total=steps, desc=f"train {kind}", disable=not show, dynamic_ncols=True
    )


def report_step(bar, log: MetricsLog | None, step: int, loss: float, logs: dict, lr: float, seconds: float) -> None:
    """Show a logged step on the progress bar and append it to ``metrics.csv`` (``log``: rank 0 only)."""
    bar.set_postfix(loss=f"{loss:.4f}", **{k: f"{v:.4g}" for k, v in logs.items()})
    if log is not None:
        log.write(
            {
                "step": step,
                "loss": f"{loss:.6g}",
                **{k: f"{v:.6g}" for k, v in logs.items()},
                "lr": f"{lr:.6g}",
                "seconds": f"{seconds:.2f}",
            }
        )


def _training_device(name: str, world: int) -> torch.device:
    """The device of ``name``; under DDP on CUDA, this process's GPU (``LOCAL_RANK``)."""
    device = pick_device(name)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def step_loss(
    task: Task, net: nn.Module, batch: list[torch.Tensor], rng: torch.Generator, precision: str
) -> tuple[torch.Tensor, dict]:
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
    info = {
        "steps": steps,
        "wall_time_s": round(wall, 1),
        "world_size": world,
        "device": device.type if device.type == "cpu" else torch.cuda.get_device_name(device),
    }
    if world > 1:
        info["replicas_identical"] = True  # `check_replicas_agree` passed
    if history:
        info["earlier_settings"] = history
    return info


def export(
    task: Task,
    ema: nn.Module,
    info: dict,
    settings: LoopSettings,
    export_path: str | os.PathLike,
    dtype: torch.dtype = torch.float16,
) -> Path:
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
    write_json(export_path.with_suffix(".json"), sidecar, indent=2)
    return weights
