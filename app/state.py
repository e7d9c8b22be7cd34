"""Per-session state of the app: validated sampler settings and one sampling run.

A `Run` wraps the Python generator of `Pipeline.steps` (so "Step" advances exactly one
iteration) and records what each step did, compactly: masks, scores and decoded previews (the
previews up to a memory budget; older ones are decoded again from the tokens when scrubbed to).
The channel head's distributions (``record_probs=True``) are folded into one ``[B, N, C, V]``
float16 tensor holding, for every position, the distribution it was committed with.

Each browser session holds at most one `Run` (a new one replaces it); nothing here is global.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import torch

from tokenbridge.data import to_uint8_image
from tokenbridge.pipeline import Pipeline
from tokenbridge.sampling import KNOBS, SamplerSettings, mask_schedule

UNCONDITIONAL = "(unconditional)"
MAX_BATCH = 16
MAX_SEED = 2**31 - 1
PREVIEW_BUDGET_BYTES = 64 * 2**20
"""Decoded previews a run keeps per session; beyond it the oldest are decoded again on demand."""


# ------------------------------------------------------------------------------------------------
# Validation: every value a client can send, checked with a message that names it
# ------------------------------------------------------------------------------------------------


def integer(name: str, value, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]`` (an integral float is accepted), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")
    if not math.isfinite(value) or value != int(value) or not low <= int(value) <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")
    return int(value)


def number(name: str, value, low: float, high: float) -> float:
    """``value`` as a float in ``[low, high]``, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def choice(name: str, value, valid) -> str:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(map(str, valid))}")
    return value


def knob_value(name: str, value, tokens: int):
    """``value`` of the sampler knob ``name`` checked as the app offers it (its `Knob`): one of its
    choices, a number in its slider's range, or steps in 1..``tokens``; ValueError names the control."""
    knob = KNOBS[name]
    if knob.choices is not None:
        return choice(knob.title, value, knob.choices)
    if knob.per_token:
        return integer(knob.title, value, knob.low, tokens)
    return number(knob.title, value, *knob.slider[:2])


def class_index(pipeline: Pipeline, name) -> int | None:
    """A class name (as shown in the dropdown) -> its id; `UNCONDITIONAL` -> None."""
    if name == UNCONDITIONAL:
        return None
    if name not in pipeline.classes:
        shown = ", ".join(pipeline.classes[:12]) + (", ..." if len(pipeline.classes) > 12 else "")
        raise ValueError(f"unknown class {name!r}; valid: {UNCONDITIONAL}, {shown}")
    return pipeline.classes.index(name)


@dataclass(frozen=True)
class Settings:
    """Everything that decides a run's images (same settings, same device -> same images)."""

    label: int | None
    seed: int
    sampler: SamplerSettings
    batch_size: int

    @classmethod
    def parse(cls, pipeline: Pipeline, class_name, seed, *values) -> "Settings":
        """Check the raw values of the Generate tab's controls: class, seed, the sampler's knobs (in
        `SamplerSettings` field order), batch size; ValueError names the bad one."""
        if pipeline.generator is None:
            raise ValueError("this pipeline has no generator: start the app with --generator PATH")
        *knobs, batch_size = values
        seq_len = pipeline.generator.config.seq_len
        return cls(
            label=class_index(pipeline, class_name),
            seed=integer("seed", seed, 0, MAX_SEED),
            sampler=SamplerSettings(**{k: knob_value(k, v, seq_len) for k, v in zip(KNOBS, knobs, strict=True)}),
            batch_size=integer("batch size", batch_size, 1, MAX_BATCH),
        )


# ------------------------------------------------------------------------------------------------
# One run
# ------------------------------------------------------------------------------------------------


@dataclass
class StepRecord:
    """What one sampling step did (``[B, N]`` numpy arrays) and its decoded preview, if still kept."""

    step: int
    mask: np.ndarray  # still masked after the step
    committed: np.ndarray  # committed at the step
    confidence: np.ndarray  # float32, NaN where no candidate was decoded
    cfg: float
    preview: np.ndarray | None  # uint8 [B, H, W, 3]


class Run:
    """A sampling run of one session: the live step iterator and everything recorded so far."""

    def __init__(self, pipeline: Pipeline, settings: Settings):
        self.pipeline, self.settings = pipeline, settings
        labels = None if settings.label is None else [settings.label] * settings.batch_size
        self._steps = pipeline.steps(
            labels,
            seed=settings.seed,
            preview=True,
            batch_size=settings.batch_size,
            settings=settings.sampler,
            record_probs=True,
        )
        config = pipeline.generator.config
        self.grid, self.seq_len = config.grid_size, config.seq_len
        self.planned = mask_schedule(self.seq_len, settings.sampler.num_steps)
        b = settings.batch_size
        self.records: list[StepRecord] = []
        self.tokens = torch.full((b, self.seq_len, config.token_dim), -1, dtype=torch.long)  # [B, N, C]
        self.commit_step = np.full((b, self.seq_len), -1, dtype=np.int16)  # [B, N]
        self.commit_score = np.full((b, self.seq_len), np.nan, dtype=np.float32)  # [B, N] score when committed
        self.probs: torch.Tensor | None = None  # [B, N, C, V] float16
        self._lock = threading.Lock()

    @property
    def finished(self) -> bool:
        return len(self.records) == self.settings.sampler.num_steps

    def advance(self) -> StepRecord:
        """Run the next sampling step and record it (one step at a time, even if called concurrently)."""
        with self._lock:
            if self.finished:
                return self.records[-1]
            out = next(self._steps)
            step = out.step
            committed = step.committed.cpu()
            self.tokens = step.tokens.cpu()
            self.commit_step[committed.numpy()] = step.step
            self.commit_score[committed.numpy()] = step.confidence.float().cpu().numpy()[committed.numpy()]
            if step.probs is not None:
                if self.probs is None:
                    self.probs = torch.full(step.probs.shape, float("nan"), dtype=torch.float16)
                self.probs[committed] = step.probs.cpu()[committed].half()
            record = StepRecord(
                step.step,
                step.mask.cpu().numpy(),
                committed.numpy(),
                step.confidence.float().cpu().numpy(),
                float(step.cfg),
                to_uint8_image(out.preview),
            )
            self.records.append(record)
            self._enforce_budget()
            if self.finished:
                self._steps.close()
            return record

    def preview(self, t: int) -> np.ndarray:
        """uint8 ``[B, H, W, 3]`` images decoded from the tokens committed up to step ``t``."""
        record = self.records[t]
        if record.preview is not None:
            return record.preview
        known = torch.from_numpy(self.known(t))
        x_hat = self.pipeline.quantizer.dequantize(self.tokens.clamp(min=0)).masked_fill(~known[..., None], 0.0)
        return to_uint8_image(self.pipeline.decode(self.pipeline.generator.unpatchify(x_hat)))

    def known(self, t: int) -> np.ndarray:
        """bool ``[B, N]``: the positions committed up to step ``t``."""
        return (self.commit_step >= 0) & (self.commit_step <= t)

    def scores(self, t: int) -> np.ndarray:
        """``[B, N]`` at step ``t``: the score each committed position was committed with, this step's
        candidate score elsewhere (NaN where none was decoded), as `app.figures.confidence_map` shows."""
        return np.where(self.known(t), self.commit_score, self.records[t].confidence)

    def final_images(self) -> np.ndarray | None:
        """uint8 ``[B, H, W, 3]`` once the run finished, else None."""
        return self.preview(len(self.records) - 1) if self.finished else None

    def _enforce_budget(self) -> None:
        kept = [r for r in self.records if r.preview is not None]
        total = sum(r.preview.nbytes for r in kept)
        for r in kept[:-1]:  # never drop the newest
            if total <= PREVIEW_BUDGET_BYTES:
                break
            total -= r.preview.nbytes
            r.preview = None


# ------------------------------------------------------------------------------------------------
# Session holders (one per browser session, in gr.State)
# ------------------------------------------------------------------------------------------------


@dataclass
class Session:
    """The Generate tab's state: the current run (a new Generate or changed settings replace it)."""

    run: Run | None = None


def last_generated(session: Session | None, number) -> tuple[Run, int]:
    """The session's finished run and ``number`` checked as one of its images (1-based, as typed)."""
    run = session.run if session is not None else None
    if run is None or not run.finished:
        raise ValueError("no finished generation in this session: generate images first (Generate tab)")
    k = integer("generated image number", number, 1, MAX_BATCH)
    made = run.settings.batch_size
    if k > made:
        raise ValueError(f"the last run made {made} image(s); pick 1..{made}")
    return run, k


@dataclass
class ChannelImage:
    """The Channels tab's current image: its latents and, for a generated one, how it was sampled."""

    source: str
    image: np.ndarray  # uint8 [H, W, 3]
    latents: torch.Tensor  # [C, h, w] scaled
    tokens: torch.Tensor | None = None  # [N, C] sampled indices (VAE channel order)
    probs: torch.Tensor | None = None  # [N, C, V] float16 distributions they were sampled from
