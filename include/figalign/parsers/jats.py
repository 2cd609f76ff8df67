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
from figalign.parsers import images, jats_subjects
from figalign.parsers.contexts import add_context, attach_text_mentions
from figalign.parsers.options import ParseOptions
from figalign.parsers.text import clean_caption, parse_label
from figalign.parsers.xmlsafe import element_text, flatten_text, local_name, parse_xml_file, sentence_at, sentence_spans
from figalign.records import Figure, ParsedPaper, SubFigure, figure_id

NAME = "jats"
VERSION = "1.0.0"

XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
IMAGE_EXTS = (".tif", ".tiff", ".gif", ".jpg", ".jpeg", ".png")
# Floats and their captions are not body prose: a caption's "see Fig. 2" is no context.
FLOATS = frozenset({"fig", "fig-group", "table-wrap", "table-wrap-group", "supplementary-material",
                    "caption", "graphic", "media", "alternatives", "table"})
BLOCKS = frozenset({"p", "list", "list-item", "def-list", "disp-quote", "disp-formula", "title",
                    "boxed-text", "statement", "verse-group"})
CAPTION_BLOCKS = frozenset({"title", "p", "list-item", "sec", "def", "term"})
_NUMBER_IN_LABEL = re.compile(r"([A-Z]?\d+(?:\.\d+)?[a-z]?)")


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
    by_rid, hrefs = _collect_figures(root, paper)
    if options.write_images:
        _attach_images(paper, hrefs, path.parent, Path(out_dir), options)
    linked = _attach_xref_contexts(root, by_rid)
    if not linked:
        attach_text_mentions(_body_paragraphs(root), paper.figures,
                             skip_text=[f.caption for f in paper.figures])
    return paper


# ---------------------------------------------------------------- metadata
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"


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
    parsed = parse_label(label)
    if parsed:
        return parsed[1]
    m = _NUMBER_IN_LABEL.search(label)
    return m.group(1) if m else None


def _is_grouped(fig_group) -> bool:
    """A fig-group becomes one figure with panels only when it has its own label or caption."""
    return _child(fig_group, "label") is not None or _child(fig_group, "caption") is not None


def _collect_figures(root, paper: ParsedPaper) -> tuple[dict[str, Figure], list[tuple[Figure, str | None]]]:
    """Every fig / fig-group / table-wrap in document order.

    Returns xref id -> Figure (panel ids of a fig-group map to the group) and each
    figure's graphic href.
    """
    by_rid: dict[str, Figure] = {}
    hrefs: list[tuple[Figure, str | None]] = []
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
        hrefs.append((fig, _graphic_href(el)))
        for key in [el.get("id")] + [c.get("id") for c in el.iter() if local_name(c) == "fig"]:
            if key:
                by_rid.setdefault(key, fig)
    return by_rid, hrefs


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
def _graphic_href(el) -> str | None:
    """The first graphic of a float that is not part of its caption."""
    for g in el.iter():
        if local_name(g) in ("graphic", "inline-graphic") and not _has_ancestor_within(g, el, "caption"):
            href = g.get(XLINK_HREF) or g.get("href")
            if href:
                return href
    return None


def _has_ancestor_within(node, top, name: str) -> bool:
    for anc in node.iterancestors():
        if anc is top:
            return False
        if local_name(anc) == name:
            return True
    return False


def resolve_graphic(directory: Path, href: str) -> Path | None:
    """Find the image file an href names, in the XML's own directory only.

    PMC hrefs omit the extension ("F1"), PLOS ones are DOIs ("info:doi/10.1371/journal.
    pone.0038869.g001") while the file is "pone.0038869.g001.tif". Only files listed in the
    directory can match, so an href like "../../etc/passwd" can never escape it.
    """
    base = re.split(r"[/:]", href.strip())[-1].lower()
    if not base:
        return None
    files = [p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
    rank = {ext: i for i, ext in enumerate(IMAGE_EXTS)}
    exact = [p for p in files if p.name.lower() == base]
    if exact:
        return exact[0]
    stem = base.rsplit(".", 1)[0] if Path(base).suffix.lower() in IMAGE_EXTS else base
    same = [p for p in files if p.stem.lower() == stem]
    if not same:
        same = [p for p in files if stem.endswith("." + p.stem.lower()) and "." in p.stem]
    return min(same, key=lambda p: rank[p.suffix.lower()]) if same else None


def _safe_name(fig_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", fig_id).strip("._") or "figure"


def _attach_images(paper: ParsedPaper, hrefs: list[tuple[Figure, str | None]], directory: Path,
                   out_dir: Path, options: ParseOptions) -> None:
    """Convert each float's graphic to PNG; a missing or corrupt file costs one figure's image."""
    for fig, href in hrefs:
        _attach_one(paper, fig, href, directory, out_dir, options)


def _attach_one(paper: ParsedPaper, fig: Figure, href: str | None, directory: Path, out_dir: Path,
                options: ParseOptions) -> None:
    if not href:
        if fig.kind == "figure":
            paper.warnings.append(f"{fig.label or fig.id}: no graphic in the XML")
        return
    src = resolve_graphic(directory, href)
    if src is None:
        paper.warnings.append(f"{fig.label or fig.id}: image file for {href!r} not found beside the XML")
        return
    try:
        fig.image = images.convert_to_png(src.read_bytes(), out_dir / f"{_safe_name(fig.id)}.png",
                                          max_side=options.max_side)
    except (BadInputError, OSError) as exc:
        fig.error = f"image: {exc}"
        paper.warnings.append(f"{fig.label or fig.id}: image {src.name} not usable: {exc}")


# ---------------------------------------------------------------- contexts
def _section_title(el) -> str | None:
    for anc in el.iterancestors():
        if local_name(anc) in ("sec", "app", "boxed-text"):
            title = _child(anc, "title")
            if title is not None and _text(title):
                return _text(title)
    return None


def _body_paragraph_elements(root):
    """Top-level prose paragraphs of body and back matter (appendices), in reading order."""
    for part in root.iter():
        if local_name(part) not in ("body", "app"):
            continue
        if local_name(part) == "app" and _has_ancestor(part, frozenset({"body"})):
            continue
        for p in part.iter():
            if local_name(p) != "p":
                continue
            if _has_ancestor_within_any(p, part, FLOATS | {"p"}):
                continue
            yield p


def _has_ancestor_within_any(node, top, names: frozenset[str]) -> bool:
    for anc in node.iterancestors():
        if anc is top:
            return False
        if local_name(anc) in names:
            return True
    return False


def _body_paragraphs(root):
    for p in _body_paragraph_elements(root):
        text, _ = flatten_text(p, skip=FLOATS, block=BLOCKS)
        yield _section_title(p), text


def _attach_xref_contexts(root, by_rid: dict[str, Figure]) -> int:
    """Attach, for every fig/table xref in body prose, the sentence containing it.

    Returns how many fig/table xrefs the body has (0 means the publisher linked nothing).
    """
    linked = 0
    position = 0
    for p in _body_paragraph_elements(root):
        text, spans = flatten_text(p, skip=FLOATS, block=BLOCKS, mark=frozenset({"xref"}))
        sentences = sentence_spans(text)
        section = _section_title(p)
        for start, _end, xref in spans:
            if xref.get("ref-type") not in ("fig", "table"):
                continue
            linked += 1
            idx = sentence_at(sentences, start)
            if idx is None:
                continue
            mention = _text(xref) or None
            for rid in (xref.get("rid") or "").split():
                fig = by_rid.get(rid)
                if fig is not None:
                    add_context(fig, sentences[idx][2], section, position + idx, mention)
        position += len(sentences)
    return linked
