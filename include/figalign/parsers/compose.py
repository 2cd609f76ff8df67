"""One image for a multi-panel figure, composed from its panel images.

A figure's caption describes every panel, so the image exported, recaptioned and scored
with it must show every panel, not panel (a). When there is no typeset page to crop (no
PDF), the panels are laid out the way the source lays them out: rows in order, each panel
at its requested size in points (LaTeX ``width=``/``height=``), or an equal share of the
row when the source gives none (JATS), bottom-aligned like TeX boxes on a line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from figalign.errors import BadInputError
from figalign.parsers.images import open_image, save_png
from figalign.records import FigureImage

LINE_PT = 345.0  # LaTeX article \textwidth; relative widths are fractions of it
GAP_PT = 8.0


@dataclass
class Cell:
    """One panel: its image file and the size the source asks for, in points (None = unset)."""

    path: str
    width_pt: float | None = None
    height_pt: float | None = None


def grid_rows(cells: list[Cell], max_per_row: int = 3) -> list[list[Cell]]:
    """Rows for panels with no layout of their own (JATS): at most three across, balanced."""
    if not cells:
        return []
    n_rows = math.ceil(len(cells) / max_per_row)
    per_row = math.ceil(len(cells) / n_rows)
    return [cells[i:i + per_row] for i in range(0, len(cells), per_row)]


def _box(cell: Cell, img, share: float) -> tuple[float, float]:
    """The panel's size in points: requested width, else requested height, else its share."""
    aspect = img.height / max(1, img.width)
    if cell.width_pt:
        return cell.width_pt, cell.width_pt * aspect
    if cell.height_pt:
        return cell.height_pt / max(aspect, 1e-6), cell.height_pt
    return share, share * aspect


def compose(rows: list[list[Cell]], out_path: Path, *, max_side: int) -> FigureImage:
    """Paste the panels of ``rows`` onto one white canvas and save it as PNG.

    The pixel scale keeps the panels near their own resolution (the median of their
    pixels-per-point) and the canvas within ``max_side``.
    """
    from PIL import Image

    rows = [r for r in rows if r]
    if not rows or sum(len(r) for r in rows) < 2:
        raise BadInputError("a composite needs at least two panels")
    placed: list[list[tuple[object, float, float]]] = []
    densities: list[float] = []
    for row in rows:
        share = (LINE_PT - GAP_PT * (len(row) - 1)) / len(row)
        items = []
        for cell in row:
            img = open_image(Path(cell.path).read_bytes())
            w, h = _box(cell, img, share)
            items.append((img, w, h))
            densities.append(img.width / max(w, 1.0))
        placed.append(items)
    widths = [sum(w for _, w, _ in r) + GAP_PT * (len(r) - 1) for r in placed]
    heights = [max(h for _, _, h in r) for r in placed]
    canvas_w, canvas_h = max(widths), sum(heights) + GAP_PT * (len(placed) - 1)
    scale = sorted(densities)[len(densities) // 2]
    scale = max(0.5, min(scale, max_side / max(canvas_w, canvas_h)))
    canvas = Image.new("RGB", (max(1, round(canvas_w * scale)), max(1, round(canvas_h * scale))), "white")
    y = 0.0
    for items, row_w, row_h in zip(placed, widths, heights):
        x = (canvas_w - row_w) / 2
        for img, w, h in items:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            panel = img.convert("RGB").resize(size, Image.LANCZOS)
            canvas.paste(panel, (round(x * scale), round((y + row_h - h) * scale)))
            x += w + GAP_PT
        y += row_h + GAP_PT
    return save_png(canvas, out_path, max_side=max_side)
