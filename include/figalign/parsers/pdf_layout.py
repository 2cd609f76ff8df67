"""Page geometry for the plain-PDF parser: text lines, graphic boxes, columns, body text.

Everything here is read once per page with two cheap PyMuPDF calls (``get_text("dict")``
and ``get_bboxlog()``) so the parser stays within a small factor of a bare text pass; the
caption and region heuristics (pdf_captions, pdf_regions) then work on plain tuples.
Coordinates are PDF points with the origin at the page's top-left, as PyMuPDF gives them.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

Box = tuple[float, float, float, float]

_GRAPHIC_KINDS = ("fill-path", "stroke-path", "fill-image", "fill-imgmask", "fill-shade")
_WORD = re.compile(r"\S+")
_ALPHA_WORD = re.compile(r"[A-Za-z]{2,}")
_WORD_CHARS = re.compile(r"\w")
# Page zones that hold running heads and page numbers, as fractions of the page height.
HEADER_FRAC = 0.07
FOOTER_FRAC = 0.935


@dataclass
class Line:
    """One horizontal (or rotated) text line with the font cues caption detection needs."""

    bbox: Box
    text: str
    size: float
    font: str
    bold: bool
    label_font: str
    label_bold: bool
    block: int
    horizontal: bool
    words: int
    alpha_words: int

    @property
    def width(self) -> float:
        return self.bbox[2] - self.bbox[0]

    @property
    def height(self) -> float:
        return self.bbox[3] - self.bbox[1]


@dataclass
class PageData:
    """What the heuristics need of one page; built once, never touches PyMuPDF again."""

    index: int
    width: float
    height: float
    lines: list[Line] = field(default_factory=list)
    graphics: list[Box] = field(default_factory=list)
    reading: list[Line] = field(default_factory=list)  # body lines in reading order, set by the parser


@dataclass
class DocStats:
    """Document-wide typography: the body font size and the horizontal text area."""

    body_size: float
    body_font: str
    text_x0: float
    text_x1: float


@dataclass
class Layout:
    """Column layout of one page: one or two column spans inside the text area."""

    columns: list[tuple[float, float]]

    @property
    def two_column(self) -> bool:
        return len(self.columns) == 2

    @property
    def gutter(self) -> float:
        return (self.columns[0][1] + self.columns[1][0]) / 2 if self.two_column else self.columns[0][1]

    @property
    def width(self) -> tuple[float, float]:
        return self.columns[0][0], self.columns[-1][1]


def _is_bold(span: dict) -> bool:
    """Bold from the font flags or the font name (subset prefixes and obfuscated names vary)."""
    name = span.get("font", "").lower()
    return bool(span.get("flags", 0) & 16) or any(k in name for k in ("bold", "-bd", ".b", "black", "heavy", "semibold"))


def _text_size(spans: list[dict], default: float) -> float:
    """The size of a line's running text: the largest size that sets at least 30 % of its
    word characters. Sub/superscripts and small capitals are smaller and a bold label can be
    larger; whichever span is longest must not make the line look like another block."""
    chars: dict[float, int] = {}
    for sp in spans:
        chars[round(sp["size"], 1)] = chars.get(round(sp["size"], 1), 0) + len(_WORD_CHARS.findall(sp["text"]))
    total = sum(chars.values())
    if not total:
        return default
    return next((size for size in sorted(chars, reverse=True) if chars[size] >= 0.3 * total),
                max(chars, key=chars.get))


def _line_from_dict(raw: dict, block_no: int) -> Line | None:
    """Turn one PyMuPDF line dict into a Line; None for lines with no visible text."""
    spans = [s for s in raw.get("spans", []) if s.get("text")]
    text = "".join(s["text"] for s in spans)
    if not text.strip():
        return None
    main = max(spans, key=lambda s: len(s["text"].strip()))
    size = _text_size(spans, main["size"])
    first = next(s for s in spans if s["text"].strip())
    rest = [s for s in spans if s is not first and s["text"].strip()]
    body_span = rest[-1] if rest else first
    dx, dy = raw.get("dir", (1.0, 0.0))
    words = _WORD.findall(text)
    return Line(
        bbox=tuple(raw["bbox"]),
        text=text,
        size=round(size, 1),
        font=body_span.get("font", ""),
        bold=_is_bold(body_span),
        label_font=first.get("font", ""),
        label_bold=_is_bold(first),
        block=block_no,
        horizontal=abs(dy) < 0.05 and dx > 0,
        words=len(words),
        alpha_words=sum(1 for w in words if _ALPHA_WORD.search(w)),
    )


def read_page(page, index: int) -> PageData:
    """Read a page's text lines (graphics come later, see read_graphics)."""
    rect = page.rect
    data = PageData(index=index, width=rect.width, height=rect.height)
    import pymupdf

    # No image blocks (graphics come from the bbox log) and ligatures expanded: cheapest pass.
    flags = pymupdf.TEXT_MEDIABOX_CLIP
    for b_no, block in enumerate(page.get_text("dict", flags=flags)["blocks"]):
        for raw in merge_row_fragments(block.get("lines", [])):
            line = _line_from_dict(raw, b_no)
            if line is not None:
                data.lines.append(line)
    return data


def _fragment_of(prev: dict, raw: dict) -> bool:
    """Whether ``raw`` continues ``prev`` on the same visual row (a sub/superscript or the
    text after one): PyMuPDF starts a new line at every baseline shift, which cut captions
    like "density ρ^p_T(b) ..." at the subscript."""
    if raw.get("dir", (1.0, 0.0)) != prev.get("dir", (1.0, 0.0)) or abs(raw.get("dir", (1, 0))[1]) > 0.05:
        return False
    (_, py0, px1, py1), (x0, y0, _, y1) = prev["bbox"], raw["bbox"]
    overlap = min(py1, y1) - max(py0, y0)
    if overlap <= 0.3 * min(py1 - py0, y1 - y0):
        return False
    size = max((s.get("size", 0.0) for s in prev.get("spans", [])), default=0.0) or (py1 - py0)
    return px1 - 0.2 * size <= x0 <= px1 + 1.0 * size


def merge_row_fragments(raw_lines: list[dict]) -> list[dict]:
    """A block's PyMuPDF lines with the fragments of one visual row joined into one line."""
    out: list[dict] = []
    for raw in raw_lines:
        if out and _fragment_of(out[-1], raw):
            prev = out[-1]
            (px0, py0, px1, py1), (x0, y0, x1, y1) = prev["bbox"], raw["bbox"]
            spans = list(prev.get("spans", []))
            size = max((sp.get("size", 0.0) for sp in spans), default=0.0)
            if x0 - px1 > 0.2 * size and spans and not spans[-1].get("text", "").endswith(" "):
                spans.append({**spans[-1], "text": " "})
            out[-1] = {**prev, "bbox": (min(px0, x0), min(py0, y0), max(px1, x1), max(py1, y1)),
                       "spans": spans + list(raw.get("spans", []))}
        else:
            out.append(raw)
    return out


def read_graphics(page, data: PageData) -> None:
    """Fill in a page's graphic boxes (paths, images, shadings) from PyMuPDF's bbox log.

    Called only for pages that hold a caption: the log has one entry per drawing and text
    run, so on text-heavy pages it costs more than the text extraction itself.
    """
    page_area = data.width * data.height
    for kind, box in page.get_bboxlog():
        if kind in _GRAPHIC_KINDS:
            x0, y0, x1, y1 = box
            if x1 > x0 - 0.01 and y1 > y0 - 0.01 and (x1 - x0) * (y1 - y0) < 0.85 * page_area:
                data.graphics.append((x0, y0, x1, y1))


def doc_stats(pages: list[PageData]) -> DocStats:
    """Body font size and font (most characters) and the text area's horizontal extent."""
    sizes: Counter = Counter()
    fonts: Counter = Counter()
    for p in pages:
        for ln in p.lines:
            if ln.horizontal:
                sizes[ln.size] += len(ln.text)
                fonts[ln.font] += len(ln.text)
    body_size = sizes.most_common(1)[0][0] if sizes else 10.0
    body_font = fonts.most_common(1)[0][0] if fonts else ""
    xs0, xs1 = [], []
    for p in pages:
        for ln in p.lines:
            if ln.horizontal and abs(ln.size - body_size) < 0.6 and ln.words >= 4:
                xs0.append(ln.bbox[0])
                xs1.append(ln.bbox[2])
    if not xs0:
        width = pages[0].width if pages else 612.0
        return DocStats(body_size, body_font, 0.08 * width, 0.92 * width)
    xs0.sort()
    xs1.sort()
    return DocStats(body_size, body_font, xs0[len(xs0) // 50], xs1[-1 - len(xs1) // 50])


def in_margin_zone(line: Line, page: PageData) -> bool:
    """Running heads, page numbers and footers live in thin bands at the page's top/bottom."""
    return line.bbox[3] < HEADER_FRAC * page.height or line.bbox[1] > FOOTER_FRAC * page.height


def page_layout(page: PageData, stats: DocStats) -> Layout:
    """One or two columns, judged from where this page's body-size lines start and end.

    Two columns when most body-size lines fit in one half of the text area and both halves
    hold such lines; the gutter is the middle of the text area.
    """
    x0, x1 = stats.text_x0, stats.text_x1
    mid = (x0 + x1) / 2
    left = right = wide = 0
    for ln in page.lines:
        if not ln.horizontal or ln.words < 4 or abs(ln.size - stats.body_size) > 0.6:
            continue
        if ln.bbox[2] < mid + 5:
            left += 1
        elif ln.bbox[0] > mid - 5:
            right += 1
        else:
            wide += 1
    if left >= 3 and right >= 3 and left + right > 2 * wide:
        return Layout([(x0, mid - 4), (mid + 4, x1)])
    return Layout([(x0, x1)])


def column_of(box: Box, layout: Layout) -> tuple[float, float]:
    """The column span a box belongs to, or the full text width when it straddles the gutter."""
    if not layout.two_column:
        return layout.columns[0]
    g = layout.gutter
    if box[0] < g - 15 and box[2] > g + 15:
        return layout.width
    return layout.columns[0] if (box[0] + box[2]) / 2 < g else layout.columns[1]


def is_body_line(line: Line, stats: DocStats, layout: Layout) -> bool:
    """A line of running body text: body size, several real words, most of a column wide.

    These lines bound figure regions: graphics never extend across a paragraph.
    """
    if not line.horizontal or abs(line.size - stats.body_size) > 0.7:
        return False
    if line.alpha_words < 5 or line.alpha_words < 0.6 * line.words:
        return False
    col = column_of(line.bbox, layout)
    return line.width >= 0.55 * min(col[1] - col[0], layout.columns[0][1] - layout.columns[0][0], 260.0)


_HEADING = re.compile(r"^\s*(?:\d+(?:\.\d+)*\.?|[IVX]+\.|[A-H]\.)\s+[A-Z]")


def is_heading_line(line: Line, stats: DocStats) -> bool:
    """A numbered section heading ("3.1 Methods", "IV. RESULTS") in body size or larger, bold or big."""
    if not line.horizontal or line.words > 14 or line.size < stats.body_size - 0.3:
        return False
    return bool(_HEADING.match(line.text)) and (line.bold or line.label_bold or line.size > stats.body_size + 0.5)


def union(boxes: list[Box]) -> Box | None:
    """Smallest box holding all boxes; None for none."""
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def h_overlap(a: Box, b: Box) -> float:
    """Horizontal overlap of two boxes in points (0 when apart)."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0]))


def v_overlap(a: Box, b: Box) -> float:
    """Vertical overlap of two boxes in points (0 when apart)."""
    return max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
