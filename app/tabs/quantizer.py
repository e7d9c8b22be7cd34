"""The Quantizer tab: one image through encode -> quantize -> decode, for any levels B, assignment
rule and calibration: the three decodes, PSNRs, error maps, one channel's histogram against the
bins, and bin usage and entropy on the calibration batch. Endpoint ``/quantize``.
"""

from __future__ import annotations

import gradio as gr
import numpy as np

from app import analysis, figures
from app.state import choice, integer
from app.widgets import SOURCES, enlarge, image_picker, user_errors
from tokenbridge.pipeline import Pipeline
from tokenbridge.quantizer import ASSIGN_RULES, CALIBRATIONS
from tokenbridge.shapes import CLASS_NAMES

LEVELS_RANGE = (4, 256)
IMAGE_SOURCES = SOURCES[:2]  # a held-out image or an upload (no generated image)


def metrics_text(r: analysis.QuantizerReport, levels: int, assign: str, calibration_kind: str) -> str:
    """The report's PSNRs, latent error, out-of-range share and entropy, as Markdown."""
    stats = r.calibration_stats
    return (
        f"**PSNR vs original** · continuous latents: **{r.psnr_continuous:.2f} dB** · quantized "
        f"(B = {levels}, {assign}, {calibration_kind}): **{r.psnr_quantized:.2f} dB** · quantized vs "
        f"continuous reconstruction: {r.psnr_quantization:.2f} dB\n\n"
        f"latent MSE {r.latent_mse:.5f} · values outside ±r: {100 * r.image_stats.out_of_range:.2f}% (this "
        f"image), {100 * stats.out_of_range:.2f}% (calibration) · mean entropy "
        f"{float(stats.entropy_bits.mean()):.2f} of {np.log2(levels):.2f} bits"
    )


class Handlers:
    """The tab's event handler for one pipeline and its calibration batch."""

    def __init__(self, pipeline: Pipeline, calibration: analysis.Calibration):
        self.pipeline, self.calibration = pipeline, calibration

    def quantize(self, source, shape, number, upload, levels, assign, calibration_kind, channel) -> tuple:
        pipeline, calibration = self.pipeline, self.calibration
        image = analysis.picked_image(pipeline, choice("image source", source, IMAGE_SOURCES), shape, number, upload)
        levels = integer("levels B", levels, *LEVELS_RANGE)
        channel = int(choice("histogram channel", channel, [f"c{c}" for c in range(pipeline.num_channels)])[1:])
        r = analysis.quantizer_report(
            pipeline,
            calibration,
            image,
            levels,
            choice("rule", assign, ASSIGN_RULES),
            choice("calibration", calibration_kind, CALIBRATIONS),
        )
        q, stats = r.quantizer, r.calibration_stats
        err = {
            "|quantized − original|": np.abs(r.quantized.astype(float) - r.original).mean(-1),
            "|quantized − continuous|": np.abs(r.quantized.astype(float) - r.continuous).mean(-1),
        }
        hist = figures.bin_histogram(
            r.u_calibration[channel].numpy(),
            r.u_image[channel].numpy(),
            q.boundaries.numpy(),
            q.values.numpy(),
            q.config.std_range,
            f"channel c{channel}: normalized values and the B = {levels} bins",
        )
        usage = figures.bin_usage(
            stats.usage.numpy(),
            stats.entropy_bits.numpy(),
            levels,
            f"bin usage on the calibration batch ({calibration.count} training shapes)",
        )
        images = enlarge(r.original), enlarge(r.continuous), enlarge(r.quantized)
        note = analysis.photo_note(pipeline, source, r.psnr_continuous)
        return *images, metrics_text(r, levels, assign, calibration_kind), figures.error_maps(err), hist, usage, note


def build(pipeline: Pipeline, calibration: analysis.Calibration) -> None:
    """Lay the tab out and wire its event (call inside ``gr.Tab("Quantizer")``)."""
    gr.Markdown(
        "Post-training, dimension-wise quantization: every latent value is replaced by one "
        "of B Gaussian-bin values. Pick an image and the quantizer's settings."
    )
    first_channel = analysis.latent_order(pipeline)[0]
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            picker = image_picker(IMAGE_SOURCES, shape=CLASS_NAMES[0])
            levels = gr.Slider(
                *LEVELS_RANGE, value=min(max(pipeline.quantizer.levels, 4), 256), step=1, label="levels B"
            )
            assign = gr.Radio(list(ASSIGN_RULES), value="nearest", label="assignment rule")
            calibration_kind = gr.Radio(
                list(CALIBRATIONS), value="fixed", label="calibration (per_channel: fitted on training shapes)"
            )
            channel = gr.Dropdown(
                [f"c{c}" for c in range(pipeline.num_channels)], value=f"c{first_channel}", label="histogram channel"
            )
            button = gr.Button("Quantize", variant="primary", elem_id="quantize-btn")
        with gr.Column(scale=3):
            with gr.Row():
                original = gr.Image(label="original", interactive=False, format="png", height=220)
                continuous = gr.Image(label="continuous latents", interactive=False, format="png", height=220)
                quantized = gr.Image(label="quantized latents", interactive=False, format="png", height=220)
            note = gr.Markdown("", elem_id="quantizer-note")  # a photo on the embedded VAE: why it blurs
            metrics = gr.Markdown("", label="metrics", elem_id="quantizer-metrics")
            error = gr.Plot(label="error maps")
            histogram = gr.Plot(label="histogram and bin edges")
            usage = gr.Plot(label="bin usage and entropy")
    inputs = [picker.source, picker.shape, picker.sample, picker.upload, levels, assign, calibration_kind, channel]
    button.click(
        user_errors(Handlers(pipeline, calibration).quantize),
        inputs,
        [original, continuous, quantized, metrics, error, histogram, usage, note],
        api_name="quantize",
    )
