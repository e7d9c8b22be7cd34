"""Computations behind the Channels and Quantizer tabs (no Gradio here; tensors in, tensors out).

Latents are the pipeline's *scaled* latents ``[C, h, w]``; images ``[3, H, W]`` in [-1, 1].
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from app.state import integer
from tokenbridge import spectral
from tokenbridge.data import load_image, to_uint8_image
from tokenbridge.metrics import psnr
from tokenbridge.pipeline import EMBEDDED, Pipeline
from tokenbridge.quantizer import GaussianQuantizer, QuantizerStats
from tokenbridge.shapes import CLASS_NAMES, HELDOUT_SEED, TRAIN_SEED, ShapesDataset

MAX_UPLOAD_BYTES = 10 * 2**20
MAX_UPLOAD_PIXELS = 4096 * 4096
UPLOAD_LIMITS = "PNG/JPEG/WebP/BMP/GIF/TIFF, at most 10 MB and 4096×4096 pixels; centre-cropped to a square"
LOWFREQ_CUTOFF = 0.5
SHAPES_PER_CLASS = 1000
"""Held-out shapes a user can pick per class (sample k of class c is item ``c + 10·k``)."""


# ------------------------------------------------------------------------------------------------
# Images
# ------------------------------------------------------------------------------------------------


def shapes_image(pipeline: Pipeline, class_name: str, number: int) -> torch.Tensor:
    """Held-out sample ``number`` of ``class_name`` at the pipeline's image size, ``[3, H, W]``, from
    the procedural dataset its generator learnt (`Pipeline.dataset`: icons for the embedded one)."""
    if class_name not in CLASS_NAMES:
        raise ValueError(f"unknown shape {class_name!r}; valid: {', '.join(CLASS_NAMES)}")
    if not 0 <= number < SHAPES_PER_CLASS:
        raise ValueError(f"sample number must be in 0..{SHAPES_PER_CLASS - 1}, got {number}")
    index = CLASS_NAMES.index(class_name) + len(CLASS_NAMES) * number
    return ShapesDataset(1, seed=HELDOUT_SEED, offset=index, size=pipeline.image_size, kind=pipeline.dataset)[0][0]


def uploaded_image(pipeline: Pipeline, path: str | os.PathLike | None) -> torch.Tensor:
    """An uploaded file -> ``[3, H, W]``; ValueError for a missing, oversized or unreadable file."""
    if not path:
        raise ValueError(f"upload an image first ({UPLOAD_LIMITS})")
    try:
        size = os.path.getsize(path)
    except OSError:
        raise ValueError("the upload was not received; upload the image again") from None
    if size > MAX_UPLOAD_BYTES:
        raise ValueError(f"the upload is {size / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB")
    try:
        return load_image(path, size=pipeline.image_size, max_pixels=MAX_UPLOAD_PIXELS)
    except ValueError as e:  # name the upload, not the server's temporary path
        raise ValueError(
            f"uploaded file {os.path.basename(str(path))!r}: {str(e).removeprefix(f'{path}: ')} ({UPLOAD_LIMITS})"
        ) from None


def picked_image(pipeline: Pipeline, source: str, shape: str, sample, upload) -> torch.Tensor:
    """The image a tab's picker names, ``[3, H, W]``: held-out image ``sample`` of ``shape`` for
    ``source`` "held-out image", else the upload (``sample`` is checked: it comes from the client)."""
    if source == "held-out image":
        return shapes_image(pipeline, shape, integer("sample number", sample, 0, SHAPES_PER_CLASS - 1))
    return uploaded_image(pipeline, upload)


def picked_name(pipeline: Pipeline, source: str, shape: str, sample) -> str:
    """How the info text names the picked image: the held-out image with its dataset, class and
    number (e.g. "held-out icons image 2 of 'star'"), else the source itself ("uploaded image")."""
    if source == "held-out image":
        return f"held-out {pipeline.dataset} image {int(sample)} of {shape!r}"
    return source


def latent_order(pipeline: Pipeline) -> tuple[int, ...]:
    """Generation order of the latent channels (identity when tokens are patches of several)."""
    channel_order = pipeline.channel_order
    return channel_order if len(channel_order) == pipeline.num_channels else tuple(range(pipeline.num_channels))


def channel_prefix_images(pipeline: Pipeline, latents_Chw: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """Row k-1 decodes the latents with their first k channels (generation order) kept and the
    others at the prior mean 0, k = 1..C: ``[C, 3, H, W]``."""
    channel_order = torch.tensor(latent_order(pipeline))
    c = latents_Chw.shape[0]
    keep_KC = torch.zeros(c, c, dtype=torch.bool)
    for k in range(c):
        keep_KC[k, channel_order[: k + 1]] = True
    stack = latents_Chw[None] * keep_KC[:, :, None, None]
    return torch.cat([pipeline.decode(part) for part in stack.split(chunk)])


# ------------------------------------------------------------------------------------------------
# Calibration batch: a few training shapes encoded once per app
# ------------------------------------------------------------------------------------------------


class Calibration:
    """Latents ``[N, C, h, w]`` of the first ``count`` training shapes, encoded on first use.

    Shared read-only by all sessions of one app; the encode runs once, under a lock.
    """

    def __init__(self, pipeline: Pipeline, count: int = 64):
        self.pipeline, self.count = pipeline, count
        self._latents: torch.Tensor | None = None
        self._lock = threading.Lock()

    @property
    def latents(self) -> torch.Tensor:
        with self._lock:
            if self._latents is None:
                data = ShapesDataset(
                    self.count, seed=TRAIN_SEED, size=self.pipeline.image_size, kind=self.pipeline.dataset
                )
                images = torch.stack([data[i][0] for i in range(self.count)])
                self._latents = torch.cat([self.pipeline.encode(part) for part in images.split(16)])
            return self._latents

    def lowfreq_ratio(self) -> torch.Tensor:
        return spectral.low_frequency_ratio(self.latents, LOWFREQ_CUTOFF)

    def quantizer(self, levels: int, assign: str, calibration: str) -> GaussianQuantizer:
        """A quantizer with the pipeline's value and std range, fitted here for ``per_channel``."""
        base = self.pipeline.quantizer.config
        q = GaussianQuantizer(levels, base.value_range, base.std_range, assign=assign, calibration=calibration)
        return q.fit(self.latents) if calibration == "per_channel" else q


# ------------------------------------------------------------------------------------------------
# Quantizer lab
# ------------------------------------------------------------------------------------------------


@dataclass
class QuantizerReport:
    """One image through encode -> quantize -> decode, and the quantizer's statistics."""

    quantizer: GaussianQuantizer
    original: np.ndarray  # uint8 [H, W, 3]
    continuous: np.ndarray  # decoded from the continuous latents
    quantized: np.ndarray  # decoded from the dequantized indices
    psnr_continuous: float  # dB vs original
    psnr_quantized: float  # dB vs original
    psnr_quantization: float  # dB, quantized vs continuous reconstruction
    latent_mse: float
    image_stats: QuantizerStats
    calibration_stats: QuantizerStats
    u_image: torch.Tensor  # [C, h*w] normalized values (not clamped)
    u_calibration: torch.Tensor  # [C, N*h*w]


def quantizer_report(
    pipeline: Pipeline,
    calibration: Calibration,
    image_3HW: torch.Tensor,
    levels: int,
    assign: str,
    calibration_kind: str,
) -> QuantizerReport:
    q = calibration.quantizer(levels, assign, calibration_kind)
    latents = pipeline.encode(image_3HW[None])
    x_hat = q.dequantize(q.quantize(latents))
    decoded = pipeline.decode(torch.cat([latents, x_hat]))
    original = image_3HW[None]
    c = latents.shape[1]
    return QuantizerReport(
        quantizer=q,
        original=to_uint8_image(image_3HW),
        continuous=to_uint8_image(decoded[0]),
        quantized=to_uint8_image(decoded[1]),
        psnr_continuous=float(psnr(decoded[:1], original)),
        psnr_quantized=float(psnr(decoded[1:], original)),
        psnr_quantization=float(psnr(decoded[1:], decoded[:1])),
        latent_mse=float(((x_hat - latents) ** 2).mean()),
        image_stats=q.stats(latents),
        calibration_stats=q.stats(calibration.latents),
        u_image=q.normalize(latents).movedim(1, 0).reshape(c, -1),
        u_calibration=q.normalize(calibration.latents).movedim(1, 0).reshape(c, -1),
    )


def uses_embedded_vae(pipeline: Pipeline) -> bool:
    """Whether ``pipeline``'s VAE is the embedded one (assets/, trained on the shapes only)."""
    vae = pipeline.source.get("vae")
    return vae is not None and Path(vae).resolve() == EMBEDDED["vae"].resolve()


def photo_note(pipeline: Pipeline, source: str, psnr_continuous: float) -> str:
    """What the Quantizer tab says beside the result of a non-shapes image ("uploaded image") on
    the embedded VAE: it reconstructs photos blurrily, hiding the quantizer's effect; "" otherwise."""
    if source == "held-out image" or not uses_embedded_vae(pipeline):
        return ""
    return (
        f"**Note:** the embedded VAE was trained on the shapes data only, so a photo reconstructs "
        f"blurrily (this image: {psnr_continuous:.2f} dB PSNR from the continuous latents) and the "
        f"quantizer's effect is hidden under that blur. For the official VAE, start the app with "
        f"`python app/main.py --vae kl16.ckpt`."
    )
