"""Cropping figure regions out of PDF pages with PyMuPDF.

GROBID TEI (and the plain-PDF parser) locate figures as boxes on PDF pages; the dataset
needs pixels. Boxes come from a model and from other tools, so they are checked here:
a box off the page, on a page the PDF does not have, or with no area is refused with
``BadInputError`` (one figure fails, the paper goes on), and every crop is clipped to the
page and bounded in pixels before it is rendered.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from figalign.errors import BadInputError
from figalign.parsers.images import pixmap_to_png
from figalign.records import FigureImage

MIN_SIDE_PT = 1.0


def union_boxes(boxes: Iterable[Sequence[float]]) -> list[float]:
    """Smallest [x0, y0, x1, y1] that covers every box (a figure split over lines/panels)."""
    boxes = [list(map(float, b)) for b in boxes]
    if not boxes:
        raise BadInputError("no boxes to unite")
    for b in boxes:
        _check_box(b)
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def boxes_by_page(boxes: Iterable[tuple[int, Sequence[float]]]) -> dict[int, list[float]]:
    """Union of the boxes on each page: {page_index: [x0, y0, x1, y1]}."""
    grouped: dict[int, list[Sequence[float]]] = {}
    for page, box in boxes:
        grouped.setdefault(page, []).append(box)
    return {page: union_boxes(bs) for page, bs in grouped.items()}


def _check_box(box: Sequence[float]) -> None:
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise BadInputError(f"bounding box must be four finite numbers, got {list(box)!r}")
    if box[2] < box[0] or box[3] < box[1]:
        raise BadInputError(f"bounding box has negative size: {list(box)!r}")


def crop_region(doc, page_index: int, bbox: Sequence[float], out_path: Path, dpi: int, max_side: int) -> FigureImage:
    """Render ``bbox`` (PDF points, top-left origin) of page ``page_index`` (0-based) to PNG.

    The box is clipped to the page; the zoom is ``dpi / 72`` lowered so that the longest
    side stays within ``max_side`` pixels, so a full-page "figure" on a poster-sized page
    cannot allocate gigabytes.
    """
    import pymupdf

    if not 0 <= page_index < doc.page_count:
        raise BadInputError(f"page {page_index} is outside the PDF (it has {doc.page_count} pages)")
    _check_box(bbox)
    if dpi <= 0 or max_side <= 0:
        raise BadInputError(f"dpi and max_side must be positive (got {dpi}, {max_side})")
    page = doc[page_index]
    rect = pymupdf.Rect(*bbox) & page.rect
    if rect.is_empty or rect.width < MIN_SIDE_PT or rect.height < MIN_SIDE_PT:
        raise BadInputError(f"box {list(bbox)!r} has no area on page {page_index} ({tuple(page.rect)})")
    zoom = min(dpi / 72.0, max_side / max(rect.width, rect.height))
    pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), clip=rect, alpha=False)
    if pix.width < 1 or pix.height < 1:
        raise BadInputError(f"box {list(bbox)!r} on page {page_index} renders to no pixels")
    return pixmap_to_png(pix, Path(out_path), max_side=max_side)


def looks_like_caption_lines(boxes: Iterable[Sequence[float]], max_line_pt: float = 15.0) -> bool:
    """True when every box is one text line high: GROBID 0.6 often boxes only the caption."""
    boxes = list(boxes)
    return bool(boxes) and all((b[3] - b[1]) <= max_line_pt for b in boxes)


def graphic_near(page, caption: Sequence[float], *, below: bool = False, max_gap: float = 36.0,
                 tolerance: float = 6.0) -> list[float] | None:
    """The cluster of images and vector drawings right above (or below) a caption box.

    Used when a figure's only known box is its caption: the picture is whatever graphics
    sit next to the caption, grown transitively from the nearest one so that multi-panel
    figures come out whole. Returns None when nothing graphic is near.
    """
    import pymupdf

    cap = pymupdf.Rect(*caption)
    rects = [pymupdf.Rect(info["bbox"]) for info in page.get_image_info()]
    rects += [pymupdf.Rect(d["rect"]) for d in page.get_drawings() if d.get("rect") is not None]
    rects = [r & page.rect for r in rects]
    page_area = page.rect.width * page.rect.height
    rects = [r for r in rects if not r.is_empty and 4.0 <= r.width * r.height <= 0.8 * page_area]
    near = [r for r in rects if r.x1 > cap.x0 and r.x0 < cap.x1]
    if below:
        seeds = [r for r in near if cap.y1 - tolerance <= r.y0 <= cap.y1 + max_gap]
    else:
        seeds = [r for r in near if cap.y0 - max_gap <= r.y1 <= cap.y0 + tolerance]
    if not seeds:
        return None
    region = pymupdf.Rect(min(seeds, key=lambda r: abs((r.y0 - cap.y1) if below else (cap.y0 - r.y1))))
    grown = True
    while grown:
        grown = False
        halo = pymupdf.Rect(region.x0 - tolerance, region.y0 - tolerance, region.x1 + tolerance, region.y1 + tolerance)
        for r in rects:
            if r.intersects(halo) and not region.contains(r) and not r.intersects(cap):
                region |= r
                grown = True
    # frames drawn around figure + caption pull the caption in; the caption is not the picture
    if below:
        region.y0 = max(region.y0, cap.y1)
    else:
        region.y1 = min(region.y1, cap.y0)
    if region.is_empty or region.width < 20 or region.height < 20:
        return None
    return [region.x0, region.y0, region.x1, region.y1]
