"""What to train: one typed recipe per task (VAE, shapes classifier, generator) and the `Task` it makes.

A recipe holds everything a task needs besides the loop's settings (`LoopSettings`): the data, the
preset and its overrides, the loss weights, and what the export measures with. The command line
(`tokenbridge.train`) builds recipes from its options; code builds them directly, e.g.
``generator_task(GeneratorRecipe(latents="runs/g/latents.safetensors", preset="tokenbridge_tiny"))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from tokenbridge import checkpoints
from tokenbridge import vae as vae_module
from tokenbridge.classifier import ClassifierConfig, build_classifier
from tokenbridge.data import ImageFolderDataset, LatentDataset, cache_latents
from tokenbridge.devices import pick_device
from tokenbridge.evaluation import generation_metrics
from tokenbridge.generator import build_generator, patchify, preset_config
from tokenbridge.metrics import accuracy, classifier_outputs, psnr
from tokenbridge.pipeline import Pipeline
from tokenbridge.quantizer import GaussianQuantizer
from tokenbridge.sampling import ORDERS
from tokenbridge.shapes import DATASETS, HELDOUT_SEED, TRAIN_SEED, ShapesDataset
from tokenbridge.spectral import frequency_order
from tokenbridge.training_loop import Task

RECIPE_FIELDS = (
    "position_bias",
    "mask_ratio_min",
    "value_loss",
    "head_init",
    "local_mixing",
    "class_input",
    "absolute_position",
    "readout",
    "quant_levels",
)
"""Generator config fields a recipe field of the same name overrides (see `GeneratorConfig`)."""

# ------------------------------------------------------------------------------------------------
# Recipes
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VAERecipe:
    """A VAE: ``data`` (a procedural dataset or an image folder) at ``image_size`` pixels; the preset with
    ``latent_channels`` and ``stride`` (None: the preset's); L1 or L2 reconstruction plus
    ``kl_weight`` × the mean per-element KL."""

    data: str = "shapes"
    image_size: int = 64
    preset: str = "small"
    latent_channels: int | None = None
    stride: int | None = None
    kl_weight: float = 5e-4
    recon_loss: str = "l1"


@dataclass(frozen=True)
class ClassifierRecipe:
    """The shapes classifier (FD-shapes features, class accuracy) on ``data`` at ``image_size``."""

    data: str = "shapes"
    image_size: int = 64


@dataclass(frozen=True)
class GeneratorRecipe:
    """A generator on the latent cache ``latents`` (written first from ``vae`` over ``num_images``
    images of ``data`` when missing). Fields left None keep the preset's value; ``head_positions``
    masked positions per image feed the channel head (None: all); ``head_lr_scale`` multiplies the
    learning rate of the channel head's output layers; the export samples ``eval_samples`` images
    per order and scores them with ``classifier``."""

    latents: str
    vae: str = "assets/vae_small.safetensors"
    classifier: str = "assets/classifier.safetensors"
    data: str = "shapes"
    image_size: int = 64
    preset: str = "tokenbridge_small"
    num_images: int = 50_000
    workers: int = 0
    device: str = "auto"
    channel_order: str = "frequency"
    head_positions: int | None = None
    dropout: float | None = None
    position_bias: str | None = None
    mask_ratio_min: float | None = None
    value_loss: float | None = None
    head_init: str | None = None
    local_mixing: str | None = None
    class_input: str | None = None
    absolute_position: str | None = None
    readout: str | None = None
    quant_levels: int | None = None
    head_lr_scale: float = 1.0
    eval_samples: int = 500


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------


def training_images(data: str, size: int):
    """A procedural dataset (`DATASETS`: effectively endless) or an image folder (one sub-folder per class)."""
    if data in DATASETS:
        return ShapesDataset(10_000_000, seed=TRAIN_SEED, size=size, kind=data)
    return ImageFolderDataset(data, size=size)


def heldout_shapes(count: int, size: int) -> ShapesDataset:
    return ShapesDataset(count, seed=HELDOUT_SEED, size=size)


def _image_batches(dataset, count: int, batch_size: int = 64):
    for start in range(0, count, batch_size):
        items = [dataset[i] for i in range(start, min(count, start + batch_size))]
        yield torch.stack([it[0] for it in items]), torch.stack([it[1] for it in items])


def _description(dataset, data: str) -> dict:
    return getattr(dataset, "description", {"kind": "folder", "root": data})


# ------------------------------------------------------------------------------------------------
# VAE
# ------------------------------------------------------------------------------------------------


def vae_overrides(recipe: VAERecipe) -> dict:
    """Preset overrides from the image size, latent channels and stride (the latent grid is image
    size / stride a side)."""
    overrides = {"resolution": recipe.image_size}
    if recipe.latent_channels is not None:
        overrides.update(z_channels=recipe.latent_channels, embed_dim=recipe.latent_channels)
    if recipe.stride is not None:
        ch_mult = vae_module.PRESETS[recipe.preset].ch_mult
        overrides["ch_mult"] = vae_module.levels_for_stride(ch_mult, recipe.stride)
    return overrides


def vae_task(recipe: VAERecipe) -> Task:
    dataset = training_images(recipe.data, recipe.image_size)
    overrides = vae_overrides(recipe)

    def loss(net, batch, rng):
        images = batch[0]
        recon, posterior = net(images, rng)
        rec = (recon - images).abs().mean() if recipe.recon_loss == "l1" else (recon - images).pow(2).mean()
        kl = posterior.kl().mean()
        return rec + recipe.kl_weight * kl, {"rec": rec.item(), "kl": kl.item()}

    @torch.no_grad()
    def prepare_export(model, device):
        """Measure the latent std on training images; store ``scale_factor = 1 / std`` in the config."""
        latents = torch.cat([model.encode(x.to(device)).mean.cpu() for x, _ in _image_batches(dataset, 2048)])
        std = float(latents.float().std())
        config = vae_module.VAEConfig(**{**model.config.to_dict(), "scale_factor": round(1.0 / std, 6)})
        rebuilt = vae_module.build_vae(config).to(device)
        rebuilt.load_state_dict(model.state_dict())
        return rebuilt.eval()

    return Task(
        kind="vae",
        build_model=lambda: vae_module.build_vae(recipe.preset, **overrides),
        dataset=dataset,
        loss=loss,
        model_config=lambda m: m.config.to_dict(),
        export_metrics=lambda model, device: _vae_metrics(model, device, recipe.image_size),
        prepare_export=prepare_export,
        data_description={
            **_description(dataset, recipe.data),
            "recon_loss": recipe.recon_loss,
            "kl_weight": recipe.kl_weight,
        },
    )


@torch.no_grad()
def _vae_metrics(model, device, image_size: int) -> dict:
    """PSNR of continuous and 64-level quantized reconstructions of 1,000 held-out shapes."""
    quantizer = GaussianQuantizer.official()
    cont, quant = [], []
    for x, _ in _image_batches(heldout_shapes(1000, image_size), 1000):
        x = x.to(device)
        z = model.encode_latents(x)
        cont.append(psnr(model.decode_latents(z), x))
        quant.append(psnr(model.decode_latents(quantizer.dequantize(quantizer.quantize(z))), x))
    return {
        "heldout_images": 1000,
        "psnr_continuous_db": round(float(torch.cat(cont).mean()), 3),
        "psnr_quantized_b64_db": round(float(torch.cat(quant).mean()), 3),
        "latent_scale_factor": model.config.scale_factor,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


# ------------------------------------------------------------------------------------------------
# Classifier
# ------------------------------------------------------------------------------------------------


def classifier_task(recipe: ClassifierRecipe) -> Task:
    dataset = training_images(recipe.data, recipe.image_size)
    num_classes = len(dataset.classes)

    def loss(net, batch, rng):
        images, labels = batch[0], batch[1]
        return F.cross_entropy(net(images), labels), {}

    @torch.no_grad()
    def export_metrics(model, device):
        heldout = heldout_shapes(2000, recipe.image_size)
        labels = torch.tensor([heldout[i][1] for i in range(len(heldout))])
        _, predicted = classifier_outputs(model, (x for x, _ in _image_batches(heldout, len(heldout))), device)
        return {
            "heldout_images": len(heldout),
            "heldout_accuracy": round(accuracy(predicted, labels), 4),
            "parameters": sum(p.numel() for p in model.parameters()),
        }

    return Task(
        kind="classifier",
        build_model=lambda: build_classifier(ClassifierConfig(num_classes=num_classes, image_size=recipe.image_size)),
        dataset=dataset,
        loss=loss,
        model_config=lambda m: m.config.to_dict(),
        export_metrics=export_metrics,
        data_description=_description(dataset, recipe.data),
        extra={"classes": list(dataset.classes)},
    )


# ------------------------------------------------------------------------------------------------
# Generator
# ------------------------------------------------------------------------------------------------


def latent_cache(recipe: GeneratorRecipe) -> LatentDataset:
    """The cached latents ``recipe.latents``; written first (``recipe.vae`` over ``num_images``
    training images of ``data``) when the file does not exist yet."""
    path = Path(recipe.latents)
    if not path.exists():
        device = pick_device(recipe.device)
        vae = checkpoints.load_model(recipe.vae, kind="vae").to(device)
        images = training_images(recipe.data, vae.config.resolution)
        subset = torch.utils.data.Subset(images, range(min(recipe.num_images, len(images))))
        subset.classes = images.classes
        subset.description = {**getattr(images, "description", {}), "num_samples": len(subset)}
        cache_latents(
            vae.encode_latents,
            subset,
            path,
            device=device,
            num_workers=recipe.workers,
            info={"vae": str(recipe.vae), "scale_factor": vae.config.scale_factor},
        )
    return LatentDataset(path)


def latent_layout(meta: dict, image_size: int) -> dict:
    """The generator's data layout (``img_size``, ``vae_stride``, ``vae_embed_dim``) from a latent
    cache's metadata: the preset sets the network's sizes, the latents set what it models. The image
    size is the cached dataset's (``image_size`` when it does not say)."""
    channels, height, width = meta["latent_shape"]
    size = int(meta.get("dataset", {}).get("size", image_size))
    if height != width or size % height:
        raise ValueError(
            f"latents {meta['latent_shape']} of {size}x{size} images: the generator needs a square "
            f"latent grid that divides the image size"
        )
    return {"img_size": size, "vae_stride": size // height, "vae_embed_dim": channels}


def generator_overrides(recipe: GeneratorRecipe, cache: LatentDataset, channel_order: torch.Tensor) -> dict:
    """Preset overrides: the cache's layout and classes, the channel order, and the recipe fields set."""
    overrides = {
        **latent_layout(cache.metadata, recipe.image_size),
        "channel_order": tuple(channel_order.tolist()),
        "class_num": max(cache.num_classes, 1),
    }
    if recipe.dropout is not None:
        overrides.update(attn_dropout=recipe.dropout, proj_dropout=recipe.dropout)
    for name in RECIPE_FIELDS:  # recipe fields left unset keep the preset's value
        if getattr(recipe, name) is not None:
            overrides[name] = getattr(recipe, name)
    return overrides


def _dataset_kind(meta: dict) -> dict:
    """``{"dataset": kind}`` when a latent cache was written from a procedural dataset, else ``{}``."""
    kind = meta.get("dataset", {}).get("kind")
    return {"dataset": kind} if kind in DATASETS else {}


def generator_task(recipe: GeneratorRecipe) -> Task:
    cache = latent_cache(recipe)  # its fit to the preset and to the VAE: checked by the command line
    latents = cache.latents.float()
    frequency = recipe.channel_order == "frequency"
    order = frequency_order(latents[:4096]) if frequency else torch.arange(latents.shape[1])
    overrides = generator_overrides(recipe, cache, order)
    config = preset_config(recipe.preset, **overrides)
    quantizer = GaussianQuantizer(config.quant_levels, config.quant_max, config.std_range)
    indices = quantizer.quantize(patchify(latents, config.patch_size))  # [N, L, C] uint8, VAE channel order

    def loss(net, batch, rng):
        indices_BNC, labels_B = batch
        ce, per_channel = net(
            indices_BNC.long(), labels_B, rng, return_channel_ce=True, head_positions=recipe.head_positions
        )
        return ce, {
            "ce": per_channel.mean().item(),
            "ce_first": per_channel[0].item(),
            "ce_last": per_channel[-1].item(),
        }

    @torch.no_grad()
    def export_metrics(model, device):
        vae = checkpoints.load_model(recipe.vae, kind="vae")
        pipe = Pipeline(vae, model, classes=cache.classes, device=device, **_dataset_kind(cache.metadata))
        classifier = checkpoints.load_model(recipe.classifier, kind="classifier")
        return {
            "parameters": sum(p.numel() for p in model.parameters()),
            "channel_order": list(model.config.generation_order),
            "samples": {
                order: generation_metrics(pipe, classifier, recipe.eval_samples, order=order) for order in ORDERS
            },
        }

    return Task(
        kind="generator",
        build_model=lambda: build_generator(recipe.preset, **overrides),
        dataset=torch.utils.data.TensorDataset(indices, cache.labels),
        loss=loss,
        model_config=lambda m: m.config.to_dict(),
        export_metrics=export_metrics,
        data_description={
            "latents": cache.metadata,
            "channel_order": recipe.channel_order,
            "preset": recipe.preset,
            "head_positions": recipe.head_positions,
        },
        extra={"classes": cache.classes, **_dataset_kind(cache.metadata)},
        lr_scales={} if recipe.head_lr_scale == 1.0 else {"channel_heads.": recipe.head_lr_scale},
    )


TASKS = {
    "vae": (VAERecipe, vae_task),
    "classifier": (ClassifierRecipe, classifier_task),
    "generator": (GeneratorRecipe, generator_task),
}
"""Each task's recipe type and the function that makes its `Task`."""
