"""Safe XML loading for every XML-based parser (JATS, GROBID TEI).

Paper XML comes from the open internet, so a file may carry an XXE payload (an external
entity pointing at ``file:///etc/passwd`` or an internal URL) or a "billion laughs" entity
bomb. Real JATS/TEI never needs its own entity declarations: the publishers' DTDs are
referenced, never inlined, and we never load them. So any ``<!ENTITY`` in the document
prolog is refused outright, and lxml is configured to resolve nothing, fetch nothing and
refuse huge trees. Malformed XML becomes ``BadInputError`` so the stage records it and
moves on instead of crashing the worker.
"""

from __future__ import annotations

import html.entities
import re
from pathlib import Path

from figalign.errors import BadInputError

# Everything before the root element: XML declaration, comments, PIs and the DOCTYPE with
# its internal subset. An ENTITY declaration can only live there.
_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)
_ROOT_START = re.compile(rb"<[A-Za-z_]")
MAX_XML_BYTES = 64 * 1024 * 1024


def _prolog(data: bytes) -> bytes:
    """The bytes before the first element tag, NULs dropped so UTF-16 input is scanned too."""
    flat = data[: 1024 * 1024].replace(b"\x00", b"")
    m = _ROOT_START.search(flat)
    return flat[: m.start()] if m else flat


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

    Raises ``BadInputError`` for empty, oversized or malformed input and for any document
    that declares entities (XXE, billion laughs).
    """
    from lxml import etree

    if not data or not data.strip():
        raise BadInputError(f"{source}: empty XML document")
    if len(data) > MAX_XML_BYTES:
        raise BadInputError(f"{source}: XML document too large ({len(data)} bytes > {MAX_XML_BYTES})")
    if _ENTITY_DECL.search(_prolog(data)):
        raise BadInputError(f"{source}: XML declares entities in its DOCTYPE (possible XXE or entity bomb); refused")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise BadInputError(f"{source}: malformed XML: {exc}") from exc
    if root is None:
        raise BadInputError(f"{source}: XML document has no root element")
    _reject_declared_entities(root, source)
    return root


def _reject_declared_entities(root, source: str) -> None:
    """Second line of defence: ask libxml2 whether the internal subset declared any entity."""
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise BadInputError(f"{source}: XML declares entities in its DOCTYPE (possible XXE or entity bomb); refused")


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
