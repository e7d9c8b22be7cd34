"""The Edit tab: re-sample a region of an image's tokens, the other tokens kept as known context.

Pick an image (held-out image of the generator's dataset, upload, or an image of the last Generate run) and press
Load; select token-grid cells by clicking the image (a click toggles a cell) or by typing them
(``ROWS,COLUMNS`` half-open ranges as in ``python -m tokenbridge edit --region``, several joined
by ``;``, e.g. ``2:6,2:6; 0,7``); pick a class, order and seed; "Edit" streams the region's steps
(`Pipeline.edit_steps`) and ends with before / after, the changed cells outlined; the after image
is the decode pasted back into the original pixels with a feathered edge (`tokenbridge.compositing`,
as `Pipeline.edit`), unless the raw decode is asked for. Input errors of the image and cell
controls are said in the tab's info line, and the image stays (`app.widgets.said_in_info`).

`build(pipeline, session)` is called by `app.main.build_demo` inside the tab; ``session`` is the
Generate tab's `gr.State` (its last run).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import SimpleNamespace

import gradio as gr
import numpy as np
import torch

from app import analysis, figures
from app.state import MAX_SEED, UNCONDITIONAL, choice, class_index, integer, knob_value, last_generated
from app.widgets import SOURCES, STATE_TTL_S, enlarge, image_picker, said_in_info, sampler_control
from tokenbridge.compositing import FEATHER, paste_back
from tokenbridge.data import from_uint8_image, to_uint8_image
from tokenbridge.pictures import OUTLINE, outline
from tokenbridge.pipeline import Pipeline
from tokenbridge.regions import cells_mask, parse_cells

SELECTED, CHANGED, GRID_LINE = (245, 133, 24), OUTLINE, (255, 255, 255)
FEATHER_RANGE = (0, 16)
INTRO = "Pick an image and press **Load**, then click cells to select the region to re-sample."
NO_CELL = "no cell selected: click cells on the image (or type rows,columns such as 2:6,2:6) before pressing Edit"
NO_IMAGE = "no image loaded: pick an image and press Load (Edit tab) first"


@dataclass
class EditImage:
    """The tab's current image (per session): its pixels, its tokens, and the last edit's result."""

    source: str
    image: np.ndarray  # uint8 [H, W, 3]: the pixels an edit is pasted back into
    tokens: torch.Tensor  # [N, C] indices, VAE channel order (the image's, as encoded or generated)
    result: EditImage | None = None
    job: object | None = None  # the edit streaming now; a newer Edit in the session stops it


# ------------------------------------------------------------------------------------------------
# Regions as text: "ROWS,COLUMNS; ROWS,COLUMNS", each read by `tokenbridge.regions`
# ------------------------------------------------------------------------------------------------


def parse_region(text: str | None, grid: int) -> np.ndarray:
    """The cells ``text`` selects, bool ``[grid, grid]``: the union of its ``;``-joined parts;
    ValueError that quotes a bad part."""
    selected = np.zeros((grid, grid), dtype=bool)
    for part in re.split(r"[;\n]", text or ""):
        if part.strip():
            selected |= cells_mask(parse_cells(part.strip(), grid), grid).numpy()
    return selected


def format_region(selected: np.ndarray) -> str:
    """The shortest-ish text for a selection: rectangles of equal column runs in consecutive rows."""
    rects, open_ = [], {}  # open_: (c0, c1) -> first row of a rectangle still growing
    for r, row in enumerate(np.vstack([selected, np.zeros((1, selected.shape[1]), bool)])):
        runs = set(_runs(row))
        for run in [run for run in open_ if run not in runs]:
            rects.append((open_.pop(run), r, *run))
        for run in runs - set(open_):
            open_[run] = r
    span = lambda a, b: str(a) if b == a + 1 else f"{a}:{b}"  # noqa: E731
    return "; ".join(f"{span(r0, r1)},{span(c0, c1)}" for r0, r1, c0, c1 in sorted(rects, key=lambda x: (x[0], x[2])))


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


# ------------------------------------------------------------------------------------------------
# Drawing on the enlarged image
# ------------------------------------------------------------------------------------------------


def _edges(size: int, grid: int) -> np.ndarray:
    return (np.arange(grid + 1) * size) // grid


def with_grid(image_HW3: np.ndarray, grid: int, selected: np.ndarray) -> np.ndarray:
    """Enlarged image, the token grid drawn over it, selected cells tinted and outlined."""
    big = enlarge(image_HW3).astype(np.float32)
    e = _edges(big.shape[0], grid)
    cell = np.searchsorted(e, np.arange(big.shape[0]), side="right") - 1  # pixel -> cell index
    tint = selected[cell[:, None], cell[None, :]]
    big[tint] = 0.6 * big[tint] + 0.4 * np.array(SELECTED)
    for p in np.minimum(e, big.shape[0] - 1):
        big[p, :] = 0.55 * big[p, :] + 0.45 * np.array(GRID_LINE)
        big[:, p] = 0.55 * big[:, p] + 0.45 * np.array(GRID_LINE)
    return outline(big.round().astype(np.uint8), grid, selected, SELECTED)


def cell_at(index, size: int, grid: int) -> tuple[int, int]:
    """The (row, col) under pixel ``index`` = (x, y) of an enlarged image ``size`` pixels wide."""
    x, y = (min(max(int(v), 0), size - 1) for v in index)
    e = _edges(size, grid)
    return int(np.searchsorted(e, y, side="right") - 1), int(np.searchsorted(e, x, side="right") - 1)


# ------------------------------------------------------------------------------------------------
# Handlers
# ------------------------------------------------------------------------------------------------


class Handlers:
    """The tab's event handlers for one pipeline (state lives in the session's `gr.State`s)."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.grid = pipeline.generator.config.grid_size if pipeline.generator is not None else 1

    def _require_generator(self) -> None:
        if self.pipeline.generator is None:
            raise ValueError("this pipeline has no generator: start the app with --generator PATH to edit")

    def pick(self, source, shape, sample, upload, generated, session) -> EditImage:
        self._require_generator()
        choice("image source", source, SOURCES)
        if source == "generated image":
            run, k = last_generated(session, generated)
            return EditImage(
                f"generated image {k} (seed {run.settings.seed + k - 1})",
                run.final_images()[k - 1],
                run.tokens[k - 1].clone(),
            )
        image = analysis.picked_image(self.pipeline, source, shape, sample, upload)
        name = analysis.picked_name(self.pipeline, source, shape, sample)
        return EditImage(name, to_uint8_image(image), self.pipeline.encode_tokens(image[None])[0].long())

    def load(self, source, shape, sample, upload, generated, region, session):
        current = self.pick(source, shape, sample, upload, generated, session)
        return self._shown(current, region), self._info(current), current

    def use_result(self, region, current):
        if current is None or current.result is None:
            raise ValueError("nothing edited yet in this session: press Edit first")
        current = current.result
        return self._shown(current, region), self._info(current), current

    def _info(self, current: EditImage | None) -> str:
        if current is None:
            return INTRO
        n = current.tokens.shape[0]
        return (
            f"**{current.source}** · {self.grid}×{self.grid} = {n} tokens · click cells to select or unselect "
            f"them, or type them below"
        )

    def _shown(self, current: EditImage | None, region) -> np.ndarray | None:
        selected = parse_region(region, self.grid)
        return None if current is None else with_grid(current.image, self.grid, selected)

    def redraw(self, region, current):
        return self._shown(current, region), self._info(current)

    def toggle(self, region, current, evt: gr.SelectData):
        if current is None:
            raise ValueError(NO_IMAGE)
        selected = parse_region(region, self.grid)
        row, col = cell_at(evt.index, enlarge(current.image).shape[0], self.grid)
        selected[row, col] = not selected[row, col]
        text = format_region(selected)
        return text, self._shown(current, text), self._info(current)

    def invert(self, region, current):
        text = format_region(~parse_region(region, self.grid))
        return text, self._shown(current, text), self._info(current)

    def clear(self, current):
        return "", self._shown(current, ""), self._info(current)

    def settings(self, region, class_name, order, seed, steps, cfg, current) -> tuple[np.ndarray, dict]:
        """The checked region ``[grid, grid]`` and `Pipeline.edit_steps` keywords."""
        self._require_generator()
        if current is None:
            raise ValueError(NO_IMAGE)
        selected = parse_region(region, self.grid)
        if not selected.any():
            raise ValueError(NO_CELL)
        label, cells = class_index(self.pipeline, class_name), self.grid * self.grid
        steps = knob_value("num_steps", steps, cells)
        return selected, dict(
            labels=None if label is None else [label],
            seed=integer("seed", seed, 0, MAX_SEED),
            order=knob_value("order", order, cells),
            num_steps=min(steps, int(selected.sum())),
            cfg=knob_value("cfg", cfg, cells),
        )

    def edit(self, region, class_name, order, seed, steps, cfg, current, feather=FEATHER, paste=True):
        selected, kw = self.settings(region, class_name, order, seed, steps, cfg, current)
        pasted = integer("feather", feather, *FEATHER_RANGE) if paste else None
        run = self.pipeline.edit_steps(current.tokens[None], torch.from_numpy(selected), preview=True, **kw)
        current.job = job = object()
        commit_step = np.full(self.grid * self.grid, -1, dtype=np.int16)
        commit_score = np.full(self.grid * self.grid, np.nan, dtype=np.float32)
        before = outline(enlarge(current.image), self.grid, selected, SELECTED)
        for out in run:
            if current.job is not job:  # a newer Edit in this session took over
                run.close()
                return
            s = out.step
            committed, mask = s.committed[0].cpu().numpy(), s.mask[0].cpu().numpy()
            score = s.confidence[0].float().cpu().numpy()
            commit_step[committed], commit_score[committed] = s.step, score[committed]
            status = self._status(s, selected, kw, committed, mask)
            known = commit_step >= 0
            maps = (
                figures.committed_map(mask, committed, commit_step, self.grid, "positions (outside the region: kept)"),
                figures.confidence_map(
                    np.where(known, commit_score, score), known, committed, self.grid, "confidence in the region"
                ),
            )
            after = None
            if s.step == s.num_steps - 1:
                before, after, status = self._finish(current, s.tokens[0].cpu(), out.preview, selected, pasted, status)
            shown = outline(enlarge(to_uint8_image(out.preview)[0]), self.grid, selected, SELECTED)
            yield shown, status, *maps, before, after

    def _status(self, s, selected, kw, committed, mask) -> str:
        total, t = int(selected.sum()), s.step + 1
        bar = "▰" * round(10 * t / s.num_steps)
        return (
            f"**step {t} / {s.num_steps}** {bar.ljust(10, '▱')} · {int(mask.sum())} of {total} selected cells "
            f"still masked · {int(committed.sum())} committed at this step · CFG w = {s.cfg:.2f}"
        )

    def _finish(
        self,
        current: EditImage,
        tokens: torch.Tensor,
        decoded: torch.Tensor,
        selected: np.ndarray,
        feather: int | None,
        status: str,
    ) -> tuple:
        """Before / after with the changed cells outlined, after = ``decoded`` ``[1, 3, H, W]`` pasted
        back into the image (``feather`` None: the raw decode); the result kept for "Use the result"."""
        if feather is not None:
            decoded = paste_back(from_uint8_image(current.image)[None], decoded, torch.from_numpy(selected), feather)
        after = to_uint8_image(decoded)[0]
        changed = (tokens != current.tokens).any(dim=-1).reshape(self.grid, self.grid).numpy()
        current.result = EditImage(f"the edit of {current.source}", after, tokens.long())
        kept = "the raw decode" if feather is None else f"pasted back, feather {feather} px"
        status += f" · **done**: {int(changed.sum())} cell(s) changed (outlined red) · {kept}"
        return (
            outline(enlarge(current.image), self.grid, changed, CHANGED),
            outline(enlarge(after), self.grid, changed, CHANGED),
            status,
        )


# ------------------------------------------------------------------------------------------------
# Layout and events
# ------------------------------------------------------------------------------------------------


def _controls(pipeline: Pipeline) -> SimpleNamespace:
    """The left column: image source, cell selection and the sampler settings."""
    classes = [UNCONDITIONAL, *pipeline.classes]
    seq_len = pipeline.generator.config.seq_len if pipeline.generator is not None else 2
    ui = image_picker(elem_id="edit-source")
    ui.load = gr.Button("Load", elem_id="edit-load")
    ui.region = gr.Textbox(
        "",
        label="selected cells: ROWS,COLUMNS; ... (click the image, or type and press Enter)",
        placeholder="e.g. 2:6,2:6",
        elem_id="edit-region",
    )
    with gr.Row():
        ui.clear = gr.Button("Clear", size="sm", min_width=80, elem_id="edit-clear")
        ui.invert = gr.Button("Invert (outpaint)", size="sm", min_width=80, elem_id="edit-invert")
    ui.class_name = gr.Dropdown(
        classes, value=classes[min(9, len(classes) - 1)], label="class of the region", elem_id="edit-class"
    )
    ui.order = sampler_control("order", seq_len, elem_id="edit-order")
    ui.seed = gr.Number(0, label="seed", precision=0, minimum=0, maximum=MAX_SEED)
    ui.steps = sampler_control(
        "num_steps", seq_len, value=min(8, seq_len), label="steps (at most one per selected cell)"
    )
    ui.cfg = sampler_control("cfg", seq_len)
    ui.paste = gr.Checkbox(
        True,
        label="paste the original back outside the region (off: the raw decode, which "
        "changes pixels everywhere a little)",
        elem_id="edit-paste",
    )
    ui.feather = gr.Slider(
        *FEATHER_RANGE,
        value=FEATHER,
        step=1,
        label="feather (pixels of blending outside the region)",
        elem_id="edit-feather",
    )
    with gr.Row():
        ui.edit = gr.Button("Edit", variant="primary", min_width=80, elem_id="edit-btn")
        ui.again = gr.Button("Use the result", min_width=80, elem_id="edit-again")
    return ui


def _outputs(ui: SimpleNamespace) -> None:
    """The right column: the image to click, the streamed steps, before / after."""
    ui.info = gr.Markdown(INTRO, elem_id="edit-info")
    image = dict(interactive=False, format="png", height=260, elem_classes=["pixelated"])
    with gr.Row():
        ui.image = gr.Image(label="click cells to select", elem_id="edit-image", **image)
        ui.before = gr.Image(label="before (changed cells outlined)", elem_id="edit-before", **image)
        ui.after = gr.Image(label="after", elem_id="edit-after", **image)
    ui.status = gr.Markdown("", elem_id="edit-status")
    with gr.Row():
        ui.preview = gr.Image(label="preview", elem_id="edit-preview", **image)
        ui.committed = gr.Plot(label="committed / masked", elem_id="edit-committed")
        ui.confidence = gr.Plot(label="confidence", elem_id="edit-confidence")
    gr.Markdown(figures.MAPS_NOTE, elem_classes=["note"])


def build(pipeline: Pipeline, session: gr.State) -> None:
    """Lay the tab out and wire its events (call inside ``gr.Tab("Edit")``); endpoints
    ``/edit_load`` and ``/edit`` (``/edit_result``: continue from the last edit)."""
    h = Handlers(pipeline)
    if pipeline.generator is None:
        gr.Markdown(
            "**No generator loaded**: editing re-samples tokens with the generator. Start the app with "
            "`--generator PATH`."
        )
    current = gr.State(None, time_to_live=STATE_TTL_S)
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            ui = _controls(pipeline)
        with gr.Column(scale=3):
            _outputs(ui)
    picked = [ui.source, ui.shape, ui.sample, ui.upload, ui.generated, ui.region, session]
    loaded = [ui.image, ui.info, current]
    ui.load.click(said_in_info(h.load, loaded, ui.info), picked, loaded, api_name="edit_load")
    ui.again.click(said_in_info(h.use_result, loaded, ui.info), [ui.region, current], loaded, api_name="edit_result")
    cells = [ui.region, ui.image, ui.info]
    ui.image.select(said_in_info(h.toggle, cells, ui.info), [ui.region, current], cells, api_name=False)
    for event in (ui.region.submit, ui.region.blur):
        event(
            said_in_info(h.redraw, cells[1:], ui.info),
            [ui.region, current],
            cells[1:],
            api_name=False,
            trigger_mode="always_last",
        )
    ui.clear.click(h.clear, [current], cells, api_name=False)
    ui.invert.click(said_in_info(h.invert, cells, ui.info), [ui.region, current], cells, api_name=False)
    settings = [ui.region, ui.class_name, ui.order, ui.seed, ui.steps, ui.cfg, current, ui.feather, ui.paste]
    shown = [ui.preview, ui.status, ui.committed, ui.confidence, ui.before, ui.after]
    ui.edit.click(
        said_in_info(h.edit, shown, ui.status),
        settings,
        shown,
        api_name="edit",
        concurrency_id="sampler",
        show_progress="minimal",
    )
