"""Drive the app in a real headless Chromium (Playwright): the browser test uses these helpers, and
they make the README screenshot.

    python app/screenshot.py assets/app_screenshot.png            # serves the embedded model itself
    python app/screenshot.py shot.png --url http://127.0.0.1:7860  # an app that is already running
    python app/screenshot.py assets/app_edit_screenshot.png --tab edit   # the Edit tab after one edit

Needs the ``playwright`` Python package and a system Chromium at ``/usr/bin/chromium``
(``apt-get install -y chromium``); Playwright's own browser download is never used.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 1000}


def unavailable() -> str | None:
    """Why a browser cannot be driven here (None when it can)."""
    if not os.path.exists(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install playwright)"
    return None


@contextmanager
def browser_page(url: str, viewport: dict | None = None):
    """``(page, requests)``: a page opened on ``url`` and the list of every URL it requested."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=viewport or VIEWPORT)
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url, wait_until="load")
            page.locator("#generate-btn").wait_for()
            yield page, requests
        finally:
            browser.close()


def external(requests: list[str], url: str) -> list[str]:
    """The requested URLs that left the app's own host (``data:``/``blob:`` URLs stay local)."""
    host = urlparse(url).hostname
    return [
        r for r in requests if urlparse(r).scheme in ("http", "https", "ws", "wss") and urlparse(r).hostname != host
    ]


def set_number(page, elem_id: str, value) -> None:
    """Type ``value`` into the number box of a slider/number component and commit it."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def generate(
    page, order: str = "confidence", steps: int | None = None, batch: int | None = None, timeout_s: float = 300
) -> None:
    """Pick the order (and steps / batch size), press Generate and wait for the final images."""
    page.locator("#order").get_by_text(order, exact=True).click()
    if steps is not None:
        set_number(page, "steps", steps)
    if batch is not None:
        set_number(page, "batch", batch)
    page.locator("#generate-btn").click()
    page.locator("#gen-status").get_by_text("done").wait_for(timeout=timeout_s * 1000)
    page.locator("#gallery img").first.wait_for(timeout=timeout_s * 1000)
    page.wait_for_timeout(500)  # let the plots finish drawing


def edit(
    page, region: str = "2:6,2:6", order: str = "confidence", class_name: str | None = None, timeout_s: float = 300
) -> None:
    """Open the Edit tab, Load its image (a held-out image by default), type the cells ``region``,
    pick the order (and class), press Edit and wait for before / after."""
    page.get_by_role("tab", name="Edit").click()
    page.locator("#edit-load").click()
    page.locator("#edit-image img").wait_for(timeout=timeout_s * 1000)
    box = page.locator("#edit-region textarea")
    box.fill(region)
    box.press("Enter")
    page.locator("#edit-order").get_by_text(order, exact=True).click()
    if class_name is not None:
        page.locator("#edit-class input").fill(class_name)
        page.locator("#edit-class input").press("Enter")
    before = page.evaluate("() => document.querySelector('#edit-after img')?.src ?? null")
    page.locator("#edit-btn").click()
    page.wait_for_function(
        """before => {
        const after = document.querySelector('#edit-after img');
        return after && after.src !== before && document.querySelector('#edit-status').innerText.includes('done');
    }""",
        arg=before,
        timeout=timeout_s * 1000,
    )  # a new after image: this edit's, not the previous one
    page.wait_for_timeout(500)  # let the plots finish drawing


def save_screenshot(
    path: str | os.PathLike, url: str | None = None, order: str = "confidence", batch: int = 8, tab: str = "generate"
) -> Path:
    """Full-page screenshot after a full run, written to ``path`` (PNG): of the Generate tab, or
    with ``tab="edit"`` of the Edit tab after re-sampling the centre 4×4 cells of a held-out image.

    Without ``url`` the embedded app is served here first (needs the shipped weights).
    """
    path = Path(path)
    server = None
    if url is None:
        from app.main import build_demo, launch
        from tokenbridge.pipeline import Pipeline

        server = build_demo(Pipeline.load("embedded"))
        url = launch(server)
    try:
        with browser_page(url) as (page, _):
            if tab == "edit":
                edit(page, order=order)
            else:
                generate(page, order=order, batch=batch)
            path.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(path), full_page=True)
    finally:
        if server is not None:
            server.close()
    return path


def main(argv=None) -> int:
    from tokenbridge.sampling import ORDERS, SamplerSettings

    p = argparse.ArgumentParser(description="Save a screenshot of the app after one generation (or one edit).")
    p.add_argument("path", help="PNG file to write, e.g. assets/app_screenshot.png")
    p.add_argument("--url", help="an app already running (default: serve the embedded one here)")
    p.add_argument(
        "--order",
        default=SamplerSettings().order,
        choices=ORDERS,
        help="sampling order (default: the app's, %(default)s)",
    )
    p.add_argument("--batch", type=int, default=8)
    p.add_argument(
        "--tab",
        default="generate",
        choices=("generate", "edit"),
        help="edit: the Edit tab after one edit (assets/app_edit_screenshot.png)",
    )
    args = p.parse_args(argv)
    reason = unavailable()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    try:
        print(save_screenshot(args.path, args.url, args.order, args.batch, args.tab))
    except (FileNotFoundError, ValueError) as e:  # e.g. the embedded weights are missing
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
