"""Sampler: schedule, orders, CFG, caching, determinism, batch-equals-singles, settings, validation."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tokenbridge.generator import tokenbridge_tiny
from tokenbridge.sampling import (
    KNOBS,
    ORDERS,
    UNGUIDED,
    SamplerSettings,
    cfg_scale,
    generate,
    mask_schedule,
    sample_steps,
)


def randomized(model, seed=0, std=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    """16 tokens × 6 channels × 8 levels, random weights, a non-identity channel order."""
    return randomized(tokenbridge_tiny(img_size=32, vae_embed_dim=6, quant_levels=8, channel_order=(3, 0, 5, 1, 4, 2)))


def seeded_rng(seed):
    return torch.Generator().manual_seed(seed)


LABELS = torch.tensor([1, 4, 7, 9])


# ------------------------------------------------------------------ schedule
@given(st.integers(1, 300), st.data())
def test_schedule_commits_every_position_exactly_once(n, data):
    steps = data.draw(st.integers(1, n))
    schedule = mask_schedule(n, steps)
    masked = [n, *schedule]
    assert len(schedule) == steps and schedule[-1] == 0
    assert all(before - after >= 1 for before, after in zip(masked, masked[1:]))


def test_schedule_is_the_mar_cosine():
    assert mask_schedule(256, 4) == [236, 181, 97, 0]  # floor(256 cos(π/2 · t/4)), t = 1..3
    assert cfg_scale(4.0, "linear", 256, 181) == pytest.approx(1 + 3 * 75 / 256)
    assert cfg_scale(4.0, "constant", 256, 181) == 4.0


@pytest.mark.parametrize("order", ORDERS)
def test_steps_commit_each_position_once_and_records_agree(model, order):
    steps = list(sample_steps(model, LABELS, rng=seeded_rng(0), num_steps=5, order=order))
    committed = torch.stack([s.committed for s in steps])
    assert torch.equal(committed.sum(dim=0), torch.ones(4, 16, dtype=torch.long))
    expected_counts = [16 - m for m in mask_schedule(16, 5)]
    for s, masked_after in zip(steps, mask_schedule(16, 5)):
        assert (s.mask.sum(dim=1) == masked_after).all()
        assert torch.equal(s.tokens < 0, s.mask[..., None].expand_as(s.tokens))
        assert torch.equal(s.x_hat == 0, s.mask[..., None].expand_as(s.x_hat))
        assert not s.confidence[s.committed].isnan().any(), "an order commits only positions it decoded"
    assert [int((~s.mask[0]).sum()) for s in steps] == expected_counts
    final = steps[-1].tokens
    assert final.shape == (4, 16, 6) and final.min() >= 0 and final.max() < 8
    torch.testing.assert_close(steps[-1].x_hat, model.dequantize(final))


def test_random_order_decodes_only_what_it_commits(model):
    for s in sample_steps(model, LABELS, rng=seeded_rng(0), num_steps=4):
        assert torch.equal(~s.confidence.isnan(), s.committed)


@pytest.mark.parametrize("gumbel", [0.0, 5.0])
def test_confidence_order_commits_the_highest_scores(model, gumbel):
    seen_extra_candidates = False
    for s in sample_steps(model, LABELS, rng=seeded_rng(0), num_steps=4, order="confidence", gumbel=gumbel):
        candidates = ~s.confidence.isnan()
        assert (s.committed <= candidates).all()
        for row in range(4):
            kept = s.confidence[row][candidates[row] & ~s.committed[row]]
            if kept.numel():
                seen_extra_candidates = True
                assert s.confidence[row][s.committed[row]].min() >= kept.max()
    assert seen_extra_candidates


def test_gumbel_noise_changes_the_choice_but_not_the_candidates(model):
    def first(gumbel):
        return next(
            sample_steps(
                model, LABELS, rng=seeded_rng(0), num_steps=4, order="confidence", gumbel=gumbel, record_probs=True
            )
        )

    plain, noisy = first(0.0), first(5.0)
    assert not torch.equal(plain.committed, noisy.committed)
    both = plain.committed & noisy.committed  # same uniforms -> same candidate tokens
    assert both.any() and torch.equal(plain.tokens[both], noisy.tokens[both])


def test_confidence_is_the_joint_log_prob_of_the_recorded_distributions(model):
    for s in sample_steps(model, LABELS, rng=seeded_rng(3), num_steps=3, cfg=2.5, record_probs=True):
        probs = s.probs[s.committed]  # [M, C, V], VAE channel order
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:2]))
        chosen = probs.gather(-1, s.tokens[s.committed][..., None])[..., 0]
        torch.testing.assert_close(chosen.log().sum(-1), s.confidence[s.committed], atol=1e-4, rtol=1e-4)
        assert s.probs[~s.committed].isnan().all()


def test_tiny_temperature_picks_the_mode(model):
    for s in sample_steps(model, LABELS, rng=seeded_rng(1), num_steps=2, temperature=1e-4, record_probs=True):
        assert torch.equal(s.probs[s.committed].argmax(-1), s.tokens[s.committed])


# ------------------------------------------------------------------ determinism and caching
def test_same_seed_same_tokens_and_different_seed_differs(model):
    a = generate(model, LABELS, rng=seeded_rng(0), num_steps=4)
    assert torch.equal(a, generate(model, LABELS, rng=seeded_rng(0), num_steps=4))
    assert not torch.equal(a, generate(model, LABELS, rng=seeded_rng(1), num_steps=4))


@pytest.mark.parametrize(
    "options",
    [dict(), dict(cfg=3.0, cfg_mode="logit"), dict(cfg=2.0, order="confidence", gumbel=1.0)],
)
def test_cached_and_uncached_decoding_give_the_same_tokens(model, options):
    cached = generate(model, LABELS, rng=seeded_rng(0), num_steps=4, **options)
    uncached = generate(model, LABELS, rng=seeded_rng(0), num_steps=4, use_cache=False, **options)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("options", [dict(), dict(cfg=3.0, order="confidence", gumbel=2.0)])
def test_batch_with_per_row_rngs_equals_single_runs(model, options):
    batch = generate(model, LABELS, rng=[seeded_rng(10 + i) for i in range(4)], num_steps=4, **options)
    for i in range(4):
        single = generate(model, LABELS[i : i + 1], rng=seeded_rng(10 + i), num_steps=4, **options)
        assert torch.equal(batch[i : i + 1], single), i


def test_guidance_modes_change_the_samples(model):
    def first_step_probs(**options):  # same seed -> same positions decoded at step 0
        step = next(sample_steps(model, LABELS, rng=seeded_rng(0), num_steps=4, record_probs=True, **options))
        return step.probs[step.committed]

    plain, feature = first_step_probs(), first_step_probs(cfg=10.0, cfg_schedule="constant")
    logit = first_step_probs(cfg=10.0, cfg_schedule="constant", cfg_mode="logit")
    assert (plain - feature).abs().max() > 1e-2 and (feature - logit).abs().max() > 1e-3
    steps = list(sample_steps(model, LABELS, rng=seeded_rng(0), num_steps=4, cfg=4.0))
    assert [s.cfg for s in steps] == [cfg_scale(4.0, "linear", 16, m) for m in mask_schedule(16, 4)]


def test_unconditional_and_parallel_head_sample(model):
    tokens = generate(model, None, batch_size=2, rng=seeded_rng(0), num_steps=3, cfg=2.0)
    assert tokens.shape == (2, 16, 6)
    explicit = torch.full((2,), model.config.class_num)
    assert torch.equal(tokens, generate(model, explicit, rng=seeded_rng(0), num_steps=3, cfg=2.0))
    parallel = randomized(tokenbridge_tiny(img_size=32, vae_embed_dim=6, quant_levels=8, head="parallel"))
    a = generate(parallel, LABELS, rng=seeded_rng(0), num_steps=3)
    assert torch.equal(a, generate(parallel, LABELS, rng=seeded_rng(0), num_steps=3, use_cache=False))


# ------------------------------------------------------------------ settings
def test_a_settings_object_and_keywords_are_the_same_run(model):
    settings = SamplerSettings(num_steps=4, cfg=3.0, order="confidence", gumbel=2.0)
    keywords = dict(num_steps=4, cfg=3.0, order="confidence", gumbel=2.0)
    assert torch.equal(
        generate(model, LABELS, settings, rng=seeded_rng(0)), generate(model, LABELS, rng=seeded_rng(0), **keywords)
    )
    changed = generate(model, LABELS, settings, rng=seeded_rng(0), order="random")  # keywords change the object
    assert torch.equal(changed, generate(model, LABELS, rng=seeded_rng(0), **{**keywords, "order": "random"}))


def test_sample_steps_alone_starts_unguided(model):
    assert UNGUIDED == SamplerSettings().replace(cfg=1.0), "the defaults but the guidance"
    assert [s.cfg for s in sample_steps(model, LABELS, rng=seeded_rng(0), num_steps=3)] == [1.0, 1.0, 1.0]


def test_every_registered_order_is_a_valid_choice():
    assert KNOBS["order"].choices == tuple(ORDERS), "the order knob offers the registry"
    for order in ORDERS:
        SamplerSettings(order=order).validate(16)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(num_steps=2.0), r"^num_steps must be an integer in 1..16 \(the number of tokens to sample\), got 2.0$"),
        (dict(cfg=math.inf), r"^cfg must be a finite number >= 0, got inf$"),
        (dict(temperature=-1.0, cfg=-1.0), r"^cfg must be"),  # the first bad knob, in field order
        (dict(cfg_schedule="cosine", order="raster"), r"^unknown cfg_schedule 'cosine'; valid: linear, constant$"),
    ],
)
def test_settings_validation_names_the_first_bad_knob(change, message):
    SamplerSettings().validate(16)  # the defaults are valid
    with pytest.raises(ValueError, match=message):
        SamplerSettings(**change).validate(16)


def test_unknown_sampler_keywords_are_refused_by_name(model):
    with pytest.raises(TypeError, match=r"unknown sampler setting 'cfgg'; valid: num_steps, cfg, cfg_schedule"):
        sample_steps(model, LABELS, rng=seeded_rng(0), cfgg=2.0)


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(labels=torch.tensor([3, 11])), r"labels must be class ids in 0..9 \(or 10 for unconditional\)"),
        (dict(labels=torch.tensor([-1])), "labels must be class ids"),
        (dict(labels=torch.tensor([0.5])), "integer tensor"),
        (dict(num_steps=0), r"num_steps must be an integer in 1..16"),
        (dict(num_steps=17), r"num_steps must be an integer in 1..16"),
        (dict(cfg=-1.0), "cfg must be a finite number >= 0"),
        (dict(temperature=0.0), "temperature must be a finite number > 0"),
        (dict(gumbel=-0.1), "gumbel must be"),
        (dict(order="raster"), "unknown order 'raster'; valid: random, confidence"),
        (dict(cfg_mode="both"), "unknown cfg_mode 'both'; valid: feature, logit"),
        (dict(cfg_schedule="cosine"), "unknown cfg_schedule 'cosine'; valid: linear, constant"),
        (dict(rng=[torch.Generator()]), "list of 2"),
    ],
)
def test_bad_arguments_raise_before_sampling(model, kwargs, message):
    args = {"labels": torch.tensor([0, 1]), "rng": seeded_rng(0), **kwargs}
    with pytest.raises(ValueError, match=message):
        sample_steps(model, args.pop("labels"), **args)


def test_training_mode_is_refused():
    model = tokenbridge_tiny().train()
    with pytest.raises(ValueError, match=r"call model.eval\(\)"):
        sample_steps(model, torch.tensor([0]), rng=seeded_rng(0))


def test_sampled_tokens_are_stored_in_vae_channel_order():
    channel_order = (3, 0, 5, 1, 4, 2)
    model = randomized(tokenbridge_tiny(img_size=32, vae_embed_dim=6, quant_levels=8, channel_order=channel_order))
    with torch.no_grad():
        for j, head in enumerate(model.channel_heads):  # generation position j always emits j
            head.weight.zero_()
            head.bias.fill_(-30.0)[j] = 30.0
    tokens = generate(model, LABELS, rng=seeded_rng(0), num_steps=3)
    assert torch.equal(tokens[..., list(channel_order)], torch.arange(6).expand(4, 16, 6))


@pytest.mark.parametrize("cfg_mode", ["feature", "logit"])
def test_guided_distributions_match_the_teacher_forced_forward(model, cfg_mode):
    w = 3.0
    step = next(
        sample_steps(
            model,
            LABELS,
            rng=seeded_rng(2),
            num_steps=4,
            cfg=w,
            cfg_schedule="constant",
            cfg_mode=cfg_mode,
            temperature=1.0,  # the plain softmax of the guided logits
            record_probs=True,
        )
    )
    channel_order = list(model.config.generation_order)
    everything = torch.ones(4, 16, dtype=torch.bool)  # step 0: nothing known yet
    x = torch.zeros(4, 16, 6)
    z_c = model.forward_backbone(x, LABELS, everything)[step.committed]
    z_u = model.forward_backbone(x, torch.full((4,), 10), everything)[step.committed]
    targets = step.tokens[step.committed][:, channel_order]
    with torch.no_grad():
        if cfg_mode == "feature":
            logits = model.forward_channel_head(z_u + w * (z_c - z_u), targets)
        else:
            l_c, l_u = model.forward_channel_head(z_c, targets), model.forward_channel_head(z_u, targets)
            logits = l_u + w * (l_c - l_u)
    expected = logits.softmax(-1)
    torch.testing.assert_close(step.probs[step.committed][:, channel_order], expected, atol=1e-5, rtol=1e-4)


def test_gaussian_readout_decodes_the_same_cached_uncached_and_teacher_forced():
    """``readout="gaussian"`` goes through the one readout in all three channel-head paths."""
    gaussian = randomized(tokenbridge_tiny(img_size=32, vae_embed_dim=6, quant_levels=8, readout="gaussian"))
    cached = generate(gaussian, LABELS, rng=seeded_rng(0), num_steps=4)
    assert torch.equal(cached, generate(gaussian, LABELS, rng=seeded_rng(0), num_steps=4, use_cache=False))
    z = torch.randn(5, gaussian.config.decoder_embed_dim, generator=seeded_rng(1))
    targets = torch.randint(0, 8, (5, 6), generator=seeded_rng(2))
    with torch.no_grad():
        forced = gaussian.forward_channel_head(z, targets)
        for c in range(6):
            assert torch.allclose(gaussian.channel_head_prefix(z, targets[:, :c]), forced[:, c], atol=1e-5)
