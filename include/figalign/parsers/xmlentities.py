"""Internal DOCTYPE entities, read and expanded by us, never by libxml2.

Publisher JATS (older PLOS, some Hindawi/BMC exports) declares its own character entities in
the DOCTYPE's internal subset (``<!ENTITY lpar "&#x00028;">``). Refusing every such article
loses all its figures, but letting libxml2 expand entities is how XXE and "billion laughs"
work. So the internal subset is read here, before libxml2 sees the document:

* an external entity (``SYSTEM``/``PUBLIC``/``NDATA``) or a parameter entity (``%``) is
  refused outright: nothing is ever fetched or read from disk;
* every internal entity is expanded by this module with a depth limit, a cycle check and a
  size limit per entity and per document, so an entity bomb is refused in microseconds;
* the expansions are plain text (markup inside a value is dropped), substituted into the
  parsed tree in place of the unexpanded entity nodes lxml leaves there.
"""

from __future__ import annotations

import codecs
import html
import re

from figalign.errors import BadInputError

MAX_DECLARATIONS = 4096
MAX_DEPTH = 8
MAX_VALUE_CHARS = 4096
MAX_TOTAL_CHARS = 8 * 1024 * 1024
_DOCTYPE = re.compile(r"<!DOCTYPE\b", re.IGNORECASE)
_ANY_DECL = re.compile(r"<!ENTITY\b", re.IGNORECASE)
_DECL = re.compile(
    r"<!ENTITY\s+(?P<pe>%\s+)?(?P<name>[^\s%\"'>]+)\s+"
    r"(?:(?P<ext>SYSTEM|PUBLIC)\b[^>]*|\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)')\s*(?P<ndata>NDATA\s+\S+\s*)?>",
    re.DOTALL,
)
_REF = re.compile(r"&([A-Za-z_:][\w.:-]*);")
_TAG = re.compile(r"<[^>]*>")
_TAG_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_ENCODING = re.compile(r"""<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


class EntityRefused(BadInputError):
    """The DOCTYPE declares something that could read files, fetch URLs or explode in size."""


def _decode_prolog(data: bytes) -> str:
    """The document's first megabyte as text, in its own encoding (UTF-16 included)."""
    head = data[: 1024 * 1024]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in head[:4]:
        return head.decode("utf-16", "replace")
    m = _ENCODING.search(head[:200].decode("ascii", "replace"))
    try:
        return head.decode(m.group(1) if m else "utf-8", "replace")
    except LookupError:
        return head.decode("utf-8", "replace")


def internal_subset(data: bytes) -> str:
    """The DOCTYPE's ``[...]`` part ('' when there is none), quoted strings respected."""
    text = _decode_prolog(data)
    m = _DOCTYPE.search(text)
    if not m:
        return ""
    i, quote = m.end(), None
    while i < len(text):
        ch = text[i]
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == ">":
            return ""
        elif ch == "[":
            return _subset_from(text, i + 1)
        i += 1
    return ""


def _subset_from(text: str, start: int) -> str:
    """Text up to the ``]`` that closes the internal subset (quotes and comments skipped)."""
    i, quote = start, None
    while i < len(text):
        ch = text[i]
        if quote:
            quote = None if ch == quote else quote
        elif text.startswith("<!--", i):
            end = text.find("-->", i + 4)
            i = len(text) if end < 0 else end + 3
            continue
        elif ch in "\"'":
            quote = ch
        elif ch == "]":
            return text[start:i]
        i += 1
    return text[start:]


def declared_entities(data: bytes, source: str) -> dict[str, str]:
    """Name -> plain-text expansion of every internal entity the DOCTYPE declares.

    Raises ``EntityRefused`` for external or parameter entities, unreadable declarations,
    cycles, and expansions over the size limits.
    """
    subset = _TAG_COMMENT.sub(" ", internal_subset(data))
    decls = list(_DECL.finditer(subset))
    if len(decls) != len(_ANY_DECL.findall(subset)):
        raise EntityRefused(f"{source}: XML declares an entity this parser cannot read safely; refused")
    if len(decls) > MAX_DECLARATIONS:
        raise EntityRefused(f"{source}: XML declares {len(decls)} entities (limit {MAX_DECLARATIONS}); refused")
    raw: dict[str, str] = {}
    for d in decls:
        if d.group("pe") or d.group("ext") or d.group("ndata"):
            kind = "a parameter" if d.group("pe") else "an external"
            raise EntityRefused(f"{source}: XML declares {kind} entity {d.group('name')!r} (possible XXE); refused")
        raw.setdefault(d.group("name"), d.group("dq") if d.group("dq") is not None else d.group("sq"))
    expander = _Expander(raw, source)
    return {name: _plain(expander.expand(name, ())) for name in raw}



class _Expander:
    """Bounded, memoised, cycle-checked expansion of internal entity values."""

    def __init__(self, raw: dict[str, str], source: str) -> None:
        self.raw = raw
        self.source = source
        self.done: dict[str, str] = {}
        self.total = 0

    def expand(self, name: str, stack: tuple[str, ...]) -> str:
        if name in self.done:
            return self.done[name]
        if name in stack or len(stack) >= MAX_DEPTH:
            raise EntityRefused(f"{self.source}: entity {name!r} nests too deep or refers to itself (entity bomb?); refused")
        value = _REF.sub(lambda m: self._ref(m, stack + (name,)), self.raw[name])
        self.total += len(value)
        if len(value) > MAX_VALUE_CHARS or self.total > MAX_TOTAL_CHARS:
            raise EntityRefused(f"{self.source}: entity {name!r} expands past {MAX_VALUE_CHARS} characters "
                                "(entity bomb?); refused")
        self.done[name] = value
        return value

    def _ref(self, m: re.Match, stack: tuple[str, ...]) -> str:
        ref = m.group(1)
        if ref in self.raw:
            return self.expand(ref, stack)
        return m.group(0)  # predefined, HTML named or undeclared: left for html.unescape


def _plain(value: str) -> str:
    """An expansion as the text a reader sees: tags dropped, character references decoded."""
    return html.unescape(_TAG.sub("", value))


def substitute(root, values: dict[str, str], source: str) -> None:
    """Replace each unexpanded entity node of a declared entity by its text (bounded in total)."""
    from lxml import etree

    if not values:
        return
    total = 0
    for ent in list(root.iter(etree.Entity)):
        text = values.get(ent.name)
        if text is None:
            continue
        total += len(text)
        if total > MAX_TOTAL_CHARS:
            raise EntityRefused(f"{source}: entity references expand past {MAX_TOTAL_CHARS} characters; refused")
        _replace_with_text(ent, text)


def _replace_with_text(node, text: str) -> None:
    parent = node.getparent()
    if parent is None:
        return
    joined = text + (node.tail or "")
    prev = node.getprevious()
    if prev is not None:
        prev.tail = (prev.tail or "") + joined
    else:
        parent.text = (parent.text or "") + joined
    node.tail = None
    parent.remove(node)
