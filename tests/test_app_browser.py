"""The app in a real headless Chromium (system /usr/bin/chromium driven by Playwright).

Skips with the reason when Chromium or the playwright package is missing, except under ``CI=true``
(set by CI services and by `.ci/run`): there it fails, since this is the only test that checks that
no request leaves 127.0.0.1. Screenshots go to the test's tmp dir; `app/screenshot.py` makes the
README one with the same helpers.
"""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from app import screenshot
from tokenbridge import generator as generators
from tokenbridge import vae as vaes
from tokenbridge.pipeline import Pipeline
from tokenbridge.shapes import CLASS_NAMES

UNAVAILABLE = screenshot.unavailable()
IN_CI = os.environ.get("CI", "").lower() == "true"
pytestmark = [
    pytest.mark.skipif(UNAVAILABLE is not None and not IN_CI, reason=str(UNAVAILABLE)),
    pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*"),
]


@pytest.fixture(scope="module")
def url():
    from app.main import build_demo, launch

    if UNAVAILABLE is not None:  # only reached under CI=true
        pytest.fail(f"CI=true, and the browser test cannot run: {UNAVAILABLE}", pytrace=False)

    with torch.random.fork_rng():
        torch.manual_seed(0)
        vae, gen = vaes.small(), generators.tokenbridge_tiny(class_num=10)
    demo = build_demo(Pipeline(vae, gen.eval(), classes=CLASS_NAMES, device="cpu"), calibration_images=8)
    yield launch(demo)
    demo.close()


IMAGE_DECODED = (
    "() => { const i = document.querySelector('#edit-image img'); return i && i.complete && i.naturalWidth > 0 }"
)


def click_cell(page, row: int, col: int, expected: str, tries: int = 3) -> None:
    """Click the middle of cell (row, col) of the Edit image and wait until the cells' text reads
    ``expected`` and the image was redrawn. Gradio drops a click that arrives while the previous
    click's event is still closing (its outputs may already show), so an unchanged text is clicked again;
    a different text fails at once (the click hit the wrong cell)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout  # the module skips without playwright

    image, cells = page.locator("#edit-image img"), page.locator("#edit-region textarea")
    for _ in range(tries):
        page.wait_for_function(IMAGE_DECODED, timeout=30_000)  # laid out before its box is read
        box, shown, before = image.bounding_box(), image.get_attribute("src"), cells.input_value()
        image.click(position={"x": box["width"] * (col + 0.5) / 8, "y": box["height"] * (row + 0.5) / 8})
        try:
            page.wait_for_function(
                "([text, shown]) => document.querySelector('#edit-region textarea').value === text "
                "&& document.querySelector('#edit-image img').src !== shown",
                arg=[expected, shown],
                timeout=10_000,
            )
            return
        except PlaywrightTimeout:
            now = cells.input_value()
            assert now == before, f"clicking cell {row},{col} gave the cells {now!r}, expected {expected!r}"
    pytest.fail(f"{tries} clicks on cell {row},{col} left the cells at {before!r}", pytrace=False)


def status(page) -> str:
    return page.locator("#gen-status").inner_text()


def test_generate_scrub_step_and_channels_in_a_browser(url, tmp_path):
    with screenshot.browser_page(url) as (page, requests):
        screenshot.generate(page, order="confidence", steps=6, batch=4, timeout_s=120)
        assert "step 6 / 6" in status(page) and "done" in status(page)
        assert page.locator("#gallery img").count() == 4
        assert page.locator("#order input[value=confidence]").is_checked()
        assert page.locator("#view input[type=range]").get_attribute("max") == "4", "image in batch: 1..4"
        final_src = page.locator("#preview img").get_attribute("src")
        page.screenshot(path=str(tmp_path / "generate.png"), full_page=True)

        screenshot.set_number(page, "step-slider", 2)  # scrub back
        page.locator("#gen-status").get_by_text("step 2 / 6").wait_for(timeout=30_000)
        page.wait_for_function(f"() => document.querySelector('#preview img').src !== {final_src!r}")
        assert "still masked" in status(page)
        page.screenshot(path=str(tmp_path / "scrubbed.png"), full_page=True)

        page.get_by_role("tab", name="Channels").click()
        page.locator("#channels-source").get_by_text("generated image", exact=True).click()
        page.locator("#channels-load").click()
        page.locator("#channels-info").get_by_text("generated image 1 (seed 0)").wait_for(timeout=60_000)
        assert page.locator("#channels-strip img").count() == 16
        page.get_by_text("row 4, col 4").first.wait_for(timeout=30_000)  # distributions at the centre cell
        image = page.locator("#channels-image img")
        box = image.bounding_box()
        image.click(position={"x": box["width"] * 0.05, "y": box["height"] * 0.95})
        page.get_by_text("row 7, col 0").first.wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "channels.png"), full_page=True)

        page.get_by_role("tab", name="Generate").click()
        page.locator("#step-btn").click()  # the finished run is replaced: one step of a new one
        page.locator("#gen-status").get_by_text("step 1 / 6").wait_for(timeout=30_000)
        page.get_by_role("tab", name="Channels").click()
        page.locator("#channels-load").click()  # the new run is not finished: a clear error, no crash
        page.get_by_text("no finished generation in this session").first.wait_for(timeout=30_000)

    assert requests, "the page made requests"
    assert screenshot.external(requests, url) == [], "nothing may be fetched from outside the app"
    for name in ("generate", "scrubbed", "channels"):
        assert Image.open(tmp_path / f"{name}.png").size[0] == screenshot.VIEWPORT["width"]


def test_edit_tab_select_cells_by_click_and_run_one_edit(url, tmp_path):
    with screenshot.browser_page(url) as (page, requests):
        page.get_by_role("tab", name="Edit").click()
        page.locator("#edit-btn").click()  # nothing loaded yet: a clear message, the page keeps working
        page.get_by_text("no image loaded").first.wait_for(timeout=30_000)
        page.locator("#edit-load").click()
        page.locator("#edit-info").get_by_text("held-out shapes image 0 of 'star'").wait_for(timeout=60_000)
        cells = page.locator("#edit-region textarea")
        for row, col, text in [(2, 3, "2,3"), (2, 4, "2,3:5"), (3, 4, "2,3:5; 3,4"), (2, 3, "2:4,4")]:
            click_cell(page, row, col, text)
        page.locator("#edit-btn").click()
        page.locator("#edit-status").get_by_text("done").wait_for(timeout=120_000)
        assert "0 of 2 selected cells still masked" in page.locator("#edit-status").inner_text()
        cells.fill("")
        cells.press("Enter")
        page.locator("#edit-btn").click()
        page.get_by_text("no cell selected").first.wait_for(timeout=30_000)
        screenshot.edit(page, region="2:6,2:6", order="random", timeout_s=120)
        assert "0 of 16 selected cells still masked" in page.locator("#edit-status").inner_text()
        for elem in ("edit-before", "edit-after", "edit-preview"):
            assert page.locator(f"#{elem} img").count() == 1, elem
        page.screenshot(path=str(tmp_path / "edit.png"), full_page=True)

    assert screenshot.external(requests, url) == [], "nothing may be fetched from outside the app"
    assert Image.open(tmp_path / "edit.png").size[0] == screenshot.VIEWPORT["width"]


def test_edit_tab_keeps_its_image_and_says_why_on_an_early_load_or_a_bad_region(url, tmp_path):
    with screenshot.browser_page(url) as (page, _):
        page.get_by_role("tab", name="Edit").click()
        source, info, image = page.locator("#edit-source"), page.locator("#edit-info"), page.locator("#edit-image img")
        assert not page.locator("#edit-source-upload").is_visible(), "no upload box for a held-out image"
        source.get_by_text("uploaded image", exact=True).click()
        page.locator("#edit-source-upload").wait_for(state="visible", timeout=30_000)
        source.get_by_text("held-out image", exact=True).click()
        page.locator("#edit-source-upload").wait_for(state="hidden", timeout=30_000)
        page.locator("#edit-load").click()
        info.get_by_text("held-out shapes image 0 of 'star'").wait_for(timeout=60_000)
        loaded = image.get_attribute("src")
        source.get_by_text("generated image", exact=True).click()
        page.locator("#edit-load").click()  # nothing generated in this session yet
        info.get_by_text("⚠ no finished generation in this session").wait_for(timeout=30_000)
        cells = page.locator("#edit-region textarea")
        cells.fill("9:12,1")
        cells.press("Enter")
        bad = "⚠ the range '9:12' in '9:12,1' is empty or leaves the 8×8 token grid"
        info.get_by_text(bad).wait_for(timeout=30_000)
        page.locator("#edit-btn").click()
        page.locator("#edit-status").get_by_text("⚠ the range '9:12'").wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "bad_region.png"), full_page=True)
        assert image.get_attribute("src") == loaded, "the page keeps the loaded image"
        assert page.get_by_text("Error", exact=True).count() == 0, "no error badge, no error toast"


def test_readme_screenshot_helper(url, tmp_path):
    path = screenshot.save_screenshot(tmp_path / "shots" / "app.png", url=url, batch=2)
    shot = np.asarray(Image.open(path).convert("RGB"))
    assert shot.shape[1] == screenshot.VIEWPORT["width"] and shot.shape[0] >= screenshot.VIEWPORT["height"]
    assert shot.std() > 10, "not a blank page"
