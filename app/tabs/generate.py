"""The Generate tab: watch the sampler fill the token grid, step by step.

"Generate" streams a whole run, "Step" advances the session's run by one iteration, and the
"show step" slider scrubs back through what was recorded (`app.state.Run`). Endpoints
``/generate``, ``/step`` and ``/show_step``; the run lives in the session's `gr.State`, shared with
the Channels and Edit tabs, which load its final images.
"""

from __future__ import annotations

import contextlib
import functools
from types import SimpleNamespace

import gradio as gr
import numpy as np

from app import figures
from app.state import MAX_BATCH, MAX_SEED, UNCONDITIONAL, Run, Session, Settings, integer
from app.widgets import sampler_control, user_errors
from tokenbridge.data import from_uint8_image, image_grid
from tokenbridge.pipeline import Pipeline
from tokenbridge.sampling import KNOBS

SIDE_BY_SIDE = (("cfg_schedule", "cfg_mode"), ("order", "gumbel"))
"""Sampler knobs whose controls share a row; every other knob has a row of its own."""
ELEM_IDS = {"num_steps": "steps", "order": "order"}
"""The elem_ids of sampler controls (the browser tests and the screenshot helper find them by it)."""


def preview_grid(images_BHW3: np.ndarray) -> np.ndarray:
    """A batch as one picture, about square (sent small: it is streamed every step, `app.main.CSS` enlarges it)."""
    columns = int(np.ceil(np.sqrt(len(images_BHW3))))
    return image_grid(from_uint8_image(images_BHW3), columns=columns)


class Handlers:
    """The tab's event handlers for one pipeline (the run lives in the session's `gr.State`)."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    def render(self, run: Run, t: int, view) -> tuple:
        """Outputs showing step ``t`` of ``run`` (maps for image ``view``, 1-based)."""
        b = run.settings.batch_size
        i = min(integer("image in batch", view, 1, MAX_BATCH), b) - 1  # the slider is bound to b below
        rec = run.records[t]
        total, left = run.seq_len, int(rec.mask[i].sum())
        done = run.finished and t == len(run.records) - 1
        num_steps = run.settings.sampler.num_steps
        bar = "▰" * round(10 * (t + 1) / num_steps)
        label = "unconditional" if run.settings.label is None else self.pipeline.classes[run.settings.label]
        status = (
            f"**step {t + 1} / {num_steps}** {bar.ljust(10, '▱')} · {left} of {total} "
            f"positions still masked · {int(rec.committed[i].sum())} committed at this step · CFG w = "
            f"{rec.cfg:.2f}" + (f" · **done**: {b} × {label}" if done else "")
        )
        final = run.final_images()
        gallery = None if final is None else [(img, f"seed {run.settings.seed + k}") for k, img in enumerate(final)]
        committed_before = np.where(run.commit_step[i] <= t, run.commit_step[i], -1)
        return (
            preview_grid(run.preview(t)),
            status,
            figures.committed_map(
                rec.mask[i], rec.committed[i], committed_before, run.grid, f"image {i + 1}: positions"
            ),
            figures.confidence_map(
                run.scores(t)[i], run.known(t)[i], rec.committed[i], run.grid, f"image {i + 1}: confidence"
            ),
            figures.remaining_plot(run.planned, [int(r.mask[i].sum()) for r in run.records], t, total),
            gr.update(maximum=max(len(run.records), 2), value=t + 1),
            gallery,
            gr.update(maximum=max(b, 2), value=i + 1, interactive=b > 1),  # a slider needs min < max
        )

    def sample(
        self,
        class_name,
        seed,
        steps,
        cfg,
        cfg_schedule,
        cfg_mode,
        temperature,
        sampling_order,
        gumbel,
        batch,
        view,
        session,
        *,
        to_the_end: bool,
    ):
        """Generate (``to_the_end``): a new run, streamed until it ends or a newer run of the session
        replaces it. Step: one more step of the session's run (a new run if there is none, it ended
        or the settings changed). The parameters name the endpoint's inputs in its HTTP API (the
        sampler's knobs in `SamplerSettings` field order, as `_sampler_controls` lays them out)."""
        settings = Settings.parse(
            self.pipeline,
            class_name,
            seed,
            steps,
            cfg,
            cfg_schedule,
            cfg_mode,
            temperature,
            sampling_order,
            gumbel,
            batch,
        )
        session = session or Session()
        run = session.run
        if to_the_end or run is None or run.finished or run.settings != settings:
            run = session.run = Run(self.pipeline, settings)
        while True:
            run.advance()
            yield (*self.render(run, len(run.records) - 1, view), session)
            if not to_the_end or run.finished or session.run is not run:
                return

    def show_step(self, shown_step, view, session):
        run = session.run if session is not None else None
        if run is None or not run.records:
            raise ValueError("nothing sampled yet in this session: press Generate or Step first")
        t = integer("step", shown_step, 1, len(run.records))
        return self.render(run, t - 1, view)


def _controls(pipeline: Pipeline) -> SimpleNamespace:
    """The left column: the class, seed and sampler settings, and the two buttons."""
    ui = SimpleNamespace()
    has_generator = pipeline.generator is not None
    seq_len = pipeline.generator.config.seq_len if has_generator else 2  # a slider needs min < max
    classes = [UNCONDITIONAL, *pipeline.classes] if has_generator else [UNCONDITIONAL]
    ui.class_name = gr.Dropdown(classes, value=classes[min(1, len(classes) - 1)], label="class")
    ui.seed = gr.Number(0, label="seed", precision=0, minimum=0, maximum=MAX_SEED)
    ui.sampler = _sampler_controls(seq_len)
    ui.batch = gr.Slider(1, MAX_BATCH, value=4, step=1, label="batch size (image i uses seed + i)", elem_id="batch")
    with gr.Row():
        ui.generate = gr.Button("Generate", variant="primary", elem_id="generate-btn")
        ui.step = gr.Button("Step", elem_id="step-btn")
    return ui


def _sampler_controls(seq_len: int) -> dict:
    """Knob name → its control, every knob of `SamplerSettings` in field order (`SIDE_BY_SIDE` in rows)."""
    controls = {}
    for name in KNOBS:
        if name in controls:
            continue
        row = next((names for names in SIDE_BY_SIDE if name in names), (name,))
        with gr.Row() if len(row) > 1 else contextlib.nullcontext():
            for member in row:
                controls[member] = sampler_control(member, seq_len, elem_id=ELEM_IDS.get(member))
    return controls


def _outputs(ui: SimpleNamespace) -> None:
    """The right column: status, preview, the maps of one image, the scrub slider and the final images."""
    ui.status = gr.Markdown(
        "Press **Generate** to watch the sampler, or **Step** to advance one iteration at a time.",
        label="sampling status",
        elem_id="gen-status",
    )
    with gr.Row():
        ui.preview = gr.Image(label="preview", interactive=False, format="png", height=300, elem_id="preview")
        ui.committed = gr.Plot(label="committed / masked", elem_id="committed-plot")
        ui.confidence = gr.Plot(label="confidence", elem_id="confidence-plot")
    gr.Markdown(figures.MAPS_NOTE, elem_classes=["note"])
    with gr.Row():
        ui.step_slider = gr.Slider(1, 2, value=1, step=1, label="show step (scrub)", elem_id="step-slider")
        ui.view = gr.Slider(
            1, 2, value=1, step=1, label="image in batch (maps)", interactive=False, elem_id="view"
        )  # bound to the batch of the run shown (`Handlers.render`)
    ui.remaining = gr.Plot(label="masked positions left", elem_id="remaining-plot")
    ui.gallery = gr.Gallery(
        label="final images",
        format="png",
        columns=8,
        height=280,
        buttons=["download", "download_all", "fullscreen"],
        elem_id="gallery",
    )


def build(pipeline: Pipeline, session: gr.State) -> None:
    """Lay the tab out and wire its events (call inside ``gr.Tab("Generate")``); ``session``
    holds the run (`app.state.Session`)."""
    h = Handlers(pipeline)
    if pipeline.generator is None:
        gr.Markdown(
            "**No generator loaded**: this pipeline only reconstructs. Start the app with `--generator PATH` to sample."
        )
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            ui = _controls(pipeline)
        with gr.Column(scale=3):
            _outputs(ui)
    controls = [ui.class_name, ui.seed, *(ui.sampler[name] for name in KNOBS), ui.batch, ui.view, session]
    shown = [ui.preview, ui.status, ui.committed, ui.confidence, ui.remaining, ui.step_slider, ui.gallery, ui.view]
    for button, api_name, to_the_end in ((ui.generate, "generate", True), (ui.step, "step", False)):
        button.click(
            user_errors(functools.partial(h.sample, to_the_end=to_the_end)),
            controls,
            shown + [session],
            api_name=api_name,
            api_description=False,  # not the docstring of functools.partial
            concurrency_id="sampler",
            show_progress="minimal",
        )
    show_step = user_errors(h.show_step)
    ui.step_slider.input(
        show_step,
        [ui.step_slider, ui.view, session],
        shown,
        api_name="show_step",
        trigger_mode="always_last",
        show_progress="hidden",
    )
    ui.view.input(
        show_step,
        [ui.step_slider, ui.view, session],
        shown,
        api_name=False,
        trigger_mode="always_last",
        show_progress="hidden",
    )
