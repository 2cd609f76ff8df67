"""Text as the store accepts it: the same, safe string on SQLite and Postgres.

Every string a parser, a source or a model hands over passes ``clean`` on its way into the
store (``store/papers.py``, the harvest, recaption answers):

* NUL and the other C0/C1 control characters are removed, except tab and newline (a
  carriage return becomes a newline). Postgres refuses NUL outright; SQLite would store it
  and every consumer downstream would have to cope.
* Bidirectional overrides and isolates (U+202A–U+202E, U+2066–U+2069) are removed, so a
  caption cannot display text in an order other than the one it is stored in.
* Unpaired surrogates (from broken decoders) become U+FFFD, so the text is valid UTF-8.
* Texts are capped at ``LIMITS`` characters (with an ellipsis); the caller records a
  warning when that happens.
"""

from __future__ import annotations

import re

LIMITS = {"caption": 20_000, "context": 4_000, "title": 2_000, "abstract": 20_000, "label": 64,
          "number": 32, "section": 500, "mention": 128, "recaption": 20_000}
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(value: str | None, kind: str | None = None) -> tuple[str | None, bool]:
    """(safe text, whether it was cut at the limit for ``kind``); None stays None."""
    if value is None:
        return None, False
    text = value.replace("\r\n", "\n").replace("\r", "\n")
    text = _SURROGATE.sub("\ufffd", _CONTROL.sub("", text))
    limit = LIMITS.get(kind or "")
    if limit is not None and len(text) > limit:
        return text[: limit - 1] + "…", True
    return text, False


def clean_text(value: str | None, kind: str | None = None, warnings: list[str] | None = None,
               where: str = "") -> str | None:
    """``clean`` that notes a cut in ``warnings`` (e.g. the paper's parse warnings)."""
    text, cut = clean(value, kind)
    if cut and warnings is not None:
        warnings.append(f"{where or kind} cut at {LIMITS[kind]} characters (was {len(value)})")
    return text
