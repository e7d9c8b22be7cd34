"""`Pipeline`: VAE + quantizer + channel order + generator, the one object the app and notebooks use.

    pipe = Pipeline.load("embedded")                       # assets/ shipped with the kit
    pipe = Pipeline.load(vae="kl16.ckpt", generator="checkpoint-last.pth")   # official files
    images = pipe.generate([3, 3, 7], seed=0, order="confidence")
    for step in pipe.steps([3], seed=0, preview=True): ...
    edited = pipe.edit(images, region, labels=[3] * len(images), seed=0)   # region: bool [h, w] token grid

`edit` pastes its decode back into the input images: pixels farther than ``feather`` (4) pixels
from the region stay the input's. Images are ``[B, 3, H, W]`` float32 in [-1, 1] on the CPU;
latents are *scaled* (what the quantizer sees). The generator's config fixes the quantizer
(levels, value range, std range) and the channel order; a pipeline without a generator uses the
official quantizer and reconstructs only.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from tokenbridge import checkpoints
from tokenbridge.compositing import FEATHER, paste_back
from tokenbridge.devices import pick_device
from tokenbridge.quantizer import GaussianQuantizer
from tokenbridge.sampling import SamplerSettings, sample_steps

ASSETS = Path(__file__).resolve().parent.parent / "assets"
EMBEDDED = {"vae": ASSETS / "vae_icons.safetensors", "generator": ASSETS / "generator_icons.safetensors"}
"""The embedded default: the 4-channel tokenizer and the generator trained on icons (`tokenbridge.shapes`)."""


def embedded_file(kind: str) -> str:
    """The embedded ``kind`` ("vae" or "generator") relative to the repository root: how command
    lines (run from there) and the results files they write name it."""
    return str(EMBEDDED[kind].relative_to(ASSETS.parent))


SAMPLER_DEFAULTS = asdict(SamplerSettings())
"""The sampler defaults (`SamplerSettings`, measured on the embedded generator) as a dict, for
records (``{**SAMPLER_DEFAULTS, **sampler}``) and comparisons with JSON files."""


@dataclass
class PreviewStep:
    """A `SamplingStep` (``.step``) plus the decoded preview ``[B, 3, H, W]`` of its committed tokens."""

    step: object
    preview: torch.Tensor | None


def _load_vae(path: str | os.PathLike):
    """Our safetensors VAE, or an official torch checkpoint (``kl16.ckpt``)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return checkpoints.load_model(path, kind="vae")
    return checkpoints.load_official_vae(path)


def load_generator(path: str | os.PathLike):
    """``(generator, class names or None, the procedural dataset it learnt or None)`` from our
    safetensors file or an official ``.pth``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        extra = checkpoints.read_header(path).get("extra", {})
        return checkpoints.load_model(path, kind="generator"), extra.get("classes"), extra.get("dataset")
    model, _ = checkpoints.load_official_generator(path)
    return model, None, None


class Pipeline:
    """VAE + generator (optional) + quantizer on one device; see the module docstring."""

    def __init__(
        self,
        vae,
        generator=None,
        classes: Sequence[str] | None = None,
        device: str | torch.device | None = "auto",
        source: dict | None = None,
        dataset: str | None = None,
    ):
        self.device = pick_device(device)
        self.dataset = dataset or "shapes"
        """The procedural dataset the generator learnt (`tokenbridge.shapes.DATASETS`): the
        reference of its evaluations. Files that do not say (older ones, official ones): "shapes"."""
        self.vae = vae.to(self.device).eval()
        self.generator = generator.to(self.device).eval() if generator is not None else None
        self.source = dict(source or {})
        if generator is not None:
            self._check_compatible()
            config = generator.config
            self.quantizer = GaussianQuantizer(config.quant_levels, config.quant_max, config.std_range)
            self.channel_order = tuple(config.generation_order)
            num_classes = config.class_num
        else:
            self.quantizer = GaussianQuantizer.official()
            self.channel_order = tuple(range(vae.config.embed_dim))
            num_classes = len(classes) if classes else 0
        self.classes = list(classes) if classes else [f"class {i}" for i in range(num_classes)]

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        name: str | None = None,
        *,
        vae: str | os.PathLike | None = None,
        generator: str | os.PathLike | None = None,
        device: str | torch.device | None = "auto",
    ) -> "Pipeline":
        """``Pipeline.load("embedded")`` or ``Pipeline.load(vae=PATH, generator=PATH)``.

        Paths ending in ``.safetensors`` are our format; others are official torch checkpoints
        (read with ``weights_only=True``). ``generator`` may be omitted (reconstruction only).
        """
        if name is not None:
            if name != "embedded":
                raise ValueError(f"unknown pipeline {name!r}; valid: 'embedded', or pass vae=/generator= paths")
            if vae is not None or generator is not None:
                raise ValueError("pass either 'embedded' or vae=/generator= paths, not both")
            vae, generator = EMBEDDED["vae"], EMBEDDED["generator"]
            for kind, path in EMBEDDED.items():
                if not path.is_file():
                    raise FileNotFoundError(
                        f"the embedded {kind} {path} is missing: reinstall the kit, or train it (see assets/README.md)"
                    )
        if vae is None:
            raise ValueError("a VAE is required: Pipeline.load('embedded') or Pipeline.load(vae=PATH, ...)")
        vae_model = _load_vae(vae)
        gen_model, classes, dataset = load_generator(generator) if generator is not None else (None, None, None)
        source = {"vae": str(vae), "generator": None if generator is None else str(generator)}
        return cls(vae_model, gen_model, classes=classes, device=device, source=source, dataset=dataset)

    def _check_compatible(self) -> None:
        vae_config, generator_config = self.vae.config, self.generator.config
        if generator_config.vae_embed_dim != vae_config.embed_dim:
            raise ValueError(
                f"mismatched VAE and generator: the VAE has {vae_config.embed_dim} latent channels, the "
                f"generator expects {generator_config.vae_embed_dim}"
            )
        if generator_config.vae_stride != vae_config.downsampling_factor:
            raise ValueError(
                f"mismatched VAE and generator: VAE stride {vae_config.downsampling_factor}, generator "
                f"expects {generator_config.vae_stride}"
            )

    # ------------------------------------------------------------------ properties
    @property
    def image_size(self) -> int:
        return self.generator.config.img_size if self.generator is not None else self.vae.config.resolution

    @property
    def num_channels(self) -> int:
        return self.vae.config.embed_dim

    def autocast(self):
        """bf16 autocast on CUDA, nothing on the CPU (fp32 there: exact and deterministic)."""
        return (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda"
            else torch.autocast("cpu", enabled=False)
        )

    # ------------------------------------------------------------------ VAE side
    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in [-1, 1] → scaled latents ``[B, C, h, w]`` (posterior mean)."""
        with self.autocast():
            return self.vae.encode_latents(images.to(self.device)).float().cpu()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents → images ``[B, 3, H, W]`` clipped to [-1, 1]."""
        with self.autocast():
            return self.vae.decode_latents(latents.to(self.device)).float().clamp(-1, 1).cpu()

    def quantize(self, latents: torch.Tensor, quantizer: GaussianQuantizer | None = None) -> torch.Tensor:
        """Scaled latents → indices (uint8 for B ≤ 256), by this pipeline's quantizer unless given."""
        return (quantizer or self.quantizer).quantize(latents)

    def dequantize(self, indices: torch.Tensor, quantizer: GaussianQuantizer | None = None) -> torch.Tensor:
        return (quantizer or self.quantizer).dequantize(indices)

    def reconstruct(
        self, images: torch.Tensor, quantizer: GaussianQuantizer | None = None, quantized: bool = True
    ) -> torch.Tensor:
        """Encode → (quantize → dequantize) → decode; ``quantized=False`` skips the quantizer."""
        latents = self.encode(images)
        if quantized:
            latents = self.dequantize(self.quantize(latents, quantizer), quantizer)
        return self.decode(latents)

    # ------------------------------------------------------------------ generation
    def tokens_to_latents(self, tokens_BNC: torch.Tensor) -> torch.Tensor:
        """Sampled indices ``[B, N, C]`` (VAE channel order) → scaled latents ``[B, C, h, w]``."""
        return self.generator.unpatchify(self.quantizer.dequantize(tokens_BNC.cpu()))

    def preview(self, step) -> torch.Tensor:
        """Images decoded from a `SamplingStep`'s committed tokens (masked positions at the prior mean 0)."""
        return self.decode(self.generator.unpatchify(step.x_hat.float().cpu()))

    def _labels(self, labels: Sequence[int] | torch.Tensor | None) -> torch.Tensor | None:
        if labels is None:
            return None
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        bad = labels[(labels < 0) | (labels >= len(self.classes))]
        if len(bad):
            raise ValueError(f"class {int(bad[0])} out of range: valid 0..{len(self.classes) - 1}")
        return labels

    def _require_generator(self) -> None:
        if self.generator is None:
            raise ValueError("this pipeline has no generator: load one to generate images")

    def steps(
        self,
        labels: Sequence[int] | torch.Tensor | None,
        seed: int = 0,
        preview: bool = False,
        batch_size: int = 1,
        settings: SamplerSettings | None = None,
        **sampler,
    ) -> Iterator[PreviewStep]:
        """A `PreviewStep` per sampling iteration (``preview`` decodes the committed tokens).

        ``labels``: class ids ``[B]`` (None: ``batch_size`` unconditional images). Row ``i`` uses
        its own RNG (``torch.Generator``) seeded ``seed + i``, so a row's image does not depend on the batch.
        ``settings``: the sampler's (default: `SamplerSettings()`, the measured defaults); other
        keywords go to `tokenbridge.sampling.sample_steps`: knobs (``cfg=3``, ...) change ``settings``.
        Arguments are checked at the call, before the first step.
        """
        self._require_generator()
        labels_B = self._labels(labels)
        rows = len(labels_B) if labels_B is not None else batch_size
        settings = SamplerSettings() if settings is None else settings
        return self._run(labels_B, rows, seed, preview, settings, sampler)

    def _run(
        self, labels_B, rows: int, seed: int, preview: bool, settings: SamplerSettings, sampler: dict
    ) -> Iterator[PreviewStep]:
        """Start the sampler (it validates its arguments now) with one RNG per row, seeded ``seed + i``."""
        rngs = [torch.Generator(self.device).manual_seed(seed + i) for i in range(rows)]
        if labels_B is not None:
            labels_B = labels_B.to(self.device)
        iterator = sample_steps(self.generator, labels_B, settings, rng=rngs, batch_size=rows, **sampler)
        return self._previews(iterator, preview)

    def _previews(self, iterator, preview: bool) -> Iterator[PreviewStep]:
        # autocast is entered per step, never held across a yield: autocast state is per thread, and
        # a consumer (e.g. the app's worker threads) may resume this generator from another thread
        while True:
            with self.autocast():
                step = next(iterator, None)
                if step is None:
                    return
                shown = self.preview(step) if preview else None
            yield PreviewStep(step, shown)

    def generate_tokens(self, labels, seed: int = 0, batch_size: int = 1, **sampler) -> torch.Tensor:
        """Final indices ``[B, N, C]`` (VAE channel order)."""
        return _final_tokens(self.steps(labels, seed=seed, batch_size=batch_size, **sampler))

    def generate(self, labels, seed: int = 0, batch_size: int = 1, **sampler) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in [-1, 1]; arguments as `steps`."""
        return self.decode(self.tokens_to_latents(self.generate_tokens(labels, seed, batch_size, **sampler)))

    # ------------------------------------------------------------------ editing
    def encode_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in [-1, 1] → indices ``[B, N, C]`` uint8 (VAE channel order), as generated."""
        self._require_generator()
        return self.quantize(self.generator.patchify(self.encode(images)))

    def edit_steps(
        self,
        tokens: torch.Tensor,
        region,
        labels=None,
        seed: int = 0,
        preview: bool = False,
        settings: SamplerSettings | None = None,
        **sampler,
    ) -> Iterator[PreviewStep]:
        """A `PreviewStep` per iteration of re-sampling ``region`` with the other tokens as known context.

        ``tokens``: ``[B, N, C]`` indices (VAE channel order, e.g. from `generate_tokens` or
        `encode_tokens`). ``region``: bool ``[h, w]`` (every image) or ``[B, h, w]`` on the token
        grid, True = re-sample; every image must select the same number M ≥ 1 of cells. ``labels``:
        one class id, B of them, or None (unconditional). Seeds, ``settings`` and sampler keywords as
        `steps`; without ``settings``, ``num_steps`` defaults to the smaller of the default and M.
        Checked at the call.
        """
        self._require_generator()
        tokens = torch.as_tensor(tokens)
        if tokens.dim() != 3:
            config = self.generator.config
            raise ValueError(
                f"tokens must be [B, {config.seq_len}, {config.token_dim}] indices, got shape {list(tokens.shape)}"
            )
        b = tokens.shape[0]
        mask_BN = self._region_mask(region, b)
        labels_B = self._labels(labels)
        if labels_B is not None and len(labels_B) not in (1, b):
            raise ValueError(f"labels must be one class id or {b} (one per image), got {len(labels_B)}")
        labels_B = None if labels_B is None else labels_B.expand(b)
        if settings is None:  # the defaults, at most one step per token to sample
            defaults = SamplerSettings()
            settings = defaults.replace(num_steps=min(defaults.num_steps, int(mask_BN[0].sum())))
        return self._run(labels_B, b, seed, preview, settings, {**sampler, "tokens": tokens, "mask": mask_BN})

    def _region_mask(self, region, batch: int) -> torch.Tensor:
        """A region ``[h, w]`` or ``[B, h, w]`` bool on the token grid → the sampler's mask ``[B, N]``."""
        g = self.generator.config.grid_size
        region = torch.as_tensor(region)
        if region.dtype != torch.bool or tuple(region.shape) not in ((g, g), (batch, g, g)):
            raise ValueError(
                f"region must be a bool tensor [{g}, {g}] or [{batch}, {g}, {g}] on the {g}×{g} "
                f"token grid (True = re-sample), got {region.dtype} {list(region.shape)}"
            )
        mask_BN = region.expand(batch, g, g).reshape(batch, g * g)
        counts = mask_BN.sum(dim=1)
        if bool((counts == 0).any()):
            empty = (counts == 0).nonzero()[:, 0].tolist()
            raise ValueError(f"the region is empty (no cell selected) for image(s) {empty}")
        if bool((counts != counts[0]).any()):
            raise ValueError(
                f"the region must select the same number of cells in every image, got "
                f"{counts.tolist()}: edit them one at a time (image i uses seed + i)"
            )
        return mask_BN

    def edit_tokens(self, tokens: torch.Tensor, region, labels=None, seed: int = 0, **sampler) -> torch.Tensor:
        """``tokens`` with ``region`` re-sampled, in the input's dtype; every other token is kept bit for bit.

        Arguments as `edit_steps`; same seed, same result.
        """
        edited = _final_tokens(self.edit_steps(tokens, region, labels, seed, **sampler))
        return edited.to(torch.as_tensor(tokens).dtype)

    def edit(
        self,
        images: torch.Tensor,
        region,
        labels=None,
        seed: int = 0,
        feather: float = FEATHER,
        paste: bool = True,
        **sampler,
    ) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` (or one ``[3, H, W]``, H = W = `image_size`) with ``region`` re-sampled.

        Encode → quantize → `edit_tokens` → decode, then (``paste``) `compositing.paste_back` into
        ``images``: pixels farther than ``feather`` pixels from the region's cells are the input's
        bit for bit (the decoder would change them a little). ``paste=False``: the raw decode.
        Returns the input's shape; other arguments as `edit_steps`.
        """
        self._require_generator()
        size = self.image_size
        batch = images[None] if images.dim() == 3 else images
        if batch.dim() != 4 or tuple(batch.shape[1:]) != (3, size, size):
            raise ValueError(
                f"images must be [B, 3, {size}, {size}] or [3, {size}, {size}] in [-1, 1], got "
                f"shape {list(images.shape)}"
            )
        edited = self.edit_tokens(self.encode_tokens(batch), region, labels, seed, **sampler)
        decoded = self.decode(self.tokens_to_latents(edited))
        if paste:
            decoded = paste_back(batch.cpu(), decoded, torch.as_tensor(region), feather)
        return decoded.reshape(images.shape)

    def describe(self) -> dict:
        """What is loaded: presets, parameter counts, levels, channel order, device, dtype, sources."""
        info = {
            "vae": {"config": self.vae.config.to_dict(), "parameters": sum(p.numel() for p in self.vae.parameters())},
            "quantizer": {k: v for k, v in self.quantizer.state_dict().items() if not torch.is_tensor(v)},
            "channel_order": list(self.channel_order),
            "device": str(self.device),
            "dtype": "bfloat16 autocast" if self.device.type == "cuda" else "float32",
            "classes": self.classes,
            "source": self.source,
        }
        if self.generator is not None:
            info["generator"] = {
                "config": self.generator.config.to_dict(),
                "parameters": sum(p.numel() for p in self.generator.parameters()),
            }
        return info


def _final_tokens(steps: Iterator[PreviewStep]) -> torch.Tensor:
    """Drain a run of `PreviewStep`s: the last step's tokens ``[B, N, C]`` on the CPU."""
    last = None
    for last in steps:
        pass
    return last.step.tokens.cpu()
