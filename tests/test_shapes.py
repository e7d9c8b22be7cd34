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


def test_icons_upright_centred_one_size_on_a_flat_background():
    """Icons: the mask's centroid within a few pixels of the centre, its area within the narrow
    size range of each class, and a background of one colour (the 8-px border band, which a
    centred shape of circumradius ≤ 0.36 of the image never reaches)."""
    areas = {}
    band = np.ones((64, 64), bool)
    band[8:-8, 8:-8] = False
    for i in range(40):
        s = render_shape(TRAIN_SEED, i, kind="icons")
        ys, xs = np.nonzero(s.mask)
        assert not (s.mask & band).any(), f"index {i}: the shape reaches the border band"
        assert np.ptp(s.image[band], axis=0).max() == 0, f"index {i}: the background is not flat"
        if s.label in (0, 1, 4, 5):  # symmetric classes: their centroid is the placed centre
            assert abs(xs.mean() - 32) < 2.5 and abs(ys.mean() - 32) < 2.5, f"index {i}: not centred"
        areas.setdefault(s.label, []).append(s.mask.sum())
    for label, a in areas.items():
        assert max(a) / min(a) < 1.3, f"{CLASS_NAMES[label]}: areas {a} vary more than one size allows"


def test_icons_keep_the_classes_and_colour_rules_of_shapes():
    """Same (seed, index): the same label and the same foreground colour (the colour draws follow the
    pose draws in both kinds), but another picture; an unknown kind is refused by name."""
    for i in range(10):
        icon, shape = render_shape(0, i, kind="icons"), render_shape(0, i)
        assert icon.label == shape.label
        assert np.abs(icon.image[icon.mask].mean(0) - shape.image[shape.mask].mean(0)).max() < 40
        assert not np.array_equal(icon.image, shape.image)
    ds = ShapesDataset(5, seed=HELDOUT_SEED, kind="icons")
    assert ds.description["kind"] == "icons" and torch.equal(
        ds[2][0], ShapesDataset(5, HELDOUT_SEED, kind="icons")[2][0]
    )
    with pytest.raises(ValueError, match="unknown procedural dataset 'cartoons'.*shapes, icons"):
        ShapesDataset(5, kind="cartoons")


def test_the_steps_between_icons_and_shapes_take_one_variety_each():
    """Same (seed, index): posed_icons has the shapes' pose (the same mask) on a flat background;
    textured_icons has the icons' pose (the same mask) on the shapes' textured background. The four
    corner pixels are background in every kind (a shape stays inside its circumradius)."""
    corners = (np.array([0, 0, -1, -1]), np.array([0, -1, 0, -1]))
    for i in range(10):
        shape, icon = render_shape(0, i), render_shape(0, i, kind="icons")
        posed, textured = render_shape(0, i, kind="posed_icons"), render_shape(0, i, kind="textured_icons")
        assert np.array_equal(posed.mask, shape.mask) and np.array_equal(textured.mask, icon.mask)
        assert np.ptp(posed.image[corners], axis=0).max() == 0, f"index {i}: posed background not flat"
        assert np.ptp(textured.image[corners], axis=0).max() > 0, f"index {i}: textured background flat"
