"""The procedural shapes dataset: pure functions of (seed, index), balanced labels, named topology."""

import numpy as np
import pytest
import torch

from tokenbridge.data import IMAGE_SIZE, to_uint8_image
from tokenbridge.shapes import CLASS_NAMES, HELDOUT_SEED, NUM_CLASSES, TRAIN_SEED, ShapesDataset, render_shape

LUMA = np.array([0.299, 0.587, 0.114])


def test_constants():
    assert NUM_CLASSES == len(CLASS_NAMES) == len(set(CLASS_NAMES)) == 10
    assert IMAGE_SIZE == 64 and TRAIN_SEED != HELDOUT_SEED


def test_same_seed_and_index_same_pixels():
    a, b = render_shape(3, 12345), render_shape(3, 12345)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and a.label == b.label
    assert a.image.dtype == np.uint8 and a.image.shape == (64, 64, 3)
    assert a.mask.dtype == bool and a.mask.shape == (64, 64)
    # no hidden global state: drawing other samples in between (or touching numpy's global RNG) changes nothing
    saved = np.random.get_state()
    try:
        np.random.set_state(np.random.RandomState(99).get_state())  # another global state, not a seed call
        render_shape(0, 1)
        assert np.array_equal(render_shape(3, 12345).image, a.image)
    finally:
        np.random.set_state(saved)  # leave numpy's global RNG as other tests found it


def test_different_index_or_seed_different_image():
    images = [render_shape(0, i).image for i in range(30)]
    for i in range(30):
        for j in range(i + 1, 30):
            assert not np.array_equal(images[i], images[j])
    same_label_other_seed = render_shape(1, 7)
    assert same_label_other_seed.label == render_shape(0, 7).label
    assert not np.array_equal(same_label_other_seed.image, images[7])


def test_labels_balanced_over_any_range():
    labels = [render_shape(0, i).label for i in range(37, 37 + 50)]
    assert np.bincount(labels, minlength=10).tolist() == [5] * 10
    ds = ShapesDataset(20, seed=HELDOUT_SEED, offset=3)
    assert [int(ds[i][1]) for i in range(20)] == [(3 + i) % 10 for i in range(20)]


def test_mask_inside_image_and_foreground_contrasts():
    from scipy.ndimage import binary_dilation

    spread = []
    for i in range(60):
        s = render_shape(TRAIN_SEED, i)
        assert s.mask.sum() >= 60, f"index {i}: tiny mask"
        border = np.concatenate([s.mask[0], s.mask[-1], s.mask[:, 0], s.mask[:, -1]])
        assert not border.any(), f"index {i}: shape touches the border"
        # the foreground differs from the background (pixels ≥ 2 px away from the mask)
        far = ~binary_dilation(s.mask, iterations=2)
        lum = s.image.astype(float) / 255 @ LUMA
        assert abs(lum[s.mask].mean() - lum[far].mean()) > 0.2, f"index {i}: low contrast"
        spread.append((s.image[far] / 255).std(axis=0).max())
    assert min(spread) > 0.01 and np.median(spread) > 0.025  # every background has a gradient/texture


def test_masks_have_the_named_topology():
    # centroid of the mask: inside for filled convex-ish shapes, in the hole for the ring
    for cls in ("circle", "square", "triangle", "star", "cross", "ellipse", "heart"):
        for k in range(3):
            m = render_shape(0, CLASS_NAMES.index(cls) + 10 * k).mask
            ys, xs = np.nonzero(m)
            assert m[int(round(ys.mean() - 0.5)), int(round(xs.mean() - 0.5))], cls
    for k in range(3):
        m = render_shape(0, CLASS_NAMES.index("ring") + 10 * k).mask
        ys, xs = np.nonzero(m)
        assert not m[int(round(ys.mean() - 0.5)), int(round(xs.mean() - 0.5))]
    # area / (largest axis extent)²: π/4 for a disc at any rotation; the ring and cross fill less
    fill = {}
    for cls in ("circle", "square", "cross", "ring"):
        m = render_shape(0, CLASS_NAMES.index(cls)).mask
        ys, xs = np.nonzero(m)
        diameter = max(np.ptp(ys), np.ptp(xs)) + 1
        fill[cls] = m.sum() / diameter**2
    assert fill["circle"] == pytest.approx(np.pi / 4, abs=0.06)
    assert fill["ring"] < fill["circle"] - 0.15 and fill["cross"] < fill["circle"] - 0.15


def test_shapes_dataset_items():
    ds = ShapesDataset(12, seed=0, offset=5)
    assert len(ds) == 12 and ds.num_classes == 10 and ds.classes == CLASS_NAMES
    image, label = ds[2]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert label.dtype == torch.int64 and label.shape == () and int(label) == 7
    assert image.min() >= -1 and image.max() <= 1 and image.max() - image.min() > 0.5
    assert np.array_equal(to_uint8_image(image), render_shape(0, 7).image)
    assert torch.equal(ds[-1][0], ds[11][0])
    with pytest.raises(IndexError):
        ds[12]
    image, label, mask = ShapesDataset(3, with_mask=True)[1]
    assert mask.dtype == torch.bool and mask.shape == (64, 64) and mask.any()
    small = ShapesDataset(2, size=32)[0][0]
    assert small.shape == (3, 32, 32)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch[0].shape == (4, 3, 64, 64) and batch[1].tolist() == [5, 6, 7, 8]
