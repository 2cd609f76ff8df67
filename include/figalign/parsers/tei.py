"""GROBID TEI (processFulltextDocument) -> ParsedPaper, with figure crops from the PDF.

GROBID gives each ``<figure>`` a head/label/figDesc and, when asked with
``teiCoordinates=figure``, its boxes as ``coords="page,x,y,w,h;..."`` (1-based pages, PDF
points, top-left origin). In-text references are ``<ref type="figure" target="#fig_N">``
inside ``<s>`` sentences (``segmentSentences=1``), but GROBID leaves many references
unlinked or mislinked, and older TEI has no ``<s>``: so sentences are split here when
needed and references without a target resolve by label with ``find_mentions``.

Geometry: ``page`` is 0-based and ``bbox`` is the union of the figure's boxes on its main
page (the page holding most of its box area). GROBID 0.6 often boxes only the caption
lines; when a PDF is given and the boxes are all one text line high, the crop (and the
bbox) become the graphics next to the caption, since a crop of caption text is no figure.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from figalign.errors import BadInputError
from figalign.parsers import crops
from figalign.parsers.contexts import add_context, find_mentions
from figalign.parsers.options import ParseOptions
from figalign.parsers.text import LABEL_RE, base_number, clean_caption, parse_label
from figalign.parsers.xmlsafe import element_text, flatten_text, local_name, parse_xml_file, sentence_spans
from figalign.records import Figure, ParsedPaper, figure_id
from figalign.parsers.names import safe_name

NAME = "tei"
VERSION = "1.0.0"

XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
SKIP_IN_TEXT = frozenset({"figure", "note", "formula", "table"})
BLOCKS = frozenset({"p", "s", "head", "list", "item"})
_PUNCT = " \t\n:.|-–—,;"


def parse(path: Path, *, out_dir: Path, pdf: Path | None, paper_id: str, options: ParseOptions) -> ParsedPaper:
    """Parse one TEI file; with ``pdf``, crop every figure that has coordinates."""
    path = Path(path)
    root = parse_xml_file(path)
    if local_name(root) not in ("TEI", "teiCorpus"):
        raise BadInputError(f"{path}: not a TEI document (root element <{local_name(root)}>)")
    paper = ParsedPaper(paper_id=paper_id, title=_title(root), abstract=_abstract(root),
                        parser=NAME, parser_version=VERSION)
    by_xml_id, boxes = _collect_figures(root, paper)
    _attach_contexts(root, paper, by_xml_id)
    if pdf is not None and options.write_images:
        _crop_all(paper, boxes, Path(pdf), Path(out_dir), options)
    if options.write_images:
        _say_why_no_image(paper, pdf is not None)
    return paper


def _say_why_no_image(paper: ParsedPaper, had_pdf: bool) -> None:
    """Origin of each crop, and a countable reason for each figure without one."""
    for fig in paper.figures:
        if fig.image is not None:
            fig.image_origin = "pdf-crop"
        elif fig.kind == "figure":
            fig.no_image_reason = ("no-pdf-for-crops" if not had_pdf else
                                   "no-coordinates-in-tei" if fig.bbox is None else "crop-failed")


# ---------------------------------------------------------------- metadata
def _first(root, name: str, within: str | None = None):
    for el in root.iter():
        if local_name(el) == name and (within is None or any(local_name(a) == within for a in el.iterancestors())):
            return el
    return None


def _title(root) -> str | None:
    el = _first(root, "title", within="titleStmt")
    return element_text(el) or None


def _abstract(root) -> str | None:
    el = _first(root, "abstract", within="profileDesc")
    if el is None:
        return None
    paras = [element_text(p) for p in el.iter() if local_name(p) == "p"]
    return " ".join(p for p in paras if p) or element_text(el) or None


# ---------------------------------------------------------------- figures
def _child_text(el, name: str) -> str:
    return " ".join(element_text(c) for c in el if local_name(c) == name).strip()


def _head_rest(head: str) -> str:
    """What a head says besides its label(s): "Fig. 2 M" -> "M"; "Table 1 :" -> ""."""
    rest = head
    while (m := LABEL_RE.match(rest)) is not None:
        rest = rest[m.end():]
    return rest.strip(_PUNCT)


def _label_number(head: str, label: str, desc: str) -> str | None:
    """The figure number from head ("Fig. 3"), else the bare label ("3"), else the caption."""
    parsed = parse_label(head) or parse_label(desc)
    if parsed:
        return parsed[1]
    m = re.fullmatch(r"[A-Z]?\d+(?:\.\d+)?[a-z]?", label.strip())
    return m.group(0) if m else None


def _caption(head: str, desc: str, note: str) -> str:
    """Caption without label: the rest of the head (a table's title lives there) + figDesc."""
    body = desc or note
    rest = _head_rest(head)
    # GROBID sometimes splits a word between head and figDesc: "Fig. 2 M" + "-waves ..."
    joiner = "" if rest and body.startswith("-") else " "
    text = clean_caption(joiner.join(p for p in (rest, body) if p))
    stripped = LABEL_RE.match(text)
    return text[stripped.end():].strip(_PUNCT) if stripped else text


def parse_coords(coords: str | None) -> list[tuple[int, list[float]]]:
    """"p,x,y,w,h;..." -> [(page_index_0_based, [x0, y0, x1, y1]), ...].

    Malformed boxes raise BadInputError (the caller records it against the figure).
    """
    out: list[tuple[int, list[float]]] = []
    for part in (coords or "").split(";"):
        if not part.strip():
            continue
        fields = part.split(",")
        if len(fields) != 5:
            raise BadInputError(f"bad coords {part!r}: want page,x,y,w,h")
        try:
            page = int(float(fields[0]))
            x, y, w, h = (float(v) for v in fields[1:])
        except ValueError as exc:
            raise BadInputError(f"bad coords {part!r}: {exc}") from exc
        if page < 1 or not all(math.isfinite(v) for v in (x, y, w, h)) or w < 0 or h < 0:
            raise BadInputError(f"bad coords {part!r}: page must be >= 1, sizes finite and >= 0")
        out.append((page - 1, [x, y, x + w, y + h]))
    return out


def _main_page(boxes: list[tuple[int, list[float]]]) -> int:
    area: dict[int, float] = {}
    for page, b in boxes:
        area[page] = area.get(page, 0.0) + (b[2] - b[0]) * (b[3] - b[1])
    return max(area, key=lambda p: (area[p], -p))


def _collect_figures(root, paper: ParsedPaper) -> tuple[dict[str, Figure], dict[str, list[list[float]]]]:
    """Every <figure> in the text, in document order.

    Returns xml:id -> Figure, and figure id -> its raw boxes on its main page.
    """
    by_id: dict[str, Figure] = {}
    boxes: dict[str, list[list[float]]] = {}
    text = _first(root, "text")
    ordinals: dict[str, int] = {}
    ids: set[str] = set()
    for el in (text if text is not None else root).iter():
        if local_name(el) != "figure":
            continue
        fig, fig_boxes = _make_figure(el, paper, ordinals, ids)
        paper.figures.append(fig)
        boxes[fig.id] = fig_boxes
        if el.get(XML_ID):
            by_id[el.get(XML_ID)] = fig
    return by_id, boxes


def _make_figure(el, paper: ParsedPaper, ordinals: dict[str, int], ids: set[str]) -> tuple[Figure, list[list[float]]]:
    """One ``<figure>``; ``ordinals`` (per kind) and ``ids`` carry what earlier figures used."""
    kind = "table" if el.get("type") == "table" else "figure"
    head, label, desc = _child_text(el, "head"), _child_text(el, "label"), _child_text(el, "figDesc")
    number = _label_number(head, label, desc)
    ordinal = ordinals.get(kind, 0)
    ordinals[kind] = ordinal + 1
    fid = figure_id(paper.paper_id, kind, number, ordinal)
    if fid in ids:
        paper.warnings.append(f"{kind} {number}: label appears twice; keyed by ordinal")
        fid = figure_id(paper.paper_id, kind, None, ordinal)
    ids.add(fid)
    fig = Figure(id=fid, label=(("Table " if kind == "table" else "Figure ") + number) if number else None,
                 kind=kind, caption=_caption(head, desc, _child_text(el, "note")), ordinal=ordinal,
                 number=number, source_ref=el.get(XML_ID))
    try:
        boxes = parse_coords(el.get("coords"))
    except BadInputError as exc:
        paper.warnings.append(f"{fig.label or fig.id}: {exc}")
        boxes = []
    if not boxes:
        return fig, []
    fig.page = _main_page(boxes)
    on_page = [b for p, b in boxes if p == fig.page]
    fig.bbox = crops.union_boxes(on_page)
    return fig, on_page


# ---------------------------------------------------------------- contexts
def _section(el) -> str | None:
    for anc in el.iterancestors():
        if local_name(anc) == "div":
            head = next((c for c in anc if local_name(c) == "head"), None)
            if head is not None and element_text(head):
                return element_text(head)
    return None


def _sentences(body):
    """(section, sentence text, refs in it) for body prose in reading order.

    Uses GROBID's <s> when present, else splits each <p> (old TEI, segmentSentences off).
    """
    for p in body.iter():
        if local_name(p) != "p" or any(local_name(a) in ("figure", "note") for a in p.iterancestors()):
            continue
        section = _section(p)
        sents = [c for c in p if local_name(c) == "s"]
        if sents:
            for s in sents:
                text, spans = flatten_text(s, skip=SKIP_IN_TEXT, block=BLOCKS, mark=frozenset({"ref"}))
                yield section, text, [node for _a, _b, node in spans]
            continue
        text, spans = flatten_text(p, skip=SKIP_IN_TEXT, block=BLOCKS, mark=frozenset({"ref"}))
        for start, end, sent in sentence_spans(text):
            yield section, sent, [node for a, _b, node in spans if start <= a < end]


def _attach_contexts(root, paper: ParsedPaper, by_id: dict[str, Figure]) -> None:
    """Linked refs go to their target; unlinked refs and plain-text mentions resolve by label."""
    body = _first(root, "body")
    if body is None:
        return
    index = {(f.kind, base_number(f.number)): f for f in paper.figures if f.number}
    for position, (section, text, refs) in enumerate(_sentences(body)):
        for ref in refs:
            target = (ref.get("target") or "").lstrip("#")
            if ref.get("type") in ("figure", "table") and target in by_id:
                add_context(by_id[target], text, section, position, element_text(ref) or None)
        for mention in find_mentions(text):
            fig = index.get((mention.kind, mention.number))
            if fig is not None:
                add_context(fig, text, section, position, mention.text)


# ---------------------------------------------------------------- crops
def _crop_all(paper: ParsedPaper, boxes: dict[str, list[list[float]]], pdf: Path, out_dir: Path,
              options: ParseOptions) -> None:
    """Crop each located figure from the PDF; a bad box costs one figure, a bad PDF all crops."""
    import pymupdf

    try:
        doc = pymupdf.open(pdf)
    except (pymupdf.FileDataError, RuntimeError, OSError, ValueError) as exc:
        paper.warnings.append(f"cannot open PDF {pdf.name} for crops: {exc}")
        return
    with doc:
        if doc.needs_pass:
            paper.warnings.append(f"PDF {pdf.name} is encrypted; no crops")
            return
        for fig in paper.figures:
            if fig.page is not None and fig.bbox is not None:
                _crop_one(paper, fig, boxes.get(fig.id, []), doc, out_dir, options)


def _crop_one(paper: ParsedPaper, fig: Figure, boxes: list[list[float]], doc, out_dir: Path,
              options: ParseOptions) -> None:
    region = fig.bbox
    try:
        if crops.looks_like_caption_lines(boxes) and 0 <= fig.page < doc.page_count:
            region = crops.graphic_near(doc[fig.page], fig.bbox, below=fig.kind == "table") or \
                crops.graphic_near(doc[fig.page], fig.bbox, below=fig.kind != "table") or fig.bbox
        fig.image = crops.crop_region(doc, fig.page, region, out_dir / f"{safe_name(fig.id)}.png",
                                      options.dpi, options.max_side)
        fig.bbox = [round(v, 2) for v in region]
    except BadInputError as exc:
        fig.error = f"crop: {exc}"
        paper.warnings.append(f"{fig.label or fig.id}: crop failed: {exc}")


