"""load_image: every mode to 8-bit RGB with the right pixel values; bad files named."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hashcli.data.images import crop_to_box, find_unreadable, is_image_file, load_image
from hashcli.errors import DataError

rng = np.random.default_rng(0)


def _rgb(path) -> np.ndarray:
    image = load_image(path)
    assert image.mode == "RGB"
    return np.asarray(image).astype(np.int64)


def test_rgb_png_is_unchanged(tmp_path):
    pixels = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    assert np.array_equal(_rgb(tmp_path / "a.png"), pixels)


def test_grayscale_is_replicated(tmp_path):
    gray = rng.integers(0, 256, (4, 6), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    got = _rgb(tmp_path / "g.png")
    assert got.shape == (4, 6, 3)
    for channel in range(3):
        assert np.array_equal(got[..., channel], gray)


def test_rgba_is_composited_on_white(tmp_path):
    color = np.array([200, 100, 50])
    alpha = np.array([[0, 255, 128]], dtype=np.uint8)
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[..., :3] = color
    rgba[..., 3] = alpha
    Image.fromarray(rgba).save(tmp_path / "a.png")
    got = _rgb(tmp_path / "a.png")
    expected = color * (alpha[0, :, None] / 255) + 255 * (1 - alpha[0, :, None] / 255)
    assert np.array_equal(got[0, 0], [255, 255, 255])  # fully transparent: white
    assert np.array_equal(got[0, 1], color)  # opaque: the colour itself
    assert np.abs(got[0] - expected).max() <= 1


def test_gray_with_alpha(tmp_path):
    la = np.array([[[90, 0], [90, 255]]], dtype=np.uint8)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    got = _rgb(tmp_path / "la.png")
    assert np.array_equal(got[0], [[255, 255, 255], [90, 90, 90]])


def test_palette_with_transparent_index(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([10, 20, 30, 40, 50, 60] + [0] * (256 * 3 - 6))
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    image.save(tmp_path / "p.png", transparency=0)
    got = _rgb(tmp_path / "p.png")
    assert np.array_equal(got[0], [[255, 255, 255], [40, 50, 60]])


def test_palette_without_transparency(tmp_path):
    image = Image.new("P", (1, 1))
    image.putpalette([7, 8, 9] + [0] * 765)
    image.save(tmp_path / "p.gif")
    assert np.array_equal(_rgb(tmp_path / "p.gif")[0, 0], [7, 8, 9])


@pytest.mark.parametrize("suffix", [".tif", ".jpg"])
def test_cmyk(tmp_path, suffix):
    cmyk = np.array([[[0, 255, 0, 0], [30, 60, 90, 20]]], dtype=np.uint8)
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / f"c{suffix}")
    got = _rgb(tmp_path / f"c{suffix}")
    # CMYK -> RGB: channel = (255 - ink) * (255 - black) / 255.
    ink, black = cmyk[0, :, :3].astype(np.float64), cmyk[0, :, 3:].astype(np.float64)
    expected = (255 - ink) * (255 - black) / 255
    tolerance = 1 if suffix == ".tif" else 12  # rounding; JPEG is lossy
    assert np.abs(got[0] - expected).max() <= tolerance


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = rng.integers(0, 65536, (6, 5), dtype=np.uint16)
    values[0, :3] = [0, 65535, 257 * 100]
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    got = _rgb(tmp_path / "deep.png")
    expected = np.rint(values.astype(np.float64) * 255 / 65535)
    assert np.array_equal(got[..., 0], expected)
    assert list(got[0, :3, 1]) == [0, 255, 100]


def test_32_bit_integer_tiff_read_as_16_bit(tmp_path):
    values = np.array([[0, 4369 * 3, 65535, 70000]], dtype=np.int32)
    Image.fromarray(values).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    got = _rgb(tmp_path / "i.tif")
    assert list(got[0, :, 2]) == [0, 51, 255, 255]  # 70000 is clipped


def test_float_image_in_unit_range(tmp_path):
    values = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    Image.fromarray(values).save(tmp_path / "f.tif")
    assert list(_rgb(tmp_path / "f.tif")[0, :, 0]) == [0, 128, 255]


def test_corrupt_jpeg_names_the_file(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated.jpg"):
        load_image(bad)


def test_not_an_image_names_the_file(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not a PNG")
    with pytest.raises(DataError, match=r"cannot read image .*notes\.png: not an image"):
        load_image(text)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="image not found: .*gone.jpg"):
        load_image(tmp_path / "gone.jpg")


def test_crop_to_box(tmp_path):
    pixels = np.arange(10 * 8 * 3, dtype=np.uint8).reshape(8, 10, 3)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    # (x, y, w, h) = (2.5, 1, 3, 4): widened to whole pixels x 2..6, y 1..5.
    got = np.asarray(load_image(tmp_path / "a.png", box=(2.5, 1.0, 3.0, 4.0)))
    assert np.array_equal(got, pixels[1:5, 2:6])
    # Clipped to the image; an empty box leaves the image whole.
    image = Image.fromarray(pixels)
    assert crop_to_box(image, (-5, -5, 8, 100)).size == (3, 8)
    assert crop_to_box(image, (20, 20, 5, 5)).size == (10, 8)


def test_image_extensions():
    assert is_image_file("a/B.JPG") and is_image_file("x.WebP") and is_image_file("y.tiff")
    assert not is_image_file("notes.txt") and not is_image_file(".hidden.jpg")


def test_find_unreadable_lists_only_the_bad_files(tmp_path):
    paths = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (3, 3), (i, i, i)).save(path)
        paths.append(path)
    paths[2].write_bytes(b"garbage")
    paths[4].write_bytes(paths[4].read_bytes()[:20])
    calls = []
    failures = find_unreadable(
        paths, workers=2, progress=lambda done, total: calls.append((done, total))
    )
    assert [p for p, _ in failures] == [paths[2], paths[4]]
    assert all(str(p) in reason for p, reason in failures)
    assert calls[-1] == (6, 6) and len(calls) == 6


# EXIF orientation: the stored pixels of an upright picture U, and the tag that says how to turn
# them back, written with numpy's rotations and flips (the EXIF 2.3 definitions of the tag).
_STORED = {
    1: lambda u: u,
    2: lambda u: u[:, ::-1],  # mirrored left-right
    3: lambda u: np.rot90(u, 2),
    4: lambda u: u[::-1],  # mirrored top-bottom
    6: lambda u: np.rot90(u, 1),  # stored turned a quarter anticlockwise: show it turned clockwise
    8: lambda u: np.rot90(u, -1),
}


@pytest.mark.parametrize("orientation", sorted(_STORED))
def test_exif_orientation_is_applied(tmp_path, orientation):
    upright = np.arange(5 * 3 * 3, dtype=np.uint8).reshape(5, 3, 3) * 5  # tall, all distinct
    stored = np.ascontiguousarray(_STORED[orientation](upright))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    Image.fromarray(stored).save(path, exif=exif)
    got = np.asarray(load_image(path))
    assert got.shape == upright.shape
    assert np.array_equal(got, upright)


def test_exif_orientation_of_a_turned_photo(tmp_path, cub25_root):
    # A real photo saved as a phone would: pixels turned, orientation 6. It reads like the
    # upright file (both JPEG at quality 95: equal up to compression noise), not turned.
    photo = next((cub25_root / "CUB_200_2011" / "images").rglob("*.jpg"))
    with Image.open(photo) as image:
        upright = image.convert("RGB")
    upright.save(tmp_path / "upright.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(
        tmp_path / "turned.jpg", quality=95, exif=exif
    )
    a = np.asarray(load_image(tmp_path / "upright.jpg"), dtype=np.float64)
    b = np.asarray(load_image(tmp_path / "turned.jpg"), dtype=np.float64)
    assert a.shape == b.shape
    assert np.abs(a - b).mean() < 2.0
    # without the tag the same pixels read turned (the test is not vacuous)
    assert np.asarray(Image.open(tmp_path / "turned.jpg")).shape[:2] == a.shape[1::-1]
