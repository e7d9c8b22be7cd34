"""Data: image conversion, image folders, and cached latents.

Sources of training data that yield the same items as the procedural shapes
(`tokenbridge.shapes.ShapesDataset`), so training code does not care which one it gets:

- `ImageFolderDataset`: any folder laid out one sub-folder per class (torchvision's ImageFolder
  layout), centre-cropped and resized; unreadable files are reported, never crashed on.
- `LatentDataset`: latents written once by `cache_latents` (encode once, train many times).

Items are ``(image [3, H, W] float32 in [-1, 1], label int64)`` (latents instead of images for
`LatentDataset`). This module knows nothing about models: `cache_latents` takes any callable.
"""

from __future__ import annotations

import json
import os
import struct
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tokenbridge.files import atomic_write

IMAGE_SIZE = 64
"""Side of the embedded images (pixels): the shapes' size and `load_image`'s default."""

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_PIXELS = 40_000_000
"""Largest image (width × height) `load_image` and `ImageFolderDataset` accept."""

LATENT_CACHE_FORMAT = "tokenbridge.latents"
_LATENT_CACHE_VERSION = 1


# ------------------------------------------------------------------------------------------------
# Image conversion helpers
# ------------------------------------------------------------------------------------------------


def to_uint8_image(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[3, H, W]`` or ``[B, 3, H, W]`` in [-1, 1] -> uint8 ``[H, W, 3]`` or ``[B, H, W, 3]``.

    Values outside [-1, 1] are clipped; rounding is to nearest, so
    ``to_uint8_image(from_uint8_image(a)) == a`` exactly.
    """
    x = torch.as_tensor(images).detach().to("cpu", torch.float32)
    if x.dim() not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"expected [3, H, W] or [B, 3, H, W], got shape {tuple(x.shape)}")
    x = ((x + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    return x.movedim(-3, -1).contiguous().numpy()


def image_grid(images: torch.Tensor, columns: int = 8, padding: int = 2) -> np.ndarray:
    """``[B, 3, H, W]`` in [-1, 1] -> one uint8 ``[rows·(H+p)+p, cols·(W+p)+p, 3]`` picture (white gaps)."""
    pixels = to_uint8_image(images if images.dim() == 4 else images[None])
    b, h, w, _ = pixels.shape
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    cols = min(columns, b)
    rows = -(-b // cols)
    grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, 3), 255, np.uint8)
    for i, image in enumerate(pixels):
        r, c = divmod(i, cols)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        grid[top : top + h, left : left + w] = image
    return grid


def from_uint8_image(images) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` / ``[B, H, W, 3]`` (numpy, tensor or PIL RGB) -> float32 channels-first in [-1, 1]."""
    if hasattr(images, "mode") and hasattr(images, "size"):  # a PIL image
        if images.mode != "RGB":
            raise ValueError(f"expected an RGB PIL image, got mode {images.mode!r}; use load_image")
        images = np.asarray(images)
    if not isinstance(images, (torch.Tensor, np.ndarray)):
        images = np.asarray(images)
    if images.dtype != (torch.uint8 if isinstance(images, torch.Tensor) else np.uint8):
        raise ValueError(f"expected uint8 pixels, got {images.dtype}")
    if images.ndim not in (3, 4) or images.shape[-1] != 3:
        raise ValueError(f"expected [H, W, 3] or [B, H, W, 3], got shape {tuple(images.shape)}")
    if isinstance(images, torch.Tensor):
        x = images.to(torch.float32)
    else:
        x = torch.from_numpy(np.asarray(images, dtype=np.float32))  # a fresh, writable copy
    return x.movedim(-1, -3).div_(127.5).sub_(1.0).contiguous()


# ------------------------------------------------------------------------------------------------
# Image files
# ------------------------------------------------------------------------------------------------


def _to_rgb(img):
    """Any PIL mode -> RGB. Transparency is composited on white; 16/32-bit and float scaled to 8 bit.

    Scaling: ``I;16*`` divides by 257 (0..65535 -> 0..255). ``I`` / ``F`` are taken as 8-bit when
    their maximum is ≤ 255 (≤ 1 for ``F``: scaled by 255), else as 16-bit (÷257), else by their maximum.
    """
    from PIL import Image

    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = float(arr.max()) if arr.size else 0.0
        if mode.startswith("I;16"):
            div = 257.0
        elif mode == "F" and top <= 1.0:
            div = 1.0 / 255.0
        else:
            div = 1.0 if top <= 255 else 257.0 if top <= 65535 else top / 255.0
        arr = np.clip(np.round(arr / div), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV, ...


def _center_resize(img, size: int):
    from PIL import Image

    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return img


def _prepare(img, name: str, size: int, max_pixels: int, opened_here: bool):
    from PIL import ImageOps

    w, h = img.size
    if w == 0 or h == 0:
        raise ValueError(f"{name}: zero-sized image ({w}×{h})")
    if w * h > max_pixels:
        raise ValueError(f"{name}: {w}×{h} = {w * h / 1e6:.1f} megapixels is over the {max_pixels / 1e6:g} MP limit")
    if opened_here and getattr(img, "format", None) == "JPEG":
        img.draft(None, (size, size))  # decode at a reduced DCT scale, still ≥ size on both sides
    img = ImageOps.exif_transpose(img)  # a new, loaded image
    img.load()
    return _center_resize(_to_rgb(img), size)


def _load_pil(source, size: int, max_pixels: int):
    """Open, size-check, EXIF-orient, convert to RGB, centre-crop and resize. Raises ValueError."""
    from PIL import Image, UnidentifiedImageError

    name = "image"
    try:
        if isinstance(source, Image.Image):
            return _prepare(source, name, size, max_pixels, opened_here=False)
        if isinstance(source, np.ndarray):
            name = f"array of shape {source.shape}"
            return _prepare(Image.fromarray(source), name, size, max_pixels, opened_here=False)
        name = str(source)
        with Image.open(source) as img:
            return _prepare(img, name, size, max_pixels, opened_here=True)
    except ValueError as e:
        if str(e).startswith(f"{name}: "):  # ours, already naming the source
            raise
        raise ValueError(f"{name}: cannot read image ({e})") from None
    except FileNotFoundError:
        raise ValueError(f"{name}: no such file") from None
    except Image.DecompressionBombError as e:
        raise ValueError(f"{name}: image too large ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError, struct.error, KeyError, IndexError, TypeError) as e:
        raise ValueError(f"{name}: cannot read image ({type(e).__name__}: {e})") from None


def load_image(source, size: int = IMAGE_SIZE, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """An image file path, PIL image or uint8 array -> float32 ``[3, size, size]`` in [-1, 1].

    EXIF orientation is applied; any mode is converted to RGB (alpha composited on white, 16-bit
    scaled to 8-bit); the centre square is cropped and resized (LANCZOS). Raises ``ValueError``
    naming the file for an unreadable file, a zero-sized image, or more than ``max_pixels`` pixels.
    """
    return from_uint8_image(np.asarray(_load_pil(source, size, max_pixels)))


class ImageFolderDataset(Dataset):
    """Images under ``root/<class name>/...`` (any depth), one sub-folder per class.

    ``classes`` = sorted sub-folder names (hidden ones skipped), label = position in that list.
    With ``verify=True`` every file is fully decoded once at construction; files that fail are
    listed in ``.skipped`` as ``(path, reason)`` and announced by one warning. ``verify=False``
    only reads headers (fast for huge folders); a file that then fails to decode raises a
    ``RuntimeError`` naming it. Items match `ShapesDataset`:
    ``(image [3, size, size] float32 in [-1, 1], label int64)``.
    """

    def __init__(
        self, root: str | os.PathLike, size: int = IMAGE_SIZE, verify: bool = True, max_pixels: int = MAX_PIXELS
    ):
        from tqdm.auto import tqdm

        self.root, self.size, self.max_pixels, self.verify = Path(root), size, max_pixels, verify
        if not self.root.is_dir():
            raise ValueError(f"image folder {str(self.root)!r} does not exist or is not a directory")
        class_dirs = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not class_dirs:
            raise ValueError(
                f"image folder {str(self.root)!r} has no class sub-folders (expected root/<class name>/<image files>)"
            )
        self.classes: list[str] = [p.name for p in class_dirs]
        candidates = []
        for label, class_dir in enumerate(class_dirs):
            for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for fn in sorted(filenames):
                    if not fn.startswith(".") and fn.lower().endswith(IMAGE_EXTENSIONS):
                        candidates.append((os.path.join(dirpath, fn), label))
        self.samples: list[tuple[str, int]] = []
        self.skipped: list[tuple[str, str]] = []
        for path, label in tqdm(
            candidates, desc=f"scanning {self.root.name}", disable=len(candidates) < 2000, leave=False
        ):
            reason = self._check(path)
            if reason is None:
                self.samples.append((path, label))
            else:
                self.skipped.append((path, reason))
        if not self.samples:
            raise ValueError(
                f"image folder {str(self.root)!r} holds no readable images with extensions "
                f"{', '.join(IMAGE_EXTENSIONS)} in its class sub-folders "
                f"({len(self.skipped)} unreadable)"
            )
        if self.skipped:
            listed = "; ".join(f"{p} ({r})" for p, r in self.skipped[:5])
            more = f"; and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
            warnings.warn(
                f"ImageFolderDataset skipped {len(self.skipped)} unreadable file(s): {listed}{more}", stacklevel=2
            )
        counts = np.bincount([lab for _, lab in self.samples], minlength=len(self.classes))
        empty = [c for c, n in zip(self.classes, counts) if n == 0]
        if empty:
            warnings.warn(
                f"ImageFolderDataset: class folder(s) with no readable image: {', '.join(empty)}", stacklevel=2
            )
        self.targets: list[int] = [lab for _, lab in self.samples]

    def _check(self, path: str) -> str | None:
        """None if the file is usable, else why not."""
        from PIL import Image

        try:
            if self.verify:
                _load_pil(path, self.size, self.max_pixels)
            else:
                with Image.open(path) as img:
                    w, h = img.size
                    if w == 0 or h == 0 or w * h > self.max_pixels:
                        return f"size {w}×{h} is zero or over the {self.max_pixels / 1e6:g} MP limit"
        except ValueError as e:
            return str(e).removeprefix(f"{path}: ")
        except Exception as e:  # header read of a broken file: report, never crash the scan
            return f"cannot read image ({type(e).__name__}: {e})"
        return None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def description(self) -> dict:
        return {
            "kind": "image_folder",
            "root": str(self.root),
            "size": self.size,
            "num_samples": len(self.samples),
            "num_skipped": len(self.skipped),
        }

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        try:
            image = load_image(path, self.size, self.max_pixels)
        except ValueError as e:
            raise RuntimeError(f"ImageFolderDataset: {e}") from None
        return image, torch.tensor(label, dtype=torch.int64)

    def __repr__(self) -> str:
        return (
            f"ImageFolderDataset({str(self.root)!r}, size={self.size}, {len(self.samples)} images, "
            f"{len(self.classes)} classes, {len(self.skipped)} skipped)"
        )


# ------------------------------------------------------------------------------------------------
# Latent caching: encode once, train many times
# ------------------------------------------------------------------------------------------------

_CACHE_DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}


def describe_dataset(dataset) -> dict:
    """A JSON-able description of a dataset: its ``description`` attribute, else its type and length."""
    desc = getattr(dataset, "description", None)
    if isinstance(desc, dict):
        return dict(desc)
    return {"kind": type(dataset).__name__, "num_samples": len(dataset)}


def cache_latents(
    encode_fn: Callable[[torch.Tensor], torch.Tensor],
    dataset,
    path: str | os.PathLike,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    info: dict | None = None,
    dtype: str | torch.dtype = "float32",
) -> Path:
    """Encode every item of ``dataset`` once and write ``latents`` / ``labels`` to a safetensors file.

    ``encode_fn``: images ``[B, 3, H, W]`` (on ``device``) -> latents ``[B, C, h, w]``, e.g. the
    VAE's scaled encoder (this module never builds one). Items are read in order (no shuffle).
    ``latents`` are stored as ``dtype`` (``"float32"`` default; ``"float16"`` halves the file),
    ``labels`` as int64. The safetensors metadata key ``"tokenbridge"`` holds JSON: format, count,
    latent shape, dtype, class names, `describe_dataset`, and ``info`` (must be JSON-able: put the
    VAE name / scale factor there). All latents are held in memory until the atomic write
    (temporary file in the same folder + ``os.replace``). Returns the path.
    """
    from safetensors.torch import save_file

    dtype = _cache_dtype(dtype)
    if len(dataset) == 0:
        raise ValueError("cache_latents: the dataset is empty")
    try:
        info_json = json.loads(json.dumps(info or {}))
    except (TypeError, ValueError) as e:
        raise ValueError(f"cache_latents: info must be JSON-able ({e})") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, drop_last=False)
    latents, labels = _encode_all(encode_fn, loader, len(dataset), device, dtype, path.name)
    meta = {
        "format": LATENT_CACHE_FORMAT,
        "version": _LATENT_CACHE_VERSION,
        "count": len(dataset),
        "latent_shape": list(latents.shape[1:]),
        "dtype": str(dtype).removeprefix("torch."),
        "classes": list(getattr(dataset, "classes", [])),
        "dataset": describe_dataset(dataset),
        "info": info_json,
    }
    tensors = {"latents": latents, "labels": labels}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"tokenbridge": json.dumps(meta)}))


def _cache_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """The storage dtype of a latent cache from its name or itself; refuses any other."""
    if isinstance(dtype, str):
        if dtype not in _CACHE_DTYPES:
            raise ValueError(f"dtype {dtype!r} not supported; valid: {', '.join(_CACHE_DTYPES)}")
        dtype = _CACHE_DTYPES[dtype]
    if dtype not in _CACHE_DTYPES.values():
        raise ValueError(f"dtype {dtype} not supported; valid: {', '.join(_CACHE_DTYPES)}")
    return dtype


@torch.inference_mode()
def _encode_all(encode_fn, loader, n: int, device, dtype: torch.dtype, name: str):
    """Latents ``[n, C, h, w]`` (``dtype``, CPU) and labels ``[n]`` int64 of every batch of ``loader``."""
    from tqdm.auto import tqdm

    latents = labels = None
    done = 0
    for batch in tqdm(loader, desc=f"caching latents -> {name}", leave=False):
        images_B3HW, labels_B = batch[0], batch[1]
        z = encode_fn(images_B3HW.to(device))
        if not isinstance(z, torch.Tensor) or z.dim() != 4 or z.shape[0] != images_B3HW.shape[0]:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"encode_fn must return [B, C, h, w] with B = {images_B3HW.shape[0]}, got {shape}")
        if latents is None:
            latents = torch.empty((n, *z.shape[1:]), dtype=dtype)
            labels = torch.empty(n, dtype=torch.int64)
        elif z.shape[1:] != latents.shape[1:]:
            raise ValueError(
                f"encode_fn changed its output shape: {tuple(z.shape[1:])} after {tuple(latents.shape[1:])}"
            )
        b = z.shape[0]
        latents[done : done + b] = z.to("cpu", dtype)
        labels[done : done + b] = torch.as_tensor(labels_B, dtype=torch.int64).reshape(-1)
        done += b
    if done != n:
        raise RuntimeError(f"cache_latents: the dataset yielded {done} items but has length {n}")
    return latents, labels


class LatentDataset(Dataset):
    """Latents written by `cache_latents`: items ``(latents [C, h, w] float32, label int64)``.

    ``.latents`` keeps the stored dtype (float16 or float32) ``[N, C, h, w]``; ``.labels`` int64
    ``[N]``; ``.metadata`` the JSON written with them (``{}`` for a file without it). The whole
    file is read into memory. Raises ``FileNotFoundError`` for a missing file and ``ValueError``
    for one that is not a readable latent cache.
    """

    def __init__(self, path: str | os.PathLike):
        from safetensors import safe_open

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"latent cache {str(self.path)!r} does not exist")
        try:
            with safe_open(str(self.path), framework="pt") as f:
                keys = set(f.keys())
                missing = {"latents", "labels"} - keys
                if missing:
                    raise ValueError(f"holds tensors {sorted(keys)}, missing {sorted(missing)}")
                raw_meta = (f.metadata() or {}).get("tokenbridge")
                self.latents = f.get_tensor("latents")
                self.labels = f.get_tensor("labels")
            self.metadata: dict = json.loads(raw_meta) if raw_meta else {}
        except Exception as e:  # safetensors raises its own error type for corrupt headers/data
            raise ValueError(f"{str(self.path)!r} is not a readable latent cache ({type(e).__name__}: {e})") from None
        if self.latents.dim() != 4 or self.labels.dim() != 1 or len(self.latents) != len(self.labels):
            raise ValueError(
                f"{str(self.path)!r}: latents {tuple(self.latents.shape)} and labels "
                f"{tuple(self.labels.shape)} do not match ([N, C, h, w] and [N])"
            )
        if self.labels.dtype != torch.int64:
            raise ValueError(f"{str(self.path)!r}: labels must be int64, got {self.labels.dtype}")

    @property
    def classes(self) -> list[str]:
        return list(self.metadata.get("classes", []))

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else int(self.labels.max()) + 1 if len(self.labels) else 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.latents[i].float(), self.labels[i]

    def __repr__(self) -> str:
        return f"LatentDataset({str(self.path)!r}, {len(self)} × {tuple(self.latents.shape[1:])} {self.latents.dtype})"
