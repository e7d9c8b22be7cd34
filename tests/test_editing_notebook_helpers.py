"""Helpers of notebook 06 (token editing): agreement and pixel-change measures, widened regions, edit figures."""

import pytest
import torch
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from tokenbridge import viz
from tokenbridge.evaluation import pixel_change, token_agreement, widened_regions


def centre(rows=slice(2, 6), cols=slice(2, 6), grid=8):
    region = torch.zeros(grid, grid, dtype=torch.bool)
    region[rows, cols] = True
    return region


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 64, (3, 64, 16), generator=torch.Generator().manual_seed(0))


# ------------------------------------------------------------------ token_agreement
def test_agreement_counts_channels_within_the_tolerance_on_the_region_only(tokens):
    region = centre()
    inside = region.reshape(64)
    assert torch.equal(token_agreement(tokens, tokens, region), torch.ones(3))
    shifted = tokens.clone()
    shifted[:, inside, :4] += 3  # 4 of 16 channels off by 3 levels inside the region
    shifted[:, ~inside] += 50  # everything outside is ignored
    torch.testing.assert_close(token_agreement(shifted, tokens, region), torch.full((3,), 0.75))
    torch.testing.assert_close(token_agreement(shifted, tokens, region, tolerance=2), torch.full((3,), 0.75))
    torch.testing.assert_close(token_agreement(shifted, tokens, region, tolerance=3), torch.ones(3))
    assert token_agreement(shifted.to(torch.uint8), tokens.to(torch.uint8), region, 3).eq(1).all()  # no wrap-around


def test_agreement_per_image_regions_and_an_empty_one_is_nan(tokens):
    other = tokens.clone()
    other[0, 0] = (other[0, 0] + 1) % 64  # image 0 differs at cell (0, 0), in every channel
    regions = torch.stack([centre(slice(0, 1), slice(0, 2)), centre(), torch.zeros(8, 8, dtype=torch.bool)])
    result = token_agreement(other, tokens, regions)
    assert result[0] == 0.5 and result[1] == 1 and result[2].isnan()


def test_agreement_rejects_bad_shapes(tokens):
    with pytest.raises(ValueError, match=r"edited and original must be \[B, N, C\] of one shape"):
        token_agreement(tokens[:2], tokens, centre())
    with pytest.raises(ValueError, match=r"region must be bool \[h, w\] or \[3, h, w\] with h·w = 64 tokens"):
        token_agreement(tokens, tokens, torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"region must be bool .* got torch.float32"):
        token_agreement(tokens, tokens, torch.ones(8, 8))
    with pytest.raises(ValueError, match=r"region must be bool"):
        token_agreement(tokens, tokens, torch.ones(2, 8, 8, dtype=torch.bool))


# ------------------------------------------------------------------ widened_regions
def test_widened_regions_are_nested_and_seeded():
    target = centre()
    regions = widened_regions(target, [1.0, 0.5, 0.25, 0.0], seed=3)
    assert [int(r.sum()) for r in regions.values()] == [16, 40, 52, 64]
    assert torch.equal(regions[1.0], target) and regions[0.0].all()
    assert all(bool((r & target).eq(target).all()) for r in regions.values())  # the target is always re-sampled
    assert bool((regions[0.5] <= regions[0.25]).all())  # a smaller share keeps a subset of a larger one's cells
    again = widened_regions(target, [0.5], seed=3)[0.5]
    assert torch.equal(again, regions[0.5])
    assert not torch.equal(widened_regions(target, [0.5], seed=4)[0.5], again)


def test_widened_regions_reject_bad_input():
    with pytest.raises(ValueError, match="target must be a non-empty bool token grid"):
        widened_regions(torch.zeros(8, 8, dtype=torch.bool), [0.5])
    with pytest.raises(ValueError, match="target must be a non-empty bool token grid"):
        widened_regions(torch.ones(64, dtype=torch.bool), [0.5])
    with pytest.raises(ValueError, match=r"keep shares must lie in 0..1, got \[1.5\]"):
        widened_regions(centre(), [0.5, 1.5])


# ------------------------------------------------------------------ pixel_change
def test_pixel_change_splits_the_region_patches_from_the_rest():
    before = torch.zeros(2, 3, 64, 64)
    after = before.clone()
    after[:, :, 16:48, 16:48] = 1.0  # exactly the patches of cells 2:6, 2:6 (8 pixels per cell)
    after[1, :, 0:8, 0:8] = -0.5  # image 1: one outside cell changes too
    change = pixel_change(before, after, centre())
    torch.testing.assert_close(change["inside"], torch.ones(2))
    torch.testing.assert_close(change["outside"], torch.tensor([0.0, 0.5 * 64 / (64 * 64 - 32 * 32)]))
    full = pixel_change(before, after, torch.ones(2, 8, 8, dtype=torch.bool))
    assert full["outside"].isnan().all()


def test_pixel_change_rejects_bad_shapes():
    x = torch.zeros(1, 3, 64, 64)
    with pytest.raises(ValueError, match=r"before and after must be \[B, 3, H, W\] of one shape"):
        pixel_change(x, x[:, :, :32], centre())
    with pytest.raises(ValueError, match="do not split into the region's 7×7 token grid"):
        pixel_change(x, x, torch.ones(7, 7, dtype=torch.bool))


# ------------------------------------------------------------------ figures
def test_cell_edges_outline_the_region_inside_the_frame():
    assert len(viz.cell_edges(centre(), 64)) == 16  # a 4×4 block: 4 sides of 4 cells
    assert len(viz.cell_edges(~centre(), 64)) == 16  # the border ring: only its inner side is drawn
    assert viz.cell_edges(torch.ones(8, 8, dtype=torch.bool), 64) == []
    one = viz.cell_edges(centre(slice(0, 1), slice(7, 8)), 64)  # the top-right corner cell
    assert sorted(one) == [((56.0, 0.0), (56.0, 8.0)), ((56.0, 8.0), (64.0, 8.0))]
    with pytest.raises(ValueError, match=r"region must be a bool token grid \[h, w\]"):
        viz.cell_edges(torch.ones(2, 8, 8, dtype=torch.bool), 64)


def test_plot_edits_outlines_the_named_rows():
    images = torch.rand(3, 3, 64, 64) * 2 - 1
    regions = torch.stack([centre(), ~centre(), centre(slice(0, 1), slice(0, 1))])
    fig = viz.plot_edits({"before": images, "after": images.flip(0)}, {"after": regions}, ["a", "b", "c"])
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    lines = [[c for c in ax.collections if isinstance(c, LineCollection)] for ax in fig.axes]
    assert [len(x) for x in lines] == [0, 0, 0, 1, 1, 1]
    assert [len(x[0].get_segments()) for x in lines[3:]] == [16, 16, 2]
    every = viz.plot_edits({"before": images, "after": images}, centre())  # one [h, w] region for every row
    assert all(len(ax.collections) == 1 for ax in every.axes)


def test_plot_edits_rejects_bad_input():
    images = torch.zeros(2, 3, 64, 64)
    with pytest.raises(ValueError, match="every row must have one shape"):
        viz.plot_edits({"before": images, "after": images[:1]}, centre())
    with pytest.raises(ValueError, match=r"regions names row 'later', the rows are \['before'\]"):
        viz.plot_edits({"before": images}, {"later": centre()})
    with pytest.raises(ValueError, match=r"the region of row 'before' must be bool \[h, w\] or \[2, h, w\]"):
        viz.plot_edits({"before": images}, torch.ones(3, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="got 1 column labels for 2 images per row"):
        viz.plot_edits({"before": images}, centre(), ["a"])
    with pytest.raises(ValueError, match="rows must hold at least one batch"):
        viz.plot_edits({}, centre())


def test_plot_curves_draws_a_dashed_baseline_per_named_series():
    fig = viz.plot_curves(
        [0, 50, 100],
        {"a": [0.1, 0.2, 0.3], "b": [0.3, 0.2, 0.1]},
        "x",
        "y",
        baselines={"a": 0.15},
        baseline_label="chance",
    )
    ax = fig.axes[0]
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 2  # the baseline of "a" and its legend entry
    assert dashed[0].get_color() == ax.get_lines()[0].get_color()
    assert "dashed: chance" in [t.get_text() for t in ax.get_legend().get_texts()]
