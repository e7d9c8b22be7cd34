"""TokenBridge Lab app: watch TokenBridge sample, look inside its channels and its quantizer.

    python app/main.py                        # the embedded default (assets/), http://127.0.0.1:7860
    python app/main.py --vae kl16.ckpt --generator checkpoint-last.pth --device cuda

`build_demo(pipeline)` returns the Gradio Blocks without launching (tests use it); `main()` parses
the arguments, loads the pipeline once and serves it. Handlers are a few lines calling `Pipeline`
(and `app.analysis` / `app.figures`); everything a session does lives in its `gr.State`.
Nothing is fetched from the internet: system fonts, no analytics, no share link unless asked.
"""

from __future__ import annotations

import argparse
import functools
import html
import inspect
import os
import socket
import sys
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry, no version check

if __package__ in (None, ""):  # run as `python app/main.py`: make `app` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from app import analysis, figures  # noqa: E402
from app.model_card import describe_markdown  # noqa: E402
from app.state import (  # noqa: E402
    CFG_RANGE, GUMBEL_RANGE, MAX_BATCH, MAX_SEED, TEMPERATURE_RANGE, UNCONDITIONAL, ChannelImage, Run, Session,
    Settings, choice, integer,
)  # fmt: skip
from tokenbridge import cli, spectral  # noqa: E402
from tokenbridge.data import CLASS_NAMES, from_uint8_image, image_grid, to_uint8_image  # noqa: E402
from tokenbridge.pipeline import SAMPLER_DEFAULTS, Pipeline  # noqa: E402
from tokenbridge.quantizer import ASSIGN_RULES, CALIBRATIONS  # noqa: E402
from tokenbridge.sampling import CFG_MODES, CFG_SCHEDULES, ORDERS  # noqa: E402

SOURCES = ("shapes sample", "uploaded image", "generated image")
DEFAULT_PORT = 7860
QUEUE_SIZE = 64
SESSION_CAPACITY = 100
"""Sessions whose state the server keeps (least recently used dropped first): bounds memory."""
STATE_TTL_S = 3600
LEVELS_RANGE = (4, 256)
CSS = """
#preview img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }
#channels-image img, .pixelated img { image-rendering: pixelated; }
"""
"""The streamed preview is sent at its own size and scaled up by the browser (no blur)."""


def theme() -> gr.themes.Base:
    """Gradio's default look with system fonts only (nothing loaded from a font CDN)."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "Consolas", "monospace"])  # fmt: skip


def user_errors(fn):
    """Turn ValueError (the package's and the app's input checks) into a gr.Error the user sees."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except ValueError as e:
                raise _error(e) from None

        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as e:
            raise _error(e) from None

    return call


def _error(e: Exception) -> gr.Error:
    # the modal renders HTML: escape what the message quotes back from the request
    return gr.Error(html.escape(str(e), quote=False), print_exception=False)


def enlarge(image_HW3: np.ndarray, min_size: int = 256) -> np.ndarray:
    """Nearest-neighbour upscale by an integer factor to at least ``min_size`` (browsers blur small images)."""
    f = max(1, -(-min_size // max(image_HW3.shape[:2])))
    return image_HW3.repeat(f, axis=0).repeat(f, axis=1)


def preview_grid(images_BHW3: np.ndarray) -> np.ndarray:
    """A batch as one picture, about square (sent small: it is streamed every step, `CSS` enlarges it)."""
    columns = int(np.ceil(np.sqrt(len(images_BHW3))))
    return image_grid(from_uint8_image(images_BHW3), columns=columns)


def mark_position(image_HW3: np.ndarray, grid: int, row: int, col: int) -> np.ndarray:
    """Enlarged image with the token grid's cell (row, col) outlined."""
    big = enlarge(image_HW3).copy()
    cell = big.shape[0] / grid
    top, left = int(row * cell), int(col * cell)
    bottom, right = int((row + 1) * cell) - 1, int((col + 1) * cell) - 1
    for y0, y1, x0, x1 in ((top, top + 2, left, right), (bottom - 1, bottom + 1, left, right),
                           (top, bottom, left, left + 2), (top, bottom, right - 1, right + 1)):  # fmt: skip
        big[max(y0, 0) : y1, max(x0, 0) : x1] = (255, 64, 0)
    return big


# ------------------------------------------------------------------------------------------------
# The app
# ------------------------------------------------------------------------------------------------


def build_demo(pipeline: Pipeline, calibration_images: int = 64) -> gr.Blocks:
    """The Gradio app for ``pipeline`` (not launched). ``calibration_images``: training shapes
    encoded once (on first use) for the per-channel statistics of the Channels/Quantizer tabs."""
    calibration = analysis.Calibration(pipeline, calibration_images)
    order = analysis.latent_order(pipeline)
    has_generator = pipeline.generator is not None
    seq_len = pipeline.generator.config.seq_len if has_generator else 2  # a slider needs min < max
    class_choices = [UNCONDITIONAL, *pipeline.classes] if has_generator else [UNCONDITIONAL]

    # ---------------------------------------------------------------- Generate tab handlers
    def render(run: Run, t: int, view) -> tuple:
        """Outputs showing step ``t`` of ``run`` (maps for image ``view``, 1-based)."""
        b = run.settings.batch_size
        i = integer("image in batch", view, 1, MAX_BATCH)
        i = min(i, b) - 1
        rec = run.records[t]
        total, left = run.seq_len, int(rec.mask[i].sum())
        done = run.finished and t == len(run.records) - 1
        bar = "▰" * round(10 * (t + 1) / run.settings.num_steps)
        label = "unconditional" if run.settings.label is None else pipeline.classes[run.settings.label]
        status = (f"**step {t + 1} / {run.settings.num_steps}** {bar.ljust(10, '▱')} · {left} of {total} "
                  f"positions still masked · {int(rec.committed[i].sum())} committed at this step · CFG w = "
                  f"{rec.cfg:.2f}" + (f" · **done**: {b} × {label}" if done else ""))  # fmt: skip
        final = run.final_images()
        gallery = None if final is None else [(img, f"seed {run.settings.seed + k}") for k, img in enumerate(final)]
        committed_before = np.where(run.commit_step[i] <= t, run.commit_step[i], -1)
        return (
            preview_grid(run.preview(t)),
            status,
            figures.committed_map(rec.mask[i], rec.committed[i], committed_before, run.grid,
                                  f"image {i + 1}: positions"),  # fmt: skip
            figures.confidence_map(rec.confidence[i], rec.committed[i], run.grid, f"image {i + 1}: confidence"),
            figures.remaining_plot(run.planned, [int(r.mask[i].sum()) for r in run.records], t, total),
            gr.update(maximum=max(len(run.records), 2), value=t + 1),
            gallery,
        )

    @user_errors
    def generate(class_name, seed, steps, cfg, cfg_schedule, cfg_mode, temperature, sampling_order, gumbel, batch,
                 view, session):  # fmt: skip
        settings = Settings.parse(pipeline, class_name, seed, steps, cfg, cfg_schedule, cfg_mode, temperature,
                                  sampling_order, gumbel, batch)  # fmt: skip
        session = session or Session()
        run = session.run = Run(pipeline, settings)
        while not run.finished and session.run is run:  # a newer run in this session stops this one
            run.advance()
            yield (*render(run, len(run.records) - 1, view), session)

    @user_errors
    def step(class_name, seed, steps, cfg, cfg_schedule, cfg_mode, temperature, sampling_order, gumbel, batch, view,
             session):  # fmt: skip
        settings = Settings.parse(pipeline, class_name, seed, steps, cfg, cfg_schedule, cfg_mode, temperature,
                                  sampling_order, gumbel, batch)  # fmt: skip
        session = session or Session()
        if session.run is None or session.run.finished or session.run.settings != settings:
            session.run = Run(pipeline, settings)
        session.run.advance()
        return (*render(session.run, len(session.run.records) - 1, view), session)

    @user_errors
    def show_step(shown_step, view, session):
        run = session.run if session is not None else None
        if run is None or not run.records:
            raise ValueError("nothing sampled yet in this session: press Generate or Step first")
        t = integer("step", shown_step, 1, len(run.records))
        return render(run, t - 1, view)

    # ---------------------------------------------------------------- Channels tab handlers
    def pick_image(source, shape, number, upload, generated, session) -> ChannelImage:
        choice("image source", source, SOURCES)
        if source == "shapes sample":
            number = integer("sample number", number, 0, analysis.SHAPES_PER_CLASS - 1)
            image = analysis.shapes_image(pipeline, shape, number)
            return _encoded(f"held-out shapes sample {number} of class {shape!r}", image)
        if source == "uploaded image":
            return _encoded("uploaded image", analysis.uploaded_image(pipeline, upload))
        run = session.run if session is not None else None
        if run is None or not run.finished:
            raise ValueError("no finished generation in this session: generate images first (Generate tab)")
        k = integer("generated image number", generated, 1, MAX_BATCH)
        if k > run.settings.batch_size:
            raise ValueError(f"the last run made {run.settings.batch_size} image(s); pick 1..{run.settings.batch_size}")
        tokens = run.tokens[k - 1]
        latents = pipeline.tokens_to_latents(tokens[None])[0]
        probs = run.probs[k - 1].clone() if run.probs is not None else None
        return ChannelImage(f"generated image {k} (seed {run.settings.seed + k - 1})", run.final_images()[k - 1],
                            latents, tokens.clone(), probs)  # fmt: skip

    def _encoded(source: str, image: torch.Tensor) -> ChannelImage:
        return ChannelImage(source, to_uint8_image(image), pipeline.encode(image[None])[0])

    def at_position(current: ChannelImage, row: int, col: int) -> tuple:
        """The image with the cell outlined, and the channel head's distributions there."""
        grid = current.latents.shape[-1]
        marked = mark_position(current.image, grid, row, col)
        if current.probs is None:
            return marked, figures.empty("channel-head distributions are recorded while sampling:<br>"
                                         "load a generated image to see them")  # fmt: skip
        n = row * grid + col
        title = f"row {row}, col {col}: each channel's distribution given the channels before it (orange: sampled)"
        return marked, figures.channel_distributions(current.probs[n].float().numpy(), current.tokens[n].numpy(),
                                                     pipeline.channel_order, title)  # fmt: skip

    @user_errors
    def load_channels(source, shape, number, upload, generated, session):
        current = pick_image(source, shape, number, upload, generated, session)
        strip = to_uint8_image(analysis.channel_prefix_images(pipeline, current.latents))
        this = spectral.low_frequency_ratio(current.latents[None], analysis.LOWFREQ_CUTOFF)
        ratios = {"this image": this.numpy(),
                  f"calibration ({calibration.count} training shapes)": calibration.lowfreq_ratio().numpy()}
        grid = current.latents.shape[-1]
        row = col = grid // 2
        info = (f"**{current.source}** · latents {tuple(current.latents.shape)} · generation order "
                f"`{list(order)}` · click the image (or move the sliders) to pick a position")  # fmt: skip
        return (
            *at_position(current, row, col),
            info,
            [(img, f"{k + 1}: c{order[k]}") for k, img in enumerate(strip)],
            figures.channel_heatmaps(current.latents.numpy(), order),
            figures.lowfreq_bars(order, ratios, analysis.LOWFREQ_CUTOFF),
            gr.update(maximum=grid - 1, value=row),
            gr.update(maximum=grid - 1, value=col),
            current,
        )

    def _position(current, row, col) -> tuple[int, int]:
        if current is None:
            raise ValueError("load an image first (Channels tab: Load)")
        grid = current.latents.shape[-1]
        return integer("row", row, 0, grid - 1), integer("column", col, 0, grid - 1)

    @user_errors
    def show_position(row, col, current):
        return at_position(current, *_position(current, row, col))

    @user_errors
    def click_position(current, evt: gr.SelectData):
        if current is None:
            raise ValueError("load an image first (Channels tab: Load)")
        x, y = evt.index  # pixels of the enlarged image shown
        size = enlarge(current.image).shape[0]
        grid = current.latents.shape[-1]
        row, col = _position(current, min(int(y) * grid // size, grid - 1), min(int(x) * grid // size, grid - 1))
        return row, col, *at_position(current, row, col)

    # ---------------------------------------------------------------- Quantizer tab handler
    @user_errors
    def quantize(source, shape, number, upload, levels, assign, calibration_kind, channel):
        choice("image source", source, SOURCES[:2])
        if source == "shapes sample":
            number = integer("sample number", number, 0, analysis.SHAPES_PER_CLASS - 1)
            image = analysis.shapes_image(pipeline, shape, number)
        else:
            image = analysis.uploaded_image(pipeline, upload)
        levels = integer("levels B", levels, *LEVELS_RANGE)
        channel = int(choice("histogram channel", channel, [f"c{c}" for c in range(pipeline.num_channels)])[1:])
        r = analysis.quantizer_report(pipeline, calibration, image, levels, choice("rule", assign, ASSIGN_RULES),
                                      choice("calibration", calibration_kind, CALIBRATIONS))  # fmt: skip
        q = r.quantizer
        stats = r.calibration_stats
        metrics = (
            f"**PSNR vs original** · continuous latents: **{r.psnr_continuous:.2f} dB** · quantized "
            f"(B = {levels}, {assign}, {calibration_kind}): **{r.psnr_quantized:.2f} dB** · quantized vs "
            f"continuous reconstruction: {r.psnr_quantization:.2f} dB\n\n"
            f"latent MSE {r.latent_mse:.5f} · values outside ±r: {100 * r.image_stats.out_of_range:.2f}% (this "
            f"image), {100 * stats.out_of_range:.2f}% (calibration) · mean entropy "
            f"{float(stats.entropy_bits.mean()):.2f} of {np.log2(levels):.2f} bits"
        )  # fmt: skip
        err = {
            "|quantized − original|": np.abs(r.quantized.astype(float) - r.original).mean(-1),
            "|quantized − continuous|": np.abs(r.quantized.astype(float) - r.continuous).mean(-1),
        }
        hist = figures.bin_histogram(r.u_calibration[channel].numpy(), r.u_image[channel].numpy(),
                                     q.boundaries.numpy(), q.values.numpy(), q.config.std_range,
                                     f"channel c{channel}: normalized values and the B = {levels} bins")  # fmt: skip
        usage = figures.bin_usage(stats.usage.numpy(), stats.entropy_bits.numpy(), levels,
                                  f"bin usage on the calibration batch ({calibration.count} training shapes)")
        images = enlarge(r.original), enlarge(r.continuous), enlarge(r.quantized)
        note = analysis.photo_note(pipeline, source, r.psnr_continuous)
        return *images, metrics, figures.error_maps(err), hist, usage, note

    # ---------------------------------------------------------------- layout
    with gr.Blocks(title="TokenBridge Lab", analytics_enabled=False) as demo:
        gr.Markdown("# TokenBridge Lab\nMasked generation over post-training-quantized VAE latents with a "
                    "channel-wise autoregressive head "
                    "([arXiv 2503.16430](https://arxiv.org/abs/2503.16430)).")  # fmt: skip
        session = gr.State(None, time_to_live=STATE_TTL_S)
        current = gr.State(None, time_to_live=STATE_TTL_S)

        with gr.Tab("Generate", id="generate"):
            if not has_generator:
                gr.Markdown("**No generator loaded**: this pipeline only reconstructs. Start the app with "
                            "`--generator PATH` to sample.")  # fmt: skip
            with gr.Row():
                with gr.Column(scale=1, min_width=280):
                    class_name = gr.Dropdown(class_choices, value=class_choices[min(1, len(class_choices) - 1)],
                                             label="class")  # fmt: skip
                    seed = gr.Number(0, label="seed", precision=0, minimum=0, maximum=MAX_SEED)
                    steps = gr.Slider(1, seq_len, value=min(SAMPLER_DEFAULTS["num_steps"], seq_len), step=1,
                                      label="steps", elem_id="steps")  # fmt: skip
                    cfg = gr.Slider(*CFG_RANGE, value=SAMPLER_DEFAULTS["cfg"], step=0.1, label="CFG scale w")
                    with gr.Row():
                        cfg_schedule = gr.Radio(list(CFG_SCHEDULES), value=SAMPLER_DEFAULTS["cfg_schedule"],
                                                label="CFG schedule")  # fmt: skip
                        cfg_mode = gr.Radio(list(CFG_MODES), value=SAMPLER_DEFAULTS["cfg_mode"], label="CFG mode")
                    temperature = gr.Slider(*TEMPERATURE_RANGE, value=SAMPLER_DEFAULTS["temperature"], step=0.05,
                                            label="temperature")  # fmt: skip
                    with gr.Row():
                        sampling_order = gr.Radio(list(ORDERS), value=SAMPLER_DEFAULTS["order"], label="order",
                                                  elem_id="order")  # fmt: skip
                        gumbel = gr.Slider(*GUMBEL_RANGE, value=SAMPLER_DEFAULTS["gumbel"], step=0.5,
                                           label="Gumbel noise (confidence order)")  # fmt: skip
                    batch = gr.Slider(1, MAX_BATCH, value=4, step=1, label="batch size (image i uses seed + i)",
                                      elem_id="batch")  # fmt: skip
                    with gr.Row():
                        generate_btn = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                        step_btn = gr.Button("Step", elem_id="step-btn")
                with gr.Column(scale=3):
                    status = gr.Markdown("Press **Generate** to watch the sampler, or **Step** to advance one "
                                         "iteration at a time.", label="sampling status",
                                         elem_id="gen-status")  # fmt: skip
                    with gr.Row():
                        preview = gr.Image(label="preview (masked = prior mean 0)",
                                           interactive=False, format="png", height=300, elem_id="preview")  # fmt: skip
                        committed_plot = gr.Plot(label="committed / masked", elem_id="committed-plot")
                        confidence_plot = gr.Plot(label="confidence", elem_id="confidence-plot")
                    with gr.Row():
                        step_slider = gr.Slider(1, 2, value=1, step=1, label="show step (scrub)",
                                                elem_id="step-slider")  # fmt: skip
                        view = gr.Slider(1, MAX_BATCH, value=1, step=1, label="image in batch (maps)")
                    remaining_plot = gr.Plot(label="masked positions left", elem_id="remaining-plot")
                    gallery = gr.Gallery(label="final images", format="png", columns=8, height=280,
                                         buttons=["download", "download_all", "fullscreen"],
                                         elem_id="gallery")  # fmt: skip

        with gr.Tab("Edit", id="edit"):
            from app.tabs import edit as edit_tab  # the first tab split out into app/tabs/

            edit_tab.build(pipeline, session, user_errors)

        with gr.Tab("Channels", id="channels"):
            gr.Markdown("Channels are generated one after another in the model's order (structure first). "
                        "Pick an image, then see what each added channel contributes.")  # fmt: skip
            with gr.Row():
                with gr.Column(scale=1, min_width=280):
                    ch_source = gr.Radio(list(SOURCES), value="shapes sample", label="image source",
                                         elem_id="channels-source")  # fmt: skip
                    ch_shape = gr.Dropdown(list(CLASS_NAMES), value=CLASS_NAMES[3], label="shape")
                    ch_number = gr.Number(0, label="sample number", precision=0, minimum=0,
                                          maximum=analysis.SHAPES_PER_CLASS - 1)  # fmt: skip
                    ch_upload = gr.File(label=f"upload ({analysis.UPLOAD_LIMITS})", file_types=["image"],
                                        type="filepath")  # fmt: skip
                    ch_generated = gr.Number(1, label="generated image number (last run)", precision=0, minimum=1,
                                             maximum=MAX_BATCH)  # fmt: skip
                    ch_load = gr.Button("Load", variant="primary", elem_id="channels-load")
                with gr.Column(scale=3):
                    ch_info = gr.Markdown("", label="about the image", elem_id="channels-info")
                    with gr.Row():
                        ch_image = gr.Image(label="current image (click a position)", interactive=False,
                                            format="png", height=260, elem_id="channels-image")  # fmt: skip
                        with gr.Column():
                            ch_row = gr.Slider(0, 7, value=4, step=1, label="position row")
                            ch_col = gr.Slider(0, 7, value=4, step=1, label="position column")
                    ch_strip = gr.Gallery(label="decoded with the first k channels kept (the rest at 0)",
                                          format="png", columns=8, height=280, elem_id="channels-strip")  # fmt: skip
                    ch_lowfreq = gr.Plot(label="low-frequency ratio")
                    ch_heatmaps = gr.Plot(label="latent channels")
                    ch_dist = gr.Plot(label="channel-head distributions at the position")

        with gr.Tab("Quantizer", id="quantizer"):
            gr.Markdown("Post-training, dimension-wise quantization: every latent value is replaced by one "
                        "of B Gaussian-bin values. Pick an image and the quantizer's settings.")  # fmt: skip
            with gr.Row():
                with gr.Column(scale=1, min_width=280):
                    q_source = gr.Radio(list(SOURCES[:2]), value="shapes sample", label="image source")
                    q_shape = gr.Dropdown(list(CLASS_NAMES), value=CLASS_NAMES[0], label="shape")
                    q_number = gr.Number(0, label="sample number", precision=0, minimum=0,
                                         maximum=analysis.SHAPES_PER_CLASS - 1)  # fmt: skip
                    q_upload = gr.File(label=f"upload ({analysis.UPLOAD_LIMITS})", file_types=["image"],
                                       type="filepath")  # fmt: skip
                    q_levels = gr.Slider(*LEVELS_RANGE, value=min(max(pipeline.quantizer.levels, 4), 256), step=1,
                                         label="levels B")  # fmt: skip
                    q_assign = gr.Radio(list(ASSIGN_RULES), value="nearest", label="assignment rule")
                    q_calib = gr.Radio(list(CALIBRATIONS), value="fixed",
                                       label="calibration (per_channel: fitted on training shapes)")  # fmt: skip
                    q_channel = gr.Dropdown([f"c{c}" for c in range(pipeline.num_channels)], value=f"c{order[0]}",
                                            label="histogram channel")  # fmt: skip
                    q_btn = gr.Button("Quantize", variant="primary", elem_id="quantize-btn")
                with gr.Column(scale=3):
                    with gr.Row():
                        q_original = gr.Image(label="original", interactive=False, format="png", height=220)
                        q_cont = gr.Image(label="continuous latents", interactive=False, format="png", height=220)
                        q_quant = gr.Image(label="quantized latents", interactive=False, format="png", height=220)
                    q_note = gr.Markdown("", elem_id="quantizer-note")  # a photo on the embedded VAE: why it blurs
                    q_metrics = gr.Markdown("", label="metrics", elem_id="quantizer-metrics")
                    q_error = gr.Plot(label="error maps")
                    q_hist = gr.Plot(label="histogram and bin edges")
                    q_usage = gr.Plot(label="bin usage and entropy")

        with gr.Tab("Model", id="model"):
            card = describe_markdown(pipeline.describe())
            gr.Markdown(card["pipeline"], elem_id="model-card")
            with gr.Row():
                for name in ("generator", "vae", "quantizer"):
                    with gr.Column():
                        gr.Markdown(card[name], elem_id=f"model-{name}")

        # ---------------------------------------------------------------- events
        controls = [class_name, seed, steps, cfg, cfg_schedule, cfg_mode, temperature, sampling_order, gumbel, batch,
                    view]  # fmt: skip
        shown = [preview, status, committed_plot, confidence_plot, remaining_plot, step_slider, gallery]
        generate_btn.click(generate, controls + [session], shown + [session], api_name="generate",
                           concurrency_id="sampler", show_progress="minimal")  # fmt: skip
        step_btn.click(step, controls + [session], shown + [session], api_name="step", concurrency_id="sampler",
                       show_progress="minimal")  # fmt: skip
        step_slider.input(show_step, [step_slider, view, session], shown, api_name="show_step",
                          trigger_mode="always_last", show_progress="hidden")  # fmt: skip
        view.input(show_step, [step_slider, view, session], shown, api_name=False, trigger_mode="always_last",
                   show_progress="hidden")  # fmt: skip
        ch_picked = [ch_source, ch_shape, ch_number, ch_upload, ch_generated, session]
        ch_shown = [ch_image, ch_dist, ch_info, ch_strip, ch_heatmaps, ch_lowfreq, ch_row, ch_col, current]
        ch_load.click(load_channels, ch_picked, ch_shown, api_name="channels")
        demo.load(load_channels, ch_picked, ch_shown, api_name=False)  # open with the default shapes sample shown
        ch_row.input(show_position, [ch_row, ch_col, current], [ch_image, ch_dist], api_name="position",
                     trigger_mode="always_last")  # fmt: skip
        ch_col.input(show_position, [ch_row, ch_col, current], [ch_image, ch_dist], api_name=False,
                     trigger_mode="always_last")  # fmt: skip
        ch_image.select(click_position, [current], [ch_row, ch_col, ch_image, ch_dist], api_name=False)
        q_inputs = [q_source, q_shape, q_number, q_upload, q_levels, q_assign, q_calib, q_channel]
        q_btn.click(quantize, q_inputs, [q_original, q_cont, q_quant, q_metrics, q_error, q_hist, q_usage,
                                         q_note], api_name="quantize")  # fmt: skip
    return demo


# ------------------------------------------------------------------------------------------------
# Serving
# ------------------------------------------------------------------------------------------------


def first_free_port(host: str, start: int = DEFAULT_PORT, tries: int = 100) -> int:
    """The first port from ``start`` that can be bound on ``host``."""
    for port in range(start, start + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {start}..{start + tries - 1} on {host}")


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           concurrency: int = 2, quiet: bool = True) -> str:  # fmt: skip
    """Queue and start ``demo`` without blocking; returns the local URL (tests use this too)."""
    demo.queue(default_concurrency_limit=concurrency, max_size=QUEUE_SIZE)
    _, url, _ = demo.launch(
        server_name=host, server_port=port or first_free_port(host), share=share, prevent_thread_lock=True,
        quiet=quiet, show_error=False, theme=theme(), css=CSS, max_file_size=analysis.MAX_UPLOAD_BYTES,
        state_session_capacity=SESSION_CAPACITY, footer_links=["api", "settings"], run_history=False,
        ssr_mode=False, mcp_server=False,
    )  # fmt: skip
    return url


def parse_args(argv=None) -> argparse.Namespace:
    """The app's arguments, each checked (ports, device, weight files by content) before anything loads."""
    p = cli.ArgumentParser(prog="python app/main.py", description="TokenBridge Lab: the interactive app.")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=cli.number(int, 1, 65535), default=DEFAULT_PORT,
                   help="first port to try (default: 7860; the next free one is used if taken)")
    p.add_argument("--device", type=cli.device, default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--vae", help="VAE weights (our .safetensors or the official kl16.ckpt) instead of the embedded")
    p.add_argument("--generator", help="generator weights (our .safetensors or an official checkpoint-last.pth)")
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link (off by default)")
    p.add_argument("--concurrency", type=cli.number(int, 1), default=2,
                   help="requests of one kind served at once (default 2)")
    args = p.parse_args(argv)
    for kind in ("vae", "generator"):
        if getattr(args, kind) is not None:
            cli.check(p, f"--{kind}", cli.pipeline_file, getattr(args, kind), kind)
    return args


def load_pipeline(args: argparse.Namespace) -> Pipeline:
    if args.vae or args.generator:
        if not args.vae:
            raise ValueError("--generator needs --vae too")
        return Pipeline.load(vae=args.vae, generator=args.generator, device=args.device)
    return Pipeline.load("embedded", device=args.device)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        pipeline = load_pipeline(args)
    except (FileNotFoundError, ValueError) as e:  # missing/broken weights, bad device: say so, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    demo = build_demo(pipeline)
    url = launch(demo, args.host, first_free_port(args.host, args.port), args.share, args.concurrency)
    print(f"TokenBridge Lab is running on {url} (device {pipeline.device}); Ctrl+C to stop", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
