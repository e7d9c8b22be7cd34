"""The Model tab: the pipeline's presets, sizes, quantizer and weight sources (`Pipeline.describe`)."""

from __future__ import annotations

import gradio as gr

from app.model_card import describe_markdown
from tokenbridge.pipeline import Pipeline


def build(pipeline: Pipeline) -> None:
    """Lay the tab out (call inside ``gr.Tab("Model")``); it has no events."""
    card = describe_markdown(pipeline.describe())
    gr.Markdown(card["pipeline"], elem_id="model-card")
    with gr.Row():
        for name in ("generator", "vae", "quantizer"):
            with gr.Column():
                gr.Markdown(card[name], elem_id=f"model-{name}")
