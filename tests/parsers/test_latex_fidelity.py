"""LaTeX figures as older and multi-panel papers write them: every graphics macro, graphicx's
extension order, composed multi-panel images, reasons for missing images, PDF crops.

Sources are written in the tests; PDFs are drawn with PyMuPDF so the expected crop is known.
"""

from __future__ import annotations

import shutil

import pytest

from figalign.parsers import latex
from figalign.parsers.options import ParseOptions
from tests.parsers.test_latex import EPS, doc, make_tar, pdf_bytes, png_bytes

needs_gs = pytest.mark.skipif(shutil.which("gs") is None, reason="Ghostscript (gs) not installed")


def _run(tmp_path, files, pdf=None, **opts):
    path = make_tar(tmp_path / "src.tar.gz", files)
    return latex.parse(path, out_dir=tmp_path / "out", pdf=pdf, paper_id="p", options=ParseOptions(**opts))


def _pixel(fig, fx: float, fy: float):
    """RGB at a fractional position of a figure's image."""
    from PIL import Image

    with Image.open(fig.image.path) as im:
        im = im.convert("RGB")
        return im.getpixel((min(im.width - 1, int(fx * im.width)), min(im.height - 1, int(fy * im.height))))


def _float(body: str, caption: str) -> str:
    return f"\\begin{{figure}}\n{body}\n\\caption{{{caption}}}\n\\end{{figure}}\n"


@needs_gs
def test_every_legacy_graphics_macro_finds_its_file(tmp_path):
    body = "".join([
        _float(r"\epsfig{file=a.eps,width=0.5\textwidth}", "epsfig."),
        _float(r"\psfig{figure=figs/b.eps,height=3cm}", "psfig."),
        _float(r"\epsfxsize=5cm \epsfbox{c.eps}", "epsfbox."),
        _float(r"\epsffile{d}", "epsffile without extension."),
        _float(r"\plotone{e.eps}", "AASTeX plotone."),
        _float(r"\includegraphics*[width=3cm]{g}", "starred includegraphics from the graphicspath."),
        _float(r"\special{psfile=a.eps hoffset=0}", "plain TeX special."),
        _float(r"\includegraphics{{name.with.dots}.png}", "braced base name."),
    ])
    files = {"main.tex": doc(body, r"\usepackage{epsfig}\graphicspath{{figs/}{other/}}"), "a.eps": EPS,
             "figs/b.eps": EPS, "c.eps": EPS, "d.eps": EPS, "e.eps": EPS, "other/g.png": png_bytes("green"),
             "name.with.dots.png": png_bytes("blue")}
    paper = _run(tmp_path, files)
    assert len(paper.figures) == 8
    for fig in paper.figures:
        assert fig.image is not None, (fig.caption, paper.warnings)
        assert fig.image_origin == "single-file" and fig.no_image_reason is None


def test_plottwo_is_two_panels_composed_side_by_side(tmp_path):
    body = _float(r"\plottwo{left.png}{right.png}", "Two AASTeX panels.")
    paper = _run(tmp_path, {"main.tex": doc(body), "left.png": png_bytes("red", (60, 60)),
                            "right.png": png_bytes("blue", (60, 60))})
    fig = paper.figures[0]
    assert [s.image is not None for s in fig.subfigures] == [True, True]
    assert fig.image_origin == "composite"
    assert _pixel(fig, 0.25, 0.5) == (255, 0, 0) and _pixel(fig, 0.75, 0.5) == (0, 0, 255)


@pytest.mark.parametrize("preamble, want", [
    ("", (0, 0, 255)),  # pdfLaTeX: .pdf before .png
    (r"\DeclareGraphicsExtensions{.png,.pdf}", (255, 0, 0)),  # the paper's own order wins
])
def test_extension_search_order_is_graphicx_order(tmp_path, preamble, want):
    import pymupdf

    pdf = pymupdf.open()
    page = pdf.new_page(width=100, height=100)
    page.draw_rect(page.rect, color=(0, 0, 1), fill=(0, 0, 1))
    files = {"main.tex": doc(_float(r"\includegraphics{fig}", "Which file?"), preamble),
             "fig.png": png_bytes("red", (50, 50)), "fig.pdf": pdf.tobytes()}
    paper = _run(tmp_path, files)
    assert _pixel(paper.figures[0], 0.5, 0.5) == want


@needs_gs
def test_dvips_papers_prefer_eps(tmp_path):
    files = {"main.tex": doc(_float(r"\epsfig{file=fig}", "Which file?"), r"\usepackage{epsfig}"),
             "fig.png": png_bytes("red", (50, 50)), "fig.eps": EPS}
    fig = _run(tmp_path, files).figures[0]
    assert fig.image is not None and _pixel(fig, 0.5, 0.5) == (0, 0, 255)  # the EPS is a blue box


def test_no_image_reasons_tell_missing_files_from_drawings(tmp_path):
    body = "".join([
        _float(r"\begin{tikzpicture}\draw (0,0) -- (1,1);\end{tikzpicture}", "A TikZ drawing."),
        _float(r"\begin{tikzpicture}\begin{axis}\addplot {x};\end{axis}\end{tikzpicture}", "A pgfplot."),
        _float(r"\setlength{\unitlength}{1mm}\begin{picture}(10,10)\put(0,0){x}\end{picture}", "A picture."),
        _float(r"\includegraphics{not-in-the-archive}", "A missing file."),
        _float(r"\fbox{Only text in a box.}", "Text only."),
        _float(r"\includegraphics{broken.png}", "A corrupt file."),
    ])
    paper = _run(tmp_path, {"main.tex": doc(body), "broken.png": b"\x89PNG\r\n\x1a\nnot really"})
    assert [f.no_image_reason for f in paper.figures] == [
        "tikz-without-pdf", "tikz-without-pdf", "picture-without-pdf", "no-graphics-file-in-source",
        "no-graphics-in-source", "graphics-file-unreadable"]
    assert all(f.image is None and f.image_origin is None for f in paper.figures)


QUAD = r"""
\begin{figure}
\centering
\begin{subfigure}{0.45\textwidth}\includegraphics[width=\linewidth]{r}\caption{red}\end{subfigure}
\hfill
\begin{subfigure}{0.45\textwidth}\includegraphics[width=\linewidth]{g}\caption{green}\end{subfigure}
\\
\begin{subfigure}{0.45\textwidth}\includegraphics[width=\linewidth]{b}\caption{blue}\end{subfigure}
\hfill
\begin{subfigure}{0.45\textwidth}\includegraphics[width=\linewidth]{y}\caption{yellow}\end{subfigure}
\caption{Four panels in two rows.}\label{fig:quad}
\end{figure}
"""
COLOURS = {"r": "red", "g": "lime", "b": "blue", "y": "yellow"}


def _quad_files(body: str) -> dict:
    return {"main.tex": doc(body, r"\usepackage{subcaption}"),
            **{f"{k}.png": png_bytes(v, (80, 60)) for k, v in COLOURS.items()}}


def test_panels_compose_in_the_source_rows_and_keep_their_own_records(tmp_path):
    paper = _run(tmp_path, _quad_files(QUAD))
    fig = paper.figures[0]
    assert [(s.label, s.caption) for s in fig.subfigures] == [
        ("(a)", "red"), ("(b)", "green"), ("(c)", "blue"), ("(d)", "yellow")]
    assert all(s.image is not None and s.image.width == 80 for s in fig.subfigures)
    assert fig.image_origin == "composite"
    # two rows of two: every panel present, each in its quadrant
    assert _pixel(fig, 0.25, 0.25) == (255, 0, 0) and _pixel(fig, 0.75, 0.25) == (0, 255, 0)
    assert _pixel(fig, 0.25, 0.75) == (0, 0, 255) and _pixel(fig, 0.75, 0.75) == (255, 255, 0)
    assert 1.1 < fig.image.width / fig.image.height < 1.5  # 2 x (80x60) panels + gaps


def test_rows_also_break_where_the_line_is_full(tmp_path):
    body = _float("\n".join(rf"\includegraphics[width=0.6\linewidth]{{{k}}}" for k in "rgb"), "Three wide panels.")
    fig = _run(tmp_path, _quad_files(body)).figures[0]
    assert fig.image_origin == "composite" and len(fig.subfigures) == 3
    assert fig.image.height > 2.5 * fig.image.width * 60 / 80  # stacked: three rows
    assert _pixel(fig, 0.5, 0.15) == (255, 0, 0) and _pixel(fig, 0.5, 0.85) == (0, 0, 255)


def test_subfloat_panels_in_one_row_by_their_widths(tmp_path):
    body = _float(r"\subfloat[one]{\includegraphics[width=0.3\textwidth]{r}}"
                  r"\subfloat[two]{\includegraphics[width=0.3\textwidth]{g}}"
                  r"\subfloat[three]{\includegraphics[width=0.3\textwidth]{b}}", "Three in a row.")
    fig = _run(tmp_path, _quad_files(body)).figures[0]
    assert [s.caption for s in fig.subfigures] == ["one", "two", "three"]
    assert fig.image.width > 3 * fig.image.height
    assert [_pixel(fig, x, 0.5) for x in (0.15, 0.5, 0.85)] == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def _typeset_pdf(tmp_path, caption: str):
    """A one-page 'typeset paper': a green drawing with its caption under it, and body text."""
    import pymupdf

    pdf = pymupdf.open()
    page = pdf.new_page(width=612, height=792)
    page.insert_text((72, 90), "1 Introduction", fontsize=12)
    page.insert_textbox(pymupdf.Rect(72, 100, 540, 200), "Body text of the paper. " * 12, fontsize=10)
    page.draw_rect(pymupdf.Rect(150, 220, 460, 420), color=(0, 0.6, 0), fill=(0, 0.8, 0))
    page.draw_circle((305, 320), 60, color=(0, 0, 0), fill=(1, 1, 1))
    page.insert_textbox(pymupdf.Rect(72, 432, 540, 470), caption, fontsize=9)
    page.insert_textbox(pymupdf.Rect(72, 490, 540, 600), "More body text follows the figure. " * 10, fontsize=10)
    path = tmp_path / "paper.pdf"
    pdf.save(path)
    return path


def test_with_the_pdf_a_tikz_figure_is_the_crop_of_the_typeset_figure(tmp_path):
    words = "Phase diagram of the toy model drawn with TikZ for this test."
    pdf = _typeset_pdf(tmp_path, f"Figure 1: {words}")
    body = _float(r"\begin{tikzpicture}\draw (0,0) circle (1);\end{tikzpicture}", words)
    paper = _run(tmp_path, {"main.tex": doc(body)}, pdf=pdf)
    fig = paper.figures[0]
    assert fig.image_origin == "pdf-crop" and fig.no_image_reason is None
    assert fig.page == 0 and 140 <= fig.bbox[0] <= 155 and 210 <= fig.bbox[1] <= 225
    assert fig.bbox[3] < 432  # the crop stops at the caption
    assert _pixel(fig, 0.1, 0.1) == (0, 204, 0)


def test_with_an_unrelated_pdf_the_source_image_stays(tmp_path):
    pdf = _typeset_pdf(tmp_path, "Figure 1: Something else entirely, about measured rainfall in spring.")
    body = _float(r"\includegraphics{r}", "Red square used as the only panel of this figure.")
    fig = _run(tmp_path, _quad_files(body), pdf=pdf).figures[0]
    assert fig.image_origin == "single-file" and fig.page is None
    assert _pixel(fig, 0.5, 0.5) == (255, 0, 0)


def test_pdf_bytes_helper_is_a_real_pdf():
    assert pdf_bytes().startswith(b"%PDF")


def test_topcaption_tables_are_found(tmp_path):
    body = (r"\begin{table}\topcaption{Selection regions used for signal identification.}"
            r"\begin{tabular}{cc} a & b \\ \end{tabular}\end{table}")
    (table,) = _run(tmp_path, {"main.tex": doc(body)}).figures
    assert (table.kind, table.number, table.caption) == ("table", "1", "Selection regions used for signal identification.")


def test_continued_float_parts_share_the_number_caption_and_contexts(tmp_path):
    """``\\ContinuedFloat`` (caption package) spreads one figure over several floats: the
    counter does not step, so the next figure is still "Figure 2", and the captionless
    parts (``\\caption[]{}``) are parts of the captioned figure, not figures without text."""
    captions = ["", "", "Three pages of galaxy images."]
    parts = "".join("\\begin{figure}\n" + ("\\ContinuedFloat\n" if k else "") + f"\\includegraphics{{p{k}}}\n"
                    + "\\caption[]{" + captions[k] + "}" + ("\\label{fig:gal}" if k == 0 else "") + "\n\\end{figure}\n"
                    for k in range(3))
    body = (parts + _float(r"\includegraphics{q}", "A spectrum.")
            + "Images are in Fig.~\\ref{fig:gal}. The spectrum is in Figure 2.\n")
    files = {"main.tex": doc(body, r"\usepackage{caption}"), "q.png": png_bytes("blue"),
             **{f"p{k}.png": png_bytes(c) for k, c in enumerate(("red", "green", "yellow"))}}
    figs = _run(tmp_path, files).figures
    assert [(f.id, f.label) for f in figs] == [
        ("p:fig1", "Figure 1"), ("p:fig1-part2", "Figure 1"), ("p:fig1-part3", "Figure 1"), ("p:fig2", "Figure 2")]
    assert [f.caption for f in figs[:3]] == ["Three pages of galaxy images."] * 3
    assert len({f.image.path for f in figs}) == 4  # one image file per part, none overwritten
    assert [_pixel(f, 0.5, 0.5) for f in figs] == [(255, 0, 0), (0, 128, 0), (255, 255, 0), (0, 0, 255)]
    for f in figs[:3]:
        assert [c.text for c in f.contexts] == ["Images are in Fig. 1."]
    assert [c.text for c in figs[3].contexts] == ["The spectrum is in Figure 2."]
