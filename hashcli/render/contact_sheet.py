"""Contact sheets of query results (``hashret query --grid out.jpg``), drawn with Pillow only.

Layout, one row per query, in pixels:

* every cell is a ``THUMB`` x ``THUMB`` thumbnail inside a ``FRAME``-wide frame, with a
  ``CAPTION``-high text band under it: ``CELL_W = THUMB + 2 * FRAME`` wide,
  ``CELL_H = THUMB + 2 * FRAME + CAPTION`` high;
* the query comes first (caption "query", or "query: <class>" when its class is known), then,
  after a ``GAP``, its results left to right, ``SPACING`` apart, captioned "#<rank> d=<distance>";
* a ``MARGIN`` all round; C = the most results any query shows (at most ``max_results``,
  default ``GRID_MAX_RESULTS``), R = the number of queries:

      width  = 2 * MARGIN + (C + 1) * CELL_W + GAP + max(C - 1, 0) * SPACING
      height = 2 * MARGIN + R * CELL_H + (R - 1) * SPACING

Frames: green when a result shares the query's class, red when not; no frame (white) when
either class is unknown (:meth:`SheetQuery.relevant` says which).

The sheet reads only what :class:`SheetQuery` and :class:`SheetNeighbour` describe, so any
result objects with those attributes draw (``hashret query``'s results are such objects).
Thumbnails keep their aspect ratio, centred; images smaller than the cell are enlarged with
nearest-neighbour (an 8x8 digit becomes 96x96 crisp pixels), larger ones reduced with
Lanczos. A result image that cannot be read shows as a grey square with a question mark.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hashcli.errors import HashretError

if TYPE_CHECKING:
    from PIL import Image as PILImage

THUMB = 96
FRAME = 4
CAPTION = 16
SPACING = 4
GAP = 16
MARGIN = 8
CELL_W = THUMB + 2 * FRAME
CELL_H = THUMB + 2 * FRAME + CAPTION
#: Results drawn per query at most; further results are left out of the picture.
GRID_MAX_RESULTS = 50

BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
RELEVANT = (46, 160, 67)
IRRELEVANT = (214, 40, 40)
MISSING = (200, 200, 200)


class SheetNeighbour(Protocol):
    """One result cell: the image at ``path`` (None or unreadable: a grey square), captioned
    "#<rank> d=<distance>"."""

    @property
    def path(self) -> str | None: ...

    @property
    def rank(self) -> int: ...

    @property
    def distance(self) -> int: ...


class SheetQuery(Protocol):
    """One row: the image at ``query``, captioned with ``class_name`` when known (a list of
    names is joined with commas), then its ``neighbours`` in order."""

    @property
    def query(self) -> str: ...

    @property
    def class_name(self) -> str | list[str] | None: ...

    @property
    def neighbours(self) -> Sequence[SheetNeighbour]: ...

    def relevant(self, neighbour: Any, /) -> bool | None:
        """Whether one of ``neighbours`` shares the query's class; None when either class is
        unknown."""


def sheet_size(
    results_per_query: Sequence[int], max_results: int = GRID_MAX_RESULTS
) -> tuple[int, int]:
    """(width, height) of the sheet for queries showing these numbers of results."""
    rows = len(results_per_query)
    cols = min(max(results_per_query, default=0), max_results)
    width = 2 * MARGIN + (cols + 1) * CELL_W + GAP + max(cols - 1, 0) * SPACING
    height = 2 * MARGIN + rows * CELL_H + max(rows - 1, 0) * SPACING
    return width, height


def thumbnail(image: PILImage.Image, size: int = THUMB) -> PILImage.Image:
    """``image`` scaled to fit ``size`` x ``size``, aspect kept (nearest-neighbour upwards)."""
    from PIL import Image

    w, h = image.size
    scale = size / max(w, h)
    new = (max(1, min(size, round(w * scale))), max(1, min(size, round(h * scale))))
    if new == image.size:
        return image
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    return image.resize(new, resample)


def _picture(path: str | None) -> PILImage.Image | None:
    from hashcli.data.images import load_image
    from hashcli.errors import HashretError

    if not path:
        return None
    try:
        return thumbnail(load_image(path))
    except HashretError:
        return None


def _cell(sheet, draw, font, x: int, y: int, picture, frame, caption: str) -> None:
    if frame is not None:
        draw.rectangle([x, y, x + CELL_W - 1, y + CELL_W - 1], fill=frame)
    box = (x + FRAME, y + FRAME)
    if picture is None:
        draw.rectangle([box[0], box[1], box[0] + THUMB - 1, box[1] + THUMB - 1], fill=MISSING)
        draw.text(
            (box[0] + THUMB // 2, box[1] + THUMB // 2), "?", fill=TEXT, font=font, anchor="mm"
        )
    else:
        if frame is not None:  # the frame colour must not show through a narrow thumbnail
            draw.rectangle(
                [box[0], box[1], box[0] + THUMB - 1, box[1] + THUMB - 1], fill=BACKGROUND
            )
        sheet.paste(
            picture, (box[0] + (THUMB - picture.width) // 2, box[1] + (THUMB - picture.height) // 2)
        )
    text = caption
    while text and draw.textlength(text, font=font) > CELL_W:
        text = text[:-1]
    draw.text((x + CELL_W // 2, y + CELL_W + CAPTION // 2), text, fill=TEXT, font=font, anchor="mm")


def render_contact_sheet(
    results: Sequence[SheetQuery], max_results: int = GRID_MAX_RESULTS
) -> PILImage.Image:
    """The contact sheet of ``results`` as an RGB image (layout in the module docstring)."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = sheet_size([len(r.neighbours) for r in results], max_results)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, result in enumerate(results):
        y = MARGIN + i * (CELL_H + SPACING)
        name = result.class_name
        if isinstance(name, list):
            name = ",".join(name)
        caption = f"query: {name}" if name else "query"
        _cell(sheet, draw, font, MARGIN, y, _picture(result.query), None, caption)
        for j, neighbour in enumerate(result.neighbours[:max_results]):
            x = MARGIN + CELL_W + GAP + j * (CELL_W + SPACING)
            relevant = result.relevant(neighbour)
            frame = None if relevant is None else (RELEVANT if relevant else IRRELEVANT)
            caption = f"#{neighbour.rank} d={neighbour.distance}"
            _cell(sheet, draw, font, x, y, _picture(neighbour.path), frame, caption)
    return sheet


def write_contact_sheet(
    results: Sequence[SheetQuery],
    path: str | os.PathLike[str],
    max_results: int = GRID_MAX_RESULTS,
) -> Path:
    """Write the contact sheet of ``results`` to ``path`` atomically (format by extension)."""
    from hashcli.errors import HashretError
    from hashcli.fileio import atomic_path

    sheet = render_contact_sheet(results, max_results)
    target = Path(path)
    try:
        with atomic_path(target) as tmp:
            options = {"quality": 90} if target.suffix.lower() in (".jpg", ".jpeg") else {}
            sheet.save(tmp, **options)
    except (OSError, ValueError) as exc:
        raise HashretError(f"could not write the grid {target}: {exc}") from None
    return target


def check_grid_path(grid: str | os.PathLike[str]) -> Path:
    """``grid`` if Pillow can write an image by its extension, else a HashretError."""
    from PIL import Image

    path = Path(grid).expanduser()
    if path.is_dir():
        raise HashretError(f"--grid {path} is a folder; name the image (e.g. {path}/grid.jpg)")
    if path.suffix.lower() not in Image.registered_extensions():
        raise HashretError(
            f"--grid {path}: unknown image type {path.suffix or '(no extension)'!r}; "
            "use .jpg or .png"
        )
    return path
