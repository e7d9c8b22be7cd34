"""The procedural datasets: 10 kinds of shape, rendered with numpy, in four variations.

- ``"shapes"``: any pose (anywhere, any rotation, circumradius 0.2-0.4 of the image) on textured
  backgrounds (gradients, stripes, noise): what the VAE and the classifier are trained on.
- ``"icons"``: the same classes and colour rules, but upright (rotation within ±0.1 rad), centred
  (±1.5 px), one size (circumradius 0.32-0.36) on a flat background: what a small generator can
  learn on 2 CPU cores (the full shapes spend its samples on pose and texture).
- ``"posed_icons"`` (the shapes' pose on the icons' flat background) and ``"textured_icons"`` (the
  icons' pose on the shapes' backgrounds): the steps between the two, to measure which of pose and
  texture costs a generator its samples.

Every image is a pure function of ``(kind, seed, index)`` (no files, no global random state); the
label is ``index % 10``. `ShapesDataset` yields the same items as `tokenbridge.data.ImageFolderDataset`,
so training code does not care which one it gets. The held-out split (`HELDOUT_SEED`) is the
reference set of every evaluation.
"""

from __future__ import annotations

import colorsys
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from tokenbridge.data import IMAGE_SIZE, from_uint8_image

CLASS_NAMES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "ring",
    "cross", "ellipse", "crescent", "heart", "arrow",
)  # fmt: skip
NUM_CLASSES = len(CLASS_NAMES)
TRAIN_SEED = 0
"""Seed of the training split of the shapes dataset."""
HELDOUT_SEED = 1
"""Seed of the held-out split (evaluation, FD reference statistics): disjoint random draws."""


# ------------------------------------------------------------------------------------------------
# Procedural shapes: geometry
# ------------------------------------------------------------------------------------------------
# Every shape lives in a local frame where it fits inside the unit disc; a sample places it with a
# centre c, a scale s (pixels per local unit) and a rotation θ. Distances are signed (negative
# inside) and in pixels, so alpha = clip(0.5 - d, 0, 1) is a ~1 px anti-aliased edge. Polygons are
# unions of convex pieces; a convex piece's distance is the max over its edges' half-plane
# distances (exact inside, slightly rounded outside the corners: fine for a 1 px ramp).


def _convex_edges(vertices: Sequence[tuple[float, float]]) -> np.ndarray:
    """Edges of a convex polygon as ``[K, 3]`` rows ``(nx, ny, offset)``: n·p - offset > 0 outside."""
    v = np.asarray(vertices, dtype=np.float64)
    centroid = v.mean(axis=0)
    rows = []
    for a, b in zip(v, np.roll(v, -1, axis=0)):
        e = b - a
        n = np.array([e[1], -e[0]]) / np.hypot(*e)
        if n @ (centroid - a) > 0:
            n = -n
        rows.append((n[0], n[1], n @ a))
    return np.array(rows)


def _regular_polygon(k: int, radius: float, phase: float) -> list[tuple[float, float]]:
    angles = [phase + 2 * math.pi * i / k for i in range(k)]
    return [(radius * math.cos(a), radius * math.sin(a)) for a in angles]


@functools.lru_cache(maxsize=None)
def _polygon_pieces(name: str) -> np.ndarray | None:
    """``[P, K, 3]`` convex pieces (union) of a polygonal class, or None for curved classes."""
    if name == "square":
        pieces = [[(-0.7, -0.7), (0.7, -0.7), (0.7, 0.7), (-0.7, 0.7)]]
    elif name == "triangle":
        pieces = [_regular_polygon(3, 1.0, -math.pi / 2)]
    elif name == "star":  # inner pentagon + five tip triangles whose bases reach into it (overlap: no seams)
        tips = _regular_polygon(5, 1.0, -math.pi / 2)
        inner = _regular_polygon(5, 0.42, -math.pi / 2 + math.pi / 5)

        def reach(tip, base):  # 40% past the inner vertex, along the tip's edge
            return tip[0] + 1.4 * (base[0] - tip[0]), tip[1] + 1.4 * (base[1] - tip[1])

        tri = [_convex_edges([tips[i], reach(tips[i], inner[i]), reach(tips[i], inner[i - 1])]) for i in range(5)]
        edges = [_convex_edges(inner)] + [np.concatenate([t, t[:2]]) for t in tri]  # pad 3 edges to 5
        return np.stack(edges)
    elif name == "cross":
        pieces = [
            [(-0.95, -0.3), (0.95, -0.3), (0.95, 0.3), (-0.95, 0.3)],
            [(-0.3, -0.95), (0.3, -0.95), (0.3, 0.95), (-0.3, 0.95)],
        ]
    elif name == "arrow":  # shaft + head; the head's 3 edges padded to 4 by repeating one
        shaft = [(-0.95, -0.22), (0.15, -0.22), (0.15, 0.22), (-0.95, 0.22)]
        head = [(0.1, -0.56), (0.95, 0.0), (0.1, 0.56)]
        edges = [_convex_edges(shaft), _convex_edges(head)]
        edges[1] = np.concatenate([edges[1], edges[1][:1]])
        return np.stack(edges)
    else:
        return None
    return np.stack([_convex_edges(p) for p in pieces])


@functools.lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: x ``[1, S]``, y ``[S, 1]``, and homogeneous ``[3, S*S]`` (x, y, 1)."""
    c = np.arange(size, dtype=np.float32) + 0.5
    xx, yy = np.meshgrid(c, c)
    homog = np.stack([xx.ravel(), yy.ravel(), np.ones(size * size, np.float32)])
    return c[None, :], c[:, None], homog


@functools.lru_cache(maxsize=8)
def _upsample_matrix(size: int, coarse: int) -> np.ndarray:
    """``[size, coarse]`` linear-interpolation matrix (smooth value noise: M @ n @ M.T)."""
    pos = (np.arange(size) + 0.5) / size * (coarse - 1)
    lo = np.minimum(np.floor(pos).astype(int), coarse - 2)
    frac = pos - lo
    m = np.zeros((size, coarse), np.float32)
    m[np.arange(size), lo] = 1 - frac
    m[np.arange(size), lo + 1] = frac
    return m


def _shape_distance(name: str, size: int, cx: float, cy: float, scale: float, theta: float) -> np.ndarray:
    """Signed distance in pixels ``[size, size]`` (negative inside) of one placed shape."""
    xs, ys, homog = _pixel_grid(size)
    cos, sin = math.cos(theta), math.sin(theta)
    pieces = _polygon_pieces(name)
    if pieces is not None:
        # local p = R(x - c)/s with R = [[cos, sin], [-sin, cos]]; n·p - o in pixels is
        # (R^T n)·(x - c) - o·s: one [P*K, 3] @ [3, S*S] product for all edges.
        nx, ny, off = pieces[..., 0], pieces[..., 1], pieces[..., 2]
        ax = nx * cos - ny * sin
        ay = nx * sin + ny * cos
        rows = np.stack([ax, ay, -(ax * cx + ay * cy) - off * scale], axis=-1).astype(np.float32)
        d = rows.reshape(-1, 3) @ homog
        return d.reshape(pieces.shape[0], pieces.shape[1], -1).max(axis=1).min(axis=0).reshape(size, size)

    def place(u: float, v: float) -> tuple[float, float]:  # local point -> pixel coordinates
        return cx + scale * (cos * u - sin * v), cy + scale * (sin * u + cos * v)

    def circle(u: float, v: float, r: float) -> np.ndarray:
        px, py = place(u, v)
        return np.sqrt((xs - px) ** 2 + (ys - py) ** 2) - r * scale

    if name == "circle":
        return circle(0, 0, 0.95)
    if name == "ring":
        return np.abs(circle(0, 0, 0.73)) - 0.24 * scale
    if name == "crescent":
        return np.maximum(circle(0, 0, 0.97), -circle(0.45, 0, 0.8))
    if name == "heart":  # a diamond (L1 ball) plus two discs on its upper sides; tip points +v
        h, c = 0.74, 0.0766
        dx, dy = xs - cx, ys - cy
        u, v = (cos * dx + sin * dy) / scale, (-sin * dx + cos * dy) / scale
        diamond = (np.abs(u) + np.abs(v - c) - h) * (scale / math.sqrt(2))
        r = h / math.sqrt(2)
        lobes = np.minimum(circle(-h / 2, c - h / 2, r), circle(h / 2, c - h / 2, r))
        return np.minimum(diamond, lobes)
    if name == "ellipse":  # semi-axes (0.97, 0.5); distance ≈ k0 (k0 - 1) / k1 (Quílez)
        a, b = 0.97 * scale, 0.5 * scale
        dx, dy = xs - cx, ys - cy
        u, v = cos * dx + sin * dy, -sin * dx + cos * dy
        k0 = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        k1 = np.sqrt((u / (a * a)) ** 2 + (v / (b * b)) ** 2)
        return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)
    raise ValueError(f"unknown shape {name!r}; valid: {', '.join(CLASS_NAMES)}")


# ------------------------------------------------------------------------------------------------
# Procedural shapes: colours, backgrounds, samples
# ------------------------------------------------------------------------------------------------

_LUMA = np.array([0.299, 0.587, 0.114])
MIN_CONTRAST = 0.3
"""Least luminance difference (0..1) between the foreground and both background end colours."""


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Background end colours A, B and a foreground colour with luminance contrast ≥ MIN_CONTRAST."""
    light_bg = rng.random() < 0.5
    hue, sat = rng.random(), rng.uniform(0.0, 0.6)
    v = rng.uniform(0.65, 0.98) if light_bg else rng.uniform(0.08, 0.45)
    a = _hsv(hue, sat, v)
    dv = rng.uniform(0.05, 0.2) * (1 if rng.random() < 0.5 else -1)
    dv = dv if 0.02 <= v + dv <= 1.0 else -dv  # the gradient always changes brightness a little
    b = _hsv(hue + rng.uniform(-0.15, 0.15), np.clip(sat + rng.uniform(-0.2, 0.2), 0, 1), v + dv)
    bg_luma = np.array([a @ _LUMA, b @ _LUMA])
    for _ in range(8):
        fg = _hsv(rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.0, 0.5) if light_bg else rng.uniform(0.6, 1.0))
        if np.abs(fg @ _LUMA - bg_luma).min() >= MIN_CONTRAST:
            return a, b, fg
    return a, b, np.full(3, 0.03 if light_bg else 0.97)  # grey fallback: always enough contrast


def _background(rng: np.random.Generator, size: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[S, S, 3]`` float32: a linear or radial gradient A->B, optional soft stripes and noise."""
    xs, ys, _ = _pixel_grid(size)
    if rng.random() < 0.7:  # linear gradient along a random direction
        phi = rng.uniform(0, 2 * math.pi)
        t = ((xs - size / 2) * math.cos(phi) + (ys - size / 2) * math.sin(phi)) / size + 0.5
    else:  # radial gradient around a random point
        px, py = rng.uniform(0, size, 2)
        t = np.sqrt((xs - px) ** 2 + (ys - py) ** 2) / (0.9 * size)
    t = np.clip(t, 0.0, 1.0)
    shade = np.zeros((size, size), np.float32)
    if rng.random() < 0.4:  # soft stripes: 2-7 cycles per image, random direction
        psi, freq, amp = rng.uniform(0, math.pi), rng.uniform(2, 7), rng.uniform(0.03, 0.08)
        proj = xs * math.cos(psi) + ys * math.sin(psi)
        shade = shade + amp * np.sin(proj * (2 * math.pi * freq / size) + rng.uniform(0, 2 * math.pi))
    if rng.random() < 0.5:  # smooth value noise (6×6 lattice, linearly interpolated)
        m = _upsample_matrix(size, 6)
        shade = shade + rng.uniform(0.03, 0.07) * (m @ rng.standard_normal((6, 6), np.float32) @ m.T)
    if rng.random() < 0.5:  # fine grain
        shade = shade + rng.uniform(0.008, 0.02) * rng.standard_normal((size, size), np.float32)
    bg = a.astype(np.float32) + t[..., None] * (b - a).astype(np.float32)
    return bg + shade[..., None]


@dataclass(frozen=True)
class Variation:
    """How much a dataset varies: the circumradius range (fraction of the image), the centre's
    largest offset from the image centre in pixels (None: anywhere the shape fits), the largest
    rotation in radians (None: any), and whether the background is textured or flat."""

    scale: tuple[float, float]
    centre_jitter: float | None
    max_rotation: float | None
    textured_background: bool


DATASETS: dict[str, Variation] = {
    "shapes": Variation(scale=(0.2, 0.4), centre_jitter=None, max_rotation=None, textured_background=True),
    "icons": Variation(scale=(0.32, 0.36), centre_jitter=1.5, max_rotation=0.1, textured_background=False),
    "posed_icons": Variation(scale=(0.2, 0.4), centre_jitter=None, max_rotation=None, textured_background=False),
    "textured_icons": Variation(scale=(0.32, 0.36), centre_jitter=1.5, max_rotation=0.1, textured_background=True),
}
"""The procedural datasets by name (see the module docstring)."""


def variation(kind: str) -> Variation:
    """`DATASETS` entry ``kind``, with an error naming the valid kinds."""
    if kind not in DATASETS:
        raise ValueError(f"unknown procedural dataset {kind!r}; valid: {', '.join(DATASETS)}")
    return DATASETS[kind]


def _pose(rng: np.random.Generator, size: int, v: Variation) -> tuple[float, float, float, float]:
    """``(scale px, cx, cy, theta)``; drawn in the same order for every variation."""
    scale = rng.uniform(*v.scale) * size
    if v.centre_jitter is None:
        cx, cy = rng.uniform(scale + 1, size - scale - 1, 2)
    else:
        cx, cy = size / 2 + rng.uniform(-v.centre_jitter, v.centre_jitter, 2)
    theta = rng.uniform(0, 2 * math.pi) if v.max_rotation is None else rng.uniform(-v.max_rotation, v.max_rotation)
    return scale, cx, cy, theta


@dataclass
class ShapeSample:
    """One rendered shape: ``image`` uint8 [H, W, 3], ``label`` in 0..9, ``mask`` bool [H, W] (foreground)."""

    image: np.ndarray
    label: int
    mask: np.ndarray


def render_shape(seed: int, index: int, size: int = IMAGE_SIZE, kind: str = "shapes") -> ShapeSample:
    """Render sample ``index`` of dataset ``kind`` drawn with ``seed`` (a pure function of all three).

    Label = ``index % 10`` (so any 10 consecutive indices hold each class once). Random draws,
    all from ``np.random.default_rng([seed, index])``: shape scale, centre and rotation (ranges:
    the kind's `Variation`), background end colours, for textured kinds the gradient
    kind/direction, stripes and noise (flat kinds: the first end colour alone), and a foreground
    colour whose luminance differs from both background end colours by at least `MIN_CONTRAST`.
    ``mask`` is the anti-aliased coverage ≥ 0.5.
    """
    v = variation(kind)
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    rng = np.random.default_rng([seed, index])
    label = index % NUM_CLASSES
    scale, cx, cy, theta = _pose(rng, size, v)
    a, b, fg = _colours(rng)
    bg = (
        _background(rng, size, a, b)
        if v.textured_background
        else np.broadcast_to(a.astype(np.float32), (size, size, 3))
    )
    dist = _shape_distance(CLASS_NAMES[label], size, cx, cy, scale, theta)
    alpha = np.clip(0.5 - dist, 0.0, 1.0)[..., None]
    img = bg + alpha * (fg.astype(np.float32) - bg)
    image = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return ShapeSample(image=image, label=label, mask=dist <= 0.0)


class ShapesDataset(Dataset):
    """A procedural dataset (``kind``: a `DATASETS` name): item i is `render_shape(seed, offset + i, size, kind)`.

    Items: ``(image [3, S, S] float32 in [-1, 1], label int64)``, plus ``mask [S, S] bool`` when
    ``with_mask``. Use ``seed=TRAIN_SEED`` for training and ``seed=HELDOUT_SEED`` for evaluation.
    """

    classes = CLASS_NAMES

    def __init__(
        self,
        num_samples: int,
        seed: int = TRAIN_SEED,
        offset: int = 0,
        size: int = IMAGE_SIZE,
        with_mask: bool = False,
        kind: str = "shapes",
    ):
        if num_samples < 0 or offset < 0 or seed < 0:
            raise ValueError(f"num_samples, seed and offset must be >= 0, got {num_samples}, {seed}, {offset}")
        variation(kind)
        self.num_samples, self.seed, self.offset, self.size, self.with_mask = num_samples, seed, offset, size, with_mask
        self.kind = kind

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES

    @property
    def description(self) -> dict:
        return {
            "kind": self.kind,
            "num_samples": self.num_samples,
            "seed": self.seed,
            "offset": self.offset,
            "size": self.size,
        }

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int):
        if not -self.num_samples <= i < self.num_samples:
            raise IndexError(f"index {i} out of range for {self.num_samples} samples")
        sample = render_shape(self.seed, self.offset + (i % self.num_samples), self.size, self.kind)
        image = from_uint8_image(sample.image)
        label = torch.tensor(sample.label, dtype=torch.int64)
        if self.with_mask:
            return image, label, torch.from_numpy(sample.mask)
        return image, label

    def __repr__(self) -> str:
        return (
            f"ShapesDataset(num_samples={self.num_samples}, seed={self.seed}, offset={self.offset}, size={self.size}, "
            f"kind={self.kind!r})"
        )
