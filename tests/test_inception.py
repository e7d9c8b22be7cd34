"""Optional Inception FID: architecture and pytorch-fid key names, local-only weights, clean skips."""

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tokenbridge import inception
from tokenbridge.checkpoints import CheckpointError
from tokenbridge.inception import (
    FEATURE_DIM,
    WEIGHTS_ENV,
    WEIGHTS_FILENAME,
    FIDInceptionV3,
    InceptionA,
    InceptionC,
    InceptionE,
    InceptionUnavailable,
    find_weights,
    inception_features,
    load_inception,
)


@pytest.fixture(scope="module")
def net():
    """Random weights scaled so activations stay O(1) through the ~50 layers (default init fades)."""
    torch.manual_seed(0)
    model = FIDInceptionV3()
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return model.eval()


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)


def images(n, size, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------ architecture
def test_state_dict_names_follow_pytorch_fid():
    with torch.device("meta"):
        model = FIDInceptionV3()
    sd = model.state_dict()
    for name, shape in {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_1a_3x3.bn.running_var": (32,),
        "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
        "Mixed_5b.branch1x1.conv.weight": (64, 192, 1, 1),
        "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_5d.branch5x5_2.conv.weight": (64, 48, 5, 5),
        "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
        "Mixed_6b.branch7x7dbl_5.conv.weight": (192, 128, 1, 7),
        "Mixed_6e.branch7x7_3.conv.weight": (192, 192, 7, 1),
        "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
        "Mixed_7b.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
        "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    }.items():
        assert tuple(sd[name].shape) == shape, name
    assert "Conv2d_1a_3x3.bn.num_batches_tracked" in sd
    assert not any(k.startswith(("fc.", "AuxLogits.")) for k in sd)
    assert all(k.split(".")[-2] in ("conv", "bn") for k in sd)  # every weight sits in a BasicConv2d
    assert sum(k.endswith(".conv.weight") for k in sd) == 94  # Inception-v3's convolutions, no aux head
    # torchvision's inception_v3 has 27,161,264 parameters; minus the aux head (3,326,696) and fc (2,049,000):
    assert sum(p.numel() for p in model.parameters()) == 21_785_568
    assert model.Mixed_7b.pool == "avg" and model.Mixed_7c.pool == "max"  # the FID graph's quirk


def test_features_shape_with_random_weights(net):
    x = images(2, 32)
    f = inception_features(x, net, batch_size=1)
    assert f.shape == (2, FEATURE_DIM) and f.dtype == torch.float32 and f.device.type == "cpu"
    assert torch.isfinite(f).all() and (f >= 0).all()  # averaged ReLU outputs
    assert f.abs().max() > 1e-3 and not torch.allclose(f[0], f[1])
    with torch.no_grad():
        assert torch.allclose(net(x), f, atol=1e-5)  # batching does not change features
        # any input size is resized to 299 first: a 299 image and its bilinear copy agree
        big = torch.nn.functional.interpolate(x[:1], size=(299, 299), mode="bilinear", align_corners=False)
        assert torch.allclose(net(big), f[:1], atol=1e-5)
    with pytest.raises(ValueError, match=r"expected images \[N, 3, H, W\]"):
        net(torch.zeros(1, 1, 32, 32))


def branch_pool_input(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What ``block.branch_pool`` receives when the block runs on ``x``: the pooled input."""
    captured = []
    handle = block.branch_pool.register_forward_hook(lambda m, inp, out: captured.append(inp[0]))
    with torch.no_grad():
        block(x)
    handle.remove()
    return captured[0]


def test_fid_pooling_variants(seeded):
    """A/C/E blocks average without counting padding (as TensorFlow); the last E block max-pools."""
    x = torch.rand(1, 8, 4, 4, generator=torch.Generator().manual_seed(0)) + 1.0
    tf_average = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert torch.allclose(tf_average[..., 0, 0], x[..., :2, :2].mean(dim=(-1, -2)))  # corner: 4 real values
    for build in (lambda: InceptionA(8, pool_features=4), lambda: InceptionC(8, channels_7x7=4), lambda: InceptionE(8)):
        assert torch.equal(branch_pool_input(seeded(build), x), tf_average)
    assert torch.equal(
        branch_pool_input(seeded(lambda: InceptionE(8, pool="max")), x), F.max_pool2d(x, 3, stride=1, padding=1)
    )
    with pytest.raises(ValueError, match="pool must be"):
        InceptionE(8, pool="median")


# ------------------------------------------------------------------ weights: local only
def test_missing_weights_raise_with_a_clear_message(tmp_path, no_env):
    with pytest.raises(InceptionUnavailable, match=f"none found at .*{WEIGHTS_ENV} is not set.*set {WEIGHTS_ENV}"):
        load_inception()
    with pytest.raises(InceptionUnavailable, match="FID needs the Inception weights at a local path"):
        inception_features(images(1, 8))
    absent = tmp_path / "nowhere.pth"
    with pytest.raises(InceptionUnavailable, match=f"none found at '{absent}'"):
        find_weights(absent)
    with pytest.raises(InceptionUnavailable, match=WEIGHTS_FILENAME):
        find_weights(tmp_path)  # a folder without the file
    assert issubclass(InceptionUnavailable, RuntimeError)


def test_env_var_points_at_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "gone.pth"))
    with pytest.raises(InceptionUnavailable, match="gone.pth"):
        load_inception()


def fake_weights_file(path, fc_classes=1008, with_counters=False):
    """A pytorch-fid-shaped file (each tensor a stride-0 view of one number: tiny on disk)."""
    with torch.device("meta"):
        sd = FIDInceptionV3().state_dict()
    state = {}
    for i, (k, v) in enumerate(sd.items()):
        if k.endswith("num_batches_tracked"):
            if with_counters:
                state[k] = torch.tensor(5)
            continue
        value = 1.0 if k.endswith("running_var") else (i % 97) / 1000.0
        state[k] = torch.tensor(value).expand(v.shape)
    state["fc.weight"] = torch.zeros(1).expand(fc_classes, FEATURE_DIM)
    state["fc.bias"] = torch.zeros(fc_classes)
    torch.save(state, path)
    return state


def test_loads_a_pytorch_fid_shaped_file(tmp_path, monkeypatch):
    path = tmp_path / WEIGHTS_FILENAME
    state = fake_weights_file(path)
    assert path.stat().st_size < 2_000_000
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))  # a folder holding the file works too
    model = load_inception()
    assert not model.training
    loaded = model.state_dict()
    for k, v in state.items():
        if not k.startswith("fc."):
            assert torch.equal(loaded[k], v.contiguous()), k
    assert all(loaded[k] == 0 for k in loaded if k.endswith("num_batches_tracked"))
    with_counters = tmp_path / "counters.pth"
    fake_weights_file(with_counters, with_counters=True)
    assert load_inception(with_counters).Mixed_5b.branch1x1.bn.num_batches_tracked == 5


def test_refuses_wrong_or_unsafe_files(tmp_path):
    imagenet = tmp_path / "imagenet.pth"
    fake_weights_file(imagenet, fc_classes=1000)
    with pytest.raises(CheckpointError, match="not the FID Inception"):
        load_inception(imagenet)
    partial = tmp_path / "partial.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 3, 3)}, partial)
    with pytest.raises(CheckpointError, match="missing"):
        load_inception(partial)

    class RunsCode:
        def __reduce__(self):
            return os.system, (f"touch '{tmp_path / 'pwned'}'",)

    evil = tmp_path / "evil.pth"
    torch.save({"fc.weight": RunsCode()}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_inception(evil)
    assert not (tmp_path / "pwned").exists()


# ------------------------------------------------------------------ the real weights (when present)
@pytest.mark.slow
def test_real_weights():
    try:
        path = find_weights()
    except InceptionUnavailable:
        pytest.skip(f"FID Inception weights not present (set {WEIGHTS_ENV} to {WEIGHTS_FILENAME})")
    model = load_inception(path)
    a = images(4, 64, seed=1)
    fa = inception_features(a, model, batch_size=2)
    assert fa.shape == (4, FEATURE_DIM) and (fa >= 0).all() and torch.isfinite(fa).all()
    assert torch.allclose(inception_features(a, model), fa, atol=1e-5)
    assert not torch.allclose(fa[0], fa[1])
    stats = inception.inception_statistics(a, model)
    assert stats.count == 4 and stats.cov.shape == (FEATURE_DIM, FEATURE_DIM)
