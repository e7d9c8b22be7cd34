"""TokenBridge generator: a MAR masked-autoregressive backbone + a channel-wise autoregressive head.

The backbone (MAR, Li et al. 2024) reads the dequantized tokens that are already known and gives
one feature vector ``z`` per spatial position. The channel head (TokenBridge, Sec. 3.2) predicts
that position's ``C`` quantization indices one channel after another, each a ``B``-way softmax.
Parameter and buffer names equal the official code's, so official checkpoints load key for key
(``strict=True``) into `tokenbridge_base` / `tokenbridge_large` / `tokenbridge_huge`.

This file is the network only: orders, schedules, CFG and the sampling loop live in
``tokenbridge/sampling.py``. Shapes: ``B`` batch, ``N`` spatial tokens, ``C`` channels per token
(``vae_embed_dim · patch_size²``), ``V`` quantization levels, ``D`` a model width, ``M`` a number of
selected positions (rows of ``z``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from tokenbridge.quantizer import GaussianQuantizer
from tokenbridge.spectral import OFFICIAL_KL16_ORDER

HEADS = ("autoregressive", "parallel")
POSITION_BIASES = ("none", "relative")
HEAD_INITS = ("official", "ordinal")
LOCAL_MIXINGS = ("none", "conv")
CLASS_INPUTS = ("buffer", "buffer+decoder")
ABSOLUTE_POSITIONS = ("learned", "none")
READOUTS = ("linear", "gaussian")

# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------


_POSITIVE_INTEGERS = (
    "img_size", "vae_stride", "patch_size", "encoder_embed_dim", "encoder_depth", "encoder_num_heads",
    "decoder_embed_dim", "decoder_depth", "decoder_num_heads", "channel_embed_dim", "channel_depth", "channel_heads",
    "vae_embed_dim", "class_num", "buffer_size",
)  # fmt: skip
_WIDTH_AND_HEADS = (
    ("encoder_embed_dim", "encoder_num_heads"),
    ("decoder_embed_dim", "decoder_num_heads"),
    ("channel_embed_dim", "channel_heads"),
)
_CHOICES = {
    "head": HEADS,
    "class_input": CLASS_INPUTS,
    "local_mixing": LOCAL_MIXINGS,
    "head_init": HEAD_INITS,
    "absolute_position": ABSOLUTE_POSITIONS,
    "position_bias": POSITION_BIASES,
    "readout": READOUTS,
}
"""`GeneratorConfig` fields checked by `GeneratorConfig._validate`: sizes, divisibility, named options."""


@dataclass(frozen=True)
class GeneratorConfig:
    """Every size of the generator, stored inside each checkpoint (``to_dict`` / ``from_dict``).

    Field names and defaults are the official ``TokenBridge.__init__`` keywords, except
    ``norm_eps``, which replaces ``norm_layer`` (default ``nn.LayerNorm``: 1e-5; the official
    presets pass 1e-6), and these fields of ours (the official presets keep official behaviour):

    - ``channel_order``: the order in which the ``C`` channels are generated; None means identity;
      official checkpoints use ``OFFICIAL_KL16_ORDER``, typed into their code.
    - ``head``: ``"parallel"`` is the paper's parallel-prediction ablation.
    - ``position_bias``: ``"relative"`` adds a learned 2-D relative position bias to every backbone
      attention layer (`RelativePositionBias`).
    - ``value_loss``: weight of an auxiliary training loss (`TokenBridge.forward`).
    - ``head_init``: ``"ordinal"``, see `TokenBridge.initialize_ordinal_head`.
    - ``local_mixing``: ``"conv"`` adds a `LocalMixing` layer after every decoder block.
    - ``class_input``: ``"buffer+decoder"`` also adds the class embedding to every decoder token
      (through ``decoder_class_proj``).
    - ``absolute_position``: ``"none"`` drops the three learned position tables (their keys too),
      so that with ``position_bias="relative"`` and ``local_mixing="conv"`` the backbone sees only
      relative positions: translation-equivariant but for the grid's border (the convolution's
      zero padding), so a shape learnt at one place is known at every place.
    - ``readout``: ``"gaussian"`` adds to each channel's logits a Gaussian over the level values
      whose centre and sharpness the position's features give (`TokenBridge.readout`).

    The official ``use_quantized_value`` flag is not kept: the official code ignores it.
    """

    img_size: int = 256
    vae_stride: int = 16
    patch_size: int = 1
    encoder_embed_dim: int = 1024
    encoder_depth: int = 16
    encoder_num_heads: int = 16
    decoder_embed_dim: int = 1024
    decoder_depth: int = 16
    decoder_num_heads: int = 16
    channel_embed_dim: int = 256  # official constructor default; every preset overrides it
    channel_depth: int = 4
    channel_heads: int = 8
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-5
    quant_levels: int = 32  # official default; all released models (and our presets) use 64
    quant_min: float = -5.0
    quant_max: float = 5.0
    std_range: float = 3.0
    vae_embed_dim: int = 16
    mask_ratio_min: float = 0.7
    label_drop_prob: float = 0.1
    class_num: int = 1000
    attn_dropout: float = 0.1
    proj_dropout: float = 0.1
    buffer_size: int = 64
    grad_checkpointing: bool = False
    channel_order: tuple[int, ...] | None = None
    head: str = "autoregressive"
    position_bias: str = "none"
    value_loss: float = 0.0
    head_init: str = "official"
    local_mixing: str = "none"
    class_input: str = "buffer"
    absolute_position: str = "learned"
    readout: str = "linear"

    def __post_init__(self):
        if self.channel_order is not None:  # JSON turns tuples into lists
            object.__setattr__(self, "channel_order", tuple(int(c) for c in self.channel_order))
        for f in fields(self):
            if f.type == "float":
                object.__setattr__(self, f.name, float(getattr(self, f.name)))
        self._validate()

    def _validate(self) -> None:
        for name in _POSITIVE_INTEGERS:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.img_size % (self.vae_stride * self.patch_size):
            raise ValueError(
                f"img_size {self.img_size} is not divisible by vae_stride × patch_size "
                f"= {self.vae_stride * self.patch_size}"
            )
        for dim, heads in _WIDTH_AND_HEADS:
            if getattr(self, dim) % getattr(self, heads):
                raise ValueError(f"{dim} {getattr(self, dim)} is not divisible by {heads} {getattr(self, heads)}")
        if self.quant_min != -self.quant_max or self.quant_max <= 0:
            raise ValueError(f"quant_min/quant_max must be -R/R with R > 0, got {self.quant_min}/{self.quant_max}")
        for name in ("mask_ratio_min", "label_drop_prob", "attn_dropout", "proj_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.mlp_ratio <= 0 or self.norm_eps <= 0:
            raise ValueError(f"mlp_ratio and norm_eps must be positive, got {self.mlp_ratio}, {self.norm_eps}")
        if not self.value_loss >= 0.0:
            raise ValueError(f"value_loss must be >= 0, got {self.value_loss}")
        for name, valid in _CHOICES.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; valid: {', '.join(valid)}")
        if self.channel_order is not None and sorted(self.channel_order) != list(range(self.token_dim)):
            raise ValueError(
                f"channel_order must be a permutation of 0..{self.token_dim - 1}, got {self.channel_order}"
            )
        with torch.device("cpu"):  # raises on bad levels/ranges; also under a "meta" device context
            GaussianQuantizer(self.quant_levels, self.quant_max, self.std_range)

    @property
    def grid_size(self) -> int:
        """Tokens per side of the (square) token grid."""
        return self.img_size // self.vae_stride // self.patch_size

    @property
    def seq_len(self) -> int:
        """N, the number of spatial tokens."""
        return self.grid_size**2

    @property
    def token_dim(self) -> int:
        """C, the channels per token that the channel head predicts."""
        return self.vae_embed_dim * self.patch_size**2

    @property
    def generation_order(self) -> tuple[int, ...]:
        """The channel order as a tuple (identity when ``channel_order`` is None)."""
        return self.channel_order if self.channel_order is not None else tuple(range(self.token_dim))

    def to_dict(self) -> dict:
        """JSON-able dict (tuples become lists after a JSON round trip; ``from_dict`` undoes it)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GeneratorConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown generator config key(s) {unknown}; valid: {', '.join(sorted(known))}")
        return cls(**data)


# ------------------------------------------------------------------------------------------------
# Patchify helpers
# ------------------------------------------------------------------------------------------------


def patchify(latents: torch.Tensor, patch_size: int = 1) -> torch.Tensor:
    """Latents ``[B, C, h, w]`` -> tokens ``[B, (h/p)·(w/p), C·p²]`` (row-major positions)."""
    b, c, h, w = latents.shape
    p = patch_size
    x = latents.reshape(b, c, h // p, p, w // p, p)
    return torch.einsum("bchpwq->bhwcpq", x).reshape(b, (h // p) * (w // p), c * p * p)


def unpatchify(tokens: torch.Tensor, grid_size: int, patch_size: int = 1) -> torch.Tensor:
    """Tokens ``[B, grid², C·p²]`` -> latents ``[B, C, grid·p, grid·p]`` (inverse of `patchify`)."""
    b, n, k = tokens.shape
    p = patch_size
    if n != grid_size**2:
        raise ValueError(f"{n} tokens do not fill a {grid_size}×{grid_size} grid")
    c = k // (p * p)
    x = tokens.reshape(b, grid_size, grid_size, c, p, p)
    return torch.einsum("bhwcpq->bchpwq", x).reshape(b, c, grid_size * p, grid_size * p)


# ------------------------------------------------------------------------------------------------
# Building blocks (attribute names match timm's Block/Mlp and the official CausalBlock)
# ------------------------------------------------------------------------------------------------


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class Mlp(nn.Module):
    """fc1 -> GELU -> dropout -> fc2 -> dropout (timm ``Mlp``)."""

    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Attention(nn.Module):
    """Multi-head self-attention with qkv bias and optional LayerNorm on q and k (per head).

    With ``kv_cache=(keys, values)`` (each ``[B, H, C, Dh]``, preallocated), the new keys/values of
    positions ``start..start+T-1`` are written into the cache and the queries attend to positions
    ``0..start+T-1``.
    """

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float, attn_drop: float, proj_drop: float):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(head_dim, eps=eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim, eps=eps) if qk_norm else nn.Identity()
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(
        self,
        x_BTD: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        kv_cache: tuple[torch.Tensor, torch.Tensor] | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        b, t, d = x_BTD.shape
        qkv = self.qkv(x_BTD).reshape(b, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q_BHTd, k_BHTd, v_BHTd = qkv.unbind(0)
        q_BHTd, k_BHTd = self.q_norm(q_BHTd), self.k_norm(k_BHTd)
        if kv_cache is not None:
            keys, values = kv_cache
            keys[:, :, start : start + t] = k_BHTd
            values[:, :, start : start + t] = v_BHTd
            k_BHTd, v_BHTd = keys[:, :, : start + t], values[:, :, : start + t]
        if attn_mask is not None:
            attn_mask = attn_mask.to(q_BHTd.dtype)
        out = F.scaled_dot_product_attention(
            q_BHTd, k_BHTd, v_BHTd, attn_mask=attn_mask, dropout_p=self.attn_drop if self.training else 0.0
        )
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, t, d)))


class Block(nn.Module):
    """Pre-norm ViT block of the MAR encoder/decoder (timm ``Block``, qkv bias, no layer-scale)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float, attn_drop: float, proj_drop: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, False, eps, attn_drop, proj_drop)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), proj_drop)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), attn_bias)
        return x + self.mlp(self.norm2(x))


class ChannelBlock(nn.Module):
    """Channel-head block: q/k-normed attention and MLP, both modulated and gated by AdaLN (DiT)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float, attn_drop: float, proj_drop: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, True, eps, attn_drop, proj_drop)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), proj_drop)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(
        self,
        x_MTD: torch.Tensor,
        cond_MTD: torch.Tensor,
        attn_mask: torch.Tensor,
        kv_cache: tuple[torch.Tensor, torch.Tensor] | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(cond_MTD).chunk(6, dim=-1)
        x_MTD = x_MTD + gate_a * self.attn(modulate(self.norm1(x_MTD), shift_a, scale_a), attn_mask, kv_cache, start)
        return x_MTD + gate_m * self.mlp(modulate(self.norm2(x_MTD), shift_m, scale_m))


class FinalLayer(nn.Module):
    """LayerNorm without affine, then AdaLN ``x·(1+scale)+shift`` (official order: scale, shift)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.adaLN_modulation(cond).chunk(2, dim=-1)
        return modulate(self.norm_final(x), shift, scale)


class RelativePositionBias(nn.Module):
    """Learned 2-D relative position bias of the backbone's attention (Swin / T5 style), one table
    per layer: ``table[layer, head, k]`` is added to the attention logit between two grid tokens
    whose offset (Δrow, Δcol) has index ``k``; class-buffer tokens, which have no grid position,
    use three more entries (grid→buffer, buffer→grid, buffer→buffer).

    Why: with absolute tables alone the backbone learns "attend to my neighbour" once for every
    one of the N positions; an entry per offset learns it once for all of them, which a small
    model on a CPU budget needs (see `tokenbridge.learnability`). Zero-initialised, so training
    starts from the official model's function.
    """

    def __init__(self, grid: int, buffer: int, heads: int, depth: int):
        super().__init__()
        span = 2 * grid - 1
        self.table = nn.Parameter(torch.zeros(depth, heads, span * span + 3))
        with torch.device("cpu"):
            rows, cols = torch.arange(grid).repeat_interleave(grid), torch.arange(grid).repeat(grid)
            offset = (rows[:, None] - rows + grid - 1) * span + (cols[:, None] - cols + grid - 1)
            index = torch.full((buffer + grid * grid,) * 2, span * span + 2)  # buffer -> buffer
            index[buffer:, :buffer] = span * span
            index[:buffer, buffer:] = span * span + 1
            index[buffer:, buffer:] = offset
        self.register_buffer("index", _on_default_device(index), persistent=False)

    def forward(self, keep_BL: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Per layer: the bias ``[H, L, L]`` between all ``L = buffer + N`` tokens, or with
        ``keep_BL`` (bool ``[B, L]``, the same count ``T`` per row) ``[B, H, T, T]`` between each
        row's kept tokens, in their order."""
        if keep_BL is None:
            return [table[:, self.index] for table in self.table]
        kept_BT = keep_BL.nonzero()[:, 1].view(keep_BL.shape[0], -1)
        index_BTT = self.index[kept_BT[:, :, None], kept_BT[:, None, :]]
        return [table[:, index_BTT].transpose(0, 1) for table in self.table]


class LocalMixing(nn.Module):
    """Residual depthwise 3×3 convolution over the token grid (the class buffer passes through):
    ``x + pointwise(GELU(depthwise(norm(x))))`` on the ``N = grid²`` grid tokens of ``[B, L, D]``.

    Why: attention with absolute position tables must learn "look at my neighbours" separately
    for every position, which a small model on a CPU budget does not manage (`tokenbridge.learnability`);
    a convolution has it built in, so a masked position sees its neighbours' values at once.
    """

    def __init__(self, dim: int, grid: int, buffer: int, eps: float):
        super().__init__()
        self.grid, self.buffer = grid, buffer
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.depthwise = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.pointwise = nn.Linear(dim, dim)

    def forward(self, x_BLD: torch.Tensor) -> torch.Tensor:
        b, _, d = x_BLD.shape
        grid_BDhw = self.norm(x_BLD[:, self.buffer :]).transpose(1, 2).reshape(b, d, self.grid, self.grid)
        mixed_BND = F.gelu(self.depthwise(grid_BDhw)).flatten(2).transpose(1, 2)
        return torch.cat([x_BLD[:, : self.buffer], x_BLD[:, self.buffer :] + self.pointwise(mixed_BND)], dim=1)


@dataclass
class ChannelCache:
    """State of incremental channel decoding for M positions (see `TokenBridge.channel_head_step`).

    cond_MD: ``condition_proj(z)`` ``[M, Dc]``. keys/values: one ``[M, heads, C, Dc/heads]`` tensor
    per channel block, filled up to ``length``. length: channel positions processed so far.
    """

    cond_MD: torch.Tensor
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int = 0


# ------------------------------------------------------------------------------------------------
# The generator
# ------------------------------------------------------------------------------------------------


class TokenBridge(nn.Module):
    """MAR backbone + channel head. ``TokenBridge(config)`` or ``TokenBridge(**official_kwargs)``.

    The quantizer (``.quantizer``, a `GaussianQuantizer`) dequantizes indices; the buffers
    ``reconstruction_values`` / ``boundaries`` hold its tables only so that official state dicts
    load key for key.
    """

    def __init__(self, config: GeneratorConfig | None = None, **official_kwargs):
        super().__init__()
        names = {f.name for f in fields(GeneratorConfig)}
        unknown = sorted(set(official_kwargs) - names)
        if unknown:
            raise ValueError(f"unknown TokenBridge argument(s) {unknown}; valid: {', '.join(sorted(names))}")
        cfg = replace(config or GeneratorConfig(), **official_kwargs)
        self.config = cfg
        with torch.device("cpu"):  # plain tables, even when the module is built on "meta"
            self.quantizer = GaussianQuantizer(cfg.quant_levels, cfg.quant_max, cfg.std_range)
        self._build_backbone(cfg)  # registration order = state-dict order and init draw order: keep it
        self._build_backbone_options(cfg)
        self._build_channel_head(cfg)
        # buffers: causal mask (parallel head: each channel attends to itself only), quantizer tables
        c = cfg.token_dim
        blocked = torch.full((c, c), float("-inf"))
        channel_mask = blocked.triu(1) if cfg.head == "autoregressive" else blocked.fill_diagonal_(0.0)
        self.register_buffer("channel_mask", channel_mask)
        self.register_buffer("reconstruction_values", _on_default_device(self.quantizer.values))
        self.register_buffer("boundaries", _on_default_device(self.quantizer.boundaries))
        self.initialize_weights()

    def _build_backbone(self, cfg: GeneratorConfig) -> None:
        """Class embedding, encoder over known tokens (+ class buffer), decoder (official modules)."""
        enc, dec, n, eps = cfg.encoder_embed_dim, cfg.decoder_embed_dim, cfg.seq_len, cfg.norm_eps
        drops = (cfg.attn_dropout, cfg.proj_dropout)
        self.class_emb = nn.Embedding(cfg.class_num, enc)
        self.fake_latent = nn.Parameter(torch.zeros(1, enc))
        self.z_proj = nn.Linear(cfg.token_dim, enc)
        self.z_proj_ln = nn.LayerNorm(enc, eps=1e-6)  # 1e-6 in the official code whatever norm_layer is
        if cfg.absolute_position == "learned":
            self.encoder_pos_embed_learned = nn.Parameter(torch.zeros(1, n + cfg.buffer_size, enc))
            self.decoder_pos_embed_learned = nn.Parameter(torch.zeros(1, n + cfg.buffer_size, dec))
            self.output_pos_embed = nn.Parameter(torch.zeros(1, n, dec))
        self.encoder_blocks = nn.ModuleList(
            Block(enc, cfg.encoder_num_heads, cfg.mlp_ratio, eps, *drops) for _ in range(cfg.encoder_depth)
        )
        self.encoder_norm = nn.LayerNorm(enc, eps=eps)
        self.decoder_embed = nn.Linear(enc, dec)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec))
        self.decoder_blocks = nn.ModuleList(
            Block(dec, cfg.decoder_num_heads, cfg.mlp_ratio, eps, *drops) for _ in range(cfg.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(dec, eps=eps)

    def _build_backbone_options(self, cfg: GeneratorConfig) -> None:
        """Our recipe options' modules: decoder class input, local mixing, relative position bias."""
        enc, dec = cfg.encoder_embed_dim, cfg.decoder_embed_dim
        if cfg.class_input == "buffer+decoder":
            self.decoder_class_proj = nn.Linear(enc, dec)
        if cfg.local_mixing == "conv":
            self.decoder_mixing = nn.ModuleList(
                LocalMixing(dec, cfg.grid_size, cfg.buffer_size, cfg.norm_eps) for _ in range(cfg.decoder_depth)
            )
        if cfg.position_bias == "relative":
            self.encoder_position_bias = RelativePositionBias(
                cfg.grid_size, cfg.buffer_size, cfg.encoder_num_heads, cfg.encoder_depth
            )
            self.decoder_position_bias = RelativePositionBias(
                cfg.grid_size, cfg.buffer_size, cfg.decoder_num_heads, cfg.decoder_depth
            )

    def _build_channel_head(self, cfg: GeneratorConfig) -> None:
        """The channel head (the parallel head has no token embeddings: it never sees sampled channels)."""
        dec, ch, c, eps = cfg.decoder_embed_dim, cfg.channel_embed_dim, cfg.token_dim, cfg.norm_eps
        self.condition_proj = nn.Linear(dec, ch)
        self.channel_embed = nn.Parameter(torch.zeros(1, c, ch))
        self.timesteps_embeddings = nn.Parameter(torch.zeros(1, c, ch))
        num_inputs = c - 1 if cfg.head == "autoregressive" else 0
        self.token_embeddings = nn.ModuleList(nn.Embedding(cfg.quant_levels, ch) for _ in range(num_inputs))
        self.channel_blocks = nn.ModuleList(
            ChannelBlock(ch, cfg.channel_heads, cfg.mlp_ratio, eps, cfg.attn_dropout, cfg.proj_dropout)
            for _ in range(cfg.channel_depth)
        )
        self.channel_norm = nn.LayerNorm(ch, eps=eps)
        self.channel_final = FinalLayer(ch, eps)
        self.channel_heads = nn.ModuleList(nn.Linear(ch, cfg.quant_levels) for _ in range(c))
        if cfg.readout == "gaussian":  # per channel: (centre, log width) of a Gaussian over the levels
            self.value_readouts = nn.ModuleList(nn.Linear(ch, 2) for _ in range(c))
        if cfg.value_loss > 0:  # training only: regresses the masked tokens' values from z
            self.value_head = nn.Linear(dec, c)

    def initialize_weights(self) -> None:
        """MAR/official init: N(0, 0.02) embeddings, xavier Linear, zero-init AdaLN (DiT).

        ``token_embeddings`` keep PyTorch's N(0, 1) default, as in the official code.
        """
        for p in (
            self.class_emb.weight,
            self.fake_latent,
            self.mask_token,
            self.channel_embed,
            self.timesteps_embeddings,
            *self._position_tables(),
        ):
            nn.init.normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for block in [*self.channel_blocks, self.channel_final]:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        if self.config.head_init == "ordinal":
            self.initialize_ordinal_head()
        if self.config.readout == "gaussian":  # N(0, 1) over the levels at first (the data's prior)
            for head in [*self.channel_heads, *self.value_readouts]:
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    @torch.no_grad()
    def initialize_ordinal_head(self) -> None:
        """Make the channel head's readouts and input embeddings know that levels are ordered.

        Readout of channel c: ``weight[k] = v_k · u_c`` (``v_k`` the standardized level values,
        ``u_c`` a random unit vector), bias 0, so the logits are ``v_k · μ`` with ``μ = u_c·h``: a
        Gaussian over values centred on μ (the levels are equiprobable under N(0, 1), which
        cancels the quadratic term). The gradient of the cross-entropy w.r.t. μ is then
        ``E_p[v] - v_target``, a regression signal from the first step, where independent random
        rows give the backbone almost none until the head can already read values sharply.
        Input embeddings: ``emb[k] = v_k · g_c + noise`` (``g_c`` ~ N(0, 1) per dimension, like
        the official init's scale), so nearby levels start nearby.
        """
        values_V = self.quantizer.values.to(self.fake_latent.device, self.fake_latent.dtype)
        values_V = values_V / values_V.std()
        for head in self.channel_heads:
            direction_D = F.normalize(torch.randn_like(head.weight[0]), dim=0)
            head.weight.copy_(values_V[:, None] * direction_D)
            head.bias.zero_()
        for embedding in self.token_embeddings:
            scale_D = torch.randn_like(embedding.weight[0])
            embedding.weight.copy_(values_V[:, None] * scale_D + 0.1 * torch.randn_like(embedding.weight))

    def _position_tables(self) -> tuple[nn.Parameter, ...]:
        """The learned absolute position tables: encoder, decoder, output (none without them)."""
        if self.config.absolute_position == "none":
            return ()
        return self.encoder_pos_embed_learned, self.decoder_pos_embed_learned, self.output_pos_embed

    def _add_position(self, x_BLD: torch.Tensor, table: str) -> torch.Tensor:
        """``x`` plus the absolute position table ``table`` (an attribute name), if the model has it."""
        return x_BLD + getattr(self, table) if self.config.absolute_position == "learned" else x_BLD

    # -------------------------------------------------------------------------------- tokens
    def dequantize(self, indices_BNC: torch.Tensor) -> torch.Tensor:
        """Indices (any integer dtype) -> scaled latent values, float in the model's dtype."""
        return self.quantizer.dequantize(indices_BNC).to(self.fake_latent.dtype)

    def patchify(self, latents: torch.Tensor) -> torch.Tensor:
        return patchify(latents, self.config.patch_size)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        return unpatchify(tokens, self.config.grid_size, self.config.patch_size)

    # -------------------------------------------------------------------------------- backbone
    def forward_backbone(self, x_BNC: torch.Tensor, labels_B: torch.Tensor, mask_BN: torch.Tensor) -> torch.Tensor:
        """Features ``z`` ``[B, N, Dd]`` for every position.

        x_BNC: dequantized tokens (VAE channel order); values at masked positions are ignored.
        labels_B: long class ids; the value ``class_num`` means unconditional (``fake_latent``).
        mask_BN: 1/True = unknown (to predict); every row must mask the same number of positions.
        No label drop here (`forward` does it); dropout follows ``self.training``.
        """
        mask_BN = mask_BN.bool()
        masked = mask_BN.sum(dim=1)
        if bool((masked != masked[0]).any()):
            raise ValueError(f"every row must mask the same number of positions, got {masked.tolist()}")
        keep_BL = F.pad(~mask_BN, (self.config.buffer_size, 0), value=True)
        class_BD = self._class_embedding(labels_B)
        return self._decode(self._encode(x_BNC, class_BD, keep_BL), keep_BL, class_BD)

    def _class_embedding(self, labels_B: torch.Tensor) -> torch.Tensor:
        uncond = (labels_B == self.config.class_num)[:, None]
        emb_BD = self.class_emb(labels_B.masked_fill(uncond[:, 0], 0))
        return torch.where(uncond, self.fake_latent, emb_BD)

    def _encode(self, x_BNC: torch.Tensor, class_BD: torch.Tensor, keep_BL: torch.Tensor) -> torch.Tensor:
        """Buffer of class embeddings + known tokens -> encoder output ``[B, buffer + known, De]``."""
        tokens_BND = self.z_proj(x_BNC.to(self.fake_latent.dtype))
        b, _, d = tokens_BND.shape
        buffer_BKD = class_BD[:, None].expand(b, self.config.buffer_size, d)
        h_BLD = self.z_proj_ln(
            self._add_position(torch.cat([buffer_BKD, tokens_BND], dim=1), "encoder_pos_embed_learned")
        )
        h_BTD = h_BLD[keep_BL].reshape(b, -1, d)  # drop unknown positions (same count per row)
        biases = self.encoder_position_bias(keep_BL) if self.config.position_bias == "relative" else None
        return self.encoder_norm(self._run_blocks(self.encoder_blocks, h_BTD, biases))

    def _decode(self, h_BTD: torch.Tensor, keep_BL: torch.Tensor, class_BD: torch.Tensor) -> torch.Tensor:
        """Re-insert ``mask_token`` at unknown positions, decode, drop the buffer -> ``[B, N, Dd]``.
        ``class_BD`` (the class embedding) is used only with ``class_input="buffer+decoder"``."""
        h_BTD = self.decoder_embed(h_BTD)
        b, length = keep_BL.shape
        full_BLD = (
            self.mask_token.to(h_BTD.dtype).expand(b, length, h_BTD.shape[-1]).masked_scatter(keep_BL[..., None], h_BTD)
        )
        if self.config.class_input == "buffer+decoder":
            full_BLD = full_BLD + self.decoder_class_proj(class_BD)[:, None]
        biases = self.decoder_position_bias() if self.config.position_bias == "relative" else None
        mixing = self.decoder_mixing if self.config.local_mixing == "conv" else None
        full_BLD = self._add_position(full_BLD, "decoder_pos_embed_learned")
        h_BLD = self._run_blocks(self.decoder_blocks, full_BLD, biases, mixing)
        return self._add_position(self.decoder_norm(h_BLD)[:, self.config.buffer_size :], "output_pos_embed")

    def _run_blocks(
        self,
        blocks: nn.ModuleList,
        h: torch.Tensor,
        biases: list[torch.Tensor] | None,
        mixing: nn.ModuleList | None = None,
    ) -> torch.Tensor:
        """``blocks`` in turn; ``biases``: one attention bias per block (`RelativePositionBias`) or None;
        ``mixing``: a `LocalMixing` after each block, or None."""
        for i, block in enumerate(blocks):
            bias = None if biases is None else biases[i]
            if self.config.grad_checkpointing and self.training:
                h = checkpoint(block, h, bias, use_reentrant=False)
            else:
                h = block(h, bias)
            if mixing is not None:
                h = mixing[i](h)
        return h

    # -------------------------------------------------------------------------------- channel head
    def forward_channel_head(self, z_MD: torch.Tensor, targets_MC: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced logits ``[M, C, V]`` for all channels, in GENERATION order.

        targets_MC: long indices in generation order (``indices[..., channel_order]``); the input
        sequence is ``[cond, emb_0(t_0), …, emb_{C-2}(t_{C-2})] + channel_embed``. The parallel
        head ignores ``targets_MC`` (may be None).
        """
        cond_MD = self.condition_proj(z_MD)
        c = self.config.token_dim
        if self.config.head == "autoregressive" and targets_MC is None:
            raise ValueError("the autoregressive channel head needs targets_MC (teacher forcing)")
        prefix = targets_MC[:, : c - 1] if self.config.head == "autoregressive" else None
        h_MCD = self._channel_trunk(self._channel_inputs(cond_MD, prefix, c), cond_MD, 0, self.channel_mask)
        return self.readout(h_MCD, 0)

    def readout(self, h_MTD: torch.Tensor, start: int) -> torch.Tensor:
        """Logits ``[M, T, V]`` of channels ``start..start+T-1`` (generation order) from the channel
        trunk's output: one linear layer per channel; with ``readout="gaussian"`` plus
        ``-(v_k - μ)² / (2σ²)``, ``v`` the standardized level values and ``(μ, log σ)`` a linear
        function of the features. That term's gradient w.r.t. μ is ``(E_p[v] - v_target) / σ²``:
        a regression signal, and σ lets the model sharpen as it gets precise, where a plain
        softmax must learn each of the V rows apart."""
        channels = range(start, start + h_MTD.shape[1])
        weight_TVD = torch.stack([self.channel_heads[c].weight for c in channels])
        bias_TV = torch.stack([self.channel_heads[c].bias for c in channels])
        logits_MTV = torch.einsum("mtd,tvd->mtv", h_MTD, weight_TVD) + bias_TV
        if self.config.readout == "gaussian":
            weight_T2D = torch.stack([self.value_readouts[c].weight for c in channels])
            bias_T2 = torch.stack([self.value_readouts[c].bias for c in channels])
            centre_MT, log_width_MT = (torch.einsum("mtd,tkd->mtk", h_MTD, weight_T2D) + bias_T2).unbind(-1)
            values_V = self.reconstruction_values / self.reconstruction_values.std()
            z_MTV = (values_V - centre_MT[..., None]) * torch.exp(-log_width_MT.clamp(-7.0, 5.0))[..., None]
            logits_MTV = logits_MTV - 0.5 * z_MTV.pow(2)
        return logits_MTV

    def channel_head_prefix(self, z_MD: torch.Tensor, prefix_MT: torch.Tensor) -> torch.Tensor:
        """Logits ``[M, V]`` of channel ``T`` given the generated channels ``0..T-1`` (generation
        order), re-running the whole prefix as the official loop does (no cache)."""
        t = prefix_MT.shape[1]
        cond_MD = self.condition_proj(z_MD)
        x_MTD = self._channel_inputs(cond_MD, prefix_MT, t + 1)
        h_MTD = self._channel_trunk(x_MTD, cond_MD, 0, self.channel_mask[: t + 1, : t + 1])
        return self.readout(h_MTD[:, -1:], t)[:, 0]

    def begin_channel_decoding(self, z_MD: torch.Tensor) -> ChannelCache:
        """An empty KV cache for decoding the channels of M positions with features ``z_MD``."""
        cond_MD = self.condition_proj(z_MD)
        cfg = self.config
        shape = (z_MD.shape[0], cfg.channel_heads, cfg.token_dim, cfg.channel_embed_dim // cfg.channel_heads)
        keys = [cond_MD.new_empty(shape) for _ in self.channel_blocks]
        values = [cond_MD.new_empty(shape) for _ in self.channel_blocks]
        return ChannelCache(cond_MD, keys, values)

    def channel_head_step(self, cache: ChannelCache, prev_tokens_M: torch.Tensor | None) -> torch.Tensor:
        """Logits ``[M, V]`` of channel ``c = cache.length``; processes that ONE input position.

        prev_tokens_M: the sampled index of channel ``c-1`` (generation order); None when c = 0.
        The first input is ``cond`` itself, as in training (the official sampler feeds
        ``cond + timesteps_embeddings[0]`` instead, a train/sample mismatch we do not copy).
        Advances ``cache.length``.
        """
        c = cache.length
        if c >= self.config.token_dim:
            raise ValueError(f"all {self.config.token_dim} channels are already decoded")
        if c == 0 or self.config.head == "parallel":
            x_MD = cache.cond_MD
        elif prev_tokens_M is None:
            raise ValueError(f"channel {c} needs prev_tokens_M, the sampled index of channel {c - 1}")
        else:
            x_MD = self.token_embeddings[c - 1](prev_tokens_M)
        x_M1D = (x_MD + self.channel_embed[0, c])[:, None]
        caches = list(zip(cache.keys, cache.values))
        h_M1D = self._channel_trunk(x_M1D, cache.cond_MD, c, self.channel_mask[c : c + 1, : c + 1], caches)
        cache.length += 1
        return self.readout(h_M1D, c)[:, 0]

    def _channel_inputs(self, cond_MD: torch.Tensor, prefix_MT: torch.Tensor | None, length: int) -> torch.Tensor:
        """Input sequence ``[M, length, Dc]``: cond, then embeddings of the prefix channels."""
        if self.config.head == "parallel":
            x_MTD = cond_MD[:, None].expand(-1, length, -1)
        else:
            embedded = [emb(prefix_MT[:, i]) for i, emb in enumerate(self.token_embeddings[: length - 1])]
            x_MTD = torch.stack([cond_MD, *embedded], dim=1)
        return x_MTD + self.channel_embed[:, :length]

    def _channel_trunk(
        self,
        x_MTD: torch.Tensor,
        cond_MD: torch.Tensor,
        start: int,
        attn_mask: torch.Tensor,
        caches: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Channel blocks + norms for positions ``start..start+T-1``, AdaLN on ``cond + timestep``."""
        steps_1TD = self.timesteps_embeddings[:, start : start + x_MTD.shape[1]]
        cond_MTD = cond_MD[:, None] + steps_1TD
        for i, block in enumerate(self.channel_blocks):
            x_MTD = block(x_MTD, cond_MTD, attn_mask, None if caches is None else caches[i], start)
        return self.channel_final(self.channel_norm(x_MTD), cond_MTD)

    # -------------------------------------------------------------------------------- training
    def sample_mask(self, batch: int, rng: torch.Generator) -> torch.Tensor:
        """MAR training mask ``[B, N]`` bool: ratio ~ truncated normal on [mask_ratio_min, 1]
        (mean 1, std 0.25; one ratio per batch), positions from a random order per row."""
        n = self.config.seq_len
        low = torch.special.ndtr(torch.tensor((self.config.mask_ratio_min - 1.0) / 0.25, dtype=torch.float64))
        u = torch.rand((), generator=rng, device=rng.device, dtype=torch.float64).cpu()
        ratio = 1.0 + 0.25 * float(torch.special.ndtri(low + u * (0.5 - low)))
        num_masked = min(n, math.ceil(n * ratio))
        permutation_BN = torch.rand(batch, n, generator=rng, device=rng.device).argsort(dim=1)
        mask_BN = torch.zeros(batch, n, dtype=torch.bool, device=rng.device)
        return mask_BN.scatter_(1, permutation_BN[:, :num_masked], True).to(self.fake_latent.device)

    @staticmethod
    def subsample_mask(mask_BN: torch.Tensor, keep: int, rng: torch.Generator) -> torch.Tensor:
        """``mask_BN`` with only ``keep`` of each row's True positions left (uniform, no repeats)."""
        if keep < 1:
            raise ValueError(f"head_positions must be >= 1, got {keep}")
        scores_BN = torch.rand(mask_BN.shape, generator=rng, device=rng.device).to(mask_BN.device)
        ranks_BN = scores_BN.masked_fill(~mask_BN, 2.0).argsort(dim=1).argsort(dim=1)
        return mask_BN & (ranks_BN < keep)

    def forward(
        self,
        indices_BNC: torch.Tensor,
        labels_B: torch.Tensor,
        rng: torch.Generator,
        return_channel_ce: bool = False,
        head_positions: int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy over masked positions × channels (MAR masking, label drop), plus
        ``value_loss`` × the mean squared error of ``value_head(z)`` against the dequantized values
        of the same positions when the config asks for it.

        indices_BNC: quantization indices in VAE channel order. Every random draw (mask ratio,
        order, label drop) comes from ``rng``. With ``return_channel_ce`` also returns the
        detached per-channel CE ``[C]`` in generation order. ``head_positions=K`` runs the channel
        head on K masked positions per image drawn uniformly (every row masks the same number),
        an unbiased and cheaper estimate of the same loss: the head dominates CPU training cost.

        Why the value loss: the cross-entropy over 64 close levels gives the backbone almost no
        gradient until the channel head can already read values sharply, and the head cannot
        until the backbone carries them (a plateau of hundreds of steps even when every token of
        an image is the same, `tokenbridge.learnability`); a regression target teaches the
        backbone to carry the values at once.
        """
        b = indices_BNC.shape[0]
        x_BNC = self.dequantize(indices_BNC)
        mask_BN = self.sample_mask(b, rng)
        if self.training and self.config.label_drop_prob > 0:
            drop_B = torch.rand(b, generator=rng, device=rng.device) < self.config.label_drop_prob
            labels_B = labels_B.masked_fill(drop_B.to(labels_B.device), self.config.class_num)
        z_BND = self.forward_backbone(x_BNC, labels_B, mask_BN)
        if head_positions is not None:
            mask_BN = self.subsample_mask(mask_BN, head_positions, rng)
        order = torch.tensor(self.config.generation_order, device=indices_BNC.device)
        targets_MC = indices_BNC[mask_BN].long()[:, order]
        logits_MCV = self.forward_channel_head(z_BND[mask_BN], targets_MC)
        ce_MC = F.cross_entropy(logits_MCV.flatten(0, 1).float(), targets_MC.flatten(), reduction="none")
        ce_MC = ce_MC.view_as(targets_MC)
        loss = ce_MC.mean()
        if self.config.value_loss > 0:
            error_MC = self.value_head(z_BND[mask_BN]).float() - x_BNC[mask_BN].float()
            loss = loss + self.config.value_loss * error_MC.pow(2).mean()
        return (loss, ce_MC.mean(dim=0).detach()) if return_channel_ce else loss


def _on_default_device(values: torch.Tensor) -> torch.Tensor:
    """A copy of CPU ``values`` on the current default device (a "meta" build stays meta)."""
    out = torch.empty(values.shape, dtype=values.dtype)
    return out if out.is_meta else out.copy_(values)


# ------------------------------------------------------------------------------------------------
# Presets as data (parameter counts in the comments) and thin builders
# ------------------------------------------------------------------------------------------------


def _backbone(width: int, depth: int, heads: int) -> dict:
    """Encoder and decoder of one width, depth and head count (as every preset has them)."""
    return dict(
        encoder_embed_dim=width,
        encoder_depth=depth,
        encoder_num_heads=heads,
        decoder_embed_dim=width,
        decoder_depth=depth,
        decoder_num_heads=heads,
    )


def _head(width: int, depth: int, heads: int) -> dict:
    """The channel head's width, depth and attention heads."""
    return dict(channel_embed_dim=width, channel_depth=depth, channel_heads=heads)


def _config(*parts: dict, **fields) -> GeneratorConfig:
    """A config from dicts of fields, later ones winning."""
    merged = {}
    for part in (*parts, fields):
        merged.update(part)
    return GeneratorConfig(**merged)


_OFFICIAL = dict(
    img_size=256,
    vae_stride=16,
    vae_embed_dim=16,
    quant_levels=64,
    class_num=1000,
    norm_eps=1e-6,
    channel_order=OFFICIAL_KL16_ORDER,
)
# Embedded default: 64×64 images, stride-8 VAE with 16 channels -> 8×8 = 64 tokens, 10 classes.
# The channel head runs on every masked position × 16 channels, so it dominates training compute
# on a CPU: it stays narrow. A 16-token buffer (official: 64 for 256 tokens) keeps the ratio.
_SMALL = dict(
    img_size=64,
    vae_stride=8,
    vae_embed_dim=16,
    quant_levels=64,
    class_num=10,
    norm_eps=1e-6,
    buffer_size=16,
    **_backbone(192, 4, 6),
    **_head(128, 2, 4),
)
# Ablation models (Table 2 of the paper at small scale): the embedded data layout with a narrower,
# shallower backbone, so that five of them train in a CPU session and fit in `assets/` together.
_ABLATION = {**_SMALL, **_backbone(128, 3, 4)}

PRESETS: dict[str, GeneratorConfig] = {
    "tokenbridge_base": _config(_OFFICIAL, _backbone(768, 12, 12), _head(768, 4, 8)),  # 218,024,704 (official B)
    "tokenbridge_large": _config(_OFFICIAL, _backbone(1024, 16, 16), _head(1024, 4, 8)),  # 486,889,472 (official L)
    "tokenbridge_huge": _config(_OFFICIAL, _backbone(1280, 20, 16), _head(1024, 6, 8)),  # 910,040,576 (official H)
    "tokenbridge_small": _config(_SMALL),  # 4,557,696: the embedded default
    "tokenbridge_ablation": _config(_ABLATION),  # 2,143,104: the ablation baseline
    "tokenbridge_ablation_parallel": _config(_ABLATION, head="parallel"),  # 2,020,224: the parallel head
    "tokenbridge_ablation_bighead": _config(_ABLATION, _head(256, 3, 8)),  # 5,475,456: a 256×3 channel head
    "tokenbridge_ablation_b16": _config(_ABLATION, quant_levels=16),  # 1,951,872: 16 levels (4 bits)
    "tokenbridge_tiny": _config(_SMALL, _backbone(32, 1, 2), _head(32, 1, 2), buffer_size=4),  # 121,856: tests
}
"""Every generator preset as data (sizes only; a model is built by `build_generator`)."""


def preset_config(name: str, **overrides) -> GeneratorConfig:
    """Preset ``name``'s config with ``overrides`` (validated as any config)."""
    if name not in PRESETS:
        raise ValueError(f"unknown generator preset {name!r}; valid: {', '.join(PRESETS)}")
    return GeneratorConfig.from_dict({**PRESETS[name].to_dict(), **overrides})


def build_generator(spec: str | GeneratorConfig | dict, **overrides) -> TokenBridge:
    """A generator from a preset name (with ``overrides``), a `GeneratorConfig`, or its ``to_dict()``
    (e.g. from JSON)."""
    if isinstance(spec, str):
        return TokenBridge(preset_config(spec, **overrides))
    if overrides:
        raise ValueError("overrides apply to a preset name, not to a whole config")
    config = spec if isinstance(spec, GeneratorConfig) else GeneratorConfig.from_dict(spec)
    return TokenBridge(config)


def tokenbridge_base(**overrides) -> TokenBridge:
    """Official TokenBridge-B (`PRESETS`)."""
    return build_generator("tokenbridge_base", **overrides)


def tokenbridge_large(**overrides) -> TokenBridge:
    """Official TokenBridge-L (`PRESETS`)."""
    return build_generator("tokenbridge_large", **overrides)


def tokenbridge_huge(**overrides) -> TokenBridge:
    """Official TokenBridge-H (`PRESETS`)."""
    return build_generator("tokenbridge_huge", **overrides)


def tokenbridge_small(**overrides) -> TokenBridge:
    """The embedded default (`PRESETS`)."""
    return build_generator("tokenbridge_small", **overrides)


def tokenbridge_ablation(**overrides) -> TokenBridge:
    """The ablation baseline (`PRESETS`)."""
    return build_generator("tokenbridge_ablation", **overrides)


def tokenbridge_tiny(**overrides) -> TokenBridge:
    """The tests' generator (`PRESETS`)."""
    return build_generator("tokenbridge_tiny", **overrides)
