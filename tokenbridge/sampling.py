"""Iterative masked sampling for a `TokenBridge` generator (MAR / TokenBridge sampling loop).

``sample_steps`` yields one `SamplingStep` per iteration; ``generate`` drains it. Each step runs
the backbone on the tokens committed so far, decodes the channels of the positions it may commit
with the channel head (KV-cached: C single-position steps), and commits some of them:

- mask schedule (MAR): after step t, ``floor(N·cos(π/2·(t+1)/T))`` positions stay masked, at least
  one position is committed per step, all remaining ones at the last step;
- a partially known start (editing, in/outpainting): ``tokens`` + ``mask`` give known tokens and
  the M positions to sample; the kept tokens are context from the first step, and the schedules
  run over M instead of N (without a start, M = N and nothing changes);
- the order (`ORDERS`: one class per name) decides which positions a step decodes and which of them
  it commits: ``"random"`` (MAR/official): a random permutation drawn at the start;
  ``"confidence"`` (paper Sec. 4.3, MaskGIT-like): candidates are sampled for all masked positions,
  scored by the joint log-probability of their channel vector (+ Gumbel noise × ``gumbel`` ×
  (1 − t/T)), and the top-k of each image are committed;
- CFG ``"feature"`` (official): ``z = z_u + w·(z_c − z_u)`` before the channel head; ``"logit"``:
  every channel's logits ``l_u + w·(l_c − l_u)``, both branches fed the same sampled prefix;
  ``cfg_schedule="linear"``: ``w_t = 1 + (w − 1)·(N − masked_after_t)/N`` (official).

Randomness: each image row draws from its own random number generator (``rng``, a
`torch.Generator`): pass a list of B of them to make every row independent of the batch (row i
then equals a single-image run with ``rng[i]``), or one shared by all rows (drawn row after
row). Equality with single runs also needs the batched kernels to compute each row as they do
alone (true for the CPU tests here; GPU kernels may differ in the last bit and, rarely, flip a
token). Channel values are sampled by inverse CDF from one uniform number per (position,
channel), drawn for all N positions every step, so the cached and the uncached channel decoding
consume identical randomness.

Unlike the official sampler, the first channel-head input is ``cond`` alone, as in training
(see `TokenBridge.channel_head_step`).

The settings ("knobs": steps, CFG, orders, ...) are one `SamplerSettings`; each field's `Knob`
says how it is checked and offered, so the command line's flags and the app's controls are built
from it: a new knob is a field there and its use in the loop.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F

from tokenbridge.generator import TokenBridge

CFG_MODES = ("feature", "logit")
CFG_SCHEDULES = ("linear", "constant")


# ------------------------------------------------------------------------------------------------
# Orders: which positions a step decodes, and which of those it commits
# ------------------------------------------------------------------------------------------------


class RandomOrder:
    """MAR's (official) order: a random permutation of each row's positions to sample, drawn at the
    start, fixes which ones each step commits; a step decodes only those."""

    def __init__(self, settings: SamplerSettings, rngs: list[torch.Generator], mask_BN: torch.Tensor):
        b, n = mask_BN.shape
        perm_BN = _per_row(rngs, lambda g: torch.randperm(n, generator=g, device=g.device), mask_BN.device)
        # row i's masked positions are committed in the order of its permutation's tail
        self.perm_BM = perm_BN[mask_BN.gather(1, perm_BN)].view(b, int(mask_BN[0].sum()))

    def to_decode(self, mask_BN: torch.Tensor, masked_after: int) -> torch.Tensor:
        """``[B, N]`` bool: the positions this step decodes (``masked_after`` of them stay masked)."""
        keep_BN = torch.zeros_like(mask_BN).scatter_(1, self.perm_BM[:, :masked_after], True)
        return mask_BN & ~keep_BN

    def to_commit(self, score_BN, decode_BN, mask_BN, t: int, masked_after: int):
        """``(committed [B, N] bool, score [B, N])``: every decoded position, the scores as they are."""
        return decode_BN, score_BN


class ConfidenceOrder:
    """Paper Sec. 4.3 (MaskGIT-like): a step decodes every masked position and commits the top k of
    each row by score, the joint log-probability plus Gumbel noise × ``gumbel`` × (1 − t/T)."""

    def __init__(self, settings: SamplerSettings, rngs: list[torch.Generator], mask_BN: torch.Tensor):
        self.gumbel, self.num_steps, self.rngs = settings.gumbel, settings.num_steps, rngs

    def to_decode(self, mask_BN: torch.Tensor, masked_after: int) -> torch.Tensor:
        return mask_BN.clone()

    def to_commit(self, score_BN, decode_BN, mask_BN, t: int, masked_after: int):
        """``(committed [B, N] bool, score [B, N])``: the k best (noisy) scores, k = masked now − after."""
        if self.gumbel > 0:  # drawn after the step's channels, from each row's RNG
            n = score_BN.shape[1]
            noise_BN = _per_row(self.rngs, lambda g: _gumbel(n, g), score_BN.device)
            score_BN = score_BN + self.gumbel * (1 - t / self.num_steps) * noise_BN
        return _top_k(score_BN, mask_BN.sum(dim=1)[0].item() - masked_after), score_BN


ORDERS = {"random": RandomOrder, "confidence": ConfidenceOrder}
"""Sampling orders by name (iterating gives the names). Each class is built per run from
``(settings, rngs, mask_BN)``, drawing what it needs at the start, and answers per step
``to_decode(mask_BN, masked_after)`` and ``to_commit(score_BN, decode_BN, mask_BN, t, masked_after)``;
the loop draws nothing for it, so adding an order is one class and one entry here."""


# ------------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Knob:
    """How one sampler setting is checked and offered (the metadata of a `SamplerSettings` field).

    choices: the valid names; else a number > ``low`` (``low_open``) or >= ``low``, for
    ``per_token`` an integer in ``low``..the number of tokens to sample. flag: the command line's
    option. title: the app's name for it (its error messages); label: its control's label (default:
    the title); slider: the app slider's ``(low, high, step)`` of a number (steps: 1..tokens, step 1).
    """

    flag: str
    title: str
    label: str | None = None
    choices: tuple[str, ...] | None = None
    low: int | None = None
    low_open: bool = False
    per_token: bool = False
    slider: tuple[float, float, float] | None = None

    def check(self, name: str, value, to_sample: int) -> None:
        """ValueError naming ``name`` if ``value`` is not valid (``to_sample``: tokens to sample)."""
        if self.choices is not None:
            if value not in self.choices:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(self.choices)}")
        elif self.per_token:
            if not isinstance(value, int) or not self.low <= value <= to_sample:
                raise ValueError(
                    f"{name} must be an integer in {self.low}..{to_sample} (the number of tokens to "
                    f"sample), got {value!r}"
                )
        elif not math.isfinite(value) or (value <= self.low if self.low_open else value < self.low):
            raise ValueError(
                f"{name} must be a finite number {'>' if self.low_open else '>='} {self.low}, got {value!r}"
            )


def _knob(default, **how):
    """A `SamplerSettings` field: its default and its `Knob`."""
    return field(default=default, metadata={"knob": Knob(**how)})


@dataclass(frozen=True)
class SamplerSettings:
    """The sampler's settings, each field a knob with its default and its `Knob` (checks, flag, control).

    num_steps: T iterations; cfg: guidance scale w (1: none); cfg_schedule, cfg_mode: see the
    module docstring; temperature: of every channel's distribution; order: a name of `ORDERS`;
    gumbel: the confidence order's noise scale (0: none).

    The defaults are the embedded generator's, measured, not chosen: the best row of
    ``results/sampler_defaults.json`` (highest class accuracy of the shipped generator), written by
    ``python -m tokenbridge.defaults_sweep``; a test checks they are equal, so re-run the sweep and
    copy its best row here when the generator changes. They are the pipeline's, the app's initial
    values and the command line's; `sample_steps` alone starts from `UNGUIDED`.
    """

    num_steps: int = _knob(16, flag="--steps", title="steps", low=1, per_token=True)
    cfg: float = _knob(1.0, flag="--cfg", title="CFG scale", label="CFG scale w", low=0, slider=(0.0, 10.0, 0.1))
    cfg_schedule: str = _knob("linear", flag="--cfg-schedule", title="CFG schedule", choices=CFG_SCHEDULES)
    cfg_mode: str = _knob("feature", flag="--cfg-mode", title="CFG mode", choices=CFG_MODES)
    temperature: float = _knob(
        0.5, flag="--temperature", title="temperature", low=0, low_open=True, slider=(0.05, 3.0, 0.05)
    )
    order: str = _knob("random", flag="--order", title="order", choices=tuple(ORDERS))
    gumbel: float = _knob(
        0.0,
        flag="--gumbel",
        title="Gumbel noise",
        label="Gumbel noise (confidence order)",
        low=0,
        slider=(0.0, 10.0, 0.5),
    )

    def replace(self, **changes) -> SamplerSettings:
        """A copy with ``changes`` (knob name → value); TypeError for a name that is not a knob."""
        unknown = [name for name in changes if name not in KNOBS]
        if unknown:
            raise TypeError(f"unknown sampler setting {unknown[0]!r}; valid: {', '.join(KNOBS)}")
        return dataclasses.replace(self, **changes)

    def validate(self, to_sample: int) -> None:
        """ValueError naming the first bad knob (field order); ``to_sample``: the tokens to sample."""
        for f in fields(self):
            f.metadata["knob"].check(f.name, getattr(self, f.name), to_sample)


KNOBS = {f.name: f.metadata["knob"] for f in fields(SamplerSettings)}
"""Knob name → its `Knob`, in field order (the order of the app's controls and the command line's flags)."""
UNGUIDED = SamplerSettings(cfg=1.0)
"""Where `sample_steps` starts: the defaults without classifier-free guidance (MAR's sampler)."""


@dataclass
class SamplingStep:
    """What one sampling iteration did. Channel axes are in VAE channel order.

    step: 0-based index; num_steps: T.
    mask: ``[B, N]`` bool, positions still masked AFTER this step.
    committed: ``[B, N]`` bool, positions committed at this step.
    tokens: ``[B, N, C]`` long, all committed indices so far; −1 at masked positions.
    confidence: ``[B, N]`` float32, the score of each position decoded this step (joint log-prob
        of its sampled channels under the guided, tempered distributions, plus the annealed Gumbel
        noise for ``order="confidence"``); NaN where no candidate was decoded.
    x_hat: ``[B, N, C]`` float32, dequantized committed tokens (scaled latents); 0 where masked.
    cfg: the guidance scale w_t used at this step.
    probs: with ``record_probs=True``, ``[B, N, C, V]`` float32 channel-head distributions of the
        positions committed this step (channel c conditioned on the sampled channels before it in
        generation order); NaN elsewhere. None otherwise.
    """

    step: int
    num_steps: int
    mask: torch.Tensor
    committed: torch.Tensor
    tokens: torch.Tensor
    confidence: torch.Tensor
    x_hat: torch.Tensor
    cfg: float
    probs: torch.Tensor | None = None


def mask_schedule(seq_len: int, num_steps: int) -> list[int]:
    """Number of positions still masked after each step (MAR cosine schedule), ``[T]``."""
    masked, schedule = seq_len, []
    for t in range(num_steps):
        target = math.floor(seq_len * math.cos(math.pi / 2 * (t + 1) / num_steps))
        masked = 0 if t == num_steps - 1 else max(1, min(masked - 1, target))
        schedule.append(masked)
    return schedule


def cfg_scale(cfg: float, schedule: str, seq_len: int, masked_after: int) -> float:
    """Guidance scale at a step: constant ``cfg`` or the official linear ramp from 1 to ``cfg``."""
    if schedule == "constant":
        return cfg
    return 1.0 + (cfg - 1.0) * (seq_len - masked_after) / seq_len


def sample_steps(
    model: TokenBridge,
    labels: torch.Tensor | None,
    settings: SamplerSettings | None = None,
    *,
    rng: torch.Generator | Sequence[torch.Generator],
    use_cache: bool = True,
    record_probs: bool = False,
    batch_size: int = 1,
    tokens: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    **knobs,
) -> Iterator[SamplingStep]:
    """Yield one `SamplingStep` per iteration; the last step's ``tokens`` are the sample.

    labels: long ``[B]`` class ids (``class_num`` = unconditional), or None for ``batch_size``
    unconditional images. settings: the sampler's (default `UNGUIDED`); ``knobs`` (``num_steps=``,
    ``cfg=``, ... the fields of `SamplerSettings`) change some of them. rng: one per row (a list of
    B) or one for all rows. The model must be in eval mode. Arguments are validated here, before
    the first step runs.
    tokens, mask (together, optional): a partially known start. ``tokens`` ``[B, N, C]`` integer
    indices in VAE channel order, ``mask`` ``[B, N]`` bool, True = to sample (the same count M ≥ 1
    in every row); tokens at masked positions are ignored, so a step's ``tokens``/``mask`` resume
    a run. Without them every position is sampled.
    """
    settings = (UNGUIDED if settings is None else settings).replace(**knobs)
    labels_B = _check_labels(model, labels, batch_size)
    tokens_BNC, mask_BN = _check_start(model, tokens, mask, labels_B.shape[0])
    if model.training:
        raise ValueError("the model is in training mode (dropout on): call model.eval() before sampling")
    settings.validate(int(mask_BN[0].sum()))
    rngs = _row_rngs(rng, labels_B.shape[0])
    return _steps(model, labels_B, tokens_BNC, mask_BN, rngs, settings, use_cache, record_probs)


def generate(
    model: TokenBridge, labels: torch.Tensor | None, settings: SamplerSettings | None = None, **kwargs
) -> torch.Tensor:
    """Final tokens ``[B, N, C]`` long (VAE channel order); arguments as `sample_steps`."""
    last = None
    for last in sample_steps(model, labels, settings, **kwargs):
        pass
    return last.tokens


# ------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def _steps(
    model, labels_B, tokens_BNC, mask_BN, rngs, settings: SamplerSettings, use_cache: bool, record_probs: bool
) -> Iterator[SamplingStep]:
    config = model.config
    device = labels_B.device
    b, n, c = tokens_BNC.shape
    m = int(mask_BN[0].sum())  # positions to sample per row (N without a known start)
    to_vae = torch.tensor(config.generation_order, device=device).argsort()  # gen -> VAE channel order
    schedule = mask_schedule(m, settings.num_steps)
    order = ORDERS[settings.order](settings, rngs, mask_BN)  # draws what the order needs at the start

    for t, masked_after in enumerate(schedule):
        w = cfg_scale(settings.cfg, settings.cfg_schedule, m, masked_after) if settings.cfg != 1.0 else 1.0
        uniform_BNC = _per_row(rngs, lambda g: torch.rand(n, c, generator=g, device=g.device), device)
        decode_BN = order.to_decode(mask_BN, masked_after)

        z_BND, z_uncond_BND = _features(model, tokens_BNC, labels_B, mask_BN, w)
        z_MD = z_BND[decode_BN]
        z_uncond_MD = None if z_uncond_BND is None else z_uncond_BND[decode_BN]
        if z_uncond_MD is not None and settings.cfg_mode == "feature":
            z_MD, z_uncond_MD = z_uncond_MD + w * (z_MD - z_uncond_MD), None
        new_MC, logp_M, probs_MCV = decode_channels(
            model, z_MD, z_uncond_MD, w, settings.temperature, uniform_BNC[decode_BN], use_cache, record_probs
        )

        score_BN = torch.full((b, n), float("nan"), device=device)
        score_BN[decode_BN] = logp_M
        committed_BN, score_BN = order.to_commit(score_BN, decode_BN, mask_BN, t, masked_after)

        decoded_BNC = torch.full_like(tokens_BNC, -1)
        decoded_BNC[decode_BN] = new_MC[:, to_vae]
        tokens_BNC = torch.where(committed_BN[..., None], decoded_BNC, tokens_BNC)
        mask_BN = mask_BN & ~committed_BN
        yield SamplingStep(
            step=t,
            num_steps=settings.num_steps,
            mask=mask_BN.clone(),
            committed=committed_BN,
            tokens=tokens_BNC.clone(),
            confidence=score_BN,
            x_hat=_x_hat(model, tokens_BNC, mask_BN),
            cfg=w,
            probs=None if probs_MCV is None else _scatter_probs(probs_MCV[:, to_vae], decode_BN, committed_BN),
        )


def _features(model, tokens_BNC, labels_B, mask_BN, w):
    """Backbone features ``z_c`` (and ``z_u`` when guided) ``[B, N, D]``, one batched call."""
    x_BNC = model.dequantize(tokens_BNC.clamp(min=0))  # masked positions are dropped by the encoder
    if w == 1.0:
        return model.forward_backbone(x_BNC, labels_B, mask_BN), None
    uncond_B = torch.full_like(labels_B, model.config.class_num)
    z_2BND = model.forward_backbone(
        torch.cat([x_BNC, x_BNC]), torch.cat([labels_B, uncond_B]), torch.cat([mask_BN, mask_BN])
    )
    return z_2BND.chunk(2)


def decode_channels(model, z_MD, z_uncond_MD, w, temperature, uniform_MC, use_cache, record_probs):
    """Sample C channels (generation order) for M positions with features ``z_MD`` (public: the
    sampling benchmark times it alone, cached against uncached).

    ``uniform_MC``: one uniform number per (position, channel) for inverse-CDF sampling, so both
    paths draw identical tokens; ``w``: the CFG scale of logit guidance. Returns tokens ``[M, C]``
    long, joint log-prob ``[M]``, probs ``[M, C, V]`` or None. With ``z_uncond_MD`` (logit CFG)
    both branches run together as 2M rows on the same prefix.
    """
    guided = z_uncond_MD is not None
    rows_RD = torch.cat([z_MD, z_uncond_MD]) if guided else z_MD
    m, c = z_MD.shape[0], model.config.token_dim
    cache = model.begin_channel_decoding(rows_RD) if use_cache else None
    prefix_RC = torch.zeros(rows_RD.shape[0], c, dtype=torch.long, device=z_MD.device)
    tokens_MC = prefix_RC[:m]
    logp_M = torch.zeros(m, device=z_MD.device)
    probs = []
    for ch in range(c):
        if use_cache:
            logits_RV = model.channel_head_step(cache, prefix_RC[:, ch - 1] if ch else None)
        else:
            logits_RV = model.channel_head_prefix(rows_RD, prefix_RC[:, :ch])
        if guided:
            cond_MV, uncond_MV = logits_RV.float().chunk(2)
            logits_RV = uncond_MV + w * (cond_MV - uncond_MV)
        logp_MV = F.log_softmax(logits_RV.float() / temperature, dim=-1)
        token_M = _inverse_cdf(logp_MV.exp(), uniform_MC[:, ch])
        logp_M += logp_MV.gather(1, token_M[:, None])[:, 0]
        prefix_RC[:, ch] = token_M.repeat(2) if guided else token_M
        if record_probs:
            probs.append(logp_MV.exp())
    return tokens_MC.clone(), logp_M, torch.stack(probs, dim=1) if record_probs else None


def _inverse_cdf(probs_MV: torch.Tensor, uniform_M: torch.Tensor) -> torch.Tensor:
    """One categorical sample per row: the first index whose cumulative probability exceeds u."""
    cdf_MV = probs_MV.cumsum(dim=-1)
    target_M1 = (uniform_M.to(cdf_MV.dtype) * cdf_MV[:, -1])[:, None]
    return torch.searchsorted(cdf_MV, target_M1, right=True)[:, 0].clamp_(max=probs_MV.shape[1] - 1)


def _top_k(score_BN: torch.Tensor, k: int) -> torch.Tensor:
    """``[B, N]`` bool: the k highest scores of each row (NaN = not a candidate)."""
    ranked_BN = score_BN.nan_to_num(nan=float("-inf"))
    top_Bk = ranked_BN.topk(k, dim=1).indices
    return torch.zeros_like(score_BN, dtype=torch.bool).scatter_(1, top_Bk, True)


def _x_hat(model, tokens_BNC, mask_BN):
    x_BNC = model.dequantize(tokens_BNC.clamp(min=0)).float()
    return x_BNC.masked_fill(mask_BN[..., None], 0.0)


def _scatter_probs(probs_MCV, decode_BN, committed_BN):
    b, n = decode_BN.shape
    full = torch.full((b, n, *probs_MCV.shape[1:]), float("nan"), device=probs_MCV.device)
    full[decode_BN] = probs_MCV.float()
    return full.masked_fill(~committed_BN[..., None, None], float("nan"))


# ------------------------------------------------------------------------------------------------
# Randomness and validation
# ------------------------------------------------------------------------------------------------


def _gumbel(n: int, g: torch.Generator) -> torch.Tensor:
    u = torch.rand(n, generator=g, device=g.device, dtype=torch.float64)
    return -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-16))).float()


def _per_row(rngs, draw, device) -> torch.Tensor:
    """Stack one draw per row, each from that row's RNG, on ``device``."""
    return torch.stack([draw(g).to(device) for g in rngs])


def _row_rngs(rng, batch: int) -> list[torch.Generator]:
    if isinstance(rng, torch.Generator):
        return [rng] * batch
    rngs = list(rng)
    if len(rngs) != batch or not all(isinstance(g, torch.Generator) for g in rngs):
        raise ValueError(f"rng must be a torch.Generator or a list of {batch} (one per image), got {len(rngs)} item(s)")
    return rngs


def _check_labels(model: TokenBridge, labels: torch.Tensor | None, batch_size: int) -> torch.Tensor:
    device = model.fake_latent.device
    num = model.config.class_num
    if labels is None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        return torch.full((batch_size,), num, dtype=torch.long, device=device)
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.numel() == 0 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be a non-empty 1-D integer tensor [B], got {labels.dtype} {tuple(labels.shape)}")
    if int(labels.min()) < 0 or int(labels.max()) > num:
        raise ValueError(
            f"labels must be class ids in 0..{num - 1} (or {num} for unconditional), got {labels.tolist()}"
        )
    return labels.long().to(device)


def _check_start(
    model: TokenBridge, tokens: torch.Tensor | None, mask: torch.Tensor | None, batch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The start ``(tokens [B, N, C] long, −1 where masked; mask [B, N] bool)``, all masked if none given."""
    device = model.fake_latent.device
    config = model.config
    shape = (batch, config.seq_len, config.token_dim)
    if tokens is None and mask is None:
        everything_BN = torch.ones(shape[:2], dtype=torch.bool, device=device)
        return torch.full(shape, -1, dtype=torch.long, device=device), everything_BN
    if tokens is None or mask is None:
        raise ValueError("pass tokens and mask together (known tokens and the positions to sample), or neither")
    tokens, mask = torch.as_tensor(tokens), torch.as_tensor(mask)
    if mask.dtype != torch.bool or tuple(mask.shape) != shape[:2]:
        raise ValueError(
            f"mask must be a bool tensor {list(shape[:2])} (True = sample), got {mask.dtype} {list(mask.shape)}"
        )
    integer = not (tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool)
    if not integer or tuple(tokens.shape) != shape:
        raise ValueError(
            f"tokens must be an integer tensor {list(shape)} [B, N, C], got {tokens.dtype} {list(tokens.shape)}"
        )
    counts = mask.sum(dim=1)
    if bool((counts == 0).any()):
        raise ValueError(f"mask selects no position to sample in row(s) {(counts == 0).nonzero()[:, 0].tolist()}")
    if bool((counts != counts[0]).any()):
        raise ValueError(f"mask must select the same number of positions in every row, got {counts.tolist()}")
    kept = tokens.long()[~mask]
    if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= config.quant_levels):
        raise ValueError(
            f"tokens to keep (outside the mask) must be indices in 0..{config.quant_levels - 1}, got values "
            f"{int(kept.min())}..{int(kept.max())}"
        )
    mask = mask.to(device)
    return tokens.long().to(device).masked_fill(mask[..., None], -1), mask
