"""Safe XML loading for every XML-based parser (JATS, GROBID TEI).

Paper XML comes from the open internet, so a file may carry an XXE payload (an external
entity pointing at ``file:///etc/passwd`` or an internal URL) or a "billion laughs" entity
bomb. External DTDs are referenced, never loaded; entities declared in the internal subset
(older PLOS declares its own character entities) are read and expanded by
``xmlentities`` with hard bounds, and any external or parameter entity is refused
outright. lxml is configured to resolve nothing, fetch nothing and refuse huge trees. Malformed XML becomes ``BadInputError`` so the stage records it and
moves on instead of crashing the worker.
"""

from __future__ import annotations

import html.entities
from pathlib import Path

from figalign.errors import BadInputError
from figalign.parsers import xmlentities

MAX_XML_BYTES = 64 * 1024 * 1024


def _parser():
    from lxml import etree

    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        recover=False,
        remove_pis=True,
    )


def parse_xml_bytes(data: bytes, *, source: str = "XML"):
    """Parse XML bytes safely and return the root element.

    Raises ``BadInputError`` for empty, oversized or malformed input and for a DOCTYPE that
    declares external or parameter entities (XXE) or entities that expand too far (bombs).
    Internal entities are expanded into the tree as text.
    """
    from lxml import etree

    if not data or not data.strip():
        raise BadInputError(f"{source}: empty XML document")
    if len(data) > MAX_XML_BYTES:
        raise BadInputError(f"{source}: XML document too large ({len(data)} bytes > {MAX_XML_BYTES})")
    values = xmlentities.declared_entities(data, source)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise BadInputError(f"{source}: malformed XML: {exc}") from exc
    if root is None:
        raise BadInputError(f"{source}: XML document has no root element")
    _check_declared_entities(root, values, source)
    xmlentities.substitute(root, values, source)
    return root


def _check_declared_entities(root, values: dict[str, str], source: str) -> None:
    """Second line of defence: every entity libxml2 saw must be one we read and bounded."""
    dtd = root.getroottree().docinfo.internalDTD
    for ent in dtd.iterentities() if dtd is not None else ():
        if ent.name not in values or ent.system_url:
            raise BadInputError(f"{source}: XML declares entity {ent.name!r} that was not checked; refused")


def parse_xml_file(path: Path):
    """Read and safely parse an XML file; unreadable files are bad input too."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc}") from exc
    return parse_xml_bytes(data, source=str(path))


def local_name(el) -> str:
    """Tag name without namespace; '' for comments and processing instructions."""
    tag = el.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def entity_text(node) -> str:
    """The character an unexpanded entity reference stands for ("&iacute;" -> "í").

    Entities are never expanded by the parser (that is how XXE works), so older PLOS XML
    keeps ``&lpar;`` or ``&iacute;`` as entity nodes; the named HTML/ISO entities they use
    map to characters here. Comments and processing instructions give "".
    """
    from lxml import etree

    if not isinstance(node, etree._Entity):
        return ""
    name = node.name
    if name.startswith("#"):
        return _char_ref(name[1:])
    return html.entities.html5.get(name + ";", "")


def _char_ref(ref: str) -> str:
    try:
        code = int(ref[1:], 16) if ref[:1] in ("x", "X") else int(ref)
        return chr(code)
    except (ValueError, OverflowError):
        return ""


def element_text(el) -> str:
    """Normalised text of an element, entity references resolved; "" for None."""
    if el is None:
        return ""
    return flatten_text(el)[0]


def flatten_text(el, *, skip: frozenset[str] = frozenset(), block: frozenset[str] = frozenset(),
                 mark: frozenset[str] = frozenset()) -> tuple[str, list[tuple[int, int, object]]]:
    """An element's text, whitespace-normalised, plus the offsets of chosen descendants.

    Citation contexts need to know which sentence an ``xref``/``ref`` sits in, so while the
    paragraph is flattened the start and end of every element named in ``mark`` are
    recorded, in offsets of the normalised text that ``split_sentences`` splits. Elements
    in ``skip`` (floats, captions nested in a paragraph) contribute a space only; elements
    in ``block`` get spaces around them so "A</p><p>B" never fuses into "AB". Inline markup
    (italic, sup) joins without spaces, as in the rendered article.
    """
    pieces: list[str] = []
    raw_spans: list[tuple[int, int, object]] = []
    length = 0

    def add(text: str | None) -> None:
        nonlocal length
        if text:
            pieces.append(text)
            length += len(text)

    def walk(node) -> None:
        add(node.text)
        for child in node:
            name = local_name(child)
            if not name:
                add(entity_text(child))
                add(child.tail)
                continue
            if name in skip:
                add(" ")
            else:
                if name in block:
                    add(" ")
                start = length
                walk(child)
                if name in mark:
                    raw_spans.append((start, length, child))
                if name in block:
                    add(" ")
            add(child.tail)

    walk(el)
    text, mapping = _normalise_with_map("".join(pieces))
    spans = [(mapping[s], max(mapping[s], mapping[e - 1] + 1) if e > s else mapping[s], node)
             for s, e, node in raw_spans]
    return text, spans


def _normalise_with_map(raw: str) -> tuple[str, list[int]]:
    """Collapse whitespace like ``normalize_ws`` and map each raw offset to the new text."""
    out: list[str] = []
    mapping = [0] * (len(raw) + 1)
    n = 0
    pending = False
    for i, ch in enumerate(raw):
        if ch.isspace():
            pending = pending or n > 0
            mapping[i] = n + (1 if pending else 0)
            continue
        if pending:
            out.append(" ")
            n += 1
            pending = False
        mapping[i] = n
        out.append(ch)
        n += 1
    mapping[len(raw)] = n
    return "".join(out), mapping


def sentence_spans(text: str) -> list[tuple[int, int, str]]:
    """``split_sentences`` output with each sentence's (start, end) offsets in ``text``."""
    from figalign.parsers.contexts import split_sentences

    out: list[tuple[int, int, str]] = []
    cursor = 0
    for sent in split_sentences(text):
        start = text.find(sent, cursor)
        start = cursor if start < 0 else start
        out.append((start, start + len(sent), sent))
        cursor = start + len(sent)
    return out


def sentence_at(spans: list[tuple[int, int, str]], offset: int) -> int | None:
    """Index of the sentence containing ``offset`` (or the last one starting before it)."""
    best = None
    for i, (start, _end, _sent) in enumerate(spans):
        if start <= offset:
            best = i
        else:
            break
    return best
