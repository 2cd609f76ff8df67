"""Figure regions for plain PDFs: the graphic a caption belongs to, by page geometry.

For each caption we look at a *band*: the column span the caption sits in (full text width
for captions across the gutter, narrowed where captions stand side by side), bounded
vertically by the caption and the nearest barrier (a body-text line, another caption, the
running head or footer zone). Figures look above their caption first, tables below. The
region is the union of the graphics (paths, images, shadings) in the band, grown by the
short text lines touching it (tick labels, legends). A band without real graphic content
gives no region: a figure is never invented from text alone.
"""

from __future__ import annotations

from figalign.parsers.pdf_captions import Caption
from figalign.parsers.pdf_layout import (
    FOOTER_FRAC,
    HEADER_FRAC,
    Box,
    DocStats,
    Layout,
    Line,
    PageData,
    column_of,
    h_overlap,
    is_body_line,
    is_heading_line,
    union,
)

MIN_GRAPHIC_SIDE = 18.0
LABEL_PAD = 8.0


def _beside(cap: Caption, page: PageData, stats: DocStats, x0: float, x1: float) -> tuple[float, float]:
    """Narrow a span by body text standing beside the caption (wrapped figures)."""
    box = cap.bbox
    own = {id(ln) for ln in cap.lines}
    for ln in page.lines:
        if id(ln) in own or not ln.horizontal or ln.alpha_words < 3 or abs(ln.size - stats.body_size) > 0.7:
            continue
        if min(box[3], ln.bbox[3]) - max(box[1], ln.bbox[1]) <= 0:
            continue
        if ln.bbox[0] >= box[2] - 1:
            x1 = min(x1, ln.bbox[0] - 2)
        elif ln.bbox[2] <= box[0] + 1:
            x0 = max(x0, ln.bbox[2] + 2)
    return x0, x1


def caption_span(cap: Caption, captions: list[Caption], layout: Layout, page: PageData, stats: DocStats) -> tuple[float, float]:
    """Horizontal span of a caption's graphic: its column, split from side-by-side captions
    and from body text wrapped beside the caption."""
    box = cap.bbox
    x0, x1 = column_of(box, layout)
    x0, x1 = _beside(cap, page, stats, min(x0, box[0]), max(x1, box[2]))
    for other in captions:
        ob = other.bbox
        if other is cap or min(box[3], ob[3]) - max(box[1], ob[1]) <= 0:
            continue
        if ob[2] <= box[0]:
            x0 = max(x0, (ob[2] + box[0]) / 2)
        elif ob[0] >= box[2]:
            x1 = min(x1, (box[2] + ob[0]) / 2)
    return x0, x1


def _barriers(page: PageData, stats: DocStats, layout: Layout, caption_ids: set[int]) -> list[Line]:
    """Lines a figure region never crosses: body text and caption lines."""
    return [
        ln for ln in page.lines
        if id(ln) in caption_ids or is_body_line(ln, stats, layout) or is_heading_line(ln, stats)
    ]


def _band(cap: Caption, span, page: PageData, barriers: list[Line], own: set[int], above: bool) -> tuple[Box, Line | None]:
    """The free band above (or below) a caption inside its span, and the barrier line ending it."""
    cb = cap.bbox
    probe = (span[0], 0.0, span[1], page.height)
    stop = None
    if above:
        top = max((ln.bbox[3] for ln in page.lines if ln.bbox[3] < HEADER_FRAC * page.height), default=0.0)
        for ln in barriers:
            if id(ln) not in own and ln.bbox[3] <= cb[1] + 1 and h_overlap(ln.bbox, probe) > 0.3 * ln.width and ln.bbox[3] > top:
                top, stop = ln.bbox[3], ln
        return (span[0], top, span[1], cb[1]), stop
    bottom = min((ln.bbox[1] for ln in page.lines if ln.bbox[1] > FOOTER_FRAC * page.height), default=page.height)
    for ln in barriers:
        if id(ln) not in own and ln.bbox[1] >= cb[3] - 1 and h_overlap(ln.bbox, probe) > 0.3 * ln.width and ln.bbox[1] < bottom:
            bottom, stop = ln.bbox[1], ln
    return (span[0], cb[3], span[1], bottom), stop


def _split_shared(band: Box, page: PageData, above: bool) -> Box:
    """Halve a band two captions look into (table caption above, figure caption below).

    The cut goes through the widest empty horizontal strip between the band's contents,
    so each caption keeps the graphic on its side.
    """
    items = sorted(
        [g for g in page.graphics if _inside(g, band)] + [ln.bbox for ln in page.lines if _inside(ln.bbox, band, 1.0)],
        key=lambda b: b[1],
    )
    best_gap, cut, reach = 0.0, None, None
    for b in items:
        if reach is not None and b[1] - reach > best_gap:
            best_gap, cut = b[1] - reach, (reach + b[1]) / 2
        reach = b[3] if reach is None else max(reach, b[3])
    if cut is None:
        return band
    return (band[0], cut, band[2], band[3]) if above else (band[0], band[1], band[2], cut)


def _inside(box: Box, band: Box, tol: float = 3.0) -> bool:
    """A box lies in the band: vertically within it, horizontally centred in it."""
    cx = (box[0] + box[2]) / 2
    return box[1] >= band[1] - tol and box[3] <= band[3] + tol and band[0] <= cx <= band[2]


def _graphics_in(page: PageData, band: Box) -> Box | None:
    """Union of the graphics in a band, or None when they are too small to be a figure."""
    inside = [g for g in page.graphics if _inside(g, band)]
    box = union(inside)
    if box is None or box[2] - box[0] < MIN_GRAPHIC_SIDE or box[3] - box[1] < MIN_GRAPHIC_SIDE:
        return None
    return box


def _grow_with_labels(box: Box, band: Box, page: PageData, blocked: set[int]) -> Box:
    """Add the short text lines touching the graphic (ticks, legends, panel letters)."""
    lines = [ln for ln in page.lines if id(ln) not in blocked and _inside(ln.bbox, band, 1.0)]
    for _ in range(3):
        grown = box
        pad = (box[0] - LABEL_PAD, box[1] - LABEL_PAD, box[2] + LABEL_PAD, box[3] + LABEL_PAD)
        for ln in lines:
            b = ln.bbox
            if b[0] < pad[2] and b[2] > pad[0] and b[1] < pad[3] and b[3] > pad[1]:
                grown = union([grown, b])
        if grown == box:
            break
        box = grown
    return (max(box[0], 0.0), max(box[1], band[1]), box[2], min(box[3], band[3]))


def _text_region(band: Box, page: PageData, blocked: set[int], size: float) -> Box | None:
    """A ruleless table: the text lines that follow the caption without a paragraph-size gap."""
    lines = sorted((ln for ln in page.lines if id(ln) not in blocked and _inside(ln.bbox, band, 1.0)), key=lambda ln: ln.bbox[1])
    box, reach = None, band[1]
    for ln in lines:
        if ln.bbox[1] - reach > 2.5 * size:
            break
        box = ln.bbox if box is None else union([box, ln.bbox])
        reach = max(reach, ln.bbox[3])
    return box if box is not None and box[3] - box[1] >= MIN_GRAPHIC_SIDE else None


def _looks_into(other: Caption, above: bool) -> bool:
    """Whether another caption's graphic is on the side facing us (tables below, figures above)."""
    return (other.kind == "table") == above


def figure_region(
    cap: Caption,
    captions: list[Caption],
    page: PageData,
    stats: DocStats,
    layout: Layout,
) -> Box | None:
    """The bbox of a caption's graphic on its page, or None when the page shows none."""
    caption_ids = {id(ln) for c in captions for ln in c.lines}
    owner = {id(ln): c for c in captions for ln in c.lines}
    barriers = _barriers(page, stats, layout, caption_ids)
    own = {id(ln) for ln in cap.lines}
    span = caption_span(cap, captions, layout, page, stats)
    order = (False, True) if cap.kind == "table" else (True, False)
    blocked = caption_ids | {id(ln) for ln in barriers}
    for above in order:
        band, stop = _band(cap, span, page, barriers, own, above)
        if stop is not None and id(stop) in owner and _looks_into(owner[id(stop)], above):
            band = _split_shared(band, page, above)
        if band[3] - band[1] < MIN_GRAPHIC_SIDE:
            continue
        box = _graphics_in(page, band)
        if box is not None:
            return _grow_with_labels(box, band, page, blocked)
    if cap.kind == "table":
        band, _ = _band(cap, span, page, barriers, own, False)
        return _text_region(band, page, blocked, stats.body_size)
    return None
