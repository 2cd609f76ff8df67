"""A JATS article's subject groups and journal title, read for its discipline.

PMC and local JATS papers have no arXiv categories, so their discipline comes from what
the article states about itself: ``article-meta/article-categories/subj-group`` (typed
``Discipline``, ``Discipline-v2``/``-v3`` taxonomies with nested groups, ``heading``) and
``journal-meta``'s journal title. The mapping to the nine disciplines is
``figalign.sources.disciplines.jats_discipline`` (documented there and in docs/quality.md).
"""

from __future__ import annotations

from figalign.parsers.xmlsafe import element_text, local_name
from figalign.sources.disciplines import jats_discipline


def _children(el, name: str) -> list:
    return [c for c in el if local_name(c) == name]


def _first(root, name: str):
    return next((el for el in root.iter() if local_name(el) == name), None)


def subjects(root) -> tuple[list[str], list[str], list[str]]:
    """(taxonomy top-level subjects, flat discipline subjects, heading subjects) in document order."""
    taxonomy: list[str] = []
    flat: list[str] = []
    headings: list[str] = []
    categories = _first(root, "article-categories")
    for group in _children(categories, "subj-group") if categories is not None else []:
        kind = (group.get("subj-group-type") or "").strip().lower()
        terms = [element_text(s) for s in _children(group, "subject") if element_text(s)]
        if kind == "heading":
            headings += terms
        elif kind.startswith("discipline") and _children(group, "subj-group"):
            taxonomy += terms  # a hierarchical taxonomy: its top level names the field
        elif kind.startswith("discipline") or not kind:
            flat += terms
    return taxonomy, flat, headings


def journal_title(root) -> str | None:
    meta = _first(root, "journal-meta")
    title = _first(meta, "journal-title") if meta is not None else None
    return element_text(title) or None


def discipline(root) -> str | None:
    """The article's discipline (one of ``disciplines.DISCIPLINES``), or None when nothing says."""
    taxonomy, flat, headings = subjects(root)
    return jats_discipline(taxonomy, flat, headings, journal_title(root))
