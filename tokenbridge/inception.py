"""Standard Inception FID features (optional): the pytorch-fid Inception-v3, written here in torch.

FID is only comparable with published numbers when computed with the *FID Inception* weights
(the TensorFlow 2015-12-05 graph converted by pytorch-fid: ``pt_inception-2015-12-05-6726825d.pth``).
Those weights cannot be downloaded by this kit: give a local path, either as an argument or in the
``TOKENBRIDGE_INCEPTION_WEIGHTS`` environment variable. Without them `InceptionUnavailable` is
raised, and the kit's own "FD-shapes" (`tokenbridge.metrics`) remains available.

The network mirrors torchvision's ``Inception3`` attribute names (so the file loads key for key,
its 1008-way ``fc`` dropped) with pytorch-fid's FID variants of the blocks, which reproduce the
TensorFlow graph: average pooling without padded zeros in the A/C/E blocks, and *max* pooling in
the pool branch of the last E block (``Mixed_7c``). Features are the 2048 global-average-pooled
activations before ``fc`` ("pool3").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from tokenbridge import checkpoints

WEIGHTS_ENV = "TOKENBRIDGE_INCEPTION_WEIGHTS"
WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
FEATURE_DIM = 2048
INPUT_SIZE = 299
FID_CLASSES = 1008
"""Outputs of the converted TensorFlow graph's classifier (the file's ``fc``; unused here)."""


class InceptionUnavailable(RuntimeError):
    """The FID Inception weights are not on this machine (they are never downloaded)."""


# ------------------------------------------------------------------------------------------------
# Blocks (torchvision names; pytorch-fid's FID pooling)
# ------------------------------------------------------------------------------------------------


class BasicConv2d(nn.Module):
    """Conv (no bias) → BatchNorm(eps 1e-3) → ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's average pooling ignores the padded zeros (torchvision's default counts them).
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35×35: 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | pool→1×1; out 224 + ``pool_features``."""

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_3x3(x))
        return torch.cat([b1, b5, b3, bp], dim=1)


class InceptionB(nn.Module):
    """35×35 → 17×17 reduction: 3×3/2 | 1×1→3×3→3×3/2 | max-pool/2; out 480 + in."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        b3d = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b3, b3d, F.max_pool2d(x, kernel_size=3, stride=2)], dim=1)


class InceptionC(nn.Module):
    """17×17 with factorized 7×7 convolutions (``channels_7x7`` inside); out 768."""

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b7d = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            b7d = conv(b7d)
        bp = self.branch_pool(_avg_pool_3x3(x))
        return torch.cat([b1, b7, b7d, bp], dim=1)


class InceptionD(nn.Module):
    """17×17 → 8×8 reduction: 1×1→3×3/2 | 1×1→1×7→7×1→3×3/2 | max-pool/2; out 512 + in."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], dim=1)


class InceptionE(nn.Module):
    """8×8 with split 1×3 / 3×1 outputs; out 2048. ``pool="max"`` is the FID graph's last block."""

    def __init__(self, in_channels: int, pool: str = "avg"):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], dim=1)
        b3d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b3d = torch.cat([self.branch3x3dbl_3a(b3d), self.branch3x3dbl_3b(b3d)], dim=1)
        if self.pool == "max":  # the converted TF graph max-pools here (a quirk FID depends on)
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _avg_pool_3x3(x)
        return torch.cat([b1, b3, b3d, self.branch_pool(pooled)], dim=1)


# ------------------------------------------------------------------------------------------------
# The network
# ------------------------------------------------------------------------------------------------


class FIDInceptionV3(nn.Module):
    """Images ``[N, 3, H, W]`` in [-1, 1] → pool3 features ``[N, 2048]`` (21,785,568 parameters).

    Inputs are resized to 299×299 (bilinear, ``align_corners=False``, no antialias) as pytorch-fid
    does; its ``[0, 1] → [-1, 1]`` normalization is already our image convention.
    """

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [N, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
        x = F.interpolate(images.float(), size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # 147×147
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 73×73
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # 71×71
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 35×35
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        x = self.Mixed_6a(x)  # 17×17
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        x = self.Mixed_7a(x)  # 8×8
        x = self.Mixed_7c(self.Mixed_7b(x))
        return x.mean(dim=(2, 3))  # [N, 2048]


# ------------------------------------------------------------------------------------------------
# Weights (local only) and features
# ------------------------------------------------------------------------------------------------


def find_weights(path: str | os.PathLike | None = None) -> Path:
    """The weights file: ``path`` (a file, or a folder holding ``WEIGHTS_FILENAME``), else the
    ``TOKENBRIDGE_INCEPTION_WEIGHTS`` environment variable. Raises `InceptionUnavailable`."""
    if path is None:
        path = os.environ.get(WEIGHTS_ENV) or None
    if path is None:
        where = f"(no path given and ${WEIGHTS_ENV} is not set)"
    else:
        candidate = Path(path).expanduser()
        if candidate.is_dir():
            candidate = candidate / WEIGHTS_FILENAME
        if candidate.is_file():
            return candidate
        where = repr(str(candidate))
    raise InceptionUnavailable(
        f"FID needs the Inception weights at a local path; none found at {where}; set {WEIGHTS_ENV} to "
        f"the pytorch-fid file {WEIGHTS_FILENAME} (or pass its path). They are never downloaded; "
        "the kit's FD-shapes (tokenbridge.metrics) works without them."
    )


def load_inception(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> FIDInceptionV3:
    """`FIDInceptionV3` with the pytorch-fid weights (``torch.load(weights_only=True)``, strict keys).

    The file's 1008-way ``fc`` is checked and dropped; ``num_batches_tracked`` counters (unused in
    eval mode) are filled in if the file predates them.
    """
    weights = find_weights(path)
    source = repr(str(weights))
    state = checkpoints.unwrap_state_dict(checkpoints.read_torch_checkpoint(weights), source, ("state_dict",))
    fc = state.get("fc.weight")
    if fc is not None and tuple(fc.shape) != (FID_CLASSES, FEATURE_DIM):
        raise checkpoints.CheckpointError(
            f"{source} is not the FID Inception: its fc is {tuple(fc.shape)}, the FID graph's is "
            f"({FID_CLASSES}, {FEATURE_DIM}) (torchvision's ImageNet Inception gives different FIDs)"
        )
    model = FIDInceptionV3()
    state = dict(state)
    for name, buffer in model.state_dict().items():
        if name.endswith("num_batches_tracked") and name not in state:
            state[name] = torch.zeros_like(buffer)
    checkpoints.load_state_strict(model, state, source, ignore_prefixes=("fc.",))
    return model.to(device).eval()


@torch.no_grad()
def inception_features(
    images: torch.Tensor | Iterable[torch.Tensor], model: FIDInceptionV3 | None = None, batch_size: int = 50
) -> torch.Tensor:
    """pool3 features ``[N, 2048]`` float32 on the CPU of images ``[N, 3, H, W]`` in [-1, 1].

    ``images`` is one tensor (split into ``batch_size`` chunks) or an iterable of batches. Without
    ``model``, `load_inception()` is called (weights from ``$TOKENBRIDGE_INCEPTION_WEIGHTS``); pass
    a loaded model to reuse it. Runs on the model's device.
    """
    if model is None:
        model = load_inception()
    model.eval()
    device = next(model.parameters()).device
    batches = images.split(batch_size) if isinstance(images, torch.Tensor) else images
    feats = [model(batch.to(device)).float().cpu() for batch in batches]
    if not feats:
        raise ValueError("no images given")
    return torch.cat(feats)


def inception_statistics(
    images: torch.Tensor | Iterable[torch.Tensor], model: FIDInceptionV3 | None = None, batch_size: int = 50
):
    """`tokenbridge.metrics.FeatureStats` of the Inception features (FID = `frechet_distance` of two)."""
    from tokenbridge.metrics import feature_statistics

    return feature_statistics(inception_features(images, model, batch_size))
