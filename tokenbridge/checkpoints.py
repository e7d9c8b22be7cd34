"""Safe loading and saving of weights: our safetensors format and the official checkpoints.

Our model files are safetensors whose metadata key ``"tokenbridge"`` holds JSON
``{"kind": "vae" | "classifier" | "generator", "config": {...}, "extra": {...}}`` so a file alone
rebuilds its model. Foreign torch checkpoints are read with ``torch.load(weights_only=True)`` only:
a pickle that would run code is refused. Training state (optimizer, EMA, step) is written
atomically (temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pickle
import warnings
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch
from torch import nn

from tokenbridge.classifier import build_classifier
from tokenbridge.files import atomic_write
from tokenbridge.generator import PRESETS, GeneratorConfig, build_generator
from tokenbridge.quantizer import GaussianQuantizer
from tokenbridge.vae import build_vae, kl16

FORMAT_KEY = "tokenbridge"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, unsafe, or not matching the model."""


def save_training_state(state: dict, path: str | os.PathLike) -> Path:
    """Write a training state (tensors, numbers, strings, nested dicts/lists) atomically."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def file_format(path: str | os.PathLike) -> str | None:
    """``"safetensors"``, ``"torch"`` (zip or legacy pickle) or None (neither), told by the first
    bytes of the file, not by its suffix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "torch"
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size:
        return "safetensors"  # an 8-byte header length, then the JSON header
    return None


def read_torch_checkpoint(path: str | os.PathLike, allowed_classes: tuple[type, ...] = ()) -> dict:
    """``torch.load(path, weights_only=True)`` on CPU with errors that name the problem.

    ``allowed_classes``: plain data classes the weights-only unpickler may also rebuild (e.g.
    ``argparse.Namespace``, which MAR-format checkpoints store under ``"args"``); nothing callable.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if file_format(path) == "safetensors":
        raise CheckpointError(f"{str(path)!r} is a safetensors file, not a torch checkpoint")
    try:
        with torch.serialization.safe_globals(list(allowed_classes)):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{str(path)!r} was refused: it is not a plain weights file (its pickle asks "
            f"for objects beyond tensors and containers, which could run code): {e}"
        ) from None
    except Exception as e:  # a corrupt or foreign file can fail anywhere in the unpickler (KeyError, …)
        raise CheckpointError(
            f"{str(path)!r} is not a readable torch checkpoint (truncated or corrupt?): {type(e).__name__}: {e}"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{str(path)!r} holds a {type(obj).__name__}, expected a dict of weights")
    return obj


# ------------------------------------------------------------------------------------------------
# Strict state-dict checks
# ------------------------------------------------------------------------------------------------


def state_dict_mismatches(model: nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[list, list, list]:
    """``(missing, unexpected, mis-shaped)`` keys of ``state`` against ``model.state_dict()``."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    return missing, unexpected, misshaped


def _summarize(keys: list, limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", … ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_strict(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str, ignore_prefixes: Iterable[str] = ()
) -> nn.Module:
    """Load ``state`` into ``model`` key for key (``strict=True``) after dropping ``ignore_prefixes``.

    Raises `CheckpointError` listing missing, unexpected and mis-shaped keys.
    """
    ignore = tuple(ignore_prefixes)
    state = {k: v for k, v in state.items() if not (ignore and k.startswith(ignore))}
    missing, unexpected, misshaped = state_dict_mismatches(model, state)
    if missing or unexpected or misshaped:
        parts = [
            f"{name} ({len(keys)}): {_summarize(keys)}"
            for name, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
            if keys
        ]
        raise CheckpointError(f"{source} does not match {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model


# ------------------------------------------------------------------------------------------------
# Our format: safetensors + JSON config in the metadata
# ------------------------------------------------------------------------------------------------


def save_model(
    model: nn.Module,
    path: str | os.PathLike,
    kind: str,
    config: dict,
    extra: dict | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model``'s state dict (floating tensors cast to ``dtype`` if given) with its config."""
    from safetensors.torch import save_file

    tensors = {}
    for name, t in model.state_dict().items():
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point() and torch.isfinite(t).all():
            t = t.to(dtype)  # buffers holding ±inf (masks) keep their dtype
        tensors[name] = t.contiguous()
    meta = {FORMAT_KEY: json.dumps({"kind": kind, "config": config, "extra": extra or {}})}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def _open_model_file(path: str | os.PathLike, tensors: bool) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state_dict as stored, or {} without ``tensors``; header)`` of one of our safetensors files."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    if file_format(path) == "torch":
        raise CheckpointError(
            f"{str(path)!r} is a torch checkpoint (an official file?), not a TokenBridge Lab safetensors model"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(FORMAT_KEY)
            state = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except Exception as e:  # safetensors raises its own error types for corrupt headers/data
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors file ({type(e).__name__}: {e})") from None
    if raw is None:
        raise CheckpointError(f"{str(path)!r} has no {FORMAT_KEY!r} metadata: not a TokenBridge Lab model file")
    try:
        header = json.loads(raw)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{str(path)!r}: its {FORMAT_KEY!r} metadata is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{str(path)!r}: its {FORMAT_KEY!r} metadata is a {type(header).__name__}, not an object")
    return state, header


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header (kind, config, extra) of one of our safetensors files, tensors left unread."""
    return _open_model_file(path, tensors=False)[1]


def read_model_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state_dict in float32, header)`` of one of our safetensors files."""
    state, header = _open_model_file(path, tensors=True)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, header


BUILDERS: dict[str, Callable[[dict], nn.Module]] = {
    "vae": build_vae,
    "classifier": build_classifier,
    "generator": build_generator,
}
"""Model kind (stored in every file's header) → the function that builds it from its config."""


def load_model(path: str | os.PathLike, kind: str | None = None) -> nn.Module:
    """Rebuild and load a model saved by `save_model` (in eval mode, float32, on CPU).

    ``kind`` (optional) checks what the file holds, e.g. ``"vae"``.
    """
    state, header = read_model_file(path)
    found = header.get("kind")
    if kind is not None and found != kind:
        raise CheckpointError(f"{str(path)!r} holds a {found!r} model, expected {kind!r}")
    if found not in BUILDERS:
        raise CheckpointError(f"{str(path)!r}: unknown model kind {found!r}; valid: {', '.join(BUILDERS)}")
    try:
        model = BUILDERS[found](header["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{str(path)!r}: its stored config does not build a {found}: {e}") from None
    load_state_strict(model, state, repr(str(path)))
    model.eval()
    return model


# ------------------------------------------------------------------------------------------------
# Official checkpoints
# ------------------------------------------------------------------------------------------------

VAE_TRAINING_ONLY_PREFIXES = ("loss.",)
"""LDM training checkpoints may carry the loss module (LPIPS, discriminator): not part of the VAE."""


def unwrap_state_dict(obj: dict, source: str, wrappers: tuple[str, ...]) -> dict:
    """The state dict inside a checkpoint: the first of ``wrappers`` present, or ``obj`` itself."""
    for key in wrappers:
        if key in obj:
            if not isinstance(obj[key], dict):
                raise CheckpointError(f"{source}: {key!r} holds a {type(obj[key]).__name__}, expected a state dict")
            return obj[key]
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    raise CheckpointError(
        f"{source}: no state dict found (looked for keys {', '.join(map(repr, wrappers))}; "
        f"found {', '.join(map(repr, list(obj)[:8]))})"
    )


def load_official_vae(path: str | os.PathLike, **config_overrides) -> nn.Module:
    """The official MAR ``kl16.ckpt`` (``{"model": state_dict}``) in our `AutoencoderKL`, strict keys."""
    source = repr(str(path))
    state = unwrap_state_dict(read_torch_checkpoint(path), source, ("model", "state_dict"))
    model = kl16(**config_overrides)
    load_state_strict(model, state, source, ignore_prefixes=VAE_TRAINING_ONLY_PREFIXES)
    return model.eval()


ARCHITECTURE_FIELDS = (
    "encoder_embed_dim",
    "encoder_depth",
    "decoder_embed_dim",
    "decoder_depth",
    "channel_embed_dim",
    "channel_depth",
    "head",
)
"""Generator config fields a state dict shows by its keys and shapes that name a preset's network; the
head counts, which no shape shows, come from the preset of that network."""


def _block_count(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    return len({key.split(".")[1] for key in state if key.startswith(prefix + ".")})


def generator_state_fields(state: Mapping[str, torch.Tensor]) -> dict:
    """Every generator config field a state dict fixes by its keys and shapes: the network
    (`ARCHITECTURE_FIELDS`) and the data it models (levels, classes, channels, buffer, ``grid``:
    tokens a side)."""
    try:
        num_tokens = state["output_pos_embed"].shape[1]
        return {
            "encoder_embed_dim": state["z_proj.weight"].shape[0],
            "encoder_depth": _block_count(state, "encoder_blocks"),
            "decoder_embed_dim": state["decoder_embed.weight"].shape[0],
            "decoder_depth": _block_count(state, "decoder_blocks"),
            "channel_embed_dim": state["channel_embed"].shape[2],
            "channel_depth": _block_count(state, "channel_blocks"),
            "head": "autoregressive" if "token_embeddings.0.weight" in state else "parallel",
            "quant_levels": state["channel_heads.0.weight"].shape[0],
            "class_num": state["class_emb.weight"].shape[0],
            "vae_embed_dim": state["z_proj.weight"].shape[1],
            "buffer_size": state["encoder_pos_embed_learned"].shape[1] - num_tokens,
            "grid": math.isqrt(num_tokens),
        }
    except KeyError as e:
        raise CheckpointError(f"not a TokenBridge generator state dict: no {e.args[0]!r}") from None


def official_generator_config(state: Mapping[str, torch.Tensor], source: str) -> GeneratorConfig:
    """The config of a foreign generator state dict: the preset whose network (`ARCHITECTURE_FIELDS`)
    the keys and shapes show, with the data sizes they show. Presets that share a network must then
    agree (e.g. the 16-level ablation is the baseline with other levels); the registry's order
    plays no part."""
    found = generator_state_fields(state)
    grid = found.pop("grid")
    network = {name: found[name] for name in ARCHITECTURE_FIELDS}
    configs = {}
    for name, preset in PRESETS.items():
        if all(getattr(preset, field) == value for field, value in network.items()):
            img_size = grid * preset.vae_stride * preset.patch_size
            configs[name] = dataclasses.replace(preset, **found, img_size=img_size)
    if not configs:
        raise CheckpointError(
            f"{source}: no generator preset has this network ({', '.join(f'{k}={v}' for k, v in network.items())})"
        )
    if len(set(configs.values())) > 1:
        raise CheckpointError(
            f"{source}: the presets {', '.join(configs)} share this network but differ in "
            f"what its shapes do not show (attention heads, norms): which one is meant is unknown"
        )
    return next(iter(configs.values()))


def load_official_generator(path: str | os.PathLike, weights: str = "model_ema"):
    """An official ``checkpoint-last.pth`` as ``(model, quantizer)``, strict keys.

    ``weights``: ``"model_ema"`` (what the official sampler uses) or ``"model"``. The config is read
    from the keys and shapes (`official_generator_config`; attention heads follow the preset of
    that network); an official preset carries the fixed official channel order in
    ``model.config.channel_order``; the quantizer is the official one with the head's number of
    levels.
    """
    if weights not in ("model_ema", "model"):
        raise ValueError(f"weights must be 'model_ema' or 'model', got {weights!r}")
    source = repr(str(path))
    checkpoint = read_torch_checkpoint(path, allowed_classes=(argparse.Namespace,))
    if weights == "model_ema" and "model_ema" not in checkpoint and "model" in checkpoint:
        warnings.warn(
            f"{source} has no 'model_ema' weights: falling back to 'model' (the raw, non-EMA weights)", stacklevel=2
        )
    state = unwrap_state_dict(checkpoint, source, (weights, "model", "state_dict"))
    model = build_generator(official_generator_config(state, source))
    load_state_strict(model, state, source)
    config = model.config
    return model.eval(), GaussianQuantizer(config.quant_levels, config.quant_max, config.std_range)
