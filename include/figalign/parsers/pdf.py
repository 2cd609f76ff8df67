"""Plain-PDF parser: figures, captions, regions and citation contexts with PyMuPDF alone.

The embedded default path: no server, no layout model (an ONNX layout model measured
~18 s per paper here), only page geometry and text cues, so a paper parses in a small
multiple of the time PyMuPDF needs to extract its text.

Pipeline: read every page once (pdf_layout) -> document typography -> per page: columns,
captions (pdf_captions), graphic regions (pdf_regions) -> crops -> title, abstract and
citation contexts from the remaining body text.

Figures whose caption is found but whose page shows no graphic near it (a caption-like
line on a text-only page, a figure set on another page) keep their caption, label and page
but get ``bbox`` None and no image: dropping them would lose a real caption, while a box
made up from text would be a false figure. Downstream stages skip figures without images.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from figalign.errors import BadInputError
from figalign.parsers import images
from figalign.parsers.contexts import attach_text_mentions
from figalign.parsers.options import ParseOptions
from figalign.parsers.pdf_captions import Caption, find_captions
from figalign.parsers.pdf_layout import (
    DocStats,
    Layout,
    PageData,
    column_of,
    doc_stats,
    in_margin_zone,
    page_layout,
    read_graphics,
    read_page,
)
from figalign.parsers.pdf_regions import figure_region
from figalign.parsers.text import clean_caption, normalize_ws
from figalign.records import Figure, ParsedPaper, figure_id

NAME = "pdf"
VERSION = "1.0.0"

log = logging.getLogger(__name__)

_ABSTRACT_START = re.compile(r"^\s*(?:a\s?b\s?s\s?t\s?r\s?a\s?c\s?t|summary)\b[\s.:—–-]*", re.IGNORECASE)
_ABSTRACT_END = re.compile(
    r"^\s*(?:(?:\d+|[IVX]+)\.?\s+)?(?:introduction|background|keywords|key\s*words|index\s+terms|"
    r"ccs\s+concepts|subjects|categories|general\s+terms|acm\s+reference)\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?:]['\")\]]?\s*$")


def open_document(path: Path):
    """Open a PDF or raise BadInputError: corrupt, encrypted or empty files are unusable."""
    import pymupdf

    try:
        doc = pymupdf.open(path, filetype="pdf")
    except (RuntimeError, ValueError) as exc:
        raise BadInputError(f"cannot open PDF {path.name}: {exc}") from exc
    if doc.needs_pass and not doc.authenticate(""):
        doc.close()
        raise BadInputError(f"PDF {path.name} is encrypted and needs a password")
    if doc.page_count == 0:
        doc.close()
        raise BadInputError(f"PDF {path.name} has no pages")
    return doc


def read_pages(doc, options: ParseOptions, warnings: list[str]) -> list[PageData]:
    """Read the pages worth reading; a huge or broken page is skipped with a warning."""
    count = doc.page_count
    if count > options.max_pages:
        warnings.append(f"PDF has {count} pages; parsed the first {options.max_pages}")
        count = options.max_pages
    pages: list[PageData] = []
    for index in range(count):
        page = _read_one(doc, index, options, warnings)
        if page is not None:
            pages.append(page)
    return pages


def _read_one(doc, index: int, options: ParseOptions, warnings: list[str]) -> PageData | None:
    """One page's data, or None (with a warning) when it is oversized or PyMuPDF fails on it."""
    try:
        page = doc[index]
        rect = page.rect
        if max(rect.width, rect.height) > options.max_page_side_pt:
            warnings.append(f"page {index}: {rect.width:.0f}x{rect.height:.0f} pt exceeds {options.max_page_side_pt:.0f} pt; skipped")
            return None
        return read_page(page, index)
    except (RuntimeError, ValueError, IndexError) as exc:
        warnings.append(f"page {index}: unreadable ({type(exc).__name__}: {exc}); skipped")
        return None


def page_captions(doc, page: PageData, stats: DocStats, warnings: list[str]) -> tuple[Layout, list[Caption], dict[int, tuple]]:
    """Captions of a page with the region of each (keyed by id of the caption)."""
    layout = page_layout(page, stats)
    caps = find_captions(page, stats, layout)
    regions = {}
    if caps:
        try:
            read_graphics(doc[page.index], page)
        except (RuntimeError, ValueError) as exc:
            warnings.append(f"page {page.index}: graphics unreadable ({type(exc).__name__}: {exc}); captions kept without regions")
    for cap in caps:
        regions[id(cap)] = figure_region(cap, caps, page, stats, layout)
    return layout, caps, regions


def _choose(found: list[tuple[Caption, tuple | None]]) -> list[tuple[Caption, tuple | None]]:
    """One caption per (kind, number): the first with a graphic, else the first strong one.

    Repeats come from "Table 2 (continued)" heads, lists of figures, and body lines that
    look like captions; the first one with a graphic is the real one.
    """
    best: dict[tuple[str, str], tuple[Caption, tuple | None]] = {}
    for cap, box in found:
        key = (cap.kind, cap.number)
        have = best.get(key)
        if have is None or (have[1] is None and box is not None):
            best[key] = (cap, box)
    chosen = [v for v in best.values() if v[1] is not None or v[0].strong]
    chosen.sort(key=lambda v: (v[0].page, v[0].bbox[1]))
    return chosen


def crop(doc, fig: Figure, out_dir: Path, options: ParseOptions, warnings: list[str]) -> None:
    """Render a figure's region to PNG, capped at ``options.max_side``; failures become warnings."""
    import pymupdf

    x0, y0, x1, y1 = fig.bbox
    rect = pymupdf.Rect(x0, y0, x1, y1)
    zoom = min(options.dpi / 72.0, options.max_side / max(rect.width, rect.height, 1.0))
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", fig.id) + ".png"
    try:
        pix = doc[fig.page].get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), clip=rect)
        fig.image = images.pixmap_to_png(pix, out_dir / name, max_side=options.max_side)
    except (RuntimeError, ValueError, OSError, BadInputError) as exc:
        fig.error = f"crop failed: {type(exc).__name__}: {exc}"
        warnings.append(f"{fig.label}: {fig.error}")


def build_figures(found, paper_id: str) -> list[Figure]:
    """Figure records from the chosen captions and regions, in page order."""
    figures = []
    for ordinal, (cap, box) in enumerate(found):
        figures.append(Figure(
            id=figure_id(paper_id, cap.kind, cap.number, ordinal),
            label=cap.label,
            kind=cap.kind,
            caption=cap.text,
            ordinal=ordinal,
            number=cap.number,
            page=cap.page,
            bbox=[round(v, 2) for v in box] if box else None,
            source_ref=f"page {cap.page}",
        ))
    return figures


def _plausible_title(text: str | None) -> bool:
    """Metadata titles are often file names or typesetting job names ("pone.0000010 1..5")."""
    if not text:
        return False
    words = re.findall(r"[A-Za-z]{2,}", text)
    bad = re.search(r"\.(?:dvi|pdf|tex|docx?)\b|^microsoft|untitled|\d\.\.\d", text, re.IGNORECASE)
    return len(words) >= 3 and not bad


def find_title(doc, pages: list[PageData], stats: DocStats) -> str | None:
    """Largest text in the top half of the first page, else a plausible metadata title."""
    meta = (doc.metadata or {}).get("title")
    first = pages[0] if pages and pages[0].index == 0 else None
    if first is not None:
        top = [ln for ln in first.lines if ln.horizontal and ln.bbox[1] < first.height / 2 and not in_margin_zone(ln, first)]
        big = max((ln.size for ln in top if ln.alpha_words >= 1), default=0.0)
        if big > stats.body_size + 1.5:
            lines = sorted((ln for ln in top if ln.size >= big - 0.3), key=lambda ln: (ln.bbox[1], ln.bbox[0]))
            title = clean_caption("\n".join(ln.text for ln in lines[:6]))
            if len(title) >= 8:
                return title
    return normalize_ws(meta) if _plausible_title(meta) else None


def find_abstract(pages: list[PageData]) -> str | None:
    """Text after an "Abstract" heading on the first two pages, up to the next section."""
    lines = [ln for p in pages[:2] for ln in p.reading]
    for i, ln in enumerate(lines):
        m = _ABSTRACT_START.match(ln.text)
        if not m:
            continue
        parts = [ln.text[m.end():]]
        for nxt in lines[i + 1:]:
            if _ABSTRACT_END.match(nxt.text) or (nxt.size > ln.size + 0.5 and nxt.words <= 8):
                break
            parts.append(nxt.text)
            if len(parts) > 60:
                break
        text = clean_caption("\n".join(parts))
        if len(text) > 40:
            return text
    return None


def reading_lines(page: PageData, layout: Layout, skip: set[int], boxes: list[tuple]) -> list:
    """Body lines of a page in reading order: by column, then top to bottom."""
    out = []
    for ln in page.lines:
        if id(ln) in skip or not ln.horizontal or in_margin_zone(ln, page):
            continue
        cx, cy = (ln.bbox[0] + ln.bbox[2]) / 2, (ln.bbox[1] + ln.bbox[3]) / 2
        if any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in boxes):
            continue
        out.append(ln)
    mid = layout.gutter

    def key(ln):
        span = column_of(ln.bbox, layout)
        col = 0 if not layout.two_column or span == layout.width or ln.bbox[0] < mid else 1
        return (col, round(ln.bbox[1], 0), ln.bbox[0])

    out.sort(key=key)
    return out


def paragraphs(pages: list[PageData], stats: DocStats) -> list[tuple[str | None, str]]:
    """(section, paragraph) pairs: reading-order lines joined, split at vertical gaps/indents."""
    paras: list[tuple[str | None, str]] = []
    section: str | None = None
    current: list[str] = []
    prev = None
    for page in pages:
        for ln in page.reading:
            heading = ln.words <= 10 and (ln.size > stats.body_size + 0.7 or (ln.bold and ln.label_bold)) and not _SENTENCE_END.search(ln.text)
            new_para = prev is None or heading or (ln.bbox[1] - prev.bbox[3] > 0.8 * ln.size and _SENTENCE_END.search(prev.text))
            if new_para and current:
                paras.append((section, clean_caption("\n".join(current))))
                current = []
            if heading:
                section = normalize_ws(ln.text)
            else:
                current.append(ln.text)
            prev = ln
    if current:
        paras.append((section, clean_caption("\n".join(current))))
    return paras


def parse(path: Path, *, out_dir: Path, pdf: Path | None, paper_id: str, options: ParseOptions) -> ParsedPaper:
    """Parse a plain PDF into a ParsedPaper (``pdf`` is unused: the input is the PDF)."""
    path = Path(path)
    warnings: list[str] = []
    doc = open_document(path)
    try:
        pages = read_pages(doc, options, warnings)
        if not pages:
            raise BadInputError(f"PDF {path.name}: no readable page")
        return _parse_pages(doc, pages, out_dir, paper_id, options, warnings)
    finally:
        doc.close()


def _parse_pages(doc, pages, out_dir: Path, paper_id: str, options: ParseOptions, warnings: list[str]) -> ParsedPaper:
    """Captions, regions, crops, title, abstract and contexts from read pages."""
    stats = doc_stats(pages)
    found, caption_text = [], []
    for page in pages:
        layout, caps, regions = page_captions(doc, page, stats, warnings)
        found.extend((cap, regions[id(cap)]) for cap in caps)
        skip = {id(ln) for cap in caps for ln in cap.lines}
        page.reading = reading_lines(page, layout, skip, [b for b in regions.values() if b])
        caption_text.extend(cap.text for cap in caps)
    figures = build_figures(_choose(found), paper_id)
    if options.write_images:
        for fig in figures:
            if fig.bbox is not None:
                crop(doc, fig, Path(out_dir), options, warnings)
            if fig.image is not None:
                fig.image_origin = "pdf-crop"
            elif fig.kind == "figure":
                fig.no_image_reason = "no-graphic-near-caption" if fig.bbox is None else "crop-failed"
    attach_text_mentions(paragraphs(pages, stats), figures, skip_text=caption_text)
    return ParsedPaper(
        paper_id=paper_id,
        title=find_title(doc, pages, stats),
        abstract=find_abstract(pages),
        parser=NAME,
        parser_version=VERSION,
        figures=figures,
        warnings=warnings,
    )
