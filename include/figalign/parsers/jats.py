"""JATS / NLM XML (PMC OA, PLOS) -> ParsedPaper.

JATS is the best source we have: captions are exact, figure images ship beside the XML
and every in-text reference is an explicit ``<xref rid=...>`` link. So contexts come from
xrefs (the sentence that contains the link), never from guessing, and text-pattern
mentions are only used for papers whose publisher did not link figures at all.

Labels are kept exactly as the publisher wrote them ("Fig 1", "Figure 1", "Table 2"):
they are what readers and the JATS-based evaluation see; ``number`` carries the
normalised number that other parsers' references resolve against.
"""

from __future__ import annotations

import re
from pathlib import Path

from figalign.errors import BadInputError
from figalign.parsers import jats_images, jats_subjects
from figalign.parsers.contexts import add_context, attach_text_mentions, find_mentions, supplement_number
from figalign.parsers.options import ParseOptions
from figalign.parsers.text import clean_caption, parse_label
from figalign.parsers.xmlsafe import element_text, flatten_text, local_name, parse_xml_file, sentence_at, sentence_spans
from figalign.records import Figure, ParsedPaper, SubFigure, figure_id

NAME = "jats"
VERSION = "1.0.0"

XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
# Floats and their captions are not body prose: a caption's "see Fig. 2" is no context.
FLOATS = frozenset({"fig", "fig-group", "table-wrap", "table-wrap-group", "supplementary-material",
                    "caption", "graphic", "media", "alternatives", "table"})
BLOCKS = frozenset({"p", "list", "list-item", "def-list", "disp-quote", "disp-formula", "title",
                    "boxed-text", "statement", "verse-group"})
CAPTION_BLOCKS = frozenset({"title", "p", "list-item", "sec", "def", "term"})
_NUMBER_IN_LABEL = re.compile(r"([A-Z]?\d+(?:\.\d+)?[a-z]?)")
# eLife-style child figures: "Figure 1—figure supplement 2." is its own figure, "1-S2"
_SUPPLEMENT_LABEL = re.compile(r"(\d+)\s*[-\u2010-\u2015]\s*figure\s+supplement\s+(\d+)", re.IGNORECASE)


def parse(path: Path, *, out_dir: Path, pdf: Path | None, paper_id: str, options: ParseOptions) -> ParsedPaper:
    """Parse one JATS file; its figure images are looked up in the file's directory."""
    path = Path(path)
    root = parse_xml_file(path)
    if local_name(root) != "article":
        raise BadInputError(f"{path}: not a JATS article (root element <{local_name(root)}>)")
    paper = ParsedPaper(paper_id=paper_id, title=_title(root), abstract=_abstract(root),
                        parser=NAME, parser_version=VERSION, doi=_doi(root))
    paper.licence, paper.licence_url = _licence(root)
    paper.discipline = jats_subjects.discipline(root)
    by_rid, floats = _collect_figures(root, paper)
    if options.write_images:
        jats_images.attach_images(paper, floats, path.parent, Path(out_dir), options)
    linked = _attach_xref_contexts(root, by_rid, paper.figures)
    if not linked:
        attach_text_mentions(_body_paragraphs(root), paper.figures,
                             skip_text=[f.caption for f in paper.figures])
    return paper


# ---------------------------------------------------------------- metadata


def _doi(root) -> str | None:
    for el in root.iter():
        if local_name(el) == "article-id" and el.get("pub-id-type") == "doi" and (el.text or "").strip():
            return el.text.strip()
    return None


def _licence_from_text(text: str) -> str | None:
    """Licence of a free-text permissions statement (older PLOS/BMC XML has no <license>)."""
    low = " ".join(text.lower().split())
    if "public domain" in low or "publicdomain/zero" in low:
        return "cc0" if "zero" in low else "public-domain"
    if "creative commons attribution" not in low and "creativecommons.org/licenses" not in low:
        return None
    parts = ["by"]
    if "noncommercial" in low or "non-commercial" in low:
        parts.append("nc")
    if "sharealike" in low or "share alike" in low or "share-alike" in low:
        parts.append("sa")
    if "noderivatives" in low or "no derivatives" in low or "noderivs" in low:
        parts.append("nd")
    return "cc-" + "-".join(parts)


def _licence(root) -> tuple[str | None, str | None]:
    """(normalised licence id, licence URL) from <permissions>, as the publisher states it."""
    from figalign.sources.licences import normalise

    for el in root.iter():
        name = local_name(el)
        if name == "license":
            url = el.get(XLINK_HREF) or el.get("{http://www.w3.org/1999/02/22-rdf-syntax-ns#}resource")
            if url and normalise(url) not in (None, "other"):
                return normalise(url), url
            text_id = _licence_from_text(" ".join(el.itertext()))
            if text_id:
                return text_id, url
            if el.get("license-type") and normalise(el.get("license-type")) not in (None, "other"):
                return normalise(el.get("license-type")), url
        elif name == "copyright-statement" and (found := _licence_from_text(" ".join(el.itertext()))):
            return found, None
    return None, None


def _child(el, name: str):
    return next((c for c in el if local_name(c) == name), None)


def _find(root, *names: str):
    """First element matching a child-name path below any element named names[0]."""
    for el in root.iter():
        if local_name(el) != names[0]:
            continue
        node = el
        for name in names[1:]:
            node = _child(node, name)
            if node is None:
                break
        if node is not None:
            return node
    return None


def _text(el) -> str:
    return element_text(el)


def _title(root) -> str | None:
    el = _find(root, "article-meta", "title-group", "article-title")
    return _text(el) or None


def _abstract(root) -> str | None:
    """The main abstract (no abstract-type), else the first one; teasers/summaries are not it."""
    meta = _find(root, "article-meta")
    if meta is None:
        return None
    abstracts = [el for el in meta.iter() if local_name(el) == "abstract"]
    main = next((a for a in abstracts if not a.get("abstract-type")), abstracts[0] if abstracts else None)
    if main is None:
        return None
    paras = [_text(p) for p in main.iter() if local_name(p) == "p"]
    text = " ".join(p for p in paras if p) or _text(main)
    return text or None


# ---------------------------------------------------------------- figures
def _has_ancestor(el, names: frozenset[str]) -> bool:
    return any(local_name(a) in names for a in el.iterancestors())


def _caption_text(el) -> str:
    """All caption text (title and paragraphs), inline markup flattened, label excluded."""
    cap = _child(el, "caption")
    if cap is None:
        return ""
    text, _ = flatten_text(cap, block=CAPTION_BLOCKS)
    return clean_caption(text)


def _label_text(el) -> str | None:
    lab = _child(el, "label")
    return _text(lab) or None


def _number(label: str | None) -> str | None:
    if not label:
        return None
    supplement = _SUPPLEMENT_LABEL.search(label)
    if supplement:
        return supplement_number(supplement.group(1), supplement.group(2))
    parsed = parse_label(label)
    if parsed:
        return parsed[1]
    m = _NUMBER_IN_LABEL.search(label)
    return m.group(1) if m else None


def _is_grouped(fig_group) -> bool:
    """A fig-group becomes one figure with panels only when it has its own label or caption."""
    return _child(fig_group, "label") is not None or _child(fig_group, "caption") is not None


def _collect_figures(root, paper: ParsedPaper) -> tuple[dict[str, Figure], list[tuple[Figure, object]]]:
    """Every fig / fig-group / table-wrap in document order.

    Returns xref id -> Figure (panel ids of a fig-group map to the group) and each
    figure with its element (where its graphics are).
    """
    by_rid: dict[str, Figure] = {}
    floats: list[tuple[Figure, object]] = []
    for el in root.iter():
        name = local_name(el)
        if name not in ("fig", "fig-group", "table-wrap"):
            continue
        if name == "fig" and _has_ancestor(el, frozenset({"table-wrap"})):
            continue  # an image inside a table is part of the table
        if name == "fig-group" and not _is_grouped(el):
            continue  # its figs are emitted one by one
        parent = el.getparent()
        if name == "fig" and parent is not None and local_name(parent) == "fig-group" and _is_grouped(parent):
            continue  # a panel of a grouped figure
        fig = _make_figure(el, paper, kind="table" if name == "table-wrap" else "figure")
        paper.figures.append(fig)
        floats.append((fig, el))
        for key in [el.get("id")] + [c.get("id") for c in el.iter() if local_name(c) == "fig"]:
            if key:
                by_rid.setdefault(key, fig)
    return by_rid, floats


def _make_figure(el, paper: ParsedPaper, *, kind: str) -> Figure:
    label = _label_text(el)
    number = _number(label)
    ordinal = sum(1 for f in paper.figures if f.kind == kind)
    fig = Figure(id=figure_id(paper.paper_id, kind, number, ordinal), label=label, kind=kind,
                 caption=_caption_text(el), ordinal=ordinal, number=number, source_ref=el.get("id"))
    if local_name(el) == "fig-group":
        fig.subfigures = [SubFigure(label=_label_text(c), caption=_caption_text(c))
                          for c in el if local_name(c) == "fig"]
    if any(f.id == fig.id for f in paper.figures):
        fig.id = figure_id(paper.paper_id, kind, None, ordinal)
        paper.warnings.append(f"duplicate label {label!r}; figure {ordinal} keyed by ordinal")
    return fig


# ---------------------------------------------------------------- images
resolve_graphic = jats_images.resolve_graphic


# ---------------------------------------------------------------- contexts
_SECTIONS = frozenset({"sec", "app", "boxed-text"})
# text between two fig xrefs that makes them a range: "Figures <xref>2</xref>–<xref>4</xref>"
_RANGE_GAP = re.compile(r"^\s*(?:[-\u2010-\u2015]|to|through)\s*$")


def _own_title(el) -> str | None:
    title = _child(el, "title")
    return (_text(title) or None) if title is not None else None


def _prose_paragraphs(root) -> list[tuple[object, str | None]]:
    """(paragraph, section title) for the top-level prose paragraphs of body and appendices.

    One walk over the tree, carrying the nearest titled section down, so the cost is
    linear in the document even for deeply nested ``<sec>`` (asking each paragraph for
    its ancestors' titles was quadratic). Floats and paragraphs nested in paragraphs are
    not prose of their own.
    """
    out: list[tuple[object, str | None]] = []
    stack = [(iter(root), False, None)]
    while stack:
        children, in_part, title = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            continue
        name = local_name(child)
        if not name:
            continue
        if not in_part:
            part = name in ("body", "app")
            stack.append((iter(child), part, _own_title(child) if name == "app" else None))
        elif name == "p":
            out.append((child, title))
        elif name not in FLOATS:
            stack.append((iter(child), True, (_own_title(child) or title) if name in _SECTIONS else title))
    return out


def _body_paragraphs(root):
    for p, section in _prose_paragraphs(root):
        text, _ = flatten_text(p, skip=FLOATS, block=BLOCKS)
        yield section, text


def _figure_index(figures: list[Figure]) -> dict[tuple[str, str], Figure]:
    return {(f.kind, f.number): f for f in figures if f.number}


def _named_in_text(xref, kind: str, index: dict[tuple[str, str], Figure]) -> list[Figure]:
    """Figures an xref's own text names when it names several ("Figs 2–4", "Figures 1 and 3")."""
    text = _text(xref)
    if not text:
        return []
    if not re.match(r"\s*(?:supp|fig|tab)", text, re.IGNORECASE):
        text = ("Table " if kind == "table" else "Figure ") + text
    mentions = [m for m in find_mentions(text) if m.kind == kind]
    if len(mentions) < 2:
        return []
    return [index[(kind, m.number)] for m in mentions if (kind, m.number) in index]


def _between(figures: list[Figure], a: Figure, b: Figure) -> list[Figure]:
    """Figures of a's kind strictly between a and b in document order (a range's middle)."""
    same = [f for f in figures if f.kind == a.kind]
    where = {id(f): k for k, f in enumerate(same)}
    if a.kind != b.kind or id(a) not in where or id(b) not in where:
        return []
    return same[where[id(a)] + 1:where[id(b)]]


def _attach_xref_contexts(root, by_rid: dict[str, Figure], figures: list[Figure]) -> int:
    """Attach, for every fig/table xref in body prose, the sentence containing it.

    An xref points at every figure its ``rid`` list names, at every figure its text lists
    ("Figs 2–4" with one rid), and two xrefs joined by a dash ("Figures <xref>2</xref>–
    <xref>4</xref>") cover the figures between them. Returns how many fig/table xrefs the
    body has (0 means the publisher linked nothing).
    """
    linked = 0
    position = 0
    index = _figure_index(figures)
    for p, section in _prose_paragraphs(root):
        text, spans = flatten_text(p, skip=FLOATS, block=BLOCKS, mark=frozenset({"xref"}))
        sentences = sentence_spans(text)
        prev: tuple[int, list[Figure]] | None = None
        for start, end, xref in spans:
            kind = xref.get("ref-type")
            if kind not in ("fig", "table"):
                continue
            linked += 1
            kind = "table" if kind == "table" else "figure"
            targets = [by_rid[r] for r in (xref.get("rid") or "").split() if r in by_rid]
            targets += _named_in_text(xref, kind, index)
            if prev is not None and prev[1] and targets and _RANGE_GAP.match(text[prev[0]:start]):
                targets += _between(figures, prev[1][-1], targets[0])
            prev = (end, targets)
            idx = sentence_at(sentences, start)
            if idx is None:
                continue
            mention = _text(xref) or None
            for fig in {id(f): f for f in targets}.values():
                add_context(fig, sentences[idx][2], section, position + idx, mention)
        position += len(sentences)
    return linked
