"""Caption detection for plain PDFs: which lines start a caption and where it ends.

A caption starts with a label ("Figure 3.", "Fig. 3 |", "TABLE II", "Extended Data Fig. 2")
at the start of a line. A body sentence that merely begins with a reference ("Figure 3
shows ...") is told apart by what follows the number (punctuation, or the label alone on
its line), by a label font that differs from the text after it (bold labels), and by the
line not continuing the sentence of the line above it. The caption then runs through the
following lines of the same column and font size until a vertical gap, a size change or
another label; blocks are ignored because PDF producers split captions arbitrarily.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from figalign.parsers.pdf_layout import DocStats, Layout, Line, PageData, column_of, h_overlap, in_margin_zone, union, v_overlap
from figalign.parsers.text import LABEL_RE, clean_caption, parse_label, strip_label

_STRONG_SEP = re.compile(r"[:.|—–-]")
_REFERENCE_TAIL = re.compile(r"^\s*(?:[,;)\]]|and\b|&|or\b|to\b|–|-\s*\d)", re.IGNORECASE)
_ENDS_SENTENCE = re.compile(r"[.:!?)\]]\s*$")
MAX_CAPTION_LINES = 40


@dataclass
class Caption:
    """A detected caption: its label parts, its lines and the text without the label."""

    kind: str
    number: str
    label: str
    page: int
    lines: list[Line] = field(default_factory=list)
    strong: bool = True

    @property
    def bbox(self):
        return union([ln.bbox for ln in self.lines])

    @property
    def text(self) -> str:
        """Caption text without its label, de-hyphenated and whitespace-normalised."""
        return strip_label(clean_caption("\n".join(ln.text for ln in self.lines)))


def _label_cue(line: Line, rest: str, sep: str, stats: DocStats) -> bool | None:
    """True for a strong caption start, False for a weak one, None for a body-text reference."""
    if _REFERENCE_TAIL.match(rest):
        return None
    if not rest.strip():
        return True  # "TABLE II" / "Fig. 1" alone on its line
    if sep and _STRONG_SEP.search(sep):
        return True
    if line.label_bold and not line.bold:
        return True
    if line.label_font != line.font and line.label_font != stats.body_font:
        return True
    return None


def _continues_sentence(line: Line, prev: Line | None) -> bool:
    """Whether the line above runs on into this one (same block, no sentence end, close)."""
    if prev is None or prev.block != line.block or abs(prev.size - line.size) > 0.5 or prev.alpha_words < 3:
        return False
    gap = line.bbox[1] - prev.bbox[3]
    return gap < 0.5 * line.size and not _ENDS_SENTENCE.search(prev.text)


def caption_start(line: Line, prev: Line | None, stats: DocStats) -> tuple[str, str, str, bool] | None:
    """(kind, number, label, strong) when the line starts a caption, else None."""
    if not line.horizontal:
        return None
    m = LABEL_RE.match(line.text)
    parsed = parse_label(line.text) if m else None
    if parsed is None:
        return None
    cue = _label_cue(line, line.text[m.end():], m.group("sep") or "", stats)
    if cue is None or _continues_sentence(line, prev):
        return None
    return parsed[0], parsed[1], parsed[2], cue


def _aligned(ln: Line, cap_lines: list[Line]) -> bool:
    """A line starts where the caption's lines start, or is centred on the caption's axis.

    A centred line continues a centred caption only inside the caption's own width: LaTeX
    centres a caption that fits on one line, and the full-width paragraph after it is
    "centred" on the same axis without being part of it. (A label alone on its line, as
    in "FIG. 1." above its text, is the exception: its text is wider than it.)
    """
    first = cap_lines[0].bbox
    box = union([c.bbox for c in cap_lines])
    centre = (box[0] + box[2]) / 2
    if abs(ln.bbox[0] - first[0]) <= 3 or abs(ln.bbox[0] - box[0]) <= 3:
        return True
    if abs((ln.bbox[0] + ln.bbox[2]) / 2 - centre) > 6:
        return False
    label_only = len(cap_lines) == 1 and not LABEL_RE.sub("", cap_lines[0].text, count=1).strip()
    return label_only or ln.bbox[0] >= box[0] - 3


def _continues(ln: Line, cap_lines: list[Line], span: tuple[float, float], size: float, tol: float) -> tuple | None:
    """Sort key when ``ln`` can continue the caption (same row, or next line below), else None."""
    last = cap_lines[-1]
    if not ln.horizontal or ln.bbox[0] < span[0] - 6 or ln.bbox[2] > span[1] + 6:
        return None
    # Word spacing is well under 0.6 em, but a lone label ("Fig. 2.", "Table 1:") is often set
    # apart from its text by an em space or more; a wider gap is the gutter to the next column
    # or the caption of the figure beside this one.
    reach = 2.0 * size if len(cap_lines) == 1 and not LABEL_RE.sub("", last.text, count=1).strip() else 0.6 * size
    same_row = v_overlap(ln.bbox, last.bbox) > 0.5 * min(ln.height, last.height) and max(last.bbox[0] + 1, last.bbox[2] - size) <= ln.bbox[0] <= last.bbox[2] + reach
    # a sub/superscript the PDF set as its own line ("ρ^p_T") is part of the row it sits on
    script = same_row and 0.5 * size <= ln.size < size
    if abs(ln.size - size) > tol and not script:
        return None
    if same_row:
        return (0, ln.bbox[1], ln.bbox[0])
    gap = ln.bbox[1] - last.bbox[3]
    if not (-0.3 * size <= gap <= 0.75 * size and ln.bbox[1] > last.bbox[1] + 0.3 * size):
        return None
    if h_overlap(ln.bbox, union([c.bbox for c in cap_lines])) <= 0:
        return None
    # After a full stop only an aligned line continues: table headers and figure text are not.
    if _ENDS_SENTENCE.search(last.text) and not _aligned(ln, cap_lines):
        return None
    return (1, ln.bbox[1], ln.bbox[0])


def _next_caption_line(cap_lines: list[Line], candidates: list[Line], span: tuple[float, float], size: float, tol: float) -> Line | None:
    """The line that continues a caption: same row to the right, or just below in its span."""
    best = None
    for ln in candidates:
        key = _continues(ln, cap_lines, span, size, tol)
        if key is not None and (best is None or key < best[0]):
            best = (key, ln)
    return best[1] if best else None


def extend_caption(start: Line, page: PageData, layout: Layout, used: set[int]) -> list[Line]:
    """Grow a caption from its first line through the lines that continue it."""
    span = column_of(start.bbox, layout)
    span = (min(span[0], start.bbox[0]), max(span[1], start.bbox[2]))
    lines = [start]
    ids = {id(start)}
    label_only = not LABEL_RE.sub("", start.text, count=1).strip()
    size = start.size
    while len(lines) < MAX_CAPTION_LINES:
        cands = [ln for ln in page.lines if id(ln) not in ids and id(ln) not in used]
        tol = 2.5 if label_only and len(lines) == 1 else 0.8
        nxt = _next_caption_line(lines, cands, span, size, tol)
        if nxt is None or (LABEL_RE.match(nxt.text) and parse_label(nxt.text) and len(lines) > 1):
            break
        if label_only and len(lines) == 1:
            size = nxt.size
        lines.append(nxt)
        ids.add(id(nxt))
    return lines


def find_captions(page: PageData, stats: DocStats, layout: Layout) -> list[Caption]:
    """Every caption on a page, in top-to-bottom order."""
    captions: list[Caption] = []
    used: set[int] = set()
    prev: Line | None = None
    ordered = sorted(page.lines, key=lambda ln: (ln.block, ln.bbox[1], ln.bbox[0]))
    for ln in ordered:
        start = None if id(ln) in used or in_margin_zone(ln, page) else caption_start(ln, prev, stats)
        prev = ln
        if start is None:
            continue
        kind, number, label, strong = start
        lines = extend_caption(ln, page, layout, used)
        used.update(id(x) for x in lines)
        captions.append(Caption(kind=kind, number=number, label=label, page=page.index, lines=lines, strong=strong))
    captions.sort(key=lambda c: (c.bbox[1], c.bbox[0]))
    return captions
