"""Data: image conversion, image folders (odd modes, EXIF, broken files), latent caching."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tokenbridge import data, shapes
from tokenbridge.data import (
    ImageFolderDataset,
    LatentDataset,
    cache_latents,
    from_uint8_image,
    load_image,
    to_uint8_image,
)
from tokenbridge.shapes import CLASS_NAMES, HELDOUT_SEED, ShapesDataset


def test_uint8_conversion_round_trip():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    x = from_uint8_image(a)
    assert x.shape == (2, 3, 5, 7) and x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(to_uint8_image(x), a)
    assert np.array_equal(to_uint8_image(x[1]), a[1])
    assert np.array_equal(from_uint8_image(Image.fromarray(a[0])), x[0])
    assert to_uint8_image(torch.tensor([-3.0, 0.0, 3.0]).view(3, 1, 1)).ravel().tolist() == [0, 128, 255]
    with pytest.raises(ValueError):
        to_uint8_image(torch.zeros(4, 8, 8))
    with pytest.raises(ValueError):
        from_uint8_image(np.zeros((8, 8, 3), np.float32))


@pytest.mark.parametrize("module", [data, shapes])
def test_module_imports_no_model_code(module):
    tree = ast.parse(Path(module.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in imported if m.startswith("tokenbridge")} <= {"tokenbridge.data", "tokenbridge.files"}, imported


# ------------------------------------------------------------------------------------------------
# Image folders
# ------------------------------------------------------------------------------------------------


def halves(width, height, left=(255, 0, 0), right=(0, 0, 255)):
    a = np.zeros((height, width, 3), np.uint8)
    a[:, : width // 2], a[:, width // 2 :] = left, right
    return Image.fromarray(a)


def mean_rgb(x):  # [3, H, W] in [-1, 1] -> mean uint8-ish colour
    return ((x.mean(dim=(-2, -1)) + 1) * 127.5).tolist()


@pytest.fixture()
def folder(tmp_path):
    """root/{alpha,gray,photo}/... with every awkward mode, plus two broken files and ignored ones."""
    root = tmp_path / "imgs"
    for c in ("alpha", "gray", "photo"):
        (root / c).mkdir(parents=True)
    rgba = np.zeros((40, 50, 4), np.uint8)
    rgba[..., 0] = 255  # red, but fully transparent on the left half
    rgba[:, 25:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(root / "alpha" / "rgba.png")
    pal = Image.new("P", (40, 40), 0)
    pal.putpalette([0, 255, 0, 255, 0, 0] + [0] * 762)
    pal.paste(1, (20, 0, 40, 40))  # right half: palette entry 1 (red); left: entry 0, transparent
    pal.save(root / "alpha" / "palette.png", transparency=0)
    pal.save(root / "alpha" / "palette.gif", transparency=0)
    Image.new("LA", (30, 30), (0, 0)).save(root / "alpha" / "la.png")  # fully transparent -> white
    Image.new("L", (30, 20), 128).save(root / "gray" / "l.bmp")
    Image.new("1", (30, 30), 1).save(root / "gray" / "one.tif")
    Image.fromarray(np.full((40, 40), 32896, np.uint16)).save(root / "gray" / "sixteen.png")  # -> 128
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(root / "photo" / "cmyk.jpg", quality=95)
    for orientation in (6, 8):
        exif = Image.Exif()
        exif[0x0112] = orientation
        halves(96, 64).save(root / "photo" / f"exif{orientation}.jpg", quality=95, exif=exif)
    halves(64, 64).save(root / "photo" / "plain.webp", lossless=True)
    rng = np.random.default_rng(0)
    (root / "photo" / "corrupt.png").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    full = root / "photo" / "full.jpg"
    Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(full, quality=90)
    (root / "photo" / "truncated.jpg").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    (root / "photo" / "notes.txt").write_text("not an image")
    (root / "photo" / ".hidden.png").write_bytes(b"junk")
    (root / ".cache").mkdir()
    return root


def test_image_folder_modes_and_broken_files(folder):
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        ds = ImageFolderDataset(folder, size=32)
    assert ds.classes == ["alpha", "gray", "photo"]
    names = {Path(p).name: lab for p, lab in ds.samples}
    assert names == {
        "rgba.png": 0,
        "palette.png": 0,
        "palette.gif": 0,
        "la.png": 0,
        "l.bmp": 1,
        "one.tif": 1,
        "sixteen.png": 1,
        "cmyk.jpg": 2,
        "exif6.jpg": 2,
        "exif8.jpg": 2,
        "plain.webp": 2,
    }
    skipped = {Path(p).name: reason for p, reason in ds.skipped}
    assert set(skipped) == {"corrupt.png", "truncated.jpg"}
    assert all(str(folder) in p for p, _ in ds.skipped)  # reported by full path
    assert "truncated" in skipped["truncated.jpg"]
    items = {Path(p).name: ds[i] for i, (p, _) in enumerate(ds.samples)}
    for image, label in items.values():
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label.dtype == torch.int64
        assert image.min() >= -1 and image.max() <= 1

    def px(name, y, x):
        return to_uint8_image(items[name][0])[y, x].tolist()

    assert px("rgba.png", 16, 2) == [255, 255, 255] and px("rgba.png", 16, 29) == [255, 0, 0]
    for name in ("palette.png", "palette.gif"):
        assert px(name, 16, 2) == [255, 255, 255] and px(name, 16, 29) == [255, 0, 0]
    assert px("la.png", 5, 5) == [255, 255, 255]
    assert px("l.bmp", 10, 10) == [128, 128, 128] and px("one.tif", 3, 3) == [255, 255, 255]
    assert px("sixteen.png", 10, 10) == [128, 128, 128]
    r, g, b = mean_rgb(items["cmyk.jpg"][0])
    assert r > 200 and g < 60 and b < 60


def test_exif_orientation_applied(folder):
    with pytest.warns(UserWarning):
        ds = ImageFolderDataset(folder, size=32)
    items = {Path(p).name: ds[i][0] for i, (p, _) in enumerate(ds.samples)}
    # 96×64 image, red left / blue right. Orientation 6 = rotate 90° clockwise to display: red on top.
    top, bottom = mean_rgb(items["exif6.jpg"][:, :12]), mean_rgb(items["exif6.jpg"][:, -12:])
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60
    top, bottom = mean_rgb(items["exif8.jpg"][:, :12]), mean_rgb(items["exif8.jpg"][:, -12:])
    assert top[2] > 200 and top[0] < 60 and bottom[0] > 200 and bottom[2] < 60
    left, right = mean_rgb(items["plain.webp"][:, :, :12]), mean_rgb(items["plain.webp"][:, :, -12:])
    assert left[0] > 200 and right[2] > 200  # no EXIF: left/right kept


def test_image_folder_without_verify_fails_loudly_by_path(folder):
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):  # the random bytes fail the header read
        ds = ImageFolderDataset(folder, size=32, verify=False)
    i = [Path(p).name for p, _ in ds.samples].index("truncated.jpg")
    with pytest.raises(RuntimeError, match="truncated.jpg"):
        ds[i]


def test_image_folder_empty_or_missing(tmp_path):
    (tmp_path / "empty_root").mkdir()
    with pytest.raises(ValueError, match="empty_root"):
        ImageFolderDataset(tmp_path / "empty_root")
    with pytest.raises(ValueError, match="nowhere"):
        ImageFolderDataset(tmp_path / "nowhere")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "a.png")  # images but no class folders
    with pytest.raises(ValueError, match="class sub-folders"):
        ImageFolderDataset(tmp_path / "flat")
    (tmp_path / "noimg" / "cat").mkdir(parents=True)
    (tmp_path / "noimg" / "cat" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no readable images"):
        ImageFolderDataset(tmp_path / "noimg")


def test_load_image_errors_and_inputs(tmp_path):
    with pytest.raises(ValueError, match="zero-sized"):
        load_image(Image.new("RGB", (0, 5)))
    big = tmp_path / "big.png"
    Image.new("RGB", (200, 100)).save(big)
    with pytest.raises(ValueError, match="megapixels"):
        load_image(big, max_pixels=10_000)
    assert load_image(big, size=16).shape == (3, 16, 16)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 nothing else")
    with pytest.raises(ValueError, match="bad.jpg"):
        load_image(bad)
    with pytest.raises(ValueError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    # in-memory inputs: a 32-bit "I" image with 16-bit content, a uint8 array, a small image upscaled
    wide = Image.fromarray(np.full((10, 10), 65535, np.int32), mode="I")
    assert to_uint8_image(load_image(wide, size=8)).min() == 255
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, 10:30] = 200  # centre crop keeps only the bright middle
    assert to_uint8_image(load_image(arr, size=8)).min() >= 190


# ------------------------------------------------------------------------------------------------
# Latent caching
# ------------------------------------------------------------------------------------------------


def pool8(images):
    return F.avg_pool2d(images, 8)


def test_cache_latents_round_trip(tmp_path):
    ds = ShapesDataset(23, seed=HELDOUT_SEED, offset=4)
    path = cache_latents(pool8, ds, tmp_path / "sub" / "lat.safetensors", batch_size=10, info={"vae": "pool8"})
    assert [p.name for p in path.parent.iterdir()] == ["lat.safetensors"]  # no temp file left
    cached = LatentDataset(path)
    assert len(cached) == 23 and cached.latents.shape == (23, 3, 8, 8) and cached.latents.dtype == torch.float32
    expected = pool8(torch.stack([ds[i][0] for i in range(23)]))
    assert torch.equal(cached.latents, expected)
    assert cached.labels.tolist() == [(4 + i) % 10 for i in range(23)]
    z, label = cached[5]
    assert z.dtype == torch.float32 and torch.equal(z, expected[5]) and label.dtype == torch.int64
    meta = cached.metadata
    assert meta["count"] == 23 and meta["latent_shape"] == [3, 8, 8] and meta["info"] == {"vae": "pool8"}
    assert meta["dataset"] == ds.description and meta["classes"] == list(CLASS_NAMES)
    assert cached.classes == list(CLASS_NAMES) and cached.num_classes == 10

    half = LatentDataset(cache_latents(pool8, ds, tmp_path / "half.safetensors", dtype="float16"))
    assert half.latents.dtype == torch.float16 and half[0][0].dtype == torch.float32
    torch.testing.assert_close(half.latents.float(), expected, atol=1e-3, rtol=1e-3)


def test_cache_latents_failure_keeps_old_file(tmp_path):
    ds = ShapesDataset(6)
    path = cache_latents(pool8, ds, tmp_path / "lat.safetensors")
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"\[B, C, h, w\]"):
        cache_latents(lambda x: x.mean(dim=(1, 2, 3)), ds, path)
    with pytest.raises(ValueError, match="JSON"):
        cache_latents(pool8, ds, path, info={"bad": object()})
    with pytest.raises(ValueError, match="float16"):
        cache_latents(pool8, ds, path, dtype="int8")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["lat.safetensors"]


def test_latent_dataset_corrupt_or_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        LatentDataset(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="junk.safetensors.*not a readable latent cache"):
        LatentDataset(junk)
    good = cache_latents(pool8, ShapesDataset(4), tmp_path / "good.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(ValueError, match="cut.safetensors"):
        LatentDataset(cut)
    from safetensors.torch import save_file

    save_file({"latents": torch.zeros(2, 1, 2, 2)}, str(tmp_path / "nolabels.safetensors"))
    with pytest.raises(ValueError, match="missing.*labels"):
        LatentDataset(tmp_path / "nolabels.safetensors")
    save_file(
        {"latents": torch.zeros(2, 1, 2, 2), "labels": torch.zeros(3, dtype=torch.int64)},
        str(tmp_path / "mismatch.safetensors"),
        metadata={"tokenbridge": json.dumps({"count": 2})},
    )
    with pytest.raises(ValueError, match="do not match"):
        LatentDataset(tmp_path / "mismatch.safetensors")
