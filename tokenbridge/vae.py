"""KL autoencoder: the LDM / MAR ``AutoencoderKL`` architecture, written here, key-compatible.

Parameter names and shapes equal the official MAR KL-16 checkpoint (``kl16.ckpt``), so its
state dict loads with ``strict=True`` into `kl16()`; `small()` is the embedded 64×64 preset.

Two latent conventions, kept apart by name:

- ``encode(images) -> DiagonalGaussian`` and ``decode(z)`` work on *unscaled* latents, exactly as
  the official ``AutoencoderKL`` does;
- ``encode_latents(images)`` / ``decode_latents(x)`` give and take latents multiplied by the
  config's ``scale_factor`` (≈ unit variance): what the quantizer and the generator see.

Images are ``[B, 3, H, W]`` float in [-1, 1]; latents ``[B, embed_dim, H/f, W/f]`` with
``f = 2 ** (len(ch_mult) - 1)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VAEConfig:
    """Every size of the autoencoder, stored inside each checkpoint (``asdict`` / ``VAEConfig(**d)``).

    ``scale_factor`` multiplies latents before the quantizer/generator see them (official KL-16:
    0.2325; ours: 1 / std of the latents on the training data, measured after training).
    ``norm_groups``: GroupNorm groups (LDM: 32, i.e. 4 channels per group at width 128). A narrow
    model needs fewer: with one channel per group the decoder's last norm erases each image's
    mean colour, which no later layer can restore.
    """

    ch: int = 128
    norm_groups: int = 32
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    encoder_attn_resolutions: tuple[int, ...] = (16,)
    decoder_attn_resolutions: tuple[int, ...] = ()
    resolution: int = 256
    in_channels: int = 3
    out_channels: int = 3
    z_channels: int = 16
    embed_dim: int = 16
    dropout: float = 0.0
    scale_factor: float = 0.2325

    def __post_init__(self):
        # JSON round trips turn tuples into lists; keep the dataclass hashable and comparable.
        for name in ("ch_mult", "encoder_attn_resolutions", "decoder_attn_resolutions"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.norm_groups < 1 or self.ch <= 0 or self.ch % self.norm_groups:
            raise ValueError(
                f"ch must be a positive multiple of norm_groups, got ch={self.ch}, norm_groups={self.norm_groups}"
            )
        if not self.ch_mult or min(self.ch_mult) <= 0:
            raise ValueError(f"ch_mult must be non-empty and positive, got {self.ch_mult}")
        if self.resolution % self.downsampling_factor:
            raise ValueError(f"resolution {self.resolution} is not divisible by the stride {self.downsampling_factor}")
        if not self.scale_factor > 0 or not math.isfinite(self.scale_factor):
            raise ValueError(f"scale_factor must be a positive finite number, got {self.scale_factor}")

    @property
    def downsampling_factor(self) -> int:
        """Spatial stride between images and latents."""
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def latent_size(self) -> int:
        """Latent height/width for images of ``resolution`` pixels."""
        return self.resolution // self.downsampling_factor

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------------
# Building blocks (names match the LDM code the official checkpoints were saved from)
# ------------------------------------------------------------------------------------------------


def _group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """norm → SiLU → conv, twice, plus a 1×1 ``nin_shortcut`` when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = _group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _group_norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        shortcut = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return shortcut + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1×1-conv q/k/v/proj_out (LDM ``AttnBlock``)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = _group_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x_norm = self.norm(x)
        q_BLC, k_BLC, v_BLC = (m(x_norm).flatten(2).transpose(1, 2) for m in (self.q, self.k, self.v))
        out_BLC = F.scaled_dot_product_attention(q_BLC[:, None], k_BLC[:, None], v_BLC[:, None])[:, 0]
        return x + self.proj_out(out_BLC.transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Stride-2 3×3 conv after asymmetric (0, 1, 0, 1) padding, as LDM."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour ×2 then a 3×3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution level: ``block`` (ResnetBlocks), ``attn`` (possibly empty), optional resampler."""

    def __init__(self, blocks: list[nn.Module], attns: list[nn.Module]):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            x = block(x)
            if self.attn:
                x = self.attn[i](x)
        return x


class _Mid(nn.Module):
    def __init__(self, channels: int, dropout: float, groups: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout, groups)
        self.attn_1 = AttnBlock(channels, groups)
        self.block_2 = ResnetBlock(channels, channels, dropout, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    """Images ``[B, 3, H, W]`` → ``[B, 2·z_channels, H/f, W/f]`` (mean and log-variance halves)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.conv_in = nn.Conv2d(config.in_channels, config.ch, 3, padding=1)
        widths = [config.ch * m for m in (1, *config.ch_mult)]
        res = config.resolution
        self.down = nn.ModuleList()
        for level in range(len(config.ch_mult)):
            w_in, w_out = widths[level], widths[level + 1]
            blocks = [
                ResnetBlock(w_in if i == 0 else w_out, w_out, config.dropout, config.norm_groups)
                for i in range(config.num_res_blocks)
            ]
            attended = res in config.encoder_attn_resolutions
            attns = [AttnBlock(w_out, config.norm_groups) for _ in blocks] if attended else []
            stage = _Level(blocks, attns)
            if level != len(config.ch_mult) - 1:
                stage.downsample = Downsample(w_out)
                res //= 2
            self.down.append(stage)
        self.mid = _Mid(widths[-1], config.dropout, config.norm_groups)
        self.norm_out = _group_norm(widths[-1], config.norm_groups)
        self.conv_out = nn.Conv2d(widths[-1], 2 * config.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            h = stage(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Latents ``[B, z_channels, h, w]`` → images ``[B, 3, h·f, w·f]`` (unbounded; ≈ [-1, 1])."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        widths = [config.ch * m for m in config.ch_mult]
        res = config.latent_size
        self.conv_in = nn.Conv2d(config.z_channels, widths[-1], 3, padding=1)
        self.mid = _Mid(widths[-1], config.dropout, config.norm_groups)
        levels: list[nn.Module] = []
        w_in = widths[-1]
        for level in reversed(range(len(config.ch_mult))):
            w_out = widths[level]
            blocks = [
                ResnetBlock(w_in if i == 0 else w_out, w_out, config.dropout, config.norm_groups)
                for i in range(config.num_res_blocks + 1)
            ]
            attended = res in config.decoder_attn_resolutions
            attns = [AttnBlock(w_out, config.norm_groups) for _ in blocks] if attended else []
            stage = _Level(blocks, attns)
            if level != 0:
                stage.upsample = Upsample(w_out)
                res *= 2
            levels.insert(0, stage)  # ``up.0`` is the full-resolution level, as in LDM
            w_in = w_out
        self.up = nn.ModuleList(levels)
        self.norm_out = _group_norm(widths[0], config.norm_groups)
        self.conv_out = nn.Conv2d(widths[0], config.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for stage in reversed(self.up):
            h = stage(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


# ------------------------------------------------------------------------------------------------
# Posterior and autoencoder
# ------------------------------------------------------------------------------------------------


class DiagonalGaussian:
    """Posterior N(mean, std²) per latent element; log-variance clamped to [-30, 20] as LDM."""

    def __init__(self, moments: torch.Tensor):
        self.mean, logvar = moments.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, rng: torch.Generator | None = None) -> torch.Tensor:
        """mean + std · ε with ε drawn from ``rng`` (reparameterized: gradients flow)."""
        noise = torch.randn(self.mean.shape, generator=rng, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q ‖ N(0, I)) per element, ``[B, C, h, w]`` (nats)."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar)


class AutoencoderKL(nn.Module):
    """Encoder + ``quant_conv`` → diagonal Gaussian → ``post_quant_conv`` + decoder."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quant_conv = nn.Conv2d(2 * config.z_channels, 2 * config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)

    @property
    def scale_factor(self) -> float:
        return self.config.scale_factor

    def encode(self, images: torch.Tensor) -> DiagonalGaussian:
        """Images ``[B, 3, H, W]`` in [-1, 1] → posterior over *unscaled* latents."""
        self._check_images(images)
        return DiagonalGaussian(self.quant_conv(self.encoder(images)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """*Unscaled* latents ``[B, embed_dim, h, w]`` → images ``[B, 3, H, W]`` (≈ [-1, 1])."""
        if z.dim() != 4 or z.shape[1] != self.config.embed_dim:
            raise ValueError(f"expected latents [B, {self.config.embed_dim}, h, w], got {tuple(z.shape)}")
        return self.decoder(self.post_quant_conv(z))

    def encode_latents(
        self, images: torch.Tensor, rng: torch.Generator | None = None, sample: bool = False
    ) -> torch.Tensor:
        """Scaled latents (posterior mean, or a sample when ``sample``) × ``scale_factor``."""
        posterior = self.encode(images)
        z = posterior.sample(rng) if sample else posterior.mean
        return z * self.config.scale_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (as from `encode_latents` or the quantizer) → images."""
        return self.decode(latents / self.config.scale_factor)

    def forward(self, images: torch.Tensor, rng: torch.Generator | None = None):
        """Training pass: ``(reconstruction, posterior)`` with a posterior sample decoded."""
        posterior = self.encode(images)
        return self.decode(posterior.sample(rng)), posterior

    def _check_images(self, images: torch.Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != self.config.in_channels:
            raise ValueError(f"expected images [B, {self.config.in_channels}, H, W], got {tuple(images.shape)}")
        f = self.config.downsampling_factor
        if images.shape[-1] % f or images.shape[-2] % f:
            raise ValueError(f"image size {tuple(images.shape[-2:])} is not divisible by the VAE stride {f}")


# ------------------------------------------------------------------------------------------------
# Presets
# ------------------------------------------------------------------------------------------------


_EMBEDDED = dict(
    ch=32, norm_groups=8, num_res_blocks=1, encoder_attn_resolutions=(), decoder_attn_resolutions=(), scale_factor=1.0
)
PRESETS: dict[str, VAEConfig] = {
    # The official MAR KL-16 (256×256 → 16×16×16; 66,456,019 parameters).
    "kl16": VAEConfig(),
    # The embedded preset: 64×64 → 8×8×16, widths 32-64-64-128, one ResNet block per level,
    # GroupNorm(8) (4 channels per group at width 32, as LDM's 32 groups at width 128). Sized so that
    # training on 2 CPU cores takes well under an hour; ``scale_factor`` is a placeholder of 1.0
    # until training measures it.
    "small": VAEConfig(**_EMBEDDED, ch_mult=(1, 2, 2, 4), resolution=64),
    # A very small preset for tests (32×32 → 8×8×4).
    "tiny": VAEConfig(**_EMBEDDED, ch_mult=(1, 1, 2), resolution=32, z_channels=4, embed_dim=4),
}
"""Every VAE preset as data (a model is built by `build_vae`)."""


def preset_config(name: str, **overrides) -> VAEConfig:
    """Preset ``name``'s config with ``overrides`` (validated as any config)."""
    if name not in PRESETS:
        raise ValueError(f"unknown VAE preset {name!r}; valid: {', '.join(PRESETS)}")
    return VAEConfig(**{**PRESETS[name].to_dict(), **overrides})


def kl16(**overrides) -> AutoencoderKL:
    """The official MAR KL-16 (`PRESETS`)."""
    return build_vae("kl16", **overrides)


def small(**overrides) -> AutoencoderKL:
    """The embedded preset (`PRESETS`)."""
    return build_vae("small", **overrides)


def tiny(**overrides) -> AutoencoderKL:
    """The tests' preset (`PRESETS`)."""
    return build_vae("tiny", **overrides)


def levels_for_stride(ch_mult: tuple[int, ...], stride: int) -> tuple[int, ...]:
    """Width multipliers for downsampling factor ``stride`` (a power of two ≥ 2) from a preset's
    ``ch_mult``: its first ``log2(stride)`` levels, then its deepest width (so the bottleneck keeps
    its width). E.g. ``(1, 2, 2, 4)`` → stride 4: ``(1, 2, 4)``; stride 8: unchanged."""
    levels = int(math.log2(stride)) if stride >= 2 else 0
    if stride < 2 or 2**levels != stride:
        raise ValueError(f"stride must be a power of two >= 2, got {stride}")
    return (*ch_mult[:levels], ch_mult[-1])


def build_vae(spec: str | VAEConfig | dict, **overrides) -> AutoencoderKL:
    """A VAE from a preset name (with ``overrides``) or a stored config (a `VAEConfig` or its dict
    from JSON)."""
    if isinstance(spec, str):
        return AutoencoderKL(preset_config(spec, **overrides))
    if overrides:
        raise ValueError("overrides apply to a preset name, not to a whole config")
    return AutoencoderKL(spec if isinstance(spec, VAEConfig) else VAEConfig(**spec))
