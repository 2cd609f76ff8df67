"""Citation contexts: the body sentences that reference each figure.

Used by every parser that sees body text. XML parsers that have explicit links
(JATS ``xref``, TEI ``ref``) pass those; text-only references ("see Figs. 2–4") are found
with ``find_mentions`` so lists and ranges resolve to every figure they name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from figalign.parsers.text import base_number, kind_of, normalize_ws
from figalign.records import CitationContext, Figure

_ABBREV = (
    "fig|figs|eq|eqs|ref|refs|sec|secs|tab|tabs|no|nos|vs|cf|e\\.g|i\\.e|et al|al|approx|"
    "resp|ca|viz|etc|dr|mr|mrs|ms|prof|st|vol|pp|p|ch|suppl|supp|resp|ext|inc|corp|jr|sr|"
    "fig\\. s|mol|wt|min|max|avg|std|ave|incl|est|dept|univ"
)
# Split after . ! ? followed by space and an upper-case letter/digit/quote/bracket, unless the
# word before the full stop is a known abbreviation or a single letter (initials).
_SENT_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")
_ABBREV_TAIL = re.compile(r"(?:\b(?:" + _ABBREV + r")|\b[A-Za-z])\.$", re.IGNORECASE)

_NUM = r"S?\d+(?:\.\d+)?[a-z]?(?:\s*\(\s*[a-z](?:\s*[-–,]\s*[a-z])*\s*\))?"
_SEP = r"\s*(?:,\s*(?:and|&)?|and|&|or|[-–—]|to)\s*"
# eLife cites child figures as "Figure 1—figure supplement 2" (or "…supplements 1 and 2")
_SUPPLEMENTS = r"(?:\s*[-\u2010-\u2015]\s*figure\s+supplements?\s+(?P<supp>\d+(?:" + _SEP + r"\d+)*))?"
MENTION_RE = re.compile(
    r"\b(?P<prefix>(?:Supplementary|Suppl\.?|Supporting|Extended\s+Data)\s+)?"
    r"(?P<word>Fig(?:ure)?s?\.?|FIG(?:URE)?S?\.?|Tab(?:le)?s?\.?|TABLES?)\s*"
    r"(?P<nums>" + _NUM + r"(?:" + _SEP + _NUM + r")*)" + _SUPPLEMENTS,
    re.IGNORECASE,  # PLOS and others write "(figure 2 and table S2)" in lower case
)
_ONE_NUM = re.compile(r"(S?)(\d+)(?:\.(\d+))?([a-z]?)")


def split_sentences(text: str) -> list[str]:
    """Split a paragraph into sentences without breaking at "Fig. 2" or "et al."."""
    text = normalize_ws(text)
    if not text:
        return []
    out: list[str] = []
    start = 0
    for m in _SENT_END.finditer(text):
        head = text[start:m.start()].rstrip("\"')]")
        if _ABBREV_TAIL.search(head):
            continue
        out.append(text[start:m.start()].strip())
        start = m.end()
    out.append(text[start:].strip())
    return [s for s in out if s]


def _expand(nums: str) -> list[str]:
    """"2–4" -> [2, 3, 4]; "1 and 3" -> [1, 3]; "2b, c" -> [2]. Base numbers only."""
    found: list[str] = []
    tokens = list(_ONE_NUM.finditer(nums))
    for i, tok in enumerate(tokens):
        found.append(tok.group(1) + tok.group(2) + (f".{tok.group(3)}" if tok.group(3) else ""))
        if i == 0:
            continue
        between = nums[tokens[i - 1].end():tok.start()]
        prev = tokens[i - 1]
        if re.search(r"[-–—]|\bto\b", between) and prev.group(1) == tok.group(1) and not prev.group(3):
            lo, hi = int(prev.group(2)), int(tok.group(2))
            if 0 < hi - lo <= 50:
                found.extend(f"{tok.group(1)}{n}" for n in range(lo + 1, hi))
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class Mention:
    kind: str
    number: str
    text: str


def supplement_number(figure: str, supplement: str) -> str:
    """The number of a figure's child supplement: figure 1, supplement 2 -> "1-S2"."""
    return f"{figure}-S{supplement}"


def find_mentions(sentence: str) -> list[Mention]:
    """Every (kind, base number) a sentence references, with the mention text.

    "Figure 1—figure supplement 2" names the supplement ("1-S2"), not Figure 1.
    """
    out: list[Mention] = []
    for m in MENTION_RE.finditer(sentence):
        kind = kind_of(m.group("word"))
        supp = bool(m.group("prefix"))
        if m.group("supp") and kind == "figure":
            parent = _expand(m.group("nums"))[-1]
            out.extend(Mention(kind, supplement_number(parent, n), m.group(0).strip())
                       for n in _expand(m.group("supp")))
            continue
        for num in _expand(m.group("nums")):
            if supp and not num.startswith("S"):
                num = "S" + num
            out.append(Mention(kind, num, m.group(0).strip()))
    return out


def attach_text_mentions(
    paragraphs: Iterable[tuple[str | None, str]],
    figures: list[Figure],
    *,
    skip_text: Iterable[str] = (),
) -> int:
    """Find text references to figures in body paragraphs and attach them as contexts.

    ``paragraphs`` yields (section title, paragraph text) in reading order.
    ``skip_text`` holds caption texts so a caption never counts as its own context.
    Returns the number of contexts attached.
    """
    index = {(f.kind, base_number(f.number)): f for f in figures if f.number}
    skip = {normalize_ws(s) for s in skip_text if s}
    position = 0
    added = 0
    for section, para in paragraphs:
        for sent in split_sentences(para):
            position += 1
            if sent in skip:
                continue
            for mention in find_mentions(sent):
                fig = index.get((mention.kind, mention.number))
                if fig is not None and add_context(fig, sent, section, position, mention.text):
                    added += 1
    return added


def add_context(fig: Figure, text: str, section: str | None, position: int, mention: str | None) -> bool:
    """Attach one context to a figure unless that sentence is already there.

    The texts already attached are kept in a set beside the figure (rebuilt whenever
    ``fig.contexts`` changed behind its back), so a figure cited by every paragraph of a
    long paper costs linear, not quadratic, time (tests/parsers/test_linear_time.py).
    """
    text = normalize_ws(text)
    if not text:
        return False
    seen = _context_texts(fig)
    if text in seen:
        return False
    fig.contexts.append(CitationContext(text=text, section=section, position=position, mention=mention))
    seen.add(text)
    return True


def _context_texts(fig: Figure) -> set[str]:
    cached = getattr(fig, "_context_texts", None)
    if cached is None or len(cached) != len(fig.contexts):
        cached = {c.text for c in fig.contexts}
        object.__setattr__(fig, "_context_texts", cached)
    return cached
