"""TokenBridge Lab app: watch TokenBridge sample, look inside its channels and its quantizer.

    python app/main.py                        # the embedded default (assets/), http://127.0.0.1:7860
    python app/main.py --vae kl16.ckpt --generator checkpoint-last.pth --device cuda

`build_demo(pipeline)` returns the Gradio Blocks without launching (tests use it); `main()` parses
the arguments, loads the pipeline once and serves it. Each tab is a module of `app.tabs` whose
``build(...)`` lays it out and wires its handlers, a few lines each calling `Pipeline` (and
`app.analysis` / `app.figures`); everything a session does lives in its `gr.State`.
Nothing is fetched from the internet: system fonts, no analytics, no share link unless asked.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry, no version check

if __package__ in (None, ""):  # run as `python app/main.py`: make `app` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gradio as gr  # noqa: E402

from app import analysis  # noqa: E402
from app.tabs import channels, edit, generate, model, quantizer  # noqa: E402
from app.widgets import STATE_TTL_S  # noqa: E402
from tokenbridge import cli  # noqa: E402
from tokenbridge.pipeline import Pipeline  # noqa: E402

DEFAULT_PORT = 7860
QUEUE_SIZE = 64
SESSION_CAPACITY = 100
"""Sessions whose state the server keeps (least recently used dropped first): bounds memory."""
CSS = """
#preview img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }
#channels-image img, .pixelated img { image-rendering: pixelated; }
"""
"""The streamed preview is sent at its own size and scaled up by the browser (no blur)."""


def theme() -> gr.themes.Base:
    """Gradio's default look with system fonts only (nothing loaded from a font CDN)."""
    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "Consolas", "monospace"]
    )


def build_demo(pipeline: Pipeline, calibration_images: int = 64) -> gr.Blocks:
    """The Gradio app for ``pipeline`` (not launched). ``calibration_images``: training shapes
    encoded once (on first use) for the per-channel statistics of the Channels/Quantizer tabs."""
    calibration = analysis.Calibration(pipeline, calibration_images)
    with gr.Blocks(title="TokenBridge Lab", analytics_enabled=False) as demo:
        gr.Markdown(
            "# TokenBridge Lab\nMasked generation over post-training-quantized VAE latents with a "
            "channel-wise autoregressive head "
            "([arXiv 2503.16430](https://arxiv.org/abs/2503.16430))."
        )
        session = gr.State(None, time_to_live=STATE_TTL_S)  # the Generate tab's run, read by Edit and Channels
        with gr.Tab("Generate", id="generate"):
            generate.build(pipeline, session)
        with gr.Tab("Edit", id="edit"):
            edit.build(pipeline, session)
        with gr.Tab("Channels", id="channels"):
            channels.build(demo, pipeline, calibration, session)
        with gr.Tab("Quantizer", id="quantizer"):
            quantizer.build(pipeline, calibration)
        with gr.Tab("Model", id="model"):
            model.build(pipeline)
    return demo


# ------------------------------------------------------------------------------------------------
# Serving
# ------------------------------------------------------------------------------------------------


def servable_host(host: str) -> str:
    """``host`` when this machine can serve on it (checked by binding a free port), else OSError saying why."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, 0))
        except OSError as e:
            raise OSError(
                f"cannot serve on {host!r} ({e.strerror or e}): give an address of this machine, e.g. "
                f"127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
            ) from None
    return host


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


def launch(
    demo: gr.Blocks,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    concurrency: int = 2,
    quiet: bool = True,
) -> str:
    """Queue and start ``demo`` without blocking; returns the local URL (tests use this too)."""
    demo.queue(default_concurrency_limit=concurrency, max_size=QUEUE_SIZE)
    _, url, _ = demo.launch(
        server_name=host,
        server_port=port or first_free_port(host),
        share=share,
        prevent_thread_lock=True,
        quiet=quiet,
        show_error=False,
        theme=theme(),
        css=CSS,
        max_file_size=analysis.MAX_UPLOAD_BYTES,
        state_session_capacity=SESSION_CAPACITY,
        footer_links=["api", "settings"],
        run_history=False,
        ssr_mode=False,
        mcp_server=False,
    )
    return url


def parse_args(argv=None) -> argparse.Namespace:
    """The app's arguments, each checked (host, ports, device, weight files by content) before anything loads;
    ``args.port`` becomes the first free port from ``--port``."""
    p = cli.ArgumentParser(prog="python app/main.py", description="TokenBridge Lab: the interactive app.")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1, this machine only)")
    p.add_argument(
        "--port",
        type=cli.number(int, 1, 65535),
        default=DEFAULT_PORT,
        help="first port to try (default: 7860; the next free one is used if taken)",
    )
    p.add_argument("--device", type=cli.device, default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--vae", help="VAE weights (our .safetensors or the official kl16.ckpt) instead of the embedded")
    p.add_argument("--generator", help="generator weights (our .safetensors or an official checkpoint-last.pth)")
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link (off by default)")
    p.add_argument(
        "--concurrency", type=cli.number(int, 1), default=2, help="requests of one kind served at once (default 2)"
    )
    args = p.parse_args(argv)
    cli.check(p, "--host", servable_host, args.host)
    args.port = cli.check(p, "--port", first_free_port, args.host, args.port)
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
    url = launch(demo, args.host, args.port, args.share, args.concurrency)
    print(f"TokenBridge Lab is running on {url} (device {pipeline.device}); Ctrl+C to stop", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
