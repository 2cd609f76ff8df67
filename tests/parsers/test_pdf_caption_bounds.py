"""Caption boundaries on typeset pages: whole rows through sub/superscripts, and a stop at
the paragraph after a centred one-line caption. PDFs are drawn with PyMuPDF (known layout),
and one is typeset by pdflatex from LaTeX written here when TeX Live is installed."""

from __future__ import annotations

import shutil
import subprocess

import pytest

pymupdf = pytest.importorskip("pymupdf")

from figalign.parsers.latex_pdf import caption_f1  # noqa: E402
from tests.parsers.test_pdf import body_lines, draw_plot, parse, save  # noqa: E402


def test_a_centred_one_line_caption_does_not_swallow_the_next_paragraph(tmp_path):
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    body_lines(page, 72, 90, 468, 10)
    draw_plot(page, (200, 250, 412, 420))
    caption = "Figure 1: Dominant diagrams for the signal model considered."
    width = pymupdf.get_text_length(caption, fontname="tiro", fontsize=10)
    page.insert_text(((612 - width) / 2, 440), caption, fontsize=10, fontname="tiro")
    # a justified full-width paragraph right below: centred on the same axis, same font
    page.insert_textbox(pymupdf.Rect(72, 444, 540, 520), "We consider a theoretical framework where " * 8,
                        fontsize=10, fontname="tiro", align=pymupdf.TEXT_ALIGN_JUSTIFY)
    (fig,) = parse(save(doc, tmp_path / "centred.pdf"), tmp_path).figures
    assert fig.caption == "Dominant diagrams for the signal model considered."


def test_a_caption_row_with_subscripts_is_read_whole(tmp_path):
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    body_lines(page, 72, 90, 468, 10)
    draw_plot(page, (200, 250, 412, 420))
    y = 440.0
    head = "Figure 2: Transverse density of the proton \u03c1"
    page.insert_text((72, y), head, fontsize=10, fontname="tiro")
    x = 72 + pymupdf.get_text_length(head, fontname="tiro", fontsize=10)
    page.insert_text((x, y - 4), "2", fontsize=7, fontname="tiro")  # superscript and subscript
    page.insert_text((x, y + 2.5), "max,total", fontsize=7, fontname="tiro")  # stacked at one x
    x += pymupdf.get_text_length("max,total", fontname="tiro", fontsize=7) + 0.5
    page.insert_text((x, y), "(b) for both quark flavours", fontsize=10, fontname="tiro")
    page.insert_text((72, y + 12.5), "and the two variants of the model.", fontsize=10, fontname="tiro")
    body_lines(page, 72, 490, 468, 8)
    (fig,) = parse(save(doc, tmp_path / "scripts.pdf"), tmp_path).figures
    assert "max,total" in fig.caption and "(b) for both quark flavours" in fig.caption
    assert fig.caption.startswith("Transverse density of the proton")
    assert fig.caption.endswith("two variants of the model.")


LATEX = r"""\documentclass[twocolumn]{article}
\usepackage{tikz}
\begin{document}
\section{Introduction}
Body text that is long enough to fill a few lines of the first column, so that the figure
sits among ordinary paragraphs as it would in a paper. More words follow here, and more.

\begin{figure}[h]
\centering
\begin{tikzpicture}\draw[fill=gray] (0,0) rectangle (3,2); \draw (1.5,1) circle (0.7);\end{tikzpicture}
\caption{Transverse charge density $\rho^p_T(b)-\rho^p_0(b)$ of the proton in the toy model,
with upper panel from the back and lower panel from above, for both quark flavours.}
\label{fig:tikz}
\end{figure}

A following paragraph of body text that must not become part of the caption, even though it
is set in the same column right after the figure float. It goes on for a while longer here.
\end{document}
"""


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="TeX Live (pdflatex) not installed")
def test_pdflatex_output_gives_the_whole_caption_and_the_tikz_crop(tmp_path):
    from figalign.parsers import latex
    from figalign.parsers.options import ParseOptions
    from tests.parsers.test_latex import make_tar

    (tmp_path / "main.tex").write_text(LATEX)
    subprocess.run(["pdflatex", "-interaction=nonstopmode", "-no-shell-escape", "main.tex"], cwd=tmp_path,
                   capture_output=True, timeout=120, check=False)
    typeset = tmp_path / "main.pdf"
    assert typeset.is_file()
    (pdf_fig,) = [f for f in parse(typeset, tmp_path / "p").figures if f.kind == "figure"]
    assert pdf_fig.caption.startswith("Transverse charge density") and pdf_fig.caption.endswith("quark flavours.")
    assert "following paragraph" not in pdf_fig.caption
    assert caption_f1(pdf_fig.caption, "Transverse charge density ρpT(b)-ρp0(b) of the proton in the toy model, "
                      "with upper panel from the back and lower panel from above, for both quark flavours.") >= 0.85  # math tokens differ
    src = make_tar(tmp_path / "src.tar.gz", {"main.tex": LATEX})
    paper = latex.parse(src, out_dir=tmp_path / "out", pdf=typeset, paper_id="t", options=ParseOptions())
    (fig,) = paper.figures
    assert fig.image_origin == "pdf-crop" and fig.page == 0 and fig.bbox[3] <= pdf_fig.bbox[3] + 1


def test_small_capitals_and_a_large_label_do_not_end_a_caption(tmp_path):
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    body_lines(page, 72, 90, 468, 10)
    draw_plot(page, (200, 250, 412, 420))
    page.insert_text((72, 440), "Table 3:", fontsize=12, fontname="tibo")  # a label set larger than the text
    page.insert_text((120, 440), "Comparison of training datasets and encoders for", fontsize=10, fontname="tiro")
    x = 72.0
    for text, size in (("the ", 10), ("RATIONALESELECTION", 8), (" tasks of the", 10)):
        page.insert_text((x, 452.5), text, fontsize=size, fontname="tiro")
        x += pymupdf.get_text_length(text, fontname="tiro", fontsize=size)
    page.insert_text((72, 465), "shared benchmark, on the dev set.", fontsize=10, fontname="tiro")
    body_lines(page, 72, 500, 468, 8)
    (table,) = parse(save(doc, tmp_path / "smallcaps.pdf"), tmp_path).figures
    assert table.caption.endswith("tasks of the shared benchmark, on the dev set.")
