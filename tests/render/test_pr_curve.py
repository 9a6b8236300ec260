"""The precision-recall PNG held to its documented layout: the size, where the axis arithmetic
puts each point and the line between them, skipped radii, and atomic, checked writing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hashcli.errors import HashretError
from hashcli.metrics.evaluate import PRCurve
from hashcli.render.pr_curve import save_pr_curve

BLUE = (31, 119, 180)


def _xy(recall: float, precision: float) -> tuple[float, float]:
    """The documented axes: 80 + recall * 610, 50 + (1 - precision) * 420."""
    return 80 + recall * 610, 50 + (1 - precision) * 420


def _curve(recall: list[float], precision: list[float | None]) -> PRCurve:
    return PRCurve(
        radius=list(range(len(recall))),
        precision=precision,
        recall=recall,
        queries_with_items=[0 if p is None else 1 for p in precision],
    )


def _pixels(tmp_path, curve: PRCurve) -> np.ndarray:
    path = save_pr_curve(curve, tmp_path / "curve.png", bits=16)
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _blue(pixels: np.ndarray) -> np.ndarray:
    return (pixels == BLUE).all(axis=2)


def _blue_near(pixels: np.ndarray, x: float, y: float, tolerance: int = 1) -> bool:
    col, row = round(x), round(y)
    window = pixels[row - tolerance : row + tolerance + 1, col - tolerance : col + tolerance + 1]
    return bool(_blue(window).any())


def test_a_png_of_the_documented_size(tmp_path):
    path = save_pr_curve(_curve([0.0, 1.0], [1.0, 0.5]), tmp_path / "curve.png", bits=16)
    assert path == tmp_path / "curve.png"
    with Image.open(path) as image:
        assert (image.format, image.size, image.mode) == ("PNG", (720, 540), "RGB")
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]  # no temporary file left


def test_points_and_line_sit_where_the_axes_put_them(tmp_path):
    recall, precision = [0.1, 0.5, 0.9], [0.95, 0.45, 0.15]
    pixels = _pixels(tmp_path, _curve(recall, precision))
    points = [_xy(r, p) for r, p in zip(recall, precision, strict=True)]
    assert [tuple(round(v) for v in pt) for pt in points] == [(141, 71), (385, 281), (629, 407)]
    for x, y in points:  # the dots, radius 4
        assert _blue(pixels[round(y) - 3 : round(y) + 4, round(x) - 3 : round(x) + 4]).all()
    # Every column between the first and the last point holds the line, at the height the
    # straight segment between its two points gives (within a pixel or two).
    for col in range(round(points[0][0]) + 5, round(points[-1][0]) - 4):
        (x0, y0), (x1, y1) = points[:2] if col <= points[1][0] else points[1:]
        y = y0 + (col - x0) * (y1 - y0) / (x1 - x0)
        assert _blue_near(pixels, col, y, tolerance=2), col
    # Nothing blue outside the curve's span, nor far from the line inside it.
    blue = _blue(pixels)
    assert not blue[:, : round(points[0][0]) - 5].any()
    assert not blue[:, round(points[-1][0]) + 5 :].any()
    assert not _blue_near(pixels, *_xy(0.5, 0.9), tolerance=5)  # well above the middle point
    assert not _blue_near(pixels, *_xy(0.5, 0.1), tolerance=5)  # well below it


def test_radii_without_a_precision_are_left_out(tmp_path):
    recall, precision = [0.0, 0.25, 0.5, 0.9], [None, 0.9, None, 0.3]
    pixels = _pixels(tmp_path, _curve(recall, precision))
    (x1, y1), (x3, y3) = _xy(0.25, 0.9), _xy(0.9, 0.3)
    assert _blue_near(pixels, x1, y1) and _blue_near(pixels, x3, y3)
    # radius 2 is skipped: the line runs straight from radius 1 to radius 3 over recall 0.5
    x2 = _xy(0.5, 0)[0]
    assert _blue_near(pixels, x2, y1 + (x2 - x1) * (y3 - y1) / (x3 - x1), tolerance=2)
    for missing in (0.0, 1.0):  # as if None were drawn as a precision of 0 or 1
        assert not _blue_near(pixels, *_xy(0.5, missing), tolerance=4)
    # radius 0 is skipped: no line or dot left of radius 1
    assert not _blue(pixels)[:, : round(x1) - 5].any()


def test_a_single_known_point_is_a_dot_without_a_line(tmp_path):
    pixels = _pixels(tmp_path, _curve([0.3, 0.6], [None, 0.6]))
    x, y = _xy(0.6, 0.6)
    rows, cols = np.nonzero(_blue(pixels))
    assert len(rows) and abs(cols - x).max() <= 5 and abs(rows - y).max() <= 5


def test_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(HashretError, match="does not exist"):
        save_pr_curve(_curve([0.0], [1.0]), tmp_path / "nowhere" / "curve.png", bits=8)


def test_an_unwritable_target_is_a_clear_error(tmp_path):
    (tmp_path / "curve.png").mkdir()  # a folder where the file should go
    with pytest.raises(HashretError, match="cannot write"):
        save_pr_curve(_curve([0.0], [1.0]), tmp_path / "curve.png", bits=8)
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]  # no temporary file left


def test_a_failed_write_leaves_the_old_file_in_place(tmp_path, monkeypatch):
    target = tmp_path / "curve.png"
    target.write_bytes(b"the previous curve")

    def fail(self, fp, *args, **kwargs):
        with open(fp, "wb") as handle:
            handle.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", fail)
    with pytest.raises(HashretError, match="No space left on device"):
        save_pr_curve(_curve([0.0, 1.0], [1.0, 0.5]), target, bits=8)
    assert target.read_bytes() == b"the previous curve"
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]
