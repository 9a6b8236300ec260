"""Contact sheets: size from the documented layout, frames, crisp enlarged thumbnails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hashcli.errors import HashretError
from hashcli.render.contact_sheet import check_grid_path, write_contact_sheet
from hashcli.workflows.query import Neighbour, QueryResult

GREEN, RED, WHITE, GREY = (46, 160, 67), (214, 40, 40), (255, 255, 255), (200, 200, 200)


def _image(path: Path, size: tuple[int, int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _result(query: Path, label, neighbours: list[tuple[str | None, int | None]]) -> QueryResult:
    return QueryResult(
        query=str(query),
        code=np.zeros(2, np.uint8),
        neighbours=[
            Neighbour(rank, rank - 1, path, lab, None if lab is None else f"c{lab}", rank)
            for rank, (path, lab) in enumerate(neighbours, start=1)
        ],
        label=label,
    )


def test_sheet_size_follows_the_documented_layout(tmp_path):
    a = _image(tmp_path / "a.png", (8, 8), 0)
    b = _image(tmp_path / "b.png", (40, 20), 1)
    results = [
        _result(a, 1, [(str(b), 1)] * 3),
        _result(b, None, [(str(a), 0)] * 5),
    ]
    out = write_contact_sheet(results, tmp_path / "sheet.png")
    # cells: 96 + 2*4 = 104 wide, 104 + 16 = 120 high; C = 5 results, R = 2 queries
    width = 2 * 8 + (5 + 1) * 104 + 16 + (5 - 1) * 4
    height = 2 * 8 + 2 * 120 + (2 - 1) * 4
    with Image.open(out) as sheet:
        assert sheet.size == (width, height) == (672, 260)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "sheet.png"]


def test_frames_show_relevance_only_when_both_classes_are_known(tmp_path):
    digit = _image(tmp_path / "digit.png", (8, 8), 2)
    results = [
        _result(digit, 3, [(str(digit), 3), (str(digit), 4), (str(digit), None)]),
        _result(digit, None, [(str(digit), 3)]),
    ]
    out = write_contact_sheet(results, tmp_path / "sheet.png")
    sheet = np.asarray(Image.open(out).convert("RGB"))

    def frame_pixel(row: int, col: int) -> tuple:  # top-left corner of a result's frame
        x = 8 + 104 + 16 + col * (104 + 4)
        y = 8 + row * (120 + 4)
        return tuple(sheet[y + 1, x + 1])

    assert frame_pixel(0, 0) == GREEN
    assert frame_pixel(0, 1) == RED
    assert frame_pixel(0, 2) == WHITE  # the result's class is unknown
    assert frame_pixel(1, 0) == WHITE  # the query's class is unknown
    assert tuple(sheet[8 + 1, 8 + 1]) == WHITE  # the query itself is never framed


def test_tiny_images_are_enlarged_with_nearest_neighbour(tmp_path):
    digit = _image(tmp_path / "digit.png", (8, 8), 3)
    pixels = np.asarray(Image.open(digit).convert("RGB"))
    out = write_contact_sheet([_result(digit, None, [])], tmp_path / "sheet.png")
    sheet = np.asarray(Image.open(out).convert("RGB"))
    thumb = sheet[8 + 4 : 8 + 4 + 96, 8 + 4 : 8 + 4 + 96]  # 8x8 -> 96x96: 12x12 blocks
    np.testing.assert_array_equal(thumb, pixels.repeat(12, axis=0).repeat(12, axis=1))


def test_an_unreadable_result_image_is_a_grey_square(tmp_path):
    query = _image(tmp_path / "q.png", (8, 8), 4)
    out = write_contact_sheet(
        [_result(query, None, [(str(tmp_path / "gone.png"), None)])], tmp_path / "sheet.jpg"
    )
    sheet = np.asarray(Image.open(out).convert("RGB")).astype(int)
    corner = sheet[8 + 4 + 2, 8 + 104 + 16 + 4 + 2]
    assert np.abs(corner - GREY).max() <= 6  # JPEG


def test_grid_paths_need_an_image_extension(tmp_path):
    assert check_grid_path(tmp_path / "x.JPG") == tmp_path / "x.JPG"
    with pytest.raises(HashretError, match="unknown image type"):
        check_grid_path(tmp_path / "x.txt")
    with pytest.raises(HashretError, match="is a folder"):
        check_grid_path(tmp_path)
