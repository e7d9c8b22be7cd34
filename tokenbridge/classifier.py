"""The kit's own feature network: a small CNN classifier of the shapes dataset.

Its penultimate layer (global-average-pooled, ``feature_dim`` values) is the feature space of the
"FD-shapes" metric; its logits give the class accuracy of generated samples. Trained by
``python -m tokenbridge.train classifier`` and shipped in ``assets/``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ClassifierConfig:
    """Widths of the four stages (each halves the resolution), classes, and input size."""

    widths: tuple[int, ...] = (16, 32, 64, 128)
    num_classes: int = 10
    image_size: int = 64

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if not self.widths or min(self.widths) <= 0 or any(w % 8 for w in self.widths):
            raise ValueError(f"widths must be positive multiples of 8, got {self.widths}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")

    def to_dict(self) -> dict:
        return asdict(self)


class _Stage(nn.Sequential):
    """Two 3×3 conv + GroupNorm(8) + SiLU, then 2× average pooling."""

    def __init__(self, w_in: int, w_out: int):
        super().__init__(
            nn.Conv2d(w_in, w_out, 3, padding=1),
            nn.GroupNorm(8, w_out),
            nn.SiLU(),
            nn.Conv2d(w_out, w_out, 3, padding=1),
            nn.GroupNorm(8, w_out),
            nn.SiLU(),
            nn.AvgPool2d(2),
        )


class ShapesClassifier(nn.Module):
    """Images ``[B, 3, S, S]`` in [-1, 1] → logits ``[B, num_classes]``; `features` → ``[B, widths[-1]]``."""

    def __init__(self, config: ClassifierConfig | None = None):
        super().__init__()
        self.config = config or ClassifierConfig()
        widths = (3, *self.config.widths)
        self.stages = nn.Sequential(*(_Stage(a, b) for a, b in zip(widths[:-1], widths[1:])))
        self.head = nn.Linear(widths[-1], self.config.num_classes)

    @property
    def feature_dim(self) -> int:
        return self.config.widths[-1]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[B, feature_dim]`` (the FD-shapes space)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
        return self.stages(images).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))

    def loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self(images), labels)


def build_classifier(config: ClassifierConfig | dict | None = None) -> ShapesClassifier:
    """A classifier from a stored config (dict from JSON, a `ClassifierConfig`, or the default)."""
    if isinstance(config, dict):
        config = ClassifierConfig(**config)
    return ShapesClassifier(config)
