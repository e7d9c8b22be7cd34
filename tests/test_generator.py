"""Generator: official key lists, presets, channel-head causality and caching, training loss."""

import inspect
import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tokenbridge import generator
from tokenbridge.generator import (
    PRESETS,
    GeneratorConfig,
    TokenBridge,
    build_generator,
    patchify,
    tokenbridge_tiny,
    unpatchify,
)
from tokenbridge.quantizer import GaussianQuantizer
from tokenbridge.spectral import OFFICIAL_KL16_ORDER

REFERENCE = Path(__file__).resolve().parent / "reference"
OFFICIAL = ("tokenbridge_base", "tokenbridge_large", "tokenbridge_huge")


def randomized(model: TokenBridge, seed: int = 0, std: float = 0.3) -> TokenBridge:
    """Every parameter ~ N(0, std): zero-init AdaLN would hide most of the channel head."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


def small_tiny(**overrides) -> TokenBridge:
    """16 tokens × 6 channels × 8 levels: fast, still multi-channel."""
    return tokenbridge_tiny(**{"img_size": 32, "vae_embed_dim": 6, "quant_levels": 8, **overrides})


def reference(name: str) -> dict:
    return json.loads((REFERENCE / f"keys_{name}.json").read_text())


# ------------------------------------------------------------------ official compatibility
@pytest.mark.parametrize("name", OFFICIAL)
def test_official_presets_match_key_lists_and_counts(name):
    ref = reference(name)
    with torch.device("meta"):
        model = build_generator(name)
    want = {e["name"]: tuple(e["shape"]) for e in ref["entries"]}
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == want
    assert {k for k, _ in model.named_buffers()} == {e["name"] for e in ref["entries"] if e["buffer"]}
    assert sum(p.numel() for p in model.parameters()) == ref["num_parameters"]
    assert model.config.channel_order == OFFICIAL_KL16_ORDER


def test_official_state_dict_loads_strictly_and_rejects_a_missing_key():
    ref = reference("tokenbridge_base")
    state = {e["name"]: torch.empty(e["shape"], device="meta") for e in ref["entries"]}
    with torch.device("meta"):
        model = build_generator("tokenbridge_base")
    model.load_state_dict(state, strict=True, assign=True)
    del state["channel_heads.15.bias"]
    with pytest.raises(RuntimeError, match="channel_heads.15.bias"):
        model.load_state_dict(state, strict=True, assign=True)


def test_official_keyword_constructor_and_buffers():
    model = TokenBridge(
        img_size=32,
        vae_stride=8,
        encoder_embed_dim=16,
        encoder_depth=1,
        encoder_num_heads=2,
        decoder_embed_dim=16,
        decoder_depth=1,
        decoder_num_heads=2,
        channel_embed_dim=16,
        channel_depth=1,
        channel_heads=2,
        quant_levels=64,
        vae_embed_dim=4,
        buffer_size=2,
    )
    q = GaussianQuantizer(64, 5.0, 3.0)
    assert model.config.quant_levels == 64 and model.config.norm_eps == 1e-5
    assert torch.equal(model.reconstruction_values, q.values)
    assert torch.equal(model.boundaries, q.boundaries)
    expected = torch.full((4, 4), float("-inf")).triu(1)
    assert torch.equal(model.channel_mask, expected)
    with pytest.raises(ValueError, match="unknown TokenBridge argument.*norm_layer"):
        TokenBridge(norm_layer=torch.nn.LayerNorm)


def test_preset_table_comments_state_each_parameter_count():
    """The counts written beside `PRESETS` (generator.py) are the built models' counts."""
    stated = dict(re.findall(r'^    "(\w+)": _config\(.*# ([\d,]+)', inspect.getsource(generator), re.MULTILINE))
    assert set(stated) == set(PRESETS)
    for name, count in stated.items():
        with torch.device("meta"):
            assert sum(p.numel() for p in build_generator(name).parameters()) == int(count.replace(",", "")), name


def test_every_preset_builds_on_meta():
    for name in PRESETS:
        with torch.device("meta"):
            model = build_generator(name)
        assert all(p.is_meta for p in model.parameters()), name
    with torch.device("meta"):
        assert sum(p.numel() for p in build_generator("tokenbridge_tiny").parameters()) < 200_000


# ------------------------------------------------------------------ config
def test_config_json_round_trip_and_rebuild():
    config = small_tiny(channel_order=(5, 0, 4, 1, 3, 2)).config
    restored = GeneratorConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config and isinstance(restored.channel_order, tuple)
    a, b = build_generator(config), build_generator(restored.to_dict())
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(channel_order=(0, 1, 1, 2, 3, 4)), "permutation of 0..5"),
        (dict(encoder_num_heads=3), "encoder_embed_dim 32 is not divisible"),
        (dict(quant_min=-4.0), "quant_min/quant_max"),
        (dict(head="mixed"), "valid: autoregressive, parallel"),
        (dict(img_size=30), "not divisible by vae_stride"),
        (dict(quant_levels=1), "levels"),
        (dict(buffer_size=0), "buffer_size must be a positive integer"),
    ],
)
def test_bad_configs_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        small_tiny(**overrides)


def test_unknown_config_key_lists_valid_names():
    with pytest.raises(ValueError, match="unknown generator config key.*valid:.*vae_stride"):
        GeneratorConfig.from_dict({"vae_strid": 8})
    with pytest.raises(ValueError, match="unknown generator preset 'tokenbridge_xl'"):
        build_generator("tokenbridge_xl")


# ------------------------------------------------------------------ backbone
def test_patchify_round_trip():
    latents = torch.randn(2, 3, 8, 8)
    tokens = patchify(latents, 2)
    assert tokens.shape == (2, 16, 12)
    assert torch.equal(tokens[0, 1], latents[0, :, 0:2, 2:4].reshape(-1))
    assert torch.equal(unpatchify(tokens, 4, 2), latents)


def test_backbone_ignores_masked_inputs_and_maps_class_num_to_fake_latent():
    model = randomized(small_tiny())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 6, generator=g)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, :10] = True
    labels = torch.tensor([3, model.config.class_num])
    z = model.forward_backbone(x, labels, mask)
    assert z.shape == (2, 16, 32)
    x_masked_changed = x.clone()
    x_masked_changed[:, :10] += 1.0
    assert torch.equal(model.forward_backbone(x_masked_changed, labels, mask), z)
    x_known_changed = x.clone()
    x_known_changed[:, 12] += 1.0
    assert not torch.allclose(model.forward_backbone(x_known_changed, labels, mask), z)
    with torch.no_grad():
        model.fake_latent.add_(
            torch.randn(model.fake_latent.shape, generator=g)
        )  # a constant would vanish in z_proj_ln
    z2 = model.forward_backbone(x, labels, mask)
    assert torch.equal(z2[0], z[0]) and not torch.allclose(z2[1], z[1])


def test_backbone_rejects_ragged_masks():
    model = small_tiny().eval()
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, :3] = True
    with pytest.raises(ValueError, match="same number of positions"):
        model.forward_backbone(torch.zeros(2, 16, 6), torch.tensor([0, 1]), mask)


# ------------------------------------------------------------------ channel head
def _head_inputs(model, m=5, seed=2):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(m, model.config.decoder_embed_dim, generator=g)
    targets = torch.randint(0, model.config.quant_levels, (m, model.config.token_dim), generator=g)
    return z, targets


def test_channel_head_is_causal():
    model = randomized(small_tiny())
    z, targets = _head_inputs(model)
    logits = model.forward_channel_head(z, targets)
    assert logits.shape == (5, 6, 8)
    for c in range(6):
        changed = targets.clone()
        changed[:, c] = (changed[:, c] + 1) % 8
        differs = (model.forward_channel_head(z, changed) - logits).abs().amax(dim=(0, 2)) > 1e-6
        assert differs.tolist() == [i > c for i in range(6)], c


def test_cached_and_prefix_decoding_equal_the_full_forward():
    model = randomized(small_tiny(channel_depth=2))
    z, targets = _head_inputs(model)
    full = model.forward_channel_head(z, targets)
    cache = model.begin_channel_decoding(z)
    for c in range(6):
        step = model.channel_head_step(cache, targets[:, c - 1] if c else None)
        prefix = model.channel_head_prefix(z, targets[:, :c])
        torch.testing.assert_close(step, full[:, c], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(prefix, full[:, c], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="already decoded"):
        model.channel_head_step(cache, targets[:, 5])


def test_parallel_head_ignores_targets():
    model = randomized(small_tiny(head="parallel"))
    assert len(model.token_embeddings) == 0
    z, targets = _head_inputs(model)
    logits = model.forward_channel_head(z, targets)
    torch.testing.assert_close(model.forward_channel_head(z, None), logits, atol=0, rtol=0)
    cache = model.begin_channel_decoding(z)
    for c in range(6):
        torch.testing.assert_close(model.channel_head_step(cache, targets[:, 0]), logits[:, c], atol=1e-5, rtol=1e-5)


def test_autoregressive_head_needs_targets():
    model = small_tiny()
    with pytest.raises(ValueError, match="needs targets_MC"):
        model.forward_channel_head(torch.zeros(2, 32))


# ------------------------------------------------------------------ training
def test_forward_is_deterministic_per_generator_and_reports_channel_ce():
    model = small_tiny().train()
    g = torch.Generator().manual_seed(0)
    indices = torch.randint(0, 8, (3, 16, 6), generator=g, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2])
    model.eval()  # dropout off: the loss then depends only on the generator's draws
    a, ce = model(indices, labels, torch.Generator().manual_seed(5), return_channel_ce=True)
    b = model(indices, labels, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and ce.shape == (6,)
    torch.testing.assert_close(ce.mean(), a.detach())


def test_subsample_mask_keeps_k_uniform_masked_positions_per_row():
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(3, 16, dtype=torch.bool)
    mask[:, 4:14] = True  # ten masked positions per row
    hits = torch.zeros(16)
    for _ in range(400):
        kept = TokenBridge.subsample_mask(mask, 3, g)
        assert (kept.sum(dim=1) == 3).all() and not (kept & ~mask).any()
        hits += kept.sum(dim=0)
    assert hits[:4].sum() == 0 and hits[14:].sum() == 0
    share = hits[4:14] / hits.sum()  # uniform over the masked positions: 0.1 each
    assert (share - 0.1).abs().max() < 0.02
    assert torch.equal(TokenBridge.subsample_mask(mask, 99, g), mask)  # K ≥ count keeps all
    with pytest.raises(ValueError, match="head_positions"):
        TokenBridge.subsample_mask(mask, 0, g)


def test_head_positions_estimates_the_same_loss():
    model = small_tiny().eval()
    g = torch.Generator().manual_seed(1)
    indices = torch.randint(0, 8, (4, 16, 6), generator=g, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 3])
    full = model(indices, labels, torch.Generator().manual_seed(2))
    subset = model(indices, labels, torch.Generator().manual_seed(2), head_positions=4)
    assert not torch.equal(subset, full)  # fewer positions: a different estimate
    draws = torch.stack(
        [model(indices, labels, torch.Generator().manual_seed(s), head_positions=4) for s in range(200)]
    )
    fulls = torch.stack([model(indices, labels, torch.Generator().manual_seed(s)) for s in range(200)])
    assert abs(draws.mean() - fulls.mean()) < 3 * draws.std() / 200**0.5 + 1e-3


def test_backbone_runs_under_bf16_autocast():
    """The pipeline autocasts to bf16 on CUDA; the CPU autocast exercises the same dtype paths."""
    model = small_tiny().eval()
    x = torch.randn(2, 16, 6)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, :5] = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = model.forward_backbone(x, torch.tensor([0, 1]), mask)
    assert z.shape == (2, 16, model.config.decoder_embed_dim) and torch.isfinite(z.float()).all()


def test_mask_ratio_stays_in_mar_range():
    model = tokenbridge_tiny()
    g = torch.Generator().manual_seed(0)
    counts = torch.stack([model.sample_mask(2, g).sum(dim=1) for _ in range(200)])
    assert counts.min() >= int(0.7 * 64) and counts.max() <= 64
    assert (counts[:, 0] == counts[:, 1]).all()  # one ratio per batch
    a = torch.tensor(-1.2, dtype=torch.float64)  # (0.7 - 1) / 0.25
    pdf = lambda v: torch.exp(-0.5 * v**2) / (2 * torch.pi) ** 0.5  # noqa: E731
    mean_ratio = 1 + 0.25 * (pdf(a) - pdf(torch.zeros(()))) / (0.5 - torch.special.ndtr(a))  # 0.867
    expected = 64 * mean_ratio + 0.5  # ceil adds half a token on average
    assert abs(counts.double().mean() - expected) < 1.5  # standard error ≈ 0.4


def test_loss_decreases_when_overfitting_a_tiny_batch():
    with torch.random.fork_rng():  # its own init: the global RNG's state depends on the tests before
        torch.manual_seed(0)
        model = small_tiny(attn_dropout=0.0, proj_dropout=0.0, label_drop_prob=0.0).train()
    g = torch.Generator().manual_seed(0)
    indices = torch.randint(0, 8, (4, 16, 6), generator=g)
    labels = torch.tensor([0, 1, 2, 3])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = model(indices, labels, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 1.9  # ≈ ln 8 at init
    assert sum(losses[-5:]) / 5 < 0.3 * losses[0]


def biased_to_position(model: TokenBridge) -> TokenBridge:
    """Channel head j (generation order) predicts index j with certainty, whatever its input."""
    with torch.no_grad():
        for j, head in enumerate(model.channel_heads):
            head.weight.zero_()
            head.bias.fill_(-30.0)[j] = 30.0
    return model


def test_training_targets_follow_the_channel_order():
    channel_order = (3, 0, 5, 1, 4, 2)
    model = biased_to_position(small_tiny(channel_order=channel_order)).eval()
    indices = torch.zeros(2, 16, 6, dtype=torch.long)
    indices[..., list(channel_order)] = torch.arange(6)  # VAE channel order[j] holds value j
    loss = model(indices, torch.tensor([0, 1]), torch.Generator().manual_seed(0))
    assert loss < 1e-6
    assert (
        model(
            indices[..., torch.randperm(6, generator=torch.Generator().manual_seed(1))],
            torch.tensor([0, 1]),
            torch.Generator().manual_seed(0),
        )
        > 1.0
    )


def test_label_drop_uses_the_unconditional_embedding_in_training_only():
    model = randomized(small_tiny(attn_dropout=0.0, proj_dropout=0.0, label_drop_prob=0.99))
    indices = torch.randint(0, 8, (3, 16, 6), generator=torch.Generator().manual_seed(0))
    labels, uncond = torch.tensor([0, 1, 2]), torch.full((3,), 10)
    eval_loss = model(indices, labels, torch.Generator().manual_seed(4))
    eval_uncond = model(indices, uncond, torch.Generator().manual_seed(4))
    assert not torch.allclose(eval_loss, eval_uncond)
    # training draws the mask exactly as eval does, then the drop: every label dropped here
    train_loss = model.train()(indices, labels, torch.Generator().manual_seed(4))
    torch.testing.assert_close(train_loss, eval_uncond)


def test_adaln_chunks_follow_the_official_layout():
    """Blocks: shift, scale, gate (attention) then shift, scale, gate (MLP); final: scale, shift."""
    model = randomized(small_tiny())
    block, final = model.channel_blocks[0], model.channel_final
    x, cond = torch.randn(3, 6, 32), torch.randn(3, 6, 32)
    with torch.no_grad():
        block.adaLN_modulation[1].weight[2 * 32 : 3 * 32].zero_()  # attention gate
        block.adaLN_modulation[1].bias[2 * 32 : 3 * 32].zero_()
        block.adaLN_modulation[1].weight[5 * 32 :].zero_()  # MLP gate
        block.adaLN_modulation[1].bias[5 * 32 :].zero_()
        final.adaLN_modulation[1].weight.zero_()
        final.adaLN_modulation[1].bias[:32] = -1.0  # scale: x·(1 - 1) + shift = shift
        final.adaLN_modulation[1].bias[32:] = torch.arange(32.0)
    torch.testing.assert_close(block(x, cond, model.channel_mask), x)
    torch.testing.assert_close(final(x, cond), torch.arange(32.0).expand(3, 6, 32))


# ------------------------------------------------------------------ relative position bias
def test_relative_position_bias_indexes_offsets_and_buffer():
    """Entry k of the table sits where the (Δrow, Δcol) of query and key has index k; the buffer
    uses the three extra entries; the per-row gather over kept tokens equals the full matrix
    restricted to them."""
    from tokenbridge.generator import RelativePositionBias

    bias = RelativePositionBias(grid=3, buffer=2, heads=1, depth=1)
    with torch.no_grad():
        bias.table.copy_(torch.arange(28.0).view(1, 1, 28))
    full = bias()[0][0]  # [L, L], L = 2 + 9
    assert full.shape == (11, 11)
    for i in range(9):
        for j in range(9):
            (ri, ci), (rj, cj) = divmod(i, 3), divmod(j, 3)
            assert full[2 + i, 2 + j] == (ri - rj + 2) * 5 + (ci - cj + 2)
    assert (full[2:, :2] == 25).all() and (full[:2, 2:] == 26).all() and (full[:2, :2] == 27).all()
    keep = torch.zeros(2, 11, dtype=torch.bool)
    keep[:, :2] = True
    keep[0, [3, 7, 10]] = True
    keep[1, [2, 4, 5]] = True
    rows = bias(keep)[0]  # [B, H, T, T]
    for b in range(2):
        kept = keep[b].nonzero()[:, 0]
        assert torch.equal(rows[b, 0], full[kept][:, kept])


def test_relative_position_bias_starts_as_the_official_backbone():
    """Zero-initialised, the bias leaves the backbone's function unchanged; once trained it moves
    it. The official presets have no bias tables (their key lists are checked above)."""
    plain = randomized(small_tiny())
    biased = small_tiny(position_bias="relative").eval()
    extra = set(biased.state_dict()) - set(plain.state_dict())
    assert sorted(extra) == ["decoder_position_bias.table", "encoder_position_bias.table"]
    assert set(plain.state_dict()) <= set(biased.state_dict())
    biased.load_state_dict({**biased.state_dict(), **plain.state_dict()})  # the tables stay zero
    x = torch.randn(2, 16, 6, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, :9], mask[1, 7:] = True, True
    labels = torch.tensor([1, 2])
    assert torch.allclose(biased.forward_backbone(x, labels, mask), plain.forward_backbone(x, labels, mask), atol=1e-6)
    with torch.no_grad():
        biased.encoder_position_bias.table.normal_()
    assert not torch.allclose(biased.forward_backbone(x, labels, mask), plain.forward_backbone(x, labels, mask))


def test_value_loss_adds_the_weighted_regression_error_of_the_masked_values():
    """``value_loss=w`` adds w × MSE(value_head(z), dequantized values) over the positions the head
    sees; the same draws give the same cross-entropy part; no weight, no ``value_head``."""
    assert not hasattr(small_tiny(), "value_head")
    plain = small_tiny(attn_dropout=0.0, proj_dropout=0.0, label_drop_prob=0.0).eval()
    aided = small_tiny(attn_dropout=0.0, proj_dropout=0.0, label_drop_prob=0.0, value_loss=0.5).eval()
    aided.load_state_dict({**aided.state_dict(), **plain.state_dict()})  # value_head keeps its init
    indices = torch.randint(0, 8, (3, 16, 6), generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2])
    ce = plain(indices, labels, torch.Generator().manual_seed(5), head_positions=4)
    total = aided(indices, labels, torch.Generator().manual_seed(5), head_positions=4)
    g = torch.Generator().manual_seed(5)  # the draws of forward, in its order
    mask = aided.subsample_mask(aided.sample_mask(3, g), 4, g)
    x = aided.dequantize(indices)
    z = aided.forward_backbone(x, labels, aided.sample_mask(3, torch.Generator().manual_seed(5)))
    expected = (aided.value_head(z[mask]) - x[mask]).pow(2).mean()
    assert torch.allclose(total - ce, 0.5 * expected, atol=1e-5)


# ------------------------------------------------------------------ ordinal head init
def test_ordinal_head_init_reads_a_gaussian_over_values_and_orders_embeddings():
    """``head_init="ordinal"``: each readout is rank 1 (level value × a unit direction), so a
    feature ``t·u`` puts the softmax's mean value near ``t`` (levels equiprobable under N(0, 1));
    input embeddings lie apart by level distance. The official init has neither property."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ordinal, official = small_tiny(head_init="ordinal"), small_tiny()
    values = ordinal.quantizer.values / ordinal.quantizer.values.std()
    for model, expected in ((ordinal, True), (official, False)):
        head = model.channel_heads[0]
        direction = F.normalize(head.weight.T @ values, dim=0)  # the readout's value direction
        shifts = torch.linspace(-1.0, 1.0, 9)
        means = torch.softmax(head(shifts[:, None] * direction), dim=-1) @ values
        assert bool((means - shifts).abs().max() < 0.25) is expected, means
        embedding = model.token_embeddings[0].weight
        distance = torch.cdist(embedding, embedding).flatten()
        gap = (values[:, None] - values[None]).abs().flatten()
        assert bool(torch.corrcoef(torch.stack([distance, gap]))[0, 1] > 0.95) is expected
    with pytest.raises(ValueError, match="head_init"):
        small_tiny(head_init="sorted")


# ------------------------------------------------------------------ Gaussian readout
def test_gaussian_readout_starts_at_the_prior_and_regresses_its_centre():
    """``readout="gaussian"``: one (centre, log width) layer per channel, zero-initialized with the
    residual readouts, so the first distribution over levels is N(0, 1) on the standardized level
    values; the loss's gradient w.r.t. the centre is ``(E_p[v] - v_target) / σ²`` (a regression
    signal). The linear readout has no such keys."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = small_tiny(readout="gaussian")
    assert sum("value_readouts" in k for k in model.state_dict()) == 12  # 6 channels × (weight, bias)
    assert not any("value_readouts" in k for k in small_tiny().state_dict())
    values = model.reconstruction_values / model.reconstruction_values.std()
    h = torch.randn(4, 1, model.config.channel_embed_dim)
    prior = torch.softmax(-0.5 * values**2, dim=0)
    assert torch.allclose(torch.softmax(model.readout(h, 2)[:, 0], dim=-1), prior.expand(4, -1), atol=1e-6)
    # centre μ = 0.3, σ = exp(-0.5): the gradient of CE(target 6) w.r.t. the centre's bias
    readout = model.value_readouts[0]
    with torch.no_grad():
        readout.bias.copy_(torch.tensor([0.3, -0.5]))
    loss = F.cross_entropy(model.readout(torch.zeros(1, 1, model.config.channel_embed_dim), 0)[:, 0], torch.tensor([6]))
    loss.backward()
    p = torch.softmax(-0.5 * ((values - 0.3) / math.exp(-0.5)) ** 2, dim=0)
    expected = float((p @ values - values[6]) / math.exp(-0.5) ** 2)
    assert readout.bias.grad[0].item() == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="readout"):
        small_tiny(readout="softer")


# ------------------------------------------------------------------ local mixing
def test_local_mixing_touches_only_the_3x3_neighbourhood_and_not_the_buffer():
    """`LocalMixing`: the buffer passes through; changing grid token (r, c) changes the output
    only at tokens within one row and column of it. ``local_mixing="conv"`` adds one per decoder
    block and nothing else; the default model has none."""
    from tokenbridge.generator import LocalMixing

    with torch.random.fork_rng():
        torch.manual_seed(0)
        mixing = LocalMixing(dim=8, grid=4, buffer=2, eps=1e-6)
        x = torch.randn(1, 2 + 16, 8)
    moved = x.clone()
    moved[0, 2 + 1 * 4 + 2] += torch.linspace(-1.0, 1.0, 8)  # grid token (1, 2); not a constant: norm removes it
    changed = (mixing(moved) - mixing(x)).abs().amax(dim=-1)[0]
    assert torch.equal(mixing(x)[:, :2], x[:, :2])
    rows, cols = torch.arange(16) // 4, torch.arange(16) % 4
    near = ((rows - 1).abs() <= 1) & ((cols - 2).abs() <= 1)
    assert bool((changed[2:][near] > 1e-3).all()) and bool((changed[2:][~near] == 0).all())
    assert (changed[:2] == 0).all()
    mixed = small_tiny(local_mixing="conv")
    extra = set(mixed.state_dict()) - set(small_tiny().state_dict())
    assert extra and all(k.startswith("decoder_mixing.0.") for k in extra)
    with pytest.raises(ValueError, match="local_mixing"):
        small_tiny(local_mixing="attention")


# ------------------------------------------------------------------ class input
def test_class_input_adds_the_projected_class_embedding_to_every_decoder_token():
    """``class_input="buffer+decoder"`` adds ``decoder_class_proj(class embedding)`` to the decoder's
    input: with that projection zeroed the backbone is the official one (same shared weights);
    otherwise the label changes the features of every position even with no buffer attention."""
    plain = randomized(small_tiny())
    direct = small_tiny(class_input="buffer+decoder").eval()
    assert sorted(set(direct.state_dict()) - set(plain.state_dict())) == [
        "decoder_class_proj.bias",
        "decoder_class_proj.weight",
    ]
    direct.load_state_dict({**direct.state_dict(), **plain.state_dict()})
    x = torch.randn(2, 16, 6, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, 4:] = True
    labels = torch.tensor([1, 2])
    with torch.no_grad():
        direct.decoder_class_proj.weight.zero_()
        direct.decoder_class_proj.bias.zero_()
    assert torch.allclose(direct.forward_backbone(x, labels, mask), plain.forward_backbone(x, labels, mask), atol=1e-6)
    with torch.no_grad():
        direct.decoder_class_proj.weight.normal_(generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(direct.forward_backbone(x, labels, mask), plain.forward_backbone(x, labels, mask))
    with pytest.raises(ValueError, match="class_input"):
        small_tiny(class_input="adaln")


def test_without_absolute_positions_nothing_knows_a_token_s_place():
    """``absolute_position="none"`` drops the learned tables (their keys too). Without relative
    bias or convolution as well, the backbone then cannot tell places apart: permuting the tokens
    and the mask permutes its features exactly. With the tables (perturbed so they matter), not."""
    from tokenbridge.generator import tokenbridge_tiny

    torch.manual_seed(0)
    model = tokenbridge_tiny(absolute_position="none").eval()
    assert not any("pos_embed" in k for k in model.state_dict())
    n, c = model.config.seq_len, model.config.token_dim
    x, labels = torch.randn(2, n, c), torch.tensor([3, 10])  # 10: the unconditional branch
    mask = torch.rand(2, n).argsort(dim=1) < n // 2
    perm = torch.randperm(n)

    def permutes(model) -> bool:
        with torch.no_grad():
            z = model.forward_backbone(x, labels, mask)
            z_perm = model.forward_backbone(x[:, perm], labels, mask[:, perm])
        return torch.allclose(z[:, perm], z_perm, atol=1e-5)

    assert permutes(model)
    absolute = tokenbridge_tiny().eval()
    with torch.no_grad():
        absolute.encoder_pos_embed_learned.normal_()
    assert not permutes(absolute)
