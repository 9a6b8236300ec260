"""A precision-recall curve as a PNG, drawn with Pillow (matplotlib is not a dependency).

Layout, in pixels: a white RGB image 720 wide and 540 high; the plot is the rectangle inside
margins of 80 (left), 50 (top), 30 (right) and 70 (bottom), so it is 610 x 420 and a point
(recall, precision) sits at

    x = 80 + recall * 610,   y = 50 + (1 - precision) * 420

(recall 0 to 1 left to right, precision 1 to 0 top to bottom), with grid lines every 0.2.
One point per Hamming radius whose precision is known (a radius within which no query has an
item has none, and is left out), a dot of radius 4, joined in radius order by a 3-pixel line,
both in blue (31, 119, 180); a point is labelled ``r=<radius>`` above its right where that
does not crowd the previous label.
"""

from __future__ import annotations

import os
from pathlib import Path

from hashcli.errors import HashretError
from hashcli.fileio import atomic_path
from hashcli.metrics.evaluate import PRCurve

_SIZE = (720, 540)
_MARGIN = (80, 50, 30, 70)  # left, top, right, bottom: room for ticks and labels
_LINE = (31, 119, 180)
_GRID = (225, 225, 225)
_INK = (30, 30, 30)


def _font(size: int):  # noqa: ANN202 - a PIL font object
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def render_pr_curve(curve: PRCurve, title: str):  # noqa: ANN201 - a PIL Image
    """Draw recall (x) against precision (y), one point per Hamming radius, labelled by radius."""
    from PIL import Image, ImageDraw

    width, height = _SIZE
    left, top, right, bottom = _MARGIN
    plot_w, plot_h = width - left - right, height - top - bottom
    image = Image.new("RGB", _SIZE, "white")
    draw = ImageDraw.Draw(image)
    font, small = _font(16), _font(12)

    def xy(recall: float, precision: float) -> tuple[float, float]:
        return left + recall * plot_w, top + (1 - precision) * plot_h

    for i in range(6):
        tick = i / 5
        x, _ = xy(tick, 0)
        _, y = xy(0, tick)
        draw.line([(x, top), (x, top + plot_h)], fill=_GRID)
        draw.line([(left, y), (left + plot_w, y)], fill=_GRID)
        draw.text((x, top + plot_h + 6), f"{tick:.1f}", fill=_INK, font=small, anchor="mt")
        draw.text((left - 8, y), f"{tick:.1f}", fill=_INK, font=small, anchor="rm")
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=_INK)
    draw.text((left + plot_w / 2, height - 22), "Recall", fill=_INK, font=font, anchor="mm")
    draw.text((width / 2, top / 2), title, fill=_INK, font=font, anchor="mm")
    label = Image.new("RGB", (160, 24), "white")
    ImageDraw.Draw(label).text((80, 12), "Precision", fill=_INK, font=font, anchor="mm")
    label = label.rotate(90, expand=True)
    image.paste(label, (8, int(top + plot_h / 2 - label.height / 2)))

    points = [
        (t, xy(r, p))
        for t, r, p in zip(curve.radius, curve.recall, curve.precision, strict=True)
        if p is not None
    ]
    if len(points) > 1:
        draw.line([pt for _, pt in points], fill=_LINE, width=3)
    # Label the radii where there is room, so that the reader can tell which point is which.
    last = None
    for t, (x, y) in points:
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=_LINE)
        if last is None or abs(x - last[0]) + abs(y - last[1]) > 45:
            draw.text((x + 6, y - 6), f"r={t}", fill=_INK, font=small, anchor="ld")
            last = (x, y)
    return image


def save_pr_curve(curve: PRCurve, path: str | os.PathLike[str], *, bits: int) -> Path:
    """Write the curve as a PNG atomically (temporary file in the same folder, then rename).

    HashretError when the folder does not exist or the file cannot be written; a file
    already at ``path`` is then left as it was.
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise HashretError(f"cannot write {target}: folder {target.parent} does not exist")
    image = render_pr_curve(curve, f"Precision-recall by Hamming radius ({bits} bits)")
    try:
        with atomic_path(target, suffix=".png") as tmp:
            image.save(tmp, format="PNG")
    except OSError as exc:
        raise HashretError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target
