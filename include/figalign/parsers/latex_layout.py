"""How a LaTeX float lays out its panels: sizes from width/height arguments, rows from breaks.

LaTeX sets the panels of a float like words on a line: side by side until a ``\\\\``, a
blank line or vertical space ends the line, or the next panel no longer fits in the line
width. Reading the same things (``width=0.48\\linewidth``, ``\\begin{subfigure}{0.3\\textwidth}``,
``height=4cm``) gives each panel a size in points and a row, which ``compose`` turns into
one image that looks like the typeset figure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from figalign.parsers.compose import LINE_PT, Cell

_UNITS = {"pt": 1.0, "bp": 1.00375, "mm": 2.84526, "cm": 28.4526, "in": 72.27, "pc": 12.0,
          "em": 10.0, "ex": 4.3, "px": 1.0, "dd": 1.07, "cc": 12.84, "sp": 1 / 65536}
_RELATIVE = {"textwidth": 1.0, "linewidth": 1.0, "columnwidth": 1.0, "hsize": 1.0, "textheight": 1.6,
             "paperwidth": 1.78, "paperheight": 2.3}
_LENGTH = re.compile(r"^\s*(?P<num>[-+]?\d*\.?\d+)?\s*(?:(?P<unit>pt|bp|mm|cm|in|pc|em|ex|px|dd|cc|sp)\b"
                     r"|\\(?P<rel>[A-Za-z]+))")
_KEY = re.compile(r"(?:^|,)\s*(?P<key>width|height|totalheight|scale)\s*=\s*(?P<val>[^,]+)")
_FIT = 1.02  # TeX lets a line overfull by a hair before it breaks


def length_pt(expr: str | None, line_pt: float = LINE_PT) -> float | None:
    """A TeX length in points: "0.45\\textwidth" (relative to ``line_pt``), "5cm", "120pt"."""
    if not expr:
        return None
    m = _LENGTH.match(expr)
    if not m or not (m.group("unit") or m.group("rel")):
        return None
    factor = float(m.group("num")) if m.group("num") else 1.0
    if m.group("unit"):
        return factor * _UNITS[m.group("unit")]
    rel = _RELATIVE.get(m.group("rel"))
    return factor * rel * line_pt if rel is not None else None


def graphic_size(options: str, line_pt: float = LINE_PT) -> tuple[float | None, float | None]:
    """(width, height) in points that ``\\includegraphics[...]``/``\\epsfig{...}`` options ask for."""
    width = height = None
    for m in _KEY.finditer(options or ""):
        key, val = m.group("key"), m.group("val").strip()
        if key == "width":
            width = length_pt(val, line_pt)
        elif key in ("height", "totalheight"):
            height = length_pt(val, line_pt)
    return width, height


@dataclass
class Placed:
    """A panel image at its place in the source: offset in the float body, requested size."""

    pos: int
    cell: Cell


def rows(items: list[Placed], breaks: list[int], line_pt: float = LINE_PT) -> list[list[Cell]]:
    """Split panels (in source order) into rows at line breaks and where a row is full."""
    out: list[list[Cell]] = []
    row: list[Cell] = []
    used = 0.0
    prev_pos = None
    for item in sorted(items, key=lambda p: p.pos):
        width = item.cell.width_pt or 0.0
        broke = prev_pos is not None and any(prev_pos < b < item.pos for b in breaks)
        if row and (broke or (used + width > line_pt * _FIT and width)):
            out.append(row)
            row, used = [], 0.0
        row.append(item.cell)
        used += width
        prev_pos = item.pos
    if row:
        out.append(row)
    return out
