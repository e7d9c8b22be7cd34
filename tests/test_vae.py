"""KL autoencoder: official KL-16 key list, shapes of the presets, latent scaling, posterior, errors."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tokenbridge import vae
from tokenbridge.checkpoints import CheckpointError, load_state_strict
from tokenbridge.vae import AttnBlock, DiagonalGaussian, VAEConfig

REFERENCE = Path(__file__).resolve().parent / "reference" / "keys_vae_kl16.json"


def reference() -> dict:
    return json.loads(REFERENCE.read_text())


def images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


# ------------------------------------------------------------------ official KL-16 compatibility
def test_kl16_matches_official_key_list_and_count():
    ref = reference()
    with torch.device("meta"):
        model = vae.kl16()
    got = {name: list(t.shape) for name, t in model.state_dict().items()}
    want = {e["name"]: e["shape"] for e in ref["entries"]}
    assert list(got) == list(want)  # same names in the same order
    assert got == want
    assert not list(model.buffers())  # the reference lists parameters only
    assert sum(p.numel() for p in model.parameters()) == ref["num_parameters"] == 66_456_019


def test_kl16_config_matches_official_constructor():
    ref = reference()["constructor"]
    config = VAEConfig()
    assert config.embed_dim == ref["embed_dim"] and config.ch_mult == tuple(ref["ch_mult"])
    enc, dec = ref["encoder"], ref["decoder"]
    assert (config.ch, config.num_res_blocks, config.resolution, config.z_channels) == (
        enc["ch"],
        enc["num_res_blocks"],
        enc["resolution"],
        enc["z_channels"],
    )
    assert config.encoder_attn_resolutions == tuple(enc["attn_resolutions"])
    assert config.decoder_attn_resolutions == tuple(dec["attn_resolutions"])
    assert config.scale_factor == ref["latent_scale"] == 0.2325
    assert config.downsampling_factor == 16 and config.latent_size == 16


def test_kl16_strict_load_of_reference_state_dict():
    """A state dict built from the reference key list loads key for key (meta tensors: no memory)."""
    entries = reference()["entries"]
    with torch.device("meta"):
        model = vae.kl16()
        state = {e["name"]: torch.empty(e["shape"]) for e in entries}
    load_state_strict(model, state, "reference")
    with pytest.raises(CheckpointError, match="missing.*encoder.mid.attn_1.q.weight"):
        load_state_strict(model, {k: v for k, v in state.items() if k != "encoder.mid.attn_1.q.weight"}, "ref")


def test_kl16_shapes_on_meta():
    with torch.device("meta"):
        model = vae.kl16()
        posterior = model.encode(torch.empty(1, 3, 256, 256))
        assert tuple(posterior.mean.shape) == (1, 16, 16, 16)
        assert tuple(model.decode(posterior.mean).shape) == (1, 3, 256, 256)


# ------------------------------------------------------------------ presets and shapes
@pytest.mark.parametrize(
    "preset, size, latent",
    [(vae.small, 64, (16, 8, 8)), (vae.tiny, 32, (4, 8, 8)), (vae.tiny, 16, (4, 4, 4))],
)
def test_encode_decode_shapes(preset, size, latent):
    torch.manual_seed(0)
    model = preset().eval()
    x = images(2, size)
    with torch.no_grad():
        posterior = model.encode(x)
        assert tuple(posterior.mean.shape) == (2, *latent) == tuple(posterior.std.shape)
        recon, post = model(x, torch.Generator().manual_seed(0))
        assert recon.shape == x.shape and torch.isfinite(recon).all()
        assert tuple(model.encode_latents(x).shape) == (2, *latent)
        assert model.decode_latents(posterior.mean).shape == x.shape


def test_non_square_images():
    model = vae.tiny().eval()
    with torch.no_grad():
        z = model.encode_latents(images(1, 16)[..., :12])  # 16×12, stride 4
        assert tuple(z.shape) == (1, 4, 4, 3)
        assert tuple(model.decode_latents(z).shape) == (1, 3, 16, 12)


def test_presets_registry():
    assert set(vae.PRESETS) == {"kl16", "small", "tiny"}
    assert vae.small().config.latent_size == 8 and vae.small().config.embed_dim == 16
    assert vae.tiny(resolution=64).config.resolution == 64


# ------------------------------------------------------------------ latent scaling and posterior
def test_scaled_latents_equal_mean_times_scale():
    torch.manual_seed(0)
    model = vae.tiny(scale_factor=0.25).eval()
    x = images(2, 32)
    with torch.no_grad():
        mean = model.encode(x).mean
        assert torch.equal(model.encode_latents(x), mean * 0.25)
        latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
        assert torch.equal(model.decode_latents(latents), model.decode(latents / 0.25))
        assert model.scale_factor == 0.25


def test_posterior_sample_follows_the_generator():
    torch.manual_seed(0)
    model = vae.tiny().eval()
    x = images(2, 32)
    with torch.no_grad():
        post = model.encode(x)
        a = post.sample(torch.Generator().manual_seed(7))
        b = post.sample(torch.Generator().manual_seed(7))
        c = post.sample(torch.Generator().manual_seed(8))
        assert torch.equal(a, b) and not torch.equal(a, c)
        noise = torch.randn(post.mean.shape, generator=torch.Generator().manual_seed(7))
        assert torch.allclose(a, post.mean + post.std * noise)
        s1 = model.encode_latents(x, torch.Generator().manual_seed(3), sample=True)
        s2 = model.encode_latents(x, torch.Generator().manual_seed(3), sample=True)
        assert torch.equal(s1, s2) and not torch.equal(s1, model.encode_latents(x))
        r1, _ = model(x, torch.Generator().manual_seed(5))
        r2, _ = model(x, torch.Generator().manual_seed(5))
        assert torch.equal(r1, r2)


def test_diagonal_gaussian_kl_and_clamp():
    g = torch.Generator().manual_seed(0)
    moments = torch.randn(2, 8, 3, 3, generator=g)
    moments[0, 4, 0, 0] = 50.0  # log-variance beyond the clamp
    post = DiagonalGaussian(moments)
    assert post.logvar.max() == 20.0
    assert torch.allclose(post.std, torch.exp(0.5 * post.logvar))
    normal = torch.distributions.Normal(post.mean, post.std)
    ref = torch.distributions.kl_divergence(normal, torch.distributions.Normal(0.0, 1.0))
    assert torch.allclose(post.kl(), ref, rtol=1e-4, atol=1e-5)
    assert torch.equal(post.mode(), moments[:, :4])


def test_attention_block_matches_ldm_formula():
    """LDM AttnBlock: softmax(q·kᵀ / √C) v over the h·w positions, then proj_out, plus the input."""
    torch.manual_seed(0)
    block = AttnBlock(32, 32).eval()
    x = torch.randn(2, 32, 3, 5)
    with torch.no_grad():
        h = block.norm(x)
        q, k, v = (m(h).flatten(2) for m in (block.q, block.k, block.v))  # [B, C, L]
        w = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(32), dim=-1)
        out = torch.einsum("bij,bcj->bci", w, v).reshape(x.shape)
        assert torch.allclose(block(x), x + block.proj_out(out), atol=1e-5)


def test_downsample_pads_right_and_bottom_only():
    torch.manual_seed(0)
    down = vae.Downsample(4)
    x = torch.randn(1, 4, 6, 6)
    with torch.no_grad():
        assert torch.allclose(down(x), F.conv2d(F.pad(x, (0, 1, 0, 1)), down.conv.weight, down.conv.bias, stride=2))
    assert tuple(down(x).shape) == (1, 4, 3, 3)


# ------------------------------------------------------------------ errors
def test_bad_shapes_raise():
    model = vae.tiny()
    for bad in (
        torch.zeros(1, 1, 32, 32),
        torch.zeros(3, 32, 32),
        torch.zeros(1, 3, 30, 32),
        torch.zeros(1, 3, 32, 18),
    ):
        with pytest.raises(ValueError, match="expected images|not divisible"):
            model.encode(bad)
    with pytest.raises(ValueError, match="not divisible by the VAE stride 4"):
        model.encode_latents(torch.zeros(1, 3, 30, 32))
    for bad in (torch.zeros(1, 16, 8, 8), torch.zeros(4, 8, 8)):
        with pytest.raises(ValueError, match=r"expected latents \[B, 4, h, w\]"):
            model.decode(bad)
    with pytest.raises(ValueError, match="expected latents"):
        model.decode_latents(torch.zeros(1, 3, 8, 8))


# ------------------------------------------------------------------ config
def test_config_json_round_trip():
    config = vae.tiny(scale_factor=0.7).config
    data = json.loads(json.dumps(config.to_dict()))
    assert isinstance(data["ch_mult"], list)
    back = VAEConfig(**data)
    assert back == config and hash(back) == hash(config)
    assert isinstance(back.ch_mult, tuple) and isinstance(back.decoder_attn_resolutions, tuple)
    rebuilt = vae.build_vae(data)
    assert rebuilt.config == config
    assert [tuple(t.shape) for t in rebuilt.state_dict().values()] == [
        tuple(t.shape) for t in vae.tiny().state_dict().values()
    ]
    assert vae.build_vae(config).config is config


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"ch": 48}, "ch must be a positive multiple of norm_groups"),
        ({"ch": 0}, "ch must be a positive multiple of norm_groups"),
        ({"ch": 32, "norm_groups": 0}, "ch must be a positive multiple of norm_groups"),
        ({"ch_mult": ()}, "ch_mult must be non-empty"),
        ({"ch_mult": (1, 0, 2)}, "ch_mult must be non-empty and positive"),
        ({"resolution": 250}, "not divisible by the stride 16"),
        ({"scale_factor": 0.0}, "scale_factor must be a positive finite"),
        ({"scale_factor": float("nan")}, "scale_factor must be a positive finite"),
        ({"scale_factor": float("inf")}, "scale_factor must be a positive finite"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        VAEConfig(**overrides)


def test_norm_groups_reach_every_group_norm():
    """The small preset keeps 4 channels per group at every width (one per group would erase colour)."""
    model = vae.small()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_groups == 8 for m in norms)
    assert all(m.num_groups == 32 for m in vae.kl16(resolution=32).modules() if isinstance(m, torch.nn.GroupNorm))
