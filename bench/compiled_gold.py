"""Compiled-LaTeX gold for the PDF path: typeset e-prints whose captions the source states.

DocBank built its gold by compiling arXiv sources; this does the same, small: every LaTeX
e-print of a corpus is unpacked (figalign's own safe unpacker), compiled with pdflatex
(restricted shell escape, time-limited), and the PDF parser's figures on the result are compared
with the figures the LaTeX source numbers, by kind and number:

* ``caption_word_f1``: mean bag-of-words F1 of the PDF caption against the source caption
  (main caption only: sub-captions sit under their panels, not in the caption block);
* ``agreement_f1_ge_0.9``: share of source figures whose PDF caption reaches F1 0.9 (the
  ``pdf_vs_jats`` measure, with the source as reference);
* ``image_rate``: share of source figures the PDF path found with a cropped image;
* ``spurious``: PDF figures (kind figure) whose number the source does not have;
* ``latex_pdf_crop_rate`` / ``latex_image_rate_with_pdf``: LaTeX figures parsed with the
  compiled PDF beside them that got the crop of their typeset figure / any image.

Usage (TeX Live's pdflatex on PATH; nothing is written under the corpus)::

    .venv/bin/python bench/compiled_gold.py ../shared/corpus/latex --work bench/out/compiled \\
        --json bench/out/compiled_gold.json
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from figalign.errors import BadInputError
from figalign.parsers import latex, pdf
from figalign.parsers.latex_archive import unpack
from figalign.parsers.latex_pdf import caption_f1
from figalign.parsers.options import ParseOptions

_CITES = re.compile(r"\[[\d,\s\u2013-]+\]")  # "[17, 48–54]": the source's \\cite has no numbers to compare
SUFFIXES = (".tar.gz", ".tgz", ".gz", ".zip", ".tar")
NO_IMAGES = ParseOptions(write_images=False)


def compile_eprint(archive: Path, work: Path, timeout: int) -> Path | None:
    """The PDF pdflatex makes of an e-print's main file (run twice, for numbers), or None."""
    root = work / "src"
    shutil.rmtree(work, ignore_errors=True)
    root.mkdir(parents=True)
    unpacked = unpack(archive, root, ParseOptions())
    if unpacked.pdf is not None:
        return None  # a PDF-only submission: no source to know the figures from
    src = latex._Sources(unpacked.root, [])
    try:
        main = latex._pick_main(src)
    except BadInputError:
        return None
    # restricted shell escape: only TeX Live's whitelist (repstopdf turns EPS figures into PDF)
    cmd = ["pdflatex", "-interaction=nonstopmode", "-shell-restricted", main.name]
    for _ in range(2):
        try:
            subprocess.run(cmd, cwd=main.parent, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return None
    out = main.with_suffix(".pdf")
    return out if out.is_file() and out.stat().st_size > 0 else None


def _main_caption(fig) -> str:
    """The caption as typeset: without the "(a) ..." sub-captions the LaTeX parser appends,
    and with math scripts joined as the page sets them ("T_pc" reads "Tpc")."""
    text = fig.caption
    parts = " ".join(f"{s.label} {s.caption}" for s in fig.subfigures if s.caption)
    if parts and text.endswith(parts):
        text = text[: -len(parts)].strip()
    return text.replace("_", "").replace("^", "")


def score_one(archive: Path, typeset: Path, out: Path) -> dict:
    """Source figures vs the PDF parser's figures on the compiled PDF, and how many LaTeX
    figures the LaTeX parser, given that PDF, images with a crop of their typeset figure."""
    src = latex.parse(archive, out_dir=out / "src", pdf=None, paper_id="gold", options=NO_IMAGES)
    with_pdf = latex.parse(archive, out_dir=out / "latex", pdf=typeset, paper_id="gold", options=ParseOptions())
    origins = [f.image_origin for f in with_pdf.figures if f.kind == "figure"]
    got = pdf.parse(typeset, out_dir=out / "pdf", pdf=None, paper_id="pdf", options=ParseOptions())
    gold = {(f.kind, f.number): _main_caption(f) for f in src.figures if f.number and f.caption}
    pred = {(f.kind, f.number): f for f in got.figures if f.number}
    rows = []
    for key, caption in gold.items():
        fig = pred.get(key)
        f1 = caption_f1(caption, _CITES.sub(" ", fig.caption)) if fig else 0.0
        rows.append(dict(kind=key[0], number=key[1], f1=round(f1, 3), found=fig is not None,
                         image=bool(fig and fig.image), pdf_caption=fig.caption if fig else None, gold=caption))
    spurious = [k for k in pred if k not in gold and k[0] == "figure"]  # source tables can hide in macros
    return dict(figures=rows, spurious=len(spurious), latex_figures=len(origins),
                latex_pdf_crops=origins.count("pdf-crop"), latex_imaged=sum(o is not None for o in origins))


def summarise(cases: list[dict]) -> dict:
    rows = [r for c in cases for r in c.get("figures", [])]
    figs = [r for r in rows if r["kind"] == "figure"]
    n = max(1, len(rows))
    return dict(papers=len([c for c in cases if "figures" in c]), not_compiled=len([c for c in cases if "figures" not in c]),
                gold_captions=len(rows), caption_word_f1=round(sum(r["f1"] for r in rows) / n, 3),
                agreement_f1_ge_0_9=round(sum(r["f1"] >= 0.9 for r in rows) / n, 3),
                found=round(sum(r["found"] for r in rows) / n, 3),
                figure_image_rate=round(sum(r["image"] for r in figs) / max(1, len(figs)), 3),
                spurious=sum(c.get("spurious", 0) for c in cases),
                latex_pdf_crop_rate=round(sum(c.get("latex_pdf_crops", 0) for c in cases)
                                          / max(1, sum(c.get("latex_figures", 0) for c in cases)), 3),
                latex_image_rate_with_pdf=round(sum(c.get("latex_imaged", 0) for c in cases)
                                                / max(1, sum(c.get("latex_figures", 0) for c in cases)), 3))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path, help="folder of LaTeX e-prints")
    ap.add_argument("--work", type=Path, default=Path("bench/out/compiled"))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--timeout", type=int, default=120)
    args = ap.parse_args(argv)
    if shutil.which("pdflatex") is None:
        print("compiled_gold: pdflatex not on PATH (apt-get install texlive-latex-extra)", file=sys.stderr)
        return 2
    cases = []
    for archive in sorted(p for p in args.corpus.iterdir() if p.name.endswith(SUFFIXES)):
        start = time.perf_counter()
        work = args.work / archive.name.split(".")[0]
        try:
            typeset = compile_eprint(archive, work, args.timeout)
        except BadInputError as exc:
            typeset, why = None, str(exc)
        else:
            why = "pdflatex made no PDF"
        if typeset is None:
            cases.append(dict(archive=archive.name, error=why))
            print(f"{archive.name}: not compiled ({why})")
            continue
        case = dict(archive=archive.name, pdf=str(typeset), **score_one(archive, typeset, work / "parsed"))
        cases.append(case)
        s = summarise([case])
        print(f"{archive.name}: {s['gold_captions']} captions, f1={s['caption_word_f1']}, "
              f"agree={s['agreement_f1_ge_0_9']}, spurious={s['spurious']} ({time.perf_counter() - start:.0f} s)")
    summary = summarise(cases)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dict(summary=summary, cases=cases), indent=2))
    print("compiled: " + ", ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
