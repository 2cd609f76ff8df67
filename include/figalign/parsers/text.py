"""Text clean-up and figure-label parsing shared by every parser.

Captions arrive hyphenated across lines (PDF), full of markup whitespace (XML) or with
the label glued on ("Figure 3: ..."). Parsers normalise them here so that captions from
different formats of the same paper compare equal.
"""

from __future__ import annotations

import re
import unicodedata

_WS = re.compile(r"\s+")
_HYPHEN_BREAK = re.compile(r"(\w)[\u00ad-]\s*\n\s*(\w)")
_SOFT_HYPHEN = "\u00ad"

# "Figure", "Fig.", "FIG.", "Figs.", "Supplementary Figure", "Extended Data Fig.", "Table", "Tab."
LABEL_WORD = (
    r"(?:(?P<prefix>Supplementary|Suppl\.?|Supporting|Extended\s+Data|Appendix)\s+)?"
    r"(?P<word>Fig(?:ure)?s?\.?|FIG(?:URE)?S?\.?|Tab(?:le)?s?\.?|TABLES?\.?|Plates?|Charts?)"
)
NUMBER = r"(?P<num>(?:[A-Z]\.?)?\d+(?:\.\d+)?[a-z]?|[IVXL]+)(?![\d])"
LABEL_RE = re.compile(r"^\s*" + LABEL_WORD + r"\s*" + NUMBER + r"(?P<sep>\s*[:.|—–-]\s*|\s+)?", re.UNICODE)


def normalize_ws(text: str) -> str:
    """Collapse runs of whitespace to one space and strip the ends."""
    return _WS.sub(" ", text).strip()


def dehyphenate(text: str) -> str:
    """Join words broken across lines ("associ-\\nated" -> "associated")."""
    text = text.replace(_SOFT_HYPHEN + "\n", "").replace(_SOFT_HYPHEN, "")
    return _HYPHEN_BREAK.sub(r"\1\2", text)


def clean_caption(text: str) -> str:
    """Caption text as stored: NFC, de-hyphenated, whitespace-normalised."""
    text = unicodedata.normalize("NFC", text or "")
    text = text.replace("\ufb01", "fi").replace("\ufb02", "fl").replace("\ufb00", "ff")
    return normalize_ws(dehyphenate(text))


def kind_of(word: str) -> str:
    """Map a label word ("Fig.", "TABLE") to a figure kind."""
    return "table" if word.lower().startswith("tab") else "figure"


def parse_label(text: str) -> tuple[str, str, str] | None:
    """Split a caption start or label into (kind, number, label).

    Returns None when the text does not start with a figure/table label.
    ``parse_label("Fig. 3: Results")`` -> ("figure", "3", "Figure 3").
    Supplementary figures get an "S" prefix on their number so they never collide with
    main-text figures of the same number.
    """
    m = LABEL_RE.match(text or "")
    if not m:
        return None
    kind = kind_of(m.group("word"))
    num = m.group("num").replace(".", "") if re.fullmatch(r"[A-Z]\.\d+", m.group("num")) else m.group("num")
    if m.group("prefix") and not num.upper().startswith("S"):
        num = "S" + num
    label = ("Table " if kind == "table" else "Figure ") + num
    return kind, num, label


def strip_label(caption: str) -> str:
    """Remove a leading "Figure 3:" style label from a caption."""
    m = LABEL_RE.match(caption or "")
    if not m:
        return caption
    rest = caption[m.end():]
    return rest.strip() if rest.strip() else caption


def base_number(number: str | None) -> str | None:
    """Figure number without its panel letter: "3b" -> "3"; "S2" stays "S2"."""
    if not number:
        return number
    m = re.fullmatch(r"([A-Z]?\d+(?:\.\d+)?)[a-z]", number)
    return m.group(1) if m else number
