"""The Gradio app through its HTTP API (gradio_client), served in-process on a free port.

The pipeline is built in code (random small VAE + `tokenbridge_tiny`, seeded), so these tests
need no shipped weights; images are noise, but what the app reports about them is exact.
"""

import base64
import concurrent.futures
import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from app import analysis
from app.main import build_demo, launch, load_pipeline, parse_args
from app.state import PREVIEW_BUDGET_BYTES, Run, Settings
from tokenbridge import generator as generators
from tokenbridge import vae as vaes
from tokenbridge.checkpoints import save_model
from tokenbridge.compositing import paste_back
from tokenbridge.data import from_uint8_image, to_uint8_image
from tokenbridge.pipeline import EMBEDDED, Pipeline
from tokenbridge.sampling import KNOBS, SamplerSettings
from tokenbridge.shapes import CLASS_NAMES

gradio_client = pytest.importorskip("gradio_client")
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*")  # inside gradio
AppError = gradio_client.exceptions.AppError
ROOT = Path(__file__).resolve().parents[1]

# class, seed, steps, cfg, cfg schedule, cfg mode, temperature, order, gumbel, batch, image shown
GOOD = ["circle", 0, 4, 3.0, "linear", "feature", 1.0, "confidence", 0.0, 2, 1]


def tiny_pipeline() -> Pipeline:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        vae, gen = vaes.small(), generators.tokenbridge_tiny(class_num=10)
    return Pipeline(vae, gen.eval(), classes=CLASS_NAMES, device="cpu")


def controls(**changes) -> list:
    names = [
        "class_name",
        "seed",
        "steps",
        "cfg",
        "cfg_schedule",
        "cfg_mode",
        "temperature",
        "sampling_order",
        "gumbel",
        "batch",
        "view",
    ]
    values = dict(zip(names, GOOD))
    values.update(changes)
    return [values[n] for n in names]


def png(path) -> np.ndarray:
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def gallery_images(gallery) -> list[np.ndarray]:
    return [png(item["image"] if isinstance(item["image"], str) else item["image"]["path"]) for item in gallery]


def assert_same_images(a, b) -> None:
    """Equal up to one 8-bit level (float summation order may differ between threads/batches)."""
    a, b = np.asarray(a, dtype=int), np.asarray(b, dtype=int)
    assert a.shape == b.shape and np.abs(a - b).max() <= 1 and (a != b).mean() < 0.01


def plot_data(plot) -> list[dict]:
    return json.loads(plot["plot"])["data"]


def array(value) -> np.ndarray:
    """A plotly JSON array: a plain list, or numpy data as ``{"bdata": base64, "dtype", "shape"}``."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return flat.reshape([int(v) for v in str(shape).split(",")]) if shape else flat
    return np.array(value, dtype=float)


@pytest.fixture(scope="module")
def pipeline():
    return tiny_pipeline()


@pytest.fixture(scope="module")
def server(pipeline):
    demo = build_demo(pipeline, calibration_images=8)
    url = launch(demo, concurrency=2)
    yield url
    demo.close()


@pytest.fixture
def client(server):
    """A fresh client = a fresh session (its own gr.State)."""
    return gradio_client.Client(server, verbose=False)


def expected_images(pipeline, label, seed, batch, **sampler) -> np.ndarray:
    return to_uint8_image(pipeline.generate([label] * batch, seed=seed, batch_size=batch, **sampler))


SAMPLER = dict(
    num_steps=4, cfg=3.0, cfg_schedule="linear", cfg_mode="feature", temperature=1.0, order="confidence", gumbel=0.0
)


# ------------------------------------------------------------------------------------------------
# Generate tab
# ------------------------------------------------------------------------------------------------


def test_endpoints_are_named(client):
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {
        "/generate",
        "/step",
        "/show_step",
        "/channels",
        "/position",
        "/quantize",
        "/edit_load",
        "/edit",
        "/edit_result",
    } <= names


NON_DEFAULT = [  # every setting away from SAMPLER_DEFAULTS in one of the two, so none can be dropped
    dict(sampling_order="random", cfg=1.5, cfg_schedule="constant"),
    dict(cfg_mode="logit", temperature=0.8, gumbel=2.0, seed=3),
]


@pytest.mark.parametrize("changes", NON_DEFAULT, ids=["random-constant", "logit-gumbel"])
def test_generate_streams_every_step_and_ends_with_the_pipelines_images(client, pipeline, changes):
    job = client.submit(*controls(**changes), api_name="/generate")
    final = job.result(timeout=300)
    outputs = job.outputs()
    assert len(outputs) == 4, "one streamed update per sampling step"
    for k, out in enumerate(outputs, start=1):
        assert f"step {k} / 4" in out[1]
        assert png(out[0]).shape[2] == 3  # a decoded preview every step
    assert all(not out[6] for out in outputs[:-1]), "the gallery fills only at the end"
    assert "done" in final[1] and "0 of 64 positions still masked" in final[1]
    images = gallery_images(final[6])
    assert [im.shape for im in images] == [(64, 64, 3)] * 2
    names = {"sampling_order": "order"}
    sampler = {**SAMPLER, **{names.get(k, k): v for k, v in changes.items() if k != "seed"}}
    want = expected_images(pipeline, 0, changes.get("seed", 0), 2, **sampler)
    assert_same_images(np.stack(images), want)


def test_step_maps_agree_with_the_status(client):
    out = client.predict(*controls(), api_name="/step")
    committed = int(re.search(r"(\d+) committed at this step", out[1]).group(1))
    heat = plot_data(out[2])[0]
    states = array(heat["z"])
    assert states.shape == (8, 8)
    assert int((states == 2).sum()) == committed > 0, "orange cells = positions committed at this step"
    assert int((states == 0).sum()) == 64 - committed
    conf = array(plot_data(out[3])[0]["z"])
    assert np.isfinite(conf).all(), "confidence order scores every masked position at step 1"


def test_confidence_map_keeps_the_scores_of_every_cell_committed_so_far(client):
    client.predict(*controls(sampling_order="random"), api_name="/step")
    out = client.predict(*controls(sampling_order="random"), api_name="/step")
    states, conf = (array(plot_data(out[k])[0]["z"]) for k in (2, 3))
    assert (states == 1).any() and (states == 2).any(), "committed at step 1 and at step 2"
    assert np.array_equal(np.isfinite(conf), states > 0), "random order: scored = committed up to this step"


def test_step_advances_one_iteration_per_session_and_scrubs_back(server, pipeline):
    a, b = gradio_client.Client(server, verbose=False), gradio_client.Client(server, verbose=False)
    assert "step 1 / 4" in a.predict(*controls(), api_name="/step")[1]
    assert "step 2 / 4" in a.predict(*controls(), api_name="/step")[1]
    assert "step 1 / 4" in b.predict(*controls(), api_name="/step")[1], "sessions do not share runs"
    assert "step 3 / 4" in a.predict(*controls(), api_name="/step")[1]
    last = a.predict(*controls(), api_name="/step")
    assert "step 4 / 4" in last[1] and "done" in last[1]
    assert_same_images(np.stack(gallery_images(last[6])), expected_images(pipeline, 0, 0, 2, **SAMPLER))
    back = a.predict(2, 2, api_name="/show_step")
    assert "step 2 / 4" in back[1] and "image 2" in json.loads(back[2]["plot"])["layout"]["title"]["text"]
    assert "step 1 / 4" in a.predict(*controls(), api_name="/step")[1], "Step after the end starts a new run"
    assert "step 1 / 4" in a.predict(*controls(seed=5), api_name="/step")[1], "new settings start a new run"


def test_run_drops_old_previews_beyond_the_budget_and_decodes_them_again(pipeline, monkeypatch):
    import app.state

    settings = Settings.parse(pipeline, "heart", 3, 4, 2.0, "constant", "logit", 1.0, "random", 0.0, 1)
    full = Run(pipeline, settings)
    while not full.finished:
        full.advance()
    monkeypatch.setattr(app.state, "PREVIEW_BUDGET_BYTES", 1)
    lean = Run(pipeline, settings)
    while not lean.finished:
        lean.advance()
    assert [r.preview is None for r in lean.records] == [True, True, True, False]
    for t in range(4):
        assert_same_images(lean.preview(t), full.preview(t))
    assert PREVIEW_BUDGET_BYTES >= 16 * 16 * 64 * 64 * 3, "the embedded model's previews fit the budget"


# ------------------------------------------------------------------------------------------------
# Channels and Quantizer tabs
# ------------------------------------------------------------------------------------------------


def test_channels_of_a_shapes_sample(client, pipeline):
    out = client.predict("held-out image", "star", 2, None, 1, api_name="/channels")
    strip = gallery_images(out[3])
    assert len(strip) == 16 and strip[0].shape == (64, 64, 3)
    assert [item["caption"] for item in out[3]][:2] == ["1: c0", "2: c1"]
    assert len(plot_data(out[4])) == 16  # one heatmap per channel
    assert len(plot_data(out[5])) == 2  # low-frequency ratio: this image and the calibration batch
    assert "recorded while sampling" in json.dumps(json.loads(out[1]["plot"]))
    # the last strip image keeps every channel: it is the plain reconstruction
    from tokenbridge.shapes import HELDOUT_SEED, ShapesDataset

    image = ShapesDataset(1, seed=HELDOUT_SEED, offset=3 + 10 * 2)[0][0]
    assert_same_images(strip[-1], to_uint8_image(pipeline.reconstruct(image[None], quantized=False))[0])


def test_channels_tab_opens_with_the_default_shapes_sample(pipeline):
    """The page's load event fills the Channels panels with the tab's default image (no Load pressed)."""
    demo = build_demo(pipeline, calibration_images=4)
    on_open = [f for f in demo.fns.values() if any(event == "load" for _, event in f.targets)]
    loads = [f for f in on_open if any(getattr(o, "elem_id", None) == "channels-image" for o in f.outputs)]
    assert len(loads) == 1, "one load event shows the Channels image"
    inputs = [block.value for block in loads[0].inputs]
    assert inputs[:3] == ["held-out image", CLASS_NAMES[3], 0]  # the tab's own defaults
    out = loads[0].fn(*inputs)
    from tokenbridge.shapes import HELDOUT_SEED, ShapesDataset

    image = ShapesDataset(1, seed=HELDOUT_SEED, offset=3)[0][0]  # held-out image 0 of class 3
    assert np.array_equal(out[-1].image, to_uint8_image(image)) and out[0].shape == (256, 256, 3)
    assert f"held-out shapes image 0 of {CLASS_NAMES[3]!r}" in out[2] and len(out[3]) == 16
    demo.close()


def test_channels_of_a_generated_image_show_the_sampling_distributions(client):
    client.predict(*controls(sampling_order="random", seed=7), api_name="/generate")
    out = client.predict("generated image", "star", 0, None, 2, api_name="/channels")
    assert "generated image 2 (seed 8)" in out[2]
    bars = plot_data(out[1])
    assert len(bars) == 16
    for bar in bars:
        probs = array(bar["y"])
        assert probs.shape == (64,) and abs(probs.sum() - 1) < 1e-2
    other = plot_data(client.predict(0, 7, api_name="/position")[1])
    assert not np.array_equal(array(other[0]["y"]), array(bars[0]["y"])), "another position, another distribution"


def quantize(client, levels, assign="nearest", calibration="fixed", source="held-out image", upload=None):
    return client.predict(source, "circle", 1, upload, levels, assign, calibration, "c3", api_name="/quantize")


def psnrs(metrics: str) -> list[float]:
    return [float(v) for v in re.findall(r"(-?\d+\.\d+) dB", metrics)]


def test_quantizer_more_levels_means_less_quantization_error(client):
    coarse, fine = quantize(client, 4), quantize(client, 256, "interval", "per_channel")
    for out in (coarse, fine):
        assert all(png(p).shape == (256, 256, 3) for p in out[:3])
        assert len(psnrs(out[3])) == 3
    assert psnrs(fine[3])[2] > psnrs(coarse[3])[2] + 10, "B = 256 reconstructs the continuous decode far better"
    assert psnrs(fine[3])[0] == psnrs(coarse[3])[0], "the continuous reconstruction does not depend on B"
    hist = plot_data(fine[5])
    edges = next(t for t in hist if t["name"].startswith("bin edges"))
    assert edges["name"] == "bin edges (257)"
    assert len(array(plot_data(coarse[6])[1]["y"])) == 16  # entropy per channel


def test_upload_any_mode_and_orientation(client, tmp_path):
    rotated = tmp_path / "rotated.jpg"  # stored landscape red | blue, EXIF says: turn 90° clockwise
    pixels = np.zeros((30, 60, 3), np.uint8)
    pixels[:, :30] = (255, 0, 0)
    pixels[:, 30:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(rotated, exif=exif, quality=95)
    shown = png(quantize(client, 64, source="uploaded image", upload=gradio_client.handle_file(str(rotated)))[0])
    top, bottom = shown[10, 128].astype(int), shown[245, 128].astype(int)
    assert top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0], "EXIF orientation applied: red on top"
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (300, 200), (255, 0, 0, 128)).save(rgba)
    grey = tmp_path / "grey.jpg"
    Image.new("L", (90, 120), 70).save(grey)
    for path in (rgba, grey):
        out = quantize(client, 64, source="uploaded image", upload=gradio_client.handle_file(str(path)))
        assert png(out[0]).shape == (256, 256, 3)
        assert out[7] == "", "a VAE given on the command line: no note about the embedded one"
    out = client.predict("uploaded image", "star", 0, gradio_client.handle_file(str(grey)), 1, api_name="/channels")
    assert "uploaded image" in out[2]


# ------------------------------------------------------------------------------------------------
# Edit tab
# ------------------------------------------------------------------------------------------------

# cells, class of the region, order, seed, steps, CFG scale, feather, paste back
EDIT = ["2:6,2:6", "heart", "confidence", 0, 4, 3.0, 4, True]


def edit_load(client, source="held-out image", shape="star", number=2, generated=1, region="2:6,2:6"):
    return client.predict(source, shape, number, None, generated, region, api_name="/edit_load")


def region(text: str) -> torch.Tensor:
    from app.tabs.edit import parse_region

    return torch.from_numpy(parse_region(text, 8))


def edited_image(pipeline, tokens_NC, cells: str, original=None, feather=4, **kw) -> tuple[np.ndarray, int]:
    """The pipeline's edit of ``tokens_NC``, as the app shows it (enlarged ×4): pasted back into the
    uint8 image ``original`` (None: the raw decode), as `Pipeline.edit` does; and the cells changed."""
    edited = pipeline.edit_tokens(tokens_NC[None], region(cells), **kw)
    decoded = pipeline.decode(pipeline.tokens_to_latents(edited.long()))
    if original is not None:
        decoded = paste_back(from_uint8_image(original)[None], decoded, region(cells), feather)
    image = to_uint8_image(decoded)[0]
    changed = int((edited[0].long() != tokens_NC.long()).any(dim=-1).sum())
    return image.repeat(4, axis=0).repeat(4, axis=1), changed


def test_region_text_round_trips():
    from app.tabs.edit import format_region, parse_region

    assert format_region(parse_region("2:6,2:6", 8)) == "2:6,2:6"
    assert format_region(parse_region(":,3; 0,0", 8)) == "0,0; 0:8,3"
    rng = np.random.default_rng(0)
    for _ in range(50):
        cells = rng.random((8, 8)) < 0.3
        assert np.array_equal(parse_region(format_region(cells), 8), cells)
    for bad, message in [("2:9,0:3", "leaves the 8×8 token grid"), ("2-6", "ROWS,COLUMNS"), ("x,1", "cannot read")]:
        with pytest.raises(ValueError, match=message):
            parse_region(bad, 8)


def test_edit_streams_the_region_and_ends_with_the_pipelines_edit(client, pipeline):
    from app import analysis

    shown = edit_load(client)
    assert png(shown[0]).shape == (256, 256, 3) and "held-out shapes image 2 of 'star'" in shown[1]
    job = client.submit(*EDIT, api_name="/edit")
    final = job.result(timeout=300)
    outputs = job.outputs()
    assert len(outputs) == 4, "one streamed update per step"
    for k, out in enumerate(outputs, start=1):
        assert f"step {k} / 4" in out[1] and png(out[0]).shape == (256, 256, 3)
    assert all(out[5] is None for out in outputs[:-1]), "the after image comes at the end"
    assert "0 of 16 selected cells still masked" in final[1] and "done" in final[1]
    states = array(plot_data(final[2])[0]["z"])
    assert (states[region("2:6,2:6").numpy()] > 0).all() and (states == 0).sum() == 0
    image = analysis.shapes_image(pipeline, "star", 2)
    tokens = pipeline.encode_tokens(image[None])[0]
    kw = dict(labels=[8], seed=0, num_steps=4, cfg=3.0, order="confidence")
    want, changed = edited_image(pipeline, tokens, "2:6,2:6", to_uint8_image(image), **kw)
    assert f"{changed} cell(s) changed" in final[1] and changed > 8 and "pasted back, feather 4 px" in final[1]
    before, after = png(final[4]), png(final[5])
    assert before.shape == after.shape == (256, 256, 3)
    assert np.array_equal(before[:48], to_uint8_image(image)[:12].repeat(4, 0).repeat(4, 1)), "the loaded image"
    assert np.array_equal(after[:48], before[:48]), "farther than the feather from the region: kept exactly"
    assert_same_images(after[:64], want[:64])  # rows 0-1 of the grid: no outline there
    assert_same_images(after[96:160, 96:160], want[96:160, 96:160])  # inside the region
    raw = client.predict(*EDIT[:-1], False, api_name="/edit")
    want_raw, _ = edited_image(pipeline, tokens, "2:6,2:6", **kw)
    assert "the raw decode" in raw[1] and not np.array_equal(png(raw[5])[:48], before[:48])
    assert_same_images(png(raw[5])[:64], want_raw[:64])


def test_edit_a_generated_image_in_random_order_then_edit_the_result(client, pipeline):
    client.predict(*controls(sampling_order="random", seed=7), api_name="/generate")
    shown = edit_load(client, source="generated image", generated=2, region="0,0; 7,7")
    assert "generated image 2 (seed 8)" in shown[1]
    final = client.predict("0,0; 7,7", "(unconditional)", "random", 5, 8, 1.0, api_name="/edit")
    assert "step 2 / 2" in final[1] and "done" in final[1], "steps capped at the 2 selected cells"
    sampler = {**SAMPLER, "order": "random"}
    tokens = pipeline.generate_tokens([0, 0], seed=7, batch_size=2, **sampler)[1]
    generated = to_uint8_image(pipeline.decode(pipeline.tokens_to_latents(tokens[None])))[0]
    want, _ = edited_image(
        pipeline, tokens, "0,0; 7,7", generated, labels=None, seed=5, num_steps=2, cfg=1.0, order="random"
    )
    assert_same_images(png(final[5])[36:220], want[36:220])  # away from the two corner cells' outlines
    again = client.predict("3,3", api_name="/edit_result")
    assert "the edit of generated image 2" in again[1]
    assert "done" in client.predict("3,3", "heart", "random", 0, 8, 3.0, api_name="/edit")[1]


def test_edit_without_an_image_or_a_cell_says_so_in_its_status_and_the_server_keeps_serving(server):
    client = gradio_client.Client(server, verbose=False)
    before_loading = client.predict(*EDIT, api_name="/edit")
    assert before_loading[1] == "⚠ no image loaded: pick an image and press Load (Edit tab) first"
    assert all(out == {"__type__": "update"} for k, out in enumerate(before_loading) if k != 1), "nothing else changes"
    edit_load(client, region="")
    for empty in ("", " ; "):
        said = client.predict(empty, "heart", "random", 0, 4, 3.0, api_name="/edit")[1]
        assert said.startswith("⚠ no cell selected: click cells on the image"), said
    fractional = client.predict(*EDIT[:6], 2.5, True, api_name="/edit")[1]
    assert "⚠ feather must be an integer in 0..16, got 2.5" in fractional
    assert "done" in client.predict("3,3", "heart", "random", 0, 4, 3.0, api_name="/edit")[1]
    assert "step 1 / 4" in client.predict(*controls(), api_name="/step")[1]


# ------------------------------------------------------------------------------------------------
# Bad input: a clear error, and the server keeps answering
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("bad")
    text = tmp / "notes.png"
    text.write_text("not an image at all")
    huge = tmp / "huge.png"
    Image.new("L", (5000, 4000)).save(huge)  # compresses to a few kB but is 20 MP
    big = tmp / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(0).bytes(11 * 2**20))
    return {"text": text, "huge": huge, "big": big}


BAD = [
    ("unknown class", "/generate", lambda f: controls(class_name="dragon"), "dragon"),
    ("zero temperature", "/generate", lambda f: controls(temperature=0.0), "0.05"),
    ("too many steps", "/step", lambda f: controls(steps=65), "65"),
    ("zero steps", "/step", lambda f: controls(steps=0), "minimum"),
    ("batch of 17", "/generate", lambda f: controls(batch=17), "17"),
    ("negative seed", "/step", lambda f: controls(seed=-1), "-1"),
    ("fractional steps", "/step", lambda f: controls(steps=2.5), "steps must be an integer"),
    ("unknown order", "/step", lambda f: controls(sampling_order="spiral"), "spiral"),
    ("scrub before sampling", "/show_step", lambda f: [1, 1], "nothing sampled yet"),
    ("position before loading", "/position", lambda f: [1, 1], "load an image first"),
    (
        "generated image before generating",
        "/channels",
        lambda f: ["generated image", "star", 0, None, 1],
        "no finished generation",
    ),
    ("unknown shape", "/channels", lambda f: ["held-out image", "dragon", 0, None, 1], "dragon"),
    (
        "shapes number too large",
        "/quantize",
        lambda f: ["held-out image", "circle", 10**6, None, 64, "nearest", "fixed", "c0"],
        "999",
    ),
    ("levels 3", "/quantize", lambda f: ["held-out image", "circle", 0, None, 3, "nearest", "fixed", "c0"], "3"),
    (
        "unknown channel",
        "/quantize",
        lambda f: ["held-out image", "circle", 0, None, 64, "nearest", "fixed", "c99"],
        "c99",
    ),
    (
        "no upload",
        "/quantize",
        lambda f: ["uploaded image", "circle", 0, None, 64, "nearest", "fixed", "c0"],
        "upload an image first",
    ),
    (
        "text file as image",
        "/quantize",
        lambda f: [
            "uploaded image",
            "circle",
            0,
            gradio_client.handle_file(str(f["text"])),
            64,
            "nearest",
            "fixed",
            "c0",
        ],
        "cannot read image",
    ),
    (
        "20 megapixels",
        "/channels",
        lambda f: ["uploaded image", "star", 0, gradio_client.handle_file(str(f["huge"])), 1],
        "megapixels",
    ),
    (
        "11 MB upload",
        "/quantize",
        lambda f: [
            "uploaded image",
            "circle",
            0,
            gradio_client.handle_file(str(f["big"])),
            64,
            "nearest",
            "fixed",
            "c0",
        ],
        None,
    ),
]


@pytest.mark.parametrize("name,endpoint,args,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gives_a_clear_error_then_the_server_answers(server, bad_files, name, endpoint, args, message):
    client = gradio_client.Client(server, verbose=False)
    with pytest.raises(Exception) as info:
        client.predict(*args(bad_files), api_name=endpoint)
    if message is None:  # the client refuses to upload it; so does the server (below)
        assert "exceeds the maximum file size" in str(info.value), str(info.value)
        big = bad_files["big"].read_bytes()
        response = httpx.post(f"{server}gradio_api/upload", files={"files": ("big.png", big, "image/png")})
        assert response.status_code == 413, response.text
    else:
        assert isinstance(info.value, AppError), repr(info.value)
        assert message in str(info.value), str(info.value)
        assert "Traceback" not in str(info.value)
    assert "step 1 / 4" in client.predict(*controls(), api_name="/step")[1]


SAID = [  # the Edit tab's image and cell controls: a message in its info line, the image kept
    (
        "generated image before generating",
        "/edit_load",
        ["generated image", "star", 0, None, 1, ""],
        "no finished generation",
    ),
    ("cells off the grid", "/edit_load", ["held-out image", "star", 0, None, 1, "9:12,1"], "leaves the 8×8 token grid"),
    ("unreadable cells", "/edit_load", ["held-out image", "star", 0, None, 1, "2-6"], "ROWS,COLUMNS"),
    ("result before editing", "/edit_result", [""], "nothing edited yet"),
    ("no upload", "/edit_load", ["uploaded image", "star", 0, None, 1, ""], "upload an image first"),
]


@pytest.mark.parametrize("name,endpoint,args,message", SAID, ids=[s[0] for s in SAID])
def test_edit_tab_says_bad_input_in_its_info_line_and_keeps_its_image(server, name, endpoint, args, message):
    client = gradio_client.Client(server, verbose=False)
    edit_load(client, region="")
    out = client.predict(*args, api_name=endpoint)
    assert out[0] == {"__type__": "update"}, "the image is left as it is (no new value, no error)"
    assert out[1].startswith("⚠ ") and message in out[1], out[1]
    done = client.predict("3,3", "heart", "random", 0, 4, 3.0, api_name="/edit")[1]
    assert "done" in done, "the image loaded before is still the session's, ready to edit"


# ------------------------------------------------------------------------------------------------
# Concurrency
# ------------------------------------------------------------------------------------------------


def test_four_clients_generating_at_once_get_their_own_images(server, pipeline):
    seeds = [0, 0, 11, 12]

    def run(seed):
        client = gradio_client.Client(server, verbose=False)
        job = client.submit(*controls(seed=seed, batch=1, steps=3), api_name="/generate")
        final = job.result(timeout=600)
        assert len(job.outputs()) == 3
        return gallery_images(final[6])[0]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        images = list(pool.map(run, seeds))
    assert_same_images(images[0], images[1])
    for a, b in [(0, 2), (2, 3)]:
        assert np.abs(images[a].astype(int) - images[b]).mean() > 5, "different seeds, different images"
    assert_same_images(images[2], expected_images(pipeline, 0, 11, 1, **{**SAMPLER, "num_steps": 3})[0])


def test_the_picked_image_is_named_by_the_dataset_the_generator_learnt(pipeline):
    icons = Pipeline(pipeline.vae, pipeline.generator, classes=CLASS_NAMES, device="cpu", dataset="icons")
    assert analysis.picked_name(icons, "held-out image", "star", 2.0) == "held-out icons image 2 of 'star'"
    assert analysis.picked_name(pipeline, "held-out image", "ring", 0) == "held-out shapes image 0 of 'ring'"
    assert analysis.picked_name(icons, "uploaded image", "star", 2) == "uploaded image"


def test_photo_note_only_for_a_non_shapes_image_on_the_embedded_vae(pipeline, tmp_path):
    embedded = Pipeline(pipeline.vae, device="cpu", source={"vae": str(EMBEDDED["vae"])})
    note = analysis.photo_note(embedded, "uploaded image", 15.734)
    assert analysis.uses_embedded_vae(embedded)
    for part in (
        "trained on the shapes",
        "blurrily",
        "15.73 dB",
        "hidden under that blur",
        "`python app/main.py --vae kl16.ckpt`",
    ):
        assert part in note, part
    assert analysis.photo_note(embedded, "held-out image", 15.7) == ""  # what it was trained on
    other = Pipeline(pipeline.vae, device="cpu", source={"vae": str(tmp_path / "vae.safetensors")})
    assert not analysis.uses_embedded_vae(other) and analysis.photo_note(other, "uploaded image", 15.7) == ""
    assert analysis.photo_note(pipeline, "uploaded image", 15.7) == ""  # built in code: no source


def test_a_vae_only_pipeline_serves_the_quantizer_and_says_why_it_cannot_generate(pipeline, tmp_path):
    # its source names the embedded VAE file (the weights are the test's): a photo gets the note
    demo = build_demo(Pipeline(pipeline.vae, device="cpu", source={"vae": str(EMBEDDED["vae"])}), calibration_images=4)
    url = launch(demo)
    try:
        client = gradio_client.Client(url, verbose=False)
        out = client.predict("held-out image", "ring", 0, None, 16, "interval", "fixed", "c0", api_name="/quantize")
        assert len(psnrs(out[3])) == 3 and out[7] == ""
        photo = tmp_path / "photo.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8)).save(photo)
        out = client.predict(
            "uploaded image",
            "ring",
            0,
            gradio_client.handle_file(str(photo)),
            16,
            "interval",
            "fixed",
            "c0",
            api_name="/quantize",
        )
        assert f"{psnrs(out[3])[0]:.2f} dB PSNR" in out[7] and "--vae kl16.ckpt" in out[7]
        said = client.predict("held-out image", "star", 0, None, 1, "2:6,2:6", api_name="/edit_load")[1]
        assert said.startswith("⚠ this pipeline has no generator"), said
        with pytest.raises(AppError, match="no generator"):
            client.predict(
                "(unconditional)", 0, 1, 1.0, "linear", "feature", 1.0, "random", 0.0, 1, 1, api_name="/step"
            )
    finally:
        demo.close()


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------


def test_missing_embedded_weights_exit_2_with_the_message_and_no_traceback(tmp_path):
    missing = tmp_path / "nope.safetensors"
    result = subprocess.run(
        [sys.executable, str(ROOT / "app" / "main.py"), "--vae", str(missing), "--port", "7999"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_main_reports_missing_embedded_assets(monkeypatch, capsys):
    import app.main
    import tokenbridge.pipeline as pipeline_module

    missing = {"vae": Path("/nonexistent/vae_small.safetensors"), "generator": Path("/nonexistent/gen.safetensors")}
    monkeypatch.setattr(pipeline_module, "EMBEDDED", missing)
    assert app.main.main([]) == 2
    assert "the embedded vae" in capsys.readouterr().err


def test_vae_and_generator_paths_load_our_files(tmp_path, pipeline):
    vae_path, gen_path = tmp_path / "vae.safetensors", tmp_path / "gen.safetensors"
    save_model(pipeline.vae, vae_path, "vae", pipeline.vae.config.to_dict())
    save_model(
        pipeline.generator,
        gen_path,
        "generator",
        pipeline.generator.config.to_dict(),
        extra={"classes": list(CLASS_NAMES)},
    )
    loaded = load_pipeline(parse_args(["--vae", str(vae_path), "--generator", str(gen_path), "--device", "cpu"]))
    assert loaded.classes == list(CLASS_NAMES) and loaded.source["generator"] == str(gen_path)
    with pytest.raises(ValueError, match="--vae"):
        load_pipeline(parse_args(["--generator", str(gen_path)]))


def test_settings_validation_names_the_bad_value(pipeline):
    good = ["circle", 0, 4, 3.0, "linear", "feature", 1.0, "random", 0.0, 1]
    assert Settings.parse(pipeline, *good).label == 0
    assert Settings.parse(pipeline, "(unconditional)", *good[1:]).label is None
    for index, bad, words in [
        (1, True, "seed"),
        (3, math.nan, "CFG"),
        (4, "cubic", "CFG schedule"),
        (8, -1.0, "Gumbel"),
        (9, 0, "batch size"),
    ]:
        values = list(good)
        values[index] = bad
        with pytest.raises(ValueError, match=words):
            Settings.parse(pipeline, *values)


def test_the_generate_tab_has_a_control_per_sampler_knob_at_its_default(pipeline):
    import gradio as gr

    from app.tabs import generate

    with gr.Blocks():
        ui = generate._controls(pipeline)
    assert list(ui.sampler) == list(KNOBS), "one control per knob, in field order (the endpoint's inputs)"
    initial = [ui.sampler[name].value for name in KNOBS]
    assert Settings.parse(pipeline, "circle", 0, *initial, 1).sampler == SamplerSettings()
