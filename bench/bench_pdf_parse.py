"""Benchmark: plain-PDF parser speed against a bare PyMuPDF text pass (the floor).

The floor opens each PDF and calls ``page.get_text("dict")`` on every page, the least any
PDF parser built on PyMuPDF must do. The parser is timed on the same files in the same run,
interleaved with the floor file by file and repeated (minimum per file kept) so machine
noise hits both alike. Parser time is reported without image writing (pure analysis) and,
in one extra pass, with crops rendered and written as PNG.

    PYTHONPATH=include .venv/bin/python bench/bench_pdf_parse.py [CORPUS] [--repeat 3]

Goal: parser (no images) <= 3x the floor.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


def corpus_pdfs(corpus: Path) -> list[Path]:
    """All PDFs of the shared corpus that the parser is meant for."""
    globs = ("pdf/*.pdf", "pdf_gt/docbank/*.pdf", "jats/*/*.pdf", "grobid_tei/*.pdf")
    return sorted(p for g in globs for p in corpus.glob(g))


def floor_pass(path: Path, max_pages: int) -> int:
    """Open and extract every page's text dictionary; return the page count."""
    import pymupdf

    with pymupdf.open(path) as doc:
        n = min(doc.page_count, max_pages)
        for i in range(n):
            doc[i].get_text("dict")
    return n


def parser_pass(path: Path, out_dir: Path, write_images: bool) -> int:
    """Run the plain-PDF parser; return the number of figures found."""
    from figalign.parsers import pdf as pdf_parser
    from figalign.parsers.options import ParseOptions

    paper = pdf_parser.parse(path, out_dir=out_dir, pdf=None, paper_id=path.stem, options=ParseOptions(write_images=write_images))
    return len(paper.figures)


def timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t0, result


def run(pdfs: list[Path], repeat: int) -> dict:
    """Per-file minimum times for floor and parser (interleaved), plus one pass with images."""
    from figalign.parsers.options import ParseOptions

    max_pages = ParseOptions().max_pages
    floor = {p: float("inf") for p in pdfs}
    parse = {p: float("inf") for p in pdfs}
    pages, figures = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench_pdf_") as tmp:
        for _ in range(repeat):
            for p in pdfs:
                dt, pages[p] = timed(floor_pass, p, max_pages)
                floor[p] = min(floor[p], dt)
                dt, figures[p] = timed(parser_pass, p, Path(tmp), False)
                parse[p] = min(parse[p], dt)
        with_images = sum(timed(parser_pass, p, Path(tmp) / p.stem, True)[0] for p in pdfs)
    return {"floor": floor, "parse": parse, "pages": pages, "figures": figures, "with_images": with_images}


def report(pdfs: list[Path], r: dict) -> None:
    n_pdf, n_pages = len(pdfs), sum(r["pages"].values())
    t_floor, t_parse = sum(r["floor"].values()), sum(r["parse"].values())
    print(f"{n_pdf} PDFs, {n_pages} pages, {sum(r['figures'].values())} figures/tables found")
    print(f"{'pass':<34}{'seconds':>9}{'PDFs/s':>9}{'pages/s':>10}{'x floor':>9}")
    rows = [
        ("floor: get_text('dict') per page", t_floor),
        ("parser, no image writing", t_parse),
        ("parser, crops written (PNG)", r["with_images"]),
    ]
    for name, t in rows:
        print(f"{name:<34}{t:>9.2f}{n_pdf / t:>9.2f}{n_pages / t:>10.1f}{t / t_floor:>9.2f}")
    worst = max(pdfs, key=lambda p: r["parse"][p] / max(r["floor"][p], 1e-9))
    print(f"worst file ratio: {worst.name} {r['parse'][worst] / r['floor'][worst]:.2f}x "
          f"({r['pages'][worst]} pages)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    pdfs = corpus_pdfs(a.corpus)
    if not pdfs:
        print(f"no PDFs under {a.corpus}", file=sys.stderr)
        return 1
    floor_pass(pdfs[0], 1)  # warm imports and caches before timing
    parser_pass(pdfs[0], Path(tempfile.gettempdir()), False)
    report(pdfs, run(pdfs, a.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
