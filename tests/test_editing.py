"""Token editing: a partially known start in the sampler, `Pipeline.edit*`, and the ``edit`` command line."""

import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tokenbridge import checkpoints
from tokenbridge.__main__ import main as cli_main
from tokenbridge.compositing import paste_back, region_weight
from tokenbridge.data import load_image, to_uint8_image
from tokenbridge.evaluation import shapes_images
from tokenbridge.generator import tokenbridge_tiny
from tokenbridge.regions import cells_mask, parse_cells
from tokenbridge.sampling import KNOBS, ORDERS, generate, mask_schedule, sample_steps
from tokenbridge.shapes import CLASS_NAMES


@pytest.fixture(scope="module")
def pipe(tiny_pipeline):
    return tiny_pipeline


@pytest.fixture(scope="module")
def tokens(pipe):
    return pipe.generate_tokens([3, 5], seed=0, num_steps=4)  # [2, 64, 16]


def centre(rows=slice(2, 6), cols=slice(2, 6)):
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[rows, cols] = True
    return region


# ------------------------------------------------------------------ the sampler's known start
def test_a_start_with_every_position_masked_is_plain_generation(pipe, tokens):
    model, labels = pipe.generator, torch.tensor([3, 5])
    for order in ORDERS:
        plain = generate(model, labels, rng=torch.Generator().manual_seed(1), num_steps=5, order=order)
        started = generate(
            model,
            labels,
            rng=torch.Generator().manual_seed(1),
            num_steps=5,
            order=order,
            tokens=tokens,
            mask=torch.ones(2, 64, dtype=torch.bool),
        )
        assert torch.equal(plain, started), order


@pytest.mark.parametrize("order", ORDERS)
def test_steps_sample_only_the_masked_positions_on_their_own_schedule(pipe, tokens, order):
    mask = centre().reshape(1, 64).expand(2, 64)
    steps = list(
        sample_steps(
            pipe.generator,
            torch.tensor([3, 5]),
            rng=torch.Generator().manual_seed(0),
            num_steps=5,
            order=order,
            tokens=tokens,
            mask=mask,
        )
    )
    assert [int(s.mask[0].sum()) for s in steps] == mask_schedule(16, 5)  # cosine over the 16 to sample
    committed = torch.stack([s.committed for s in steps]).sum(dim=0)
    assert torch.equal(committed.bool(), mask) and committed.max() == 1
    for s in steps:  # the kept tokens are context from the first step on
        assert torch.equal(s.tokens[~mask], tokens[~mask])
        torch.testing.assert_close(s.x_hat[~mask], pipe.generator.dequantize(tokens[~mask]).float())


def test_sampler_start_is_checked(pipe):
    model = pipe.generator
    labels, rng = torch.tensor([0]), torch.Generator()
    tokens, mask = torch.zeros(1, 64, 16, dtype=torch.long), torch.zeros(1, 64, dtype=torch.bool)
    with pytest.raises(ValueError, match="pass tokens and mask together"):
        sample_steps(model, labels, rng=rng, tokens=tokens)
    with pytest.raises(ValueError, match="selects no position"):
        sample_steps(model, labels, rng=rng, tokens=tokens, mask=mask)
    with pytest.raises(ValueError, match=r"num_steps must be an integer in 1..2 \(the number of tokens to sample\)"):
        two = mask.index_fill(1, torch.tensor([0, 9]), True)
        sample_steps(model, labels, rng=rng, num_steps=3, tokens=tokens, mask=two)


# ------------------------------------------------------------------ Pipeline.edit_tokens / edit_steps / edit
@pytest.mark.parametrize("order", ORDERS)
def test_edit_keeps_the_outside_bit_for_bit_and_is_seeded(pipe, tokens, order):
    region = centre()
    inside = region.reshape(64)
    edited = pipe.edit_tokens(tokens, region, labels=[7, 7], seed=3, order=order, num_steps=4)
    assert edited.dtype == tokens.dtype and edited.shape == tokens.shape
    assert torch.equal(edited[:, ~inside], tokens[:, ~inside])
    assert (edited[:, inside] != tokens[:, inside]).any(dim=-1).float().mean() > 0.5  # most cells re-sampled
    assert torch.equal(edited, pipe.edit_tokens(tokens, region, labels=[7, 7], seed=3, order=order, num_steps=4))
    assert not torch.equal(edited, pipe.edit_tokens(tokens, region, labels=[7, 7], seed=4, order=order, num_steps=4))
    uint8 = pipe.edit_tokens(tokens.to(torch.uint8), region, labels=7, seed=3, order=order, num_steps=4)
    assert uint8.dtype == torch.uint8 and torch.equal(uint8.long(), edited)  # one label serves every image


def test_per_image_regions_and_rows_independent_of_the_batch(pipe, tokens):
    regions = torch.stack([centre(), centre(slice(0, 2), slice(0, 8))])  # 16 cells each
    batch = pipe.edit_tokens(tokens, regions, labels=[1, 2], seed=5, num_steps=3, cfg=2.0)
    for i in range(2):  # image i is seeded seed + i, as in generation
        alone = pipe.edit_tokens(tokens[i : i + 1], regions[i], labels=[i + 1], seed=5 + i, num_steps=3, cfg=2.0)
        assert torch.equal(batch[i : i + 1], alone), i


def test_edit_steps_stream_previews_of_the_whole_image(pipe, tokens):
    steps = list(pipe.edit_steps(tokens[:1], centre(slice(0, 2), slice(0, 2)), labels=None, preview=True))
    assert len(steps) == 4  # num_steps defaults to min(16, the 4 cells of the region)
    assert all(s.preview.shape == (1, 3, 64, 64) for s in steps)
    final = pipe.decode(pipe.tokens_to_latents(steps[-1].step.tokens))
    assert torch.allclose(steps[-1].preview, final, atol=1e-5)


def test_edit_images_returns_the_input_shape(pipe):
    images = shapes_images(2)
    assert pipe.encode_tokens(images).shape == (2, 64, 16)
    edited = pipe.edit(images, centre(), labels=[3, 3], num_steps=2)
    assert edited.shape == images.shape and edited.min() >= -1 and edited.max() <= 1
    assert pipe.edit(images[0], centre(), labels=3, num_steps=2).shape == images[0].shape
    assert torch.equal(edited, pipe.edit(images, centre(), labels=[3, 3], num_steps=2))


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(region=torch.ones(4, 4, dtype=torch.bool)), r"region must be a bool tensor \[8, 8\] or \[2, 8, 8\]"),
        (dict(region=torch.ones(3, 8, 8, dtype=torch.bool)), r"region must be a bool tensor"),
        (dict(region=torch.ones(8, 8)), r"region must be a bool tensor .* got torch.float32"),
        (
            dict(region=torch.zeros(8, 8, dtype=torch.bool)),
            r"the region is empty \(no cell selected\) for image\(s\) \[0, 1\]",
        ),
        (
            dict(region=torch.stack([centre(), centre(slice(0, 1))])),
            r"same number of cells in every image, got \[16, 4\]",
        ),
        (dict(labels=[10, 1]), "class 10 out of range: valid 0..9"),
        (dict(labels=[1, 2, 3]), "labels must be one class id or 2"),
        (
            dict(tokens=lambda t: t.index_fill(1, torch.tensor([0]), 64)),
            r"tokens to keep \(outside the mask\) must be indices in 0..63, got values 0..64",
        ),
        (dict(tokens=lambda t: t[0]), r"tokens must be \[B, 64, 16\] indices"),
        (dict(tokens=lambda t: t.float()), r"tokens must be an integer tensor \[2, 64, 16\]"),
        (dict(num_steps=17), r"num_steps must be an integer in 1..16 \(the number of tokens to sample\)"),
    ],
)
def test_bad_edits_name_the_problem(pipe, tokens, change, message):
    args = {"region": centre(), "labels": None, **change}
    args["tokens"] = args.get("tokens", lambda t: t)(tokens)
    with pytest.raises(ValueError, match=message):
        pipe.edit_tokens(**args)


def test_edit_keeps_every_pixel_farther_than_the_feather_bit_for_bit(pipe):
    images = shapes_images(2)
    region = torch.stack([centre(), centre(slice(0, 4), slice(4, 8))])  # a region per image
    raw = pipe.edit(images, region, labels=[3, 3], num_steps=2, paste=False)
    for feather in (0, 4, 6.5):
        edited = pipe.edit(images, region, labels=[3, 3], num_steps=2, feather=feather)
        weight = region_weight(region, 64, feather).expand_as(images)
        cells = region.repeat_interleave(8, 1).repeat_interleave(8, 2)[:, None].expand_as(images)
        assert torch.equal(edited[weight == 0], images[weight == 0]), feather
        assert torch.equal(edited[cells], raw[cells]), "inside the region: the decode itself"
        assert (weight[~cells] > 0).sum() == (0 if feather == 0 else (weight > 0).sum() - cells.sum())
    assert (raw[weight == 0] - images[weight == 0]).abs().mean() > 1e-3, "the raw decode changes the outside"


def test_region_weight_falls_linearly_to_zero_at_the_feather():
    region = centre()  # cells 2:6 = pixels 16..47
    weight = region_weight(region, 64, 4)[0, 0]
    assert weight.shape == (64, 64) and (weight[16:48, 16:48] == 1).all()
    assert weight[30, 12:16].tolist() == [0.125, 0.375, 0.625, 0.875]  # pixel centres 3.5 .. 0.5 px away
    assert (weight[30, :12] == 0).all() and (weight[:12] == 0).all() and weight[12, 12] == 0  # 3.5·√2 px away
    assert weight[13, 13] == pytest.approx(1 - 2.5 * 2**0.5 / 4)  # Euclidean at the corner
    hard = region_weight(region, 64, 0)[0, 0]
    assert torch.equal(hard, region.repeat_interleave(8, 0).repeat_interleave(8, 1).float()), "feather 0: the cells"
    both = region_weight(torch.stack([region, ~region]), 64, 2)
    assert both.shape == (2, 1, 64, 64) and torch.equal(both[0], region_weight(region, 64, 2)[0])
    for bad, message in [
        (dict(region=torch.ones(8, 8)), "bool token grid"),
        (dict(size=60), "dividing 60"),
        (dict(feather=-1), "feather must be >= 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            region_weight(**{"region": region, "size": 64, "feather": 4, **bad})
    with pytest.raises(ValueError, match="of one shape"):
        paste_back(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 32, 32), region)


def test_edit_of_images_of_another_size_is_refused(pipe):
    with pytest.raises(ValueError, match=r"images must be \[B, 3, 64, 64\]"):
        pipe.edit(torch.zeros(1, 3, 32, 32), centre())


# ------------------------------------------------------------------ regions as text
def test_region_text_reads_indices_ranges_and_open_ends():
    assert parse_cells("2:6,2:6") == ((2, 6), (2, 6))
    assert parse_cells(" 3 , 1 : 4 ") == ((3, 4), (1, 4))
    assert parse_cells("2:,:") == ((2, None), (0, None))
    assert parse_cells("2:,:", 8) == ((2, 8), (0, 8)), "with the grid known, an open end is its edge"
    assert cells_mask(parse_cells("1:3,:2"), 4).nonzero().tolist() == [[1, 0], [1, 1], [2, 0], [2, 1]]
    assert cells_mask(parse_cells(":,:"), 3).all()


@pytest.mark.parametrize(
    "text, grid, message",
    [
        ("2-6", None, r"^must be ROWS,COLUMNS on the token grid, e.g. 2:6,2:6 \(.*\), got '2-6'$"),
        ("1,2,3", 8, r"^must be ROWS,COLUMNS"),
        ("x,1", None, r"^cannot read 'x' in 'x,1': use an index or a range a:b$"),
        ("1 2,3", 8, r"^cannot read '1 2' in '1 2,3'"),  # two numbers, no colon: not one index
        ("4:4,1", None, r"^the range '4:4' in '4:4,1' is empty$"),
        ("4:4,1", 8, r"^the range '4:4' in '4:4,1' is empty or leaves the 8×8 token grid \(indices 0..7\)$"),
        ("2:9,0:3", 8, r"^the range '2:9' in '2:9,0:3' is empty or leaves the 8×8 token grid"),
    ],
)
def test_region_text_errors_quote_the_bad_part(text, grid, message):
    with pytest.raises(ValueError, match=message):
        parse_cells(text, grid)


def test_a_region_read_before_the_grid_is_known_is_checked_against_it():
    assert parse_cells("2:9,9") == ((2, 9), (9, 10)), "no grid yet: read, not checked"
    with pytest.raises(ValueError, match=r"^rows 2:9 reach past the 8×8 token grid \(indices 0..7\)$"):
        cells_mask(parse_cells("2:9,9"), 8)
    with pytest.raises(ValueError, match=r"^columns 9:10 reach past the 8×8 token grid"):
        cells_mask(parse_cells("0:3,9"), 8)


# ------------------------------------------------------------------ command line
def test_sampler_flags_are_the_knobs_of_sampler_settings():
    from tokenbridge.__main__ import _sampler, build_parser

    for command in (["sample"], ["edit", "--image", __file__, "--region", "1,1"]):  # an existing file: not read
        args = build_parser().parse_args([*command, "--order", "confidence", "--steps", "3"])
        assert {k: getattr(args, k) for k in KNOBS} == {**dict.fromkeys(KNOBS), "order": "confidence", "num_steps": 3}
        assert _sampler(args) == {"order": "confidence", "num_steps": 3}, "unset flags: the pipeline's defaults"


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_pipeline_files, seeded):
    """The tiny models as files (``vae``, ``generator``), one generator that needs another VAE
    (``gen8``), one that fits the embedded VAE's 4 channels (``gen4``), a 64×64 input image
    (``image``) and a folder to write in (``root``)."""
    root = tmp_path_factory.mktemp("editing")
    other = seeded(lambda: tokenbridge_tiny(vae_embed_dim=8))
    gen8 = checkpoints.save_model(other, root / "gen8.safetensors", "generator", other.config.to_dict())
    fits = seeded(lambda: tokenbridge_tiny(vae_embed_dim=4, class_num=10))
    gen4 = checkpoints.save_model(
        fits, root / "gen4.safetensors", "generator", fits.config.to_dict(), extra={"classes": list(CLASS_NAMES)}
    )
    Image.fromarray(to_uint8_image(shapes_images(1)[0])).save(root / "in.png")
    return {**tiny_pipeline_files, "gen8": gen8, "gen4": gen4, "image": root / "in.png", "root": root}


def test_edit_cli_writes_before_and_after_side_by_side(files, tmp_path, capsys):
    models = ["--vae", str(files["vae"]), "--generator", str(files["generator"])]
    outs = [tmp_path / "a.png", tmp_path / "b.png"]
    for out in outs:
        cli_main(
            [
                "edit",
                "--image",
                str(files["image"]),
                "--region",
                "2:6,2:6",
                "--class",
                "star",
                "--steps",
                "3",
                "--device",
                "cpu",
                "--out",
                str(out),
                "--out-after",
                str(tmp_path / "after.png"),
                *models,
            ]
        )
    said = capsys.readouterr().out
    assert f"wrote {outs[0]} (before | after) and {tmp_path / 'after.png'} (after)" in said
    assert "rows 2:6, columns 2:6: 16 of 64 tokens re-sampled, class star, pasted back with a 4-pixel feather" in said
    pair, before = np.asarray(Image.open(outs[0])), np.asarray(Image.open(files["image"]))
    assert pair.shape == (64, 2 * 64 + 2, 3), "two images wide, 2 white pixels between"
    assert outs[0].read_bytes() == outs[1].read_bytes()  # seeded
    assert np.array_equal(pair[:, :16], before[:, :16]) and (pair[:, 64:66] == 255).all()
    after = np.asarray(Image.open(tmp_path / "after.png"))
    assert np.array_equal(pair[:, 66 + 8 : 66 + 14], after[:, 8:14]), "the right half is the after image"
    far = region_weight(centre(), 64, 4)[0, 0].numpy() == 0
    assert np.array_equal(after[far], before[far]) and not np.array_equal(after, before)
    assert to_uint8_image(load_image(files["image"])).tobytes() == before.tobytes()  # the input as the CLI reads it


def test_edit_cli_scale_and_raw_decode(files, tmp_path, capsys):
    models = ["--vae", str(files["vae"]), "--generator", str(files["generator"])]
    cli_main(
        [
            "edit",
            "--image",
            str(files["image"]),
            "--region",
            "0,0",
            "--steps",
            "1",
            "--scale",
            "3",
            "--no-paste-back",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "pair.png"),
            *models,
        ]
    )
    assert "unconditional, the raw decode" in capsys.readouterr().out
    pair = np.asarray(Image.open(tmp_path / "pair.png"))
    assert pair.shape == (192, 2 * 192 + 6, 3)
    assert (pair[:3, :24] == (228, 26, 28)).all(-1).all(), "cell 0,0 outlined, 3 px wide at scale 3"


def test_sample_cli_labels_rows_and_writes_one_image_bare(files, tmp_path, capsys):
    models = ["--vae", str(files["vae"]), "--generator", str(files["generator"]), "--steps", "2", "--device", "cpu"]
    cli_main(["sample", "--class", "heart", "--n", "1", "--out", str(tmp_path / "one.png"), *models])
    assert "(1 image, class heart)" in capsys.readouterr().out
    assert Image.open(tmp_path / "one.png").size == (64, 64), "no border: ready to edit"
    cli_main(["sample", "--per-class", "2", "--scale", "2", "--out", str(tmp_path / "grid.png"), *models])
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape[0] == 10 * (128 + 4) + 4, "ten rows of 2× tiles"
    label_width = grid.shape[1] - (2 * (128 + 4) + 4)
    assert label_width > 40 and (grid[:, :label_width] < 128).any(), "a column of class names left of the tiles"


def test_sample_with_only_a_generator_pairs_it_with_the_embedded_vae(files, tmp_path, capsys):
    out = tmp_path / "grid.png"
    cli_main(
        [
            "sample",
            "--generator",
            str(files["gen4"]),
            "--class",
            "3",
            "--n",
            "2",
            "--steps",
            "2",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert "2 images, class star" in capsys.readouterr().out and out.is_file()


EDIT = ["edit", "--image", "{image}", "--region", "2:6,2:6"]
BAD_COMMAND_LINES = {  # {image}, {gen8}, {vae}, {root}: the `files` fixture's
    "columns 0": (["sample", "--columns", "0"], "argument --columns: must be an integer >= 1, got '0'"),
    "n 0": (["sample", "--n", "0"], "argument --n: must be an integer >= 1"),
    "out folder missing": (["sample", "--out", "{root}/nowhere/x.png"], "argument --out: the folder .* does not exist"),
    "out format": (["sample", "--out", "{root}/x.xyz"], "unknown image format '.xyz'"),
    "missing generator": (["sample", "--generator", "missing.safetensors"], "argument --generator: no such file"),
    "generator is a vae": (["sample", "--generator", "{vae}"], "holds a 'vae' model, expected 'generator'"),
    "generator needs another vae": (
        ["sample", "--generator", "{gen8}"],
        "argument --generator: it needs a VAE with 8 latent channels and stride 8, the embedded VAE has 4",
    ),
    "bad device": (["sample", "--device", "foo"], "argument --device: 'foo' is not a usable device"),
    "unknown class": (["sample", "--class", "blob"], "argument --class: unknown class 'blob'; valid: circle"),
    "class and per-class": (["sample", "--class", "3", "--per-class", "2"], "not allowed with"),
    "steps past the tokens": (["sample", "--steps", "65"], "argument --steps: must be <= 64"),
    "negative cfg": (["sample", "--cfg", "-1"], "argument --cfg: must be a finite number >= 0"),
    "no image": (["edit", "--region", "2:6,2:6"], "the following arguments are required: --image"),
    "missing image": (["edit", "--image", "missing.png", "--region", "1,1"], "argument --image: no such file"),
    "unreadable image": (["edit", "--image", "{gen8}", "--region", "1,1"], "argument --image: .*cannot read image"),
    "region syntax": (["edit", "--image", "{image}", "--region", "2-6"], "argument --region: must be ROWS,COLUMNS"),
    "region empty": (["edit", "--image", "{image}", "--region", "4:4,1"], "argument --region: the range '4:4'"),
    "region off the grid": (["edit", "--image", "{image}", "--region", "2:9,0:3"], "rows 2:9 reach past the 8×8"),
    "edit unknown class": ([*EDIT, "--class", "12"], "argument --class: unknown class '12'"),
    "edit steps past the region": ([*EDIT, "--steps", "17"], "argument --steps: must be <= 16"),
}


@pytest.mark.parametrize("case", list(BAD_COMMAND_LINES))
def test_bad_command_lines_exit_2_with_one_line(files, case, capsys):
    template, message = BAD_COMMAND_LINES[case]
    paths = {k: files[k] for k in ("image", "gen8", "vae", "root")}
    with pytest.raises(SystemExit) as exit_info:
        cli_main([arg.format(**paths) for arg in template])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err


def test_python_dash_m_answers_bad_input_with_one_line(files):
    result = subprocess.run(
        [sys.executable, "-m", "tokenbridge", "edit", "--image", str(files["image"]), "--region", "0:3,9"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "python -m tokenbridge edit: error: argument --region: columns 9:10 reach past the 8×8 token grid "
        "(indices 0..7) (see --help)"
    ]
