"""What the app's tabs share: the decorators that show input errors to the user, the image
enlarging, the image-source controls of the Channels, Quantizer and Edit tabs, and the sampler
controls of the Generate and Edit tabs.

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
from tokenbridge import pictures
from tokenbridge.sampling import KNOBS, SamplerSettings
from tokenbridge.shapes import CLASS_NAMES

SOURCES = ("held-out image", "uploaded image", "generated image")
STATE_TTL_S = 3600
"""Seconds a session's `gr.State` is kept after its last use."""
MIN_SHOWN = 256
"""Images are enlarged (nearest neighbour, integer factor) to at least this many pixels."""


def _answer_value_errors(fn, answer):
    """``fn`` (a function or a generator function) with a ValueError turned into ``answer(e)``:
    returned by a function, yielded (once, last) by a generator; ``answer`` may raise instead."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except ValueError as e:
                yield answer(e)

        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as e:
            return answer(e)

    return call


def user_errors(fn):
    """Turn ValueError (the package's and the app's input checks) into a gr.Error the user sees."""

    def fail(e: ValueError):
        raise shown_error(e) from None

    return _answer_value_errors(fn, fail)


def said_in_info(fn, outputs: list, info):
    """``fn`` answering a ValueError with its message in the Markdown ``info`` (one of ``outputs``)
    and every other output left as it is: the page keeps its images, with no error badge on them
    (`user_errors` would put one on every output)."""
    return _answer_value_errors(
        fn, lambda e: tuple(f"⚠ {html.escape(str(e), quote=False)}" if o is info else gr.skip() for o in outputs)
    )


def shown_error(e: Exception) -> gr.Error:
    """``e`` as the modal's message, escaped: it renders HTML and may quote the request back."""
    return gr.Error(html.escape(str(e), quote=False), print_exception=False)


def enlarge(image_HW3: np.ndarray) -> np.ndarray:
    """Nearest-neighbour upscale by an integer factor to at least `MIN_SHOWN` pixels (browsers blur small images)."""
    return pictures.enlarge(image_HW3, max(1, -(-MIN_SHOWN // max(image_HW3.shape[:2]))))


def image_picker(sources=SOURCES, shape: str = CLASS_NAMES[3], elem_id: str | None = None) -> SimpleNamespace:
    """The controls naming an image: ``source`` (one of ``sources``), ``shape`` and ``sample`` (a
    held-out image of the generator's dataset), ``upload`` (elem_id ``<elem_id>-upload``), and
    ``generated`` (an image of the last run) when offered; only the chosen source's controls are shown."""
    ui = SimpleNamespace()
    ui.source = gr.Radio(list(sources), value="held-out image", label="image source", elem_id=elem_id)
    ui.shape = gr.Dropdown(list(CLASS_NAMES), value=shape, label="shape")
    ui.sample = gr.Number(0, label="sample number", precision=0, minimum=0, maximum=analysis.SHAPES_PER_CLASS - 1)
    ui.upload = gr.File(
        label=f"upload ({analysis.UPLOAD_LIMITS})",
        file_types=["image"],
        type="filepath",
        visible=False,
        elem_id=elem_id and f"{elem_id}-upload",
    )
    controls = {"held-out image": [ui.shape, ui.sample], "uploaded image": [ui.upload]}
    if "generated image" in sources:
        ui.generated = gr.Number(
            1, label="generated image number (last run)", precision=0, minimum=1, maximum=MAX_BATCH, visible=False
        )
        controls["generated image"] = [ui.generated]
    owners = [source for source in sources for _ in controls[source]]

    def show(chosen):
        """Only the controls of the chosen source are visible."""
        return [gr.update(visible=owner == chosen) for owner in owners]

    shown = [c for source in sources for c in controls[source]]
    ui.source.change(show, ui.source, shown, api_name=False, show_progress="hidden")
    return ui


def sampler_control(name: str, seq_len: int, **props):
    """The control of the sampler knob ``name`` as its `Knob` says, at its default (`SamplerSettings`):
    a radio of its choices, or a slider over its range (steps: 1..``seq_len``, at most ``seq_len``).
    ``props`` (label, value, elem_id) override."""
    knob, default = KNOBS[name], getattr(SamplerSettings(), name)
    label = knob.label or knob.title
    if knob.choices is not None:
        return gr.Radio(list(knob.choices), **{"value": default, "label": label, **props})
    low, high, step = (knob.low, seq_len, 1) if knob.per_token else knob.slider
    return gr.Slider(low, high, step=step, **{"value": min(default, high), "label": label, **props})
