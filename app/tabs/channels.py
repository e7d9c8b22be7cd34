"""The Channels tab: what each latent channel adds, in the order the generator samples them.

Pick an image (held-out image of the generator's dataset, upload, or an image of the last Generate run) and press
Load: decodes with the first k channels kept, the channels as heatmaps, their low-frequency
ratios beside the calibration batch's, and, for a generated image, the channel head's
distributions at the position clicked. Endpoints ``/channels`` and ``/position``; the page's
load event fills the tab with its default image.
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import numpy as np
import torch

from app import analysis, figures
from app.state import ChannelImage, choice, integer, last_generated
from app.widgets import SOURCES, STATE_TTL_S, enlarge, image_picker, user_errors
from tokenbridge import spectral
from tokenbridge.data import to_uint8_image
from tokenbridge.pipeline import Pipeline

NO_IMAGE = "load an image first (Channels tab: Load)"


def mark_position(image_HW3: np.ndarray, grid: int, row: int, col: int) -> np.ndarray:
    """Enlarged image with the token grid's cell (row, col) outlined."""
    big = enlarge(image_HW3).copy()
    cell = big.shape[0] / grid
    top, left = int(row * cell), int(col * cell)
    bottom, right = int((row + 1) * cell) - 1, int((col + 1) * cell) - 1
    for y0, y1, x0, x1 in (
        (top, top + 2, left, right),
        (bottom - 1, bottom + 1, left, right),
        (top, bottom, left, left + 2),
        (top, bottom, right - 1, right + 1),
    ):
        big[max(y0, 0) : y1, max(x0, 0) : x1] = (255, 64, 0)
    return big


class Handlers:
    """The tab's event handlers for one pipeline (the image lives in the session's `gr.State`)."""

    def __init__(self, pipeline: Pipeline, calibration: analysis.Calibration):
        self.pipeline, self.calibration = pipeline, calibration
        self.order = analysis.latent_order(pipeline)

    def pick(self, source, shape, number, upload, generated, session) -> ChannelImage:
        choice("image source", source, SOURCES)
        if source == "generated image":
            run, k = last_generated(session, generated)
            tokens = run.tokens[k - 1]
            latents = self.pipeline.tokens_to_latents(tokens[None])[0]
            probs = run.probs[k - 1].clone() if run.probs is not None else None
            return ChannelImage(
                f"generated image {k} (seed {run.settings.seed + k - 1})",
                run.final_images()[k - 1],
                latents,
                tokens.clone(),
                probs,
            )
        image = analysis.picked_image(self.pipeline, source, shape, number, upload)
        name = analysis.picked_name(self.pipeline, source, shape, number)
        return self._encoded(name, image)

    def _encoded(self, source: str, image: torch.Tensor) -> ChannelImage:
        return ChannelImage(source, to_uint8_image(image), self.pipeline.encode(image[None])[0])

    def at_position(self, current: ChannelImage, row: int, col: int) -> tuple:
        """The image with the cell outlined, and the channel head's distributions there."""
        grid = current.latents.shape[-1]
        marked = mark_position(current.image, grid, row, col)
        if current.probs is None:
            return marked, figures.empty(
                "channel-head distributions are recorded while sampling:<br>load a generated image to see them"
            )
        n = row * grid + col
        title = f"row {row}, col {col}: each channel's distribution given the channels before it (orange: sampled)"
        return marked, figures.channel_distributions(
            current.probs[n].float().numpy(), current.tokens[n].numpy(), self.pipeline.channel_order, title
        )

    def load(self, source, shape, number, upload, generated, session):
        current = self.pick(source, shape, number, upload, generated, session)
        strip = to_uint8_image(analysis.channel_prefix_images(self.pipeline, current.latents))
        this = spectral.low_frequency_ratio(current.latents[None], analysis.LOWFREQ_CUTOFF)
        ratios = {
            "this image": this.numpy(),
            f"calibration ({self.calibration.count} training shapes)": self.calibration.lowfreq_ratio().numpy(),
        }
        grid = current.latents.shape[-1]
        row = col = grid // 2
        info = (
            f"**{current.source}** · latents {tuple(current.latents.shape)} · generation order "
            f"`{list(self.order)}` · click the image (or move the sliders) to pick a position"
        )
        return (
            *self.at_position(current, row, col),
            info,
            [(img, f"{k + 1}: c{self.order[k]}") for k, img in enumerate(strip)],
            figures.channel_heatmaps(current.latents.numpy(), self.order),
            figures.lowfreq_bars(self.order, ratios, analysis.LOWFREQ_CUTOFF),
            gr.update(maximum=grid - 1, value=row),
            gr.update(maximum=grid - 1, value=col),
            current,
        )

    def _position(self, current: ChannelImage | None, row, col) -> tuple[int, int]:
        """``(row, col)`` checked against the token grid of the loaded image."""
        if current is None:
            raise ValueError(NO_IMAGE)
        grid = current.latents.shape[-1]
        return integer("row", row, 0, grid - 1), integer("column", col, 0, grid - 1)

    def show_position(self, row, col, current):
        return self.at_position(current, *self._position(current, row, col))

    def click_position(self, current, evt: gr.SelectData):
        if current is None:
            raise ValueError(NO_IMAGE)
        x, y = evt.index  # pixels of the enlarged image shown
        size = enlarge(current.image).shape[0]
        grid = current.latents.shape[-1]
        row, col = self._position(current, min(int(y) * grid // size, grid - 1), min(int(x) * grid // size, grid - 1))
        return row, col, *self.at_position(current, row, col)


def _outputs() -> SimpleNamespace:
    """The right column: about the image, the image to click with the position sliders, the figures."""
    ui = SimpleNamespace()
    ui.info = gr.Markdown("", label="about the image", elem_id="channels-info")
    with gr.Row():
        ui.image = gr.Image(
            label="current image (click a position)",
            interactive=False,
            format="png",
            height=260,
            elem_id="channels-image",
        )
        with gr.Column():
            ui.row = gr.Slider(0, 7, value=4, step=1, label="position row")
            ui.col = gr.Slider(0, 7, value=4, step=1, label="position column")
    ui.strip = gr.Gallery(
        label="decoded with the first k channels kept (the rest at 0)",
        format="png",
        columns=8,
        height=280,
        elem_id="channels-strip",
    )
    ui.lowfreq = gr.Plot(label="low-frequency ratio")
    ui.heatmaps = gr.Plot(label="latent channels")
    ui.dist = gr.Plot(label="channel-head distributions at the position")
    return ui


def build(demo: gr.Blocks, pipeline: Pipeline, calibration: analysis.Calibration, session: gr.State) -> None:
    """Lay the tab out and wire its events (call inside ``gr.Tab("Channels")`` of ``demo``, whose
    load event shows the default image); ``session`` holds the Generate tab's run."""
    h = Handlers(pipeline, calibration)
    gr.Markdown(
        "Channels are generated one after another in the model's order (structure first). "
        "Pick an image, then see what each added channel contributes."
    )
    current = gr.State(None, time_to_live=STATE_TTL_S)
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            picker = image_picker(elem_id="channels-source")
            load = gr.Button("Load", variant="primary", elem_id="channels-load")
        with gr.Column(scale=3):
            ui = _outputs()
    picked = [picker.source, picker.shape, picker.sample, picker.upload, picker.generated, session]
    shown = [ui.image, ui.dist, ui.info, ui.strip, ui.heatmaps, ui.lowfreq, ui.row, ui.col, current]
    load.click(user_errors(h.load), picked, shown, api_name="channels")
    demo.load(user_errors(h.load), picked, shown, api_name=False)  # open with the default held-out image shown
    show_position = user_errors(h.show_position)
    ui.row.input(
        show_position, [ui.row, ui.col, current], [ui.image, ui.dist], api_name="position", trigger_mode="always_last"
    )
    ui.col.input(
        show_position, [ui.row, ui.col, current], [ui.image, ui.dist], api_name=False, trigger_mode="always_last"
    )
    ui.image.select(user_errors(h.click_position), [current], [ui.row, ui.col, ui.image, ui.dist], api_name=False)
