"""Checkpoints: our safetensors round trip, strict official loading, and every refusal."""

import dataclasses
import json
import os
import pickle
import shlex
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tokenbridge import checkpoints, generator, vae
from tokenbridge.checkpoints import (
    CheckpointError,
    load_model,
    load_official_vae,
    load_state_strict,
    read_model_file,
    read_torch_checkpoint,
    save_model,
    save_training_state,
    unwrap_state_dict,
)
from tokenbridge.classifier import ClassifierConfig, build_classifier

TINY = vae.tiny().config.to_dict()
"""`vae.tiny()` expressed as overrides of `kl16()`: exercises `load_official_vae` at a small size."""


def randomized(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def images(n, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


class RunsCode:
    """Unpickling this runs a shell command: a checkpoint that must never be loaded."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


# ------------------------------------------------------------------ our format
def test_vae_round_trip_identical(tmp_path):
    model = randomized(vae.tiny(scale_factor=0.5))
    path = save_model(model, tmp_path / "vae.safetensors", "vae", model.config.to_dict(), extra={"note": "x"})
    loaded = load_model(path, kind="vae")
    assert not loaded.training and loaded.config == model.config
    x = images(2)
    with torch.no_grad():
        assert torch.equal(loaded.encode_latents(x), model.encode_latents(x))
        z = model.encode_latents(x)
        assert torch.equal(loaded.decode_latents(z), model.decode_latents(z))
    state, header = read_model_file(path)
    assert header == {"kind": "vae", "config": json.loads(json.dumps(model.config.to_dict())), "extra": {"note": "x"}}
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_classifier_round_trip_fp32_and_fp16(tmp_path):
    config = ClassifierConfig(widths=(8, 16), num_classes=3, image_size=32)
    model = randomized(build_classifier(config))
    x = images(4)
    with torch.no_grad():
        ref = model(x)
        p32 = save_model(model, tmp_path / "c32.safetensors", "classifier", config.to_dict())
        assert torch.equal(load_model(p32, kind="classifier")(x), ref)
        p16 = save_model(model, tmp_path / "c16.safetensors", "classifier", config.to_dict(), dtype=torch.float16)
        loaded16 = load_model(p16)
        assert isinstance(loaded16, type(model)) and loaded16.config == config
        assert all(p.dtype == torch.float32 for p in loaded16.parameters())
        out16 = loaded16(x)
        assert not torch.equal(out16, ref)  # it really went through fp16 …
        assert torch.allclose(out16, ref, rtol=1e-2, atol=1e-2)  # … within fp16 precision
    assert p16.stat().st_size < 0.6 * p32.stat().st_size


def test_fp16_keeps_non_finite_buffers(tmp_path):
    model = torch.nn.Module()
    model.register_buffer("mask", torch.tensor([0.0, float("-inf")]))
    model.weight = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    path = save_model(model, tmp_path / "m.safetensors", "thing", {}, dtype=torch.float16)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert f.get_tensor("mask").dtype == torch.float32 and f.get_tensor("weight").dtype == torch.float16


def test_load_model_wrong_kind_and_unknown_kind(tmp_path):
    model = vae.tiny()
    path = save_model(model, tmp_path / "vae.safetensors", "vae", model.config.to_dict())
    with pytest.raises(CheckpointError, match="holds a 'vae' model, expected 'classifier'"):
        load_model(path, kind="classifier")
    odd = save_model(model, tmp_path / "odd.safetensors", "unicorn", {})
    with pytest.raises(CheckpointError, match="unknown model kind 'unicorn'; valid: vae, classifier, generator"):
        load_model(odd)
    bad_config = save_model(model, tmp_path / "bad.safetensors", "vae", {**model.config.to_dict(), "ch": 33})
    with pytest.raises(CheckpointError, match="stored config does not build a vae"):
        load_model(bad_config)
    other = save_model(model, tmp_path / "other.safetensors", "vae", vae.small().config.to_dict())
    with pytest.raises(CheckpointError, match="mis-shaped"):
        load_model(other)


def test_safetensors_without_our_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="no 'tokenbridge' metadata"):
        load_model(path)


def test_model_file_not_readable(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00\x01 definitely not safetensors" * 3)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_model(junk)
    model = vae.tiny()
    good = save_model(model, tmp_path / "vae.safetensors", "vae", model.config.to_dict())
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_model(cut)


# ------------------------------------------------------------------ strict state dicts
def test_load_state_strict_reports_each_problem():
    model = vae.tiny()
    state = {k: v.clone() for k, v in model.state_dict().items()}

    missing = {k: v for k, v in state.items() if k != "decoder.conv_out.bias"}
    with pytest.raises(CheckpointError, match=r"missing \(1\): decoder.conv_out.bias"):
        load_state_strict(model, missing, "ckpt")

    extra = {**state, "encoder.extra.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"unexpected \(1\): encoder.extra.weight"):
        load_state_strict(model, extra, "ckpt")

    wrong = {**state, "quant_conv.weight": torch.zeros(8, 8, 3, 3)}
    with pytest.raises(
        CheckpointError, match=r"mis-shaped \(1\): quant_conv.weight: checkpoint \(8, 8, 3, 3\) vs model \(8, 8, 1, 1\)"
    ):
        load_state_strict(model, wrong, "ckpt")

    many = {k: v for k, v in state.items() if not k.startswith("decoder.")}
    with pytest.raises(CheckpointError, match=r"more\)") as err:
        load_state_strict(model, many, "ckpt")
    assert "does not match AutoencoderKL" in str(err.value)

    target = vae.tiny()
    loaded = {k: torch.full_like(v, 0.5) for k, v in state.items()}
    load_state_strict(target, {**loaded, "loss.logvar": torch.zeros(())}, "ckpt", ignore_prefixes=("loss.",))
    assert all((p == 0.5).all() for p in target.parameters())


def test_unwrap_state_dict():
    sd = {"a": torch.zeros(1)}
    assert unwrap_state_dict({"model": sd, "epoch": 3}, "s", ("model",)) is sd
    assert unwrap_state_dict({"model_ema": sd, "model": {}}, "s", ("model_ema", "model")) is sd
    assert unwrap_state_dict(sd, "s", ("model",)) is sd
    with pytest.raises(CheckpointError, match="'model' holds a list"):
        unwrap_state_dict({"model": [1]}, "s", ("model",))
    with pytest.raises(CheckpointError, match="no state dict found.*found 'epoch', 'args'"):
        unwrap_state_dict({"epoch": 1, "args": "x"}, "s", ("model", "state_dict"))


# ------------------------------------------------------------------ official VAE import
def official_file(path, state, **extra):
    torch.save({"model": state, **extra}, path)
    return path


def test_load_official_vae_kl16(tmp_path):
    """The real KL-16 size, once. Each tensor is a stride-0 view of one number: a tiny file."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in vae.kl16().state_dict().items()}
    state = {k: torch.tensor(float(i) / 1000).expand(shape) for i, (k, shape) in enumerate(shapes.items())}
    state["loss.discriminator.main.0.weight"] = torch.zeros(64, 3, 4, 4)  # LDM training-only entries
    state["loss.logvar"] = torch.zeros(())
    path = official_file(tmp_path / "kl16.ckpt", state)
    assert path.stat().st_size < 1_000_000
    model = load_official_vae(path)
    assert not model.training and model.config == vae.VAEConfig()
    loaded = model.state_dict()
    assert list(loaded) == list(shapes)
    for i, (k, v) in enumerate(loaded.items()):
        assert (v == torch.tensor(float(i) / 1000)).all(), k


def test_load_official_vae_small_config(tmp_path):
    source = randomized(vae.tiny())
    path = official_file(tmp_path / "ok.ckpt", source.state_dict(), optimizer={}, epoch=3)
    model = load_official_vae(path, **TINY)
    x = images(1)
    with torch.no_grad():
        assert torch.equal(model.encode(x).mean, source.encode(x).mean)
    bare = tmp_path / "bare.ckpt"
    torch.save(source.state_dict(), bare)
    assert load_official_vae(bare, **TINY).config == source.config

    state = source.state_dict()
    bad = {k: v for k, v in state.items() if k != "encoder.conv_in.weight"}
    with pytest.raises(CheckpointError, match=r"missing \(1\): encoder.conv_in.weight"):
        load_official_vae(official_file(tmp_path / "missing.ckpt", bad), **TINY)
    bad = {**state, "encoder.mid.attn_2.q.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"unexpected \(1\): encoder.mid.attn_2.q.weight"):
        load_official_vae(official_file(tmp_path / "unexpected.ckpt", bad), **TINY)
    bad = {**state, "post_quant_conv.weight": torch.zeros(4, 8, 1, 1)}
    with pytest.raises(CheckpointError, match="post_quant_conv.weight: checkpoint"):
        load_official_vae(official_file(tmp_path / "shape.ckpt", bad), **TINY)
    with pytest.raises(CheckpointError, match="mis-shaped"):
        load_official_vae(path)  # a tiny state dict is not KL-16


# ------------------------------------------------------------------ unsafe and unreadable files
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_without_running(tmp_path, writer):
    marker = tmp_path / "pwned"
    payload = {"model": RunsCode(f"touch {shlex.quote(str(marker))}")}
    path = tmp_path / "evil.ckpt"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    for load in (read_torch_checkpoint, load_official_vae):
        with pytest.raises(CheckpointError, match="refused"):
            load(path)
    assert not marker.exists()


def test_unreadable_torch_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_torch_checkpoint(tmp_path / "absent.ckpt")
    good = tmp_path / "good.ckpt"
    torch.save({"model": {"w": torch.arange(10_000.0)}}, good)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.ckpt"
    text.write_text("hello, I am not a checkpoint\n")
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    for path in (cut, text, empty):
        with pytest.raises(CheckpointError, match=path.name):
            read_torch_checkpoint(path)
    tensor_only = tmp_path / "tensor.ckpt"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(CheckpointError, match="holds a Tensor, expected a dict"):
        read_torch_checkpoint(tensor_only)
    assert torch.equal(read_torch_checkpoint(good)["model"]["w"], torch.arange(10_000.0))


# ------------------------------------------------------------------ training state and atomic writes
def test_training_state_round_trip(tmp_path):
    state = {
        "kind": "vae",
        "step": 7,
        "wall_time_s": 1.5,
        "model": {"w": torch.randn(3)},
        "optimizer": {"state": {0: {"exp_avg": torch.ones(2)}}, "param_groups": [{"lr": 1e-3, "params": [0]}]},
        "settings": {"device": "auto", "seed": 0},
    }
    path = save_training_state(state, tmp_path / "run" / "state.pt")
    back = read_torch_checkpoint(path)
    assert back["step"] == 7 and torch.equal(back["model"]["w"], state["model"]["w"])
    assert back["optimizer"]["param_groups"][0]["lr"] == 1e-3 and back["settings"] == state["settings"]
    assert [p.name for p in path.parent.iterdir()] == ["state.pt"]


# ------------------------------------------------------------------ files told by content, headers, fallbacks
def test_files_are_told_by_content_and_bad_headers_name_the_file(tmp_path):
    model = vae.tiny()
    ours = save_model(model, tmp_path / "vae.safetensors", "vae", model.config.to_dict())
    official = tmp_path / "kl16.ckpt"
    torch.save({"model": model.state_dict()}, official)
    assert checkpoints.file_format(ours) == "safetensors" and checkpoints.file_format(official) == "torch"
    misnamed = tmp_path / "vae.ckpt"
    misnamed.write_bytes(ours.read_bytes())
    with pytest.raises(CheckpointError, match="vae.ckpt' is a safetensors file"):
        read_torch_checkpoint(misnamed)
    (tmp_path / "official.safetensors").write_bytes(official.read_bytes())
    with pytest.raises(CheckpointError, match="official.safetensors' is a torch checkpoint"):
        load_model(tmp_path / "official.safetensors")
    bad = tmp_path / "bad_header.safetensors"
    save_file({"w": torch.zeros(2)}, str(bad), metadata={"tokenbridge": "{not json"})
    with pytest.raises(CheckpointError, match="bad_header.safetensors'.*not valid JSON"):
        checkpoints.read_header(bad)
    assert checkpoints.read_header(ours)["kind"] == "vae"


def test_official_generator_without_ema_says_it_falls_back(tmp_path):
    from tokenbridge import generator

    with torch.random.fork_rng():
        torch.manual_seed(0)
        state = generator.tokenbridge_tiny(class_num=10).state_dict()
    path = tmp_path / "checkpoint-last.pth"
    torch.save({"model": state}, path)
    with pytest.warns(UserWarning, match="no 'model_ema' weights: falling back to 'model'"):
        model, _ = checkpoints.load_official_generator(path)
    assert torch.equal(model.state_dict()["class_emb.weight"], state["class_emb.weight"])


# ------------------------------------------------------------------ official generators told by their keys and shapes
REFERENCE = Path(__file__).resolve().parent / "reference"


@pytest.mark.parametrize("name,heads", [("tokenbridge_base", 12), ("tokenbridge_large", 16), ("tokenbridge_huge", 16)])
def test_official_key_lists_name_their_preset(name, heads):
    """The released key lists (shapes only) give each official preset, heads from its table entry."""
    entries = json.loads((REFERENCE / f"keys_{name}.json").read_text())["entries"]
    state = {e["name"]: torch.empty(e["shape"], device="meta") for e in entries}
    config = checkpoints.official_generator_config(state, "ref")
    assert config == generator.PRESETS[name] and config.encoder_num_heads == heads


def test_generator_config_follows_the_shapes_whatever_the_registry_order(monkeypatch):
    with torch.device("meta"):
        state = generator.build_generator("tokenbridge_ablation", quant_levels=16, class_num=7).state_dict()
    config = checkpoints.official_generator_config(state, "ours")
    assert (config.quant_levels, config.class_num, config.encoder_embed_dim) == (16, 7, 128)
    reversed_presets = dict(reversed(generator.PRESETS.items()))
    monkeypatch.setattr(checkpoints, "PRESETS", reversed_presets)
    assert checkpoints.official_generator_config(state, "ours") == config  # ablation and ablation_b16 agree


def test_generator_of_an_unknown_or_ambiguous_network_is_refused(monkeypatch):
    with torch.device("meta"):
        state = generator.build_generator("tokenbridge_tiny", encoder_depth=3).state_dict()
        tiny = generator.build_generator("tokenbridge_tiny").state_dict()
    with pytest.raises(CheckpointError, match="'x.pth': no generator preset has this network.*encoder_depth=3"):
        checkpoints.official_generator_config(state, "'x.pth'")
    twin = dataclasses.replace(generator.PRESETS["tokenbridge_tiny"], encoder_num_heads=4)
    monkeypatch.setattr(checkpoints, "PRESETS", {**generator.PRESETS, "tiny_twin": twin})
    with pytest.raises(CheckpointError, match="tokenbridge_tiny, tiny_twin share this network"):
        checkpoints.official_generator_config(tiny, "'x.pth'")
    with pytest.raises(CheckpointError, match="not a TokenBridge generator state dict: no 'z_proj.weight'"):
        checkpoints.official_generator_config({"output_pos_embed": torch.empty(1, 4, 2)}, "'x.pth'")
