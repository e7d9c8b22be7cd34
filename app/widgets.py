"""What the app's tabs share: the decorator that shows input errors to the user, the image
enlarging, and the image-source controls of the Channels, Quantizer and Edit tabs.

Kept apart from `app.main` so that every module of `app.tabs` can import it without a cycle.
"""

from __future__ import annotations

import functools
import html
import inspect
from types import SimpleNamespace

import gradio as gr
import numpy as np

from app import analysis
from app.state import MAX_BATCH
from tokenbridge.data import CLASS_NAMES

SOURCES = ("shapes sample", "uploaded image", "generated image")
STATE_TTL_S = 3600
"""Seconds a session's `gr.State` is kept after its last use."""
MIN_SHOWN = 256
"""Images are enlarged (nearest neighbour, integer factor) to at least this many pixels."""


def user_errors(fn):
    """Turn ValueError (the package's and the app's input checks) into a gr.Error the user sees."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except ValueError as e:
                raise shown_error(e) from None

        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as e:
            raise shown_error(e) from None

    return call


def shown_error(e: Exception) -> gr.Error:
    """``e`` as the modal's message, escaped: it renders HTML and may quote the request back."""
    return gr.Error(html.escape(str(e), quote=False), print_exception=False)


def enlarge(image_HW3: np.ndarray) -> np.ndarray:
    """Nearest-neighbour upscale by an integer factor to at least `MIN_SHOWN` pixels (browsers blur small images)."""
    f = max(1, -(-MIN_SHOWN // max(image_HW3.shape[:2])))
    return image_HW3.repeat(f, axis=0).repeat(f, axis=1)


def image_picker(sources=SOURCES, shape: str = CLASS_NAMES[3], elem_id: str | None = None) -> SimpleNamespace:
    """The controls naming an image: ``source`` (one of ``sources``), ``shape`` and ``sample`` (a
    held-out shapes sample), ``upload``, and ``generated`` (an image of the last run) when offered."""
    ui = SimpleNamespace()
    ui.source = gr.Radio(list(sources), value="shapes sample", label="image source", elem_id=elem_id)
    ui.shape = gr.Dropdown(list(CLASS_NAMES), value=shape, label="shape")
    ui.sample = gr.Number(0, label="sample number", precision=0, minimum=0, maximum=analysis.SHAPES_PER_CLASS - 1)
    ui.upload = gr.File(label=f"upload ({analysis.UPLOAD_LIMITS})", file_types=["image"], type="filepath")
    if "generated image" in sources:
        ui.generated = gr.Number(1, label="generated image number (last run)", precision=0, minimum=1,
                                 maximum=MAX_BATCH)  # fmt: skip
    return ui
