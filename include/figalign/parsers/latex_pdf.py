"""A LaTeX paper's figures, imaged from its typeset PDF when the PDF is at hand.

The source knows the caption and the panels; only the typeset page shows the figure as
readers see it: every panel in its place, TikZ/PGF and ``picture`` drawings that have no
file at all. arXiv serves the PDF beside every e-print, so when it is given the plain-PDF
parser finds the figures on its pages, and each LaTeX figure takes the crop of the PDF
figure that has its kind, its number and (above all) its caption words. A figure with no
convincing match keeps its source image (composite or single file).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from figalign.errors import BadInputError
from figalign.parsers.options import ParseOptions
from figalign.parsers.text import strip_label
from figalign.records import Figure, ParsedPaper

log = logging.getLogger(__name__)

MIN_F1 = 0.6  # caption word-F1 that alone makes a match
MIN_F1_SAME_NUMBER = 0.3  # enough when kind and number agree too
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(strip_label(text or ""))]


def caption_f1(a: str, b: str) -> float:
    """Bag-of-words F1 of two captions (labels stripped): typesetting changes little else."""
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return 0.0
    pool: dict[str, int] = {}
    for w in wb:
        pool[w] = pool.get(w, 0) + 1
    common = 0
    for w in wa:
        if pool.get(w, 0) > 0:
            pool[w] -= 1
            common += 1
    if not common:
        return 0.0
    p, r = common / len(wa), common / len(wb)
    return 2 * p * r / (p + r)


def _score(fig: Figure, cand: Figure) -> float:
    if cand.kind != fig.kind or cand.image is None:
        return 0.0
    f1 = caption_f1(fig.caption, cand.caption)
    same = fig.number is not None and fig.number == cand.number
    if f1 >= MIN_F1 or (same and f1 >= MIN_F1_SAME_NUMBER):
        return f1 + (0.5 if same else 0.0)
    return 0.0


def match(figures: list[Figure], candidates: list[Figure]) -> list[tuple[Figure, Figure]]:
    """Pairs (LaTeX figure, PDF figure), best-scoring first, each PDF figure used once."""
    scored = sorted(((_score(f, c), i, j) for i, f in enumerate(figures) for j, c in enumerate(candidates)),
                    reverse=True)
    used_f: set[int] = set()
    used_c: set[int] = set()
    pairs = []
    for score, i, j in scored:
        if score <= 0 or i in used_f or j in used_c:
            continue
        used_f.add(i)
        used_c.add(j)
        pairs.append((figures[i], candidates[j]))
    return pairs


def use_pdf_crops(paper: ParsedPaper, pdf: Path, out_dir: Path, options: ParseOptions) -> int:
    """Give each LaTeX figure the crop of its typeset counterpart; returns how many got one."""
    from figalign.parsers import pdf as pdf_parser

    try:
        typeset = pdf_parser.parse(pdf, out_dir=out_dir, pdf=None, paper_id=paper.paper_id, options=options)
    except BadInputError as exc:
        paper.warnings.append(f"PDF {pdf.name} not usable for figure crops: {exc}")
        return 0
    figures = [f for f in paper.figures if f.kind == "figure"]
    pairs = match(figures, [c for c in typeset.figures if c.image is not None])
    for fig, crop in pairs:
        fig.image, fig.page, fig.bbox = crop.image, crop.page, crop.bbox
        fig.image_origin, fig.no_image_reason = "pdf-crop", None
    log.debug("%s: %d of %d figures cropped from %s", paper.paper_id, len(pairs), len(figures), pdf.name)
    return len(pairs)
