"""The one record model every parser produces and every later stage reads.

A parser turns one source format (JATS, GROBID TEI, LaTeX, PDF) into a ``ParsedPaper``.
Nothing downstream looks at the source format again, so adding a format means adding a
parser, nothing else. ``SCHEMA_VERSION`` changes whenever a field's meaning changes, and
is stored with every parse so old records can be told apart from new ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = "1.3"
# 1.1: licence and doi read from the source when it states them
# 1.2: figures say where their image came from (image_origin) or why there is none
#      (no_image_reason); sub-figures carry their own image
# 1.3: the paper's discipline when the source states it (JATS subject groups, journal)

FigureKind = Literal["figure", "table"]

# Where a figure's image came from: the one graphics file the source names, panels composed
# into one image following the source's layout, or the figure's region cut from a PDF page.
IMAGE_ORIGINS = ("single-file", "composite", "pdf-crop")


@dataclass
class FigureImage:
    """A figure's image file as written by the parser (always PNG or JPEG)."""

    path: str
    width: int
    height: int
    sha256: str
    phash: str | None = None
    media_type: str = "image/png"


@dataclass
class CitationContext:
    """One body sentence that references a figure.

    ``position`` is the sentence's ordinal in the body (0-based) so contexts sort in
    reading order; ``mention`` is the reference text as it appeared ("Fig. 2b").
    """

    text: str
    section: str | None = None
    position: int = 0
    mention: str | None = None


@dataclass
class SubFigure:
    """A panel of a figure when the source marks it (LaTeX subfigure, JATS fig-group)."""

    label: str | None
    caption: str
    image: FigureImage | None = None


@dataclass
class Figure:
    """A figure or table with its caption, location, image and citation contexts.

    ``bbox`` is ``[x0, y0, x1, y1]`` in PDF points with the origin at the page's top-left;
    ``page`` is 0-based. Both are None when the source has no page geometry (JATS, LaTeX).
    ``number`` is the label's number as text ("3", "S2", "3b") used to resolve references.
    ``image_origin`` says how ``image`` was made (one of ``IMAGE_ORIGINS``); when there is
    no image, ``no_image_reason`` says why in a countable word (``tikz-without-pdf``,
    ``no-graphics-file-in-source`` …), so "the source has none" is told from "we failed".
    """

    id: str
    label: str | None
    kind: FigureKind
    caption: str
    ordinal: int
    number: str | None = None
    page: int | None = None
    bbox: list[float] | None = None
    image: FigureImage | None = None
    subfigures: list[SubFigure] = field(default_factory=list)
    contexts: list[CitationContext] = field(default_factory=list)
    source_ref: str | None = None
    error: str | None = None
    image_origin: str | None = None
    no_image_reason: str | None = None


@dataclass
class ParsedPaper:
    """A parsed paper: metadata, figures and the parse's own provenance.

    ``warnings`` lists per-figure problems (an image that would not convert, an EPS with
    no Ghostscript) that did not stop the paper from parsing.
    """

    paper_id: str
    title: str | None
    abstract: str | None
    parser: str
    parser_version: str
    figures: list[Figure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    licence: str | None = None
    licence_url: str | None = None
    doi: str | None = None
    discipline: str | None = None  # from the source's own subject metadata (JATS), when it states one
    schema_version: str = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_cli_json(self) -> dict[str, Any]:
        """The `figalign parse` output contract that evaluation tooling reads."""
        out = self.to_dict()
        for fig, rec in zip(self.figures, out["figures"]):
            rec["image_path"] = fig.image.path if fig.image else None
            rec["width"] = fig.image.width if fig.image else None
            rec["height"] = fig.image.height if fig.image else None
        out["parser"] = f"{self.parser}/{self.parser_version}"
        return out


def figure_id(paper_id: str, kind: str, number: str | None, ordinal: int) -> str:
    """Stable figure id: paper id + kind + number, or + ordinal when unnumbered."""
    key = f"{kind[:3]}{number}" if number else f"{kind[:3]}#{ordinal}"
    return f"{paper_id}:{key}"
