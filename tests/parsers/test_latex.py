"""Tests for the arXiv LaTeX source parser.

Source archives are built inside each test (tar/gzip/zip into tmp_path) so every case is
small, readable and openly licensed. The last group runs on real arXiv e-prints from the
shared corpus and skips when that folder is not there.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from figalign.errors import BadInputError
from figalign.parsers import latex
from figalign.parsers.latex_archive import unpack
from figalign.parsers.latex_tex import extract_macros, expand_macros, strip_comments, to_text
from figalign.parsers.options import ParseOptions
from figalign.parsers.registry import detect_kind, parse_path

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CORPUS = SHARED / "corpus" / "latex"


# ------------------------------------------------------------------ builders
def png_bytes(color: str = "red", size: tuple[int, int] = (40, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def pdf_bytes(width: float = 200, height: float = 100) -> bytes:
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=width, height=height)
    page.draw_rect(pymupdf.Rect(10, 10, width - 10, height - 10), color=(0, 0, 1), fill=(1, 0, 0))
    data = doc.tobytes()
    doc.close()
    return data


EPS = b"""%!PS-Adobe-3.0 EPSF-3.0
%%BoundingBox: 0 0 100 50
newpath 10 10 moveto 90 10 lineto 90 40 lineto closepath 0 0 1 setrgbcolor fill
showpage
"""


def doc(body: str, preamble: str = "") -> str:
    return "\\documentclass{article}\n\\usepackage{graphicx}\n" + preamble + "\n\\begin{document}\n" + body + "\n\\end{document}\n"


def to_bytes(data: str | bytes) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def make_tar(path: Path, files: dict[str, str | bytes], *, gz: bool = True) -> Path:
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for name, data in files.items():
            raw = to_bytes(data)
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def make_zip(path: Path, files: dict[str, str | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, to_bytes(data))
    return path


def run(path: Path, tmp_path: Path, **opts):
    return latex.parse(path, out_dir=tmp_path / "out", pdf=None, paper_id="p1", options=ParseOptions(**opts))


FULL_MAIN = doc(
    r"""
\maketitle
\begin{abstract}
We study \emph{things} -- and more; see~\cite{x}.
\end{abstract}
\newcommand{\figref}[1]{Figure~\ref{#1}}
\section{Introduction}
\input{sections/intro}

\section{Results}\label{sec:res}
As \figref{fig:png} shows, it works. We compare \cref{fig:png,fig:pdf} in detail.
Literal text mention of Fig. 2 here. Tables like \autoref{tab:t} matter.

\begin{figure}[t]
  \centering
  \includegraphics[width=\linewidth]{plot}
  \caption[Short]{A PNG plot with {nested {braces}} and $\alpha$ math, see Section~\ref{sec:res}.}
  \label{fig:png}
\end{figure}
\begin{figure*}
  \includegraphics{figs/vector.pdf}
  \caption{A vector \textbf{PDF} figure \cite{y}.}\label{fig:pdf}
\end{figure*}
\begin{table}
  \caption{A table caption.}\label{tab:t}
  \begin{tabular}{cc} a & b \\ \end{tabular}
\end{table}
\begin{figure}
  \begin{subfigure}[b]{0.4\linewidth}\includegraphics{plot.png}\caption{left panel}\label{fig:sa}\end{subfigure}
  \begin{subfigure}[b]{0.4\linewidth}\includegraphics{vector}\caption{right panel}\end{subfigure}
  \caption{Two panels.}\label{fig:sub}
\end{figure}
\begin{figure}
  \subfloat[first float]{\includegraphics{plot}}
  \subfloat[second float]{\includegraphics{vector}}
  \caption{Subfloats.}
\end{figure}
\begin{figure}
  \subcaptionbox{box caption\label{fig:box}}{\includegraphics{plot}}
  \caption{Subcaptionbox figure.}
\end{figure}
See \ref{fig:sa} for the left panel.
""",
    preamble="\\title[Short]{A {Nested} Title: \\emph{with} Markup}\n\\graphicspath{{figs/}{img/}}",
)
INTRO = "Intro text.\n\\input{sections/deeper.tex}\n"
DEEPER = "Deeper text says \\Cref{fig:pdf} is vector.\n"


@pytest.fixture
def full_tree() -> dict[str, str | bytes]:
    return {
        "main.tex": FULL_MAIN,
        "sections/intro.tex": INTRO,
        "sections/deeper.tex": DEEPER,
        "img/plot.png": png_bytes(),
        "figs/vector.pdf": pdf_bytes(),
    }


# ------------------------------------------------------------------ the full document
def test_full_document_from_tar_gz(tmp_path, full_tree):
    paper = run(make_tar(tmp_path / "a.tar.gz", full_tree), tmp_path)
    assert paper.parser == "latex" and paper.parser_version == latex.VERSION
    assert paper.title == "A Nested Title: with Markup"
    assert paper.abstract == "We study things – and more; see."
    kinds = [(f.kind, f.number) for f in paper.figures]
    assert kinds == [("figure", "1"), ("figure", "2"), ("table", "1"), ("figure", "3"), ("figure", "4"), ("figure", "5")]
    f1, f2, t1, f3, f4, f5 = paper.figures
    assert f1.id == "p1:fig1" and f1.label == "Figure 1" and t1.id == "p1:tab1"
    assert f1.caption == "A PNG plot with nested braces and α math, see Section 2."
    assert f2.caption == "A vector PDF figure."
    assert t1.caption == "A table caption." and t1.image is None
    assert f1.source_ref == "fig:png"


def test_images_are_pngs(tmp_path, full_tree):
    paper = run(make_tar(tmp_path / "a.tar.gz", full_tree), tmp_path)
    f1, f2 = paper.figures[:2]
    assert f1.image is not None and (f1.image.width, f1.image.height) == (40, 30)
    assert Path(f1.image.path).read_bytes().startswith(b"\x89PNG")
    # PDF at 150 dpi: 200x100 pt -> about 417x208 px
    assert f2.image is not None and abs(f2.image.width - 417) <= 1 and f2.image.media_type == "image/png"
    assert len(f1.image.sha256) == 64 and f1.image.phash


def test_pdf_capped_at_max_side(tmp_path, full_tree):
    paper = run(make_tar(tmp_path / "a.tar.gz", full_tree), tmp_path, max_side=100)
    assert max(paper.figures[1].image.width, paper.figures[1].image.height) <= 100


def test_subfigures(tmp_path, full_tree):
    paper = run(make_tar(tmp_path / "a.tar.gz", full_tree), tmp_path)
    f3, f4, f5 = [f for f in paper.figures if f.kind == "figure"][2:]
    assert [(s.label, s.caption) for s in f3.subfigures] == [("(a)", "left panel"), ("(b)", "right panel")]
    assert all(s.image is not None for s in f3.subfigures)
    # the figure's image shows both panels side by side (0.4\linewidth each), not panel (a)
    assert f3.image_origin == "composite" and f3.image.path not in {s.image.path for s in f3.subfigures}
    assert f3.image.width / f3.image.height > 2.2
    assert f3.caption == "Two panels. (a) left panel (b) right panel"
    assert [s.caption for s in f4.subfigures] == ["first float", "second float"]
    assert [s.caption for s in f5.subfigures] == ["box caption"]
    assert f5.image is not None


def test_contexts_from_refs_macros_and_text(tmp_path, full_tree):
    paper = run(make_tar(tmp_path / "a.tar.gz", full_tree), tmp_path)
    f1, f2, t1, f3 = paper.figures[:4]
    texts1 = [c.text for c in f1.contexts]
    assert "As Figure 1 shows, it works." in texts1
    assert "We compare Figures 1 and 2 in detail." in texts1
    assert any(c.mention == "Figures 1 and 2" for c in f2.contexts)
    assert any(c.text == "Deeper text says Figure 2 is vector." for c in f2.contexts)
    assert any(c.text == "Literal text mention of Fig. 2 here." and c.mention == "Fig. 2" for c in f2.contexts)
    assert [c.text for c in t1.contexts] == ["Tables like Table 1 matter."]
    assert f1.contexts[0].section == "Results"
    assert any(c.text == "See 3a for the left panel." for c in f3.contexts)
    positions = [c.position for c in f1.contexts]
    assert positions == sorted(positions)


def test_plain_tar_named_tar_gz(tmp_path, full_tree):
    path = make_tar(tmp_path / "plain.tar.gz", full_tree, gz=False)
    assert not path.read_bytes().startswith(b"\x1f\x8b")
    paper = run(path, tmp_path)
    assert len(paper.figures) == 6


def test_gzip_single_tex(tmp_path):
    path = tmp_path / "single.gz"
    path.write_bytes(gzip.compress(doc("\\begin{figure}\\caption{Only a caption.}\\end{figure}").encode()))
    paper = run(path, tmp_path)
    assert [f.caption for f in paper.figures] == ["Only a caption."]
    assert paper.figures[0].image is None
    assert paper.figures[0].no_image_reason == "no-graphics-in-source"
    assert any("no graphics file (no-graphics-in-source)" in w for w in paper.warnings)


def test_zip_with_nested_tar_and_zip(tmp_path):
    inner_tar = tmp_path / "figs.tar.gz"
    make_tar(inner_tar, {"a.png": png_bytes("blue")})
    inner_zip = tmp_path / "more.zip"
    make_zip(inner_zip, {"b.png": png_bytes("green")})
    body = ("\\begin{figure}\\includegraphics{a}\\caption{From tar.}\\end{figure}"
            "\\begin{figure}\\includegraphics{b.png}\\caption{From zip.}\\end{figure}")
    path = make_zip(tmp_path / "upload.zip", {
        "paper.tex": doc(body), "figs.tar.gz": inner_tar.read_bytes(), "more.zip": inner_zip.read_bytes(),
        "__MACOSX/._paper.tex": b"junk", ".DS_Store": b"junk",
    })
    paper = run(path, tmp_path)
    assert [f.image is not None for f in paper.figures] == [True, True]


def test_directory_and_single_tex(tmp_path, full_tree):
    src = tmp_path / "src"
    for name, data in full_tree.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(to_bytes(data))
    assert len(run(src, tmp_path).figures) == 6
    single = tmp_path / "one.tex"
    single.write_text(doc("\\section{A}Text.\\begin{figure}\\caption{Single.}\\end{figure}"))
    assert [f.caption for f in run(single, tmp_path).figures] == ["Single."]


def test_latin1_tex(tmp_path):
    text = doc("\\begin{figure}\\caption{Caf\xe9 na\xefve, and \\'etude r\\\"ole \\c{c}a.}\\end{figure}")
    path = make_tar(tmp_path / "l1.tar.gz", {"main.tex": text.encode("latin-1")})
    paper = run(path, tmp_path)
    assert paper.figures[0].caption == "Café naïve, and étude röle ça."


def test_tex_with_no_figures(tmp_path):
    path = make_tar(tmp_path / "nofig.tar.gz", {"main.tex": doc("\\section{Only text}Nothing here.")})
    paper = run(path, tmp_path)
    assert paper.figures == []


def test_main_file_selection(tmp_path):
    files = {
        "cover.tex": doc("Dear editor."),
        "paper.tex": doc("\\input{body}"),
        "body.tex": "\\begin{figure}\\caption{Real figure.}\\end{figure}" + "x " * 500,
        "sub/standalone.tex": doc("\\begin{figure}\\caption{Nested standalone.}\\end{figure}" + "y " * 5000),
        "response.tex": doc("\\input{paper}"),
    }
    paper = run(make_tar(tmp_path / "m.tar.gz", files), tmp_path)
    assert [f.caption for f in paper.figures] == ["Real figure."]


def test_include_cycle_import_and_iffalse(tmp_path):
    files = {
        "main.tex": doc("\\input{a}\\import{parts/}{c}\n\\iffalse\\begin{figure}\\caption{Dead.}\\end{figure}\\fi"),
        "a.tex": "\\begin{figure}\\caption{From a.}\\end{figure}\\input{b}",
        "b.tex": "\\input{a}",
        "parts/c.tex": "\\begin{figure}\\epsfig{file=img.png,width=3cm}\\caption{From c.}\\end{figure}",
        "parts/img.png": png_bytes(),
    }
    paper = run(make_tar(tmp_path / "c.tar.gz", files), tmp_path)
    assert [f.caption for f in paper.figures] == ["From a.", "From c."]
    assert paper.figures[1].image is not None
    assert any("cycle" in w for w in paper.warnings)


def test_two_captions_in_one_float_and_psfig(tmp_path):
    body = (
        "\\begin{figure}\\begin{minipage}{.5\\linewidth}\\psfig{figure=a.png}\\caption{Left fig.}\\label{l}"
        "\\end{minipage}\\begin{minipage}{.5\\linewidth}\\includegraphics{b.png}\\caption{Right fig.}\\label{r}"
        "\\end{minipage}\\end{figure}\nSee \\ref{r} now."
    )
    files = {"main.tex": doc(body), "a.png": png_bytes("red"), "b.png": png_bytes("blue", (10, 10))}
    paper = run(make_tar(tmp_path / "two.tar.gz", files), tmp_path)
    assert [(f.number, f.caption) for f in paper.figures] == [("1", "Left fig."), ("2", "Right fig.")]
    assert paper.figures[1].image.width == 10
    assert [c.text for c in paper.figures[1].contexts] == ["See 2 now."]


# ------------------------------------------------------------------ images that cannot be made
def test_eps_without_ghostscript_is_a_warning(tmp_path, monkeypatch):
    from figalign.parsers import ghostscript

    monkeypatch.setattr(ghostscript.shutil, "which", lambda name: None)
    files = {"main.tex": doc("\\begin{figure}\\includegraphics{f.eps}\\caption{An EPS.}\\end{figure}"), "f.eps": EPS}
    paper = run(make_tar(tmp_path / "e.tar.gz", files), tmp_path)
    assert paper.figures[0].image is None and paper.figures[0].caption == "An EPS."
    assert any("eps needs ghostscript" in w for w in paper.warnings)


@pytest.mark.skipif(shutil.which("gs") is None, reason="Ghostscript (gs) is not installed")
def test_eps_with_ghostscript(tmp_path):
    files = {"main.tex": doc("\\begin{figure}\\includegraphics{f}\\caption{An EPS.}\\end{figure}"), "f.eps": EPS}
    paper = run(make_tar(tmp_path / "e.tar.gz", files), tmp_path)
    img = paper.figures[0].image
    assert img is not None and abs(img.width - 208) <= 2 and abs(img.height - 104) <= 2


def test_missing_and_broken_graphics_do_not_sink_paper(tmp_path):
    body = ("\\begin{figure}\\includegraphics{nothere}\\caption{Missing.}\\end{figure}"
            "\\begin{figure}\\includegraphics{bad.png}\\caption{Broken.}\\end{figure}")
    paper = run(make_tar(tmp_path / "b.tar.gz", {"main.tex": doc(body), "bad.png": b"not a png"}), tmp_path)
    assert [f.image for f in paper.figures] == [None, None]
    assert paper.figures[0].error and "not found" in paper.figures[0].error
    assert len(paper.warnings) == 2


# ------------------------------------------------------------------ hostile and broken archives
def _tar_with(path: Path, members: list[tarfile.TarInfo], payload: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        main = doc("\\begin{figure}\\caption{Fine.}\\end{figure}").encode()
        info = tarfile.TarInfo("main.tex")
        info.size = len(main)
        tar.addfile(info, io.BytesIO(main))
        for m in members:
            tar.addfile(m, io.BytesIO(payload) if m.isfile() else None)
    return path


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "device", "fifo"])
def test_unsafe_tar_members_are_skipped(tmp_path, kind):
    m = tarfile.TarInfo({"dotdot": "../evil.txt", "absolute": "/tmp/figalign-evil.txt"}.get(kind, "x"))
    if kind in ("dotdot", "absolute"):
        m.size = 4
    elif kind == "symlink":
        m.type, m.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif kind == "hardlink":
        m.type, m.linkname = tarfile.LNKTYPE, "/etc/passwd"
    elif kind == "device":
        m.type, m.devmajor, m.devminor = tarfile.CHRTYPE, 1, 3
    else:
        m.type = tarfile.FIFOTYPE
    path = _tar_with(tmp_path / "e.tar.gz", [m], b"evil")
    paper = run(path, tmp_path)
    assert [f.caption for f in paper.figures] == ["Fine."]
    assert any("skipped archive member" in w for w in paper.warnings)
    work = tmp_path / "work"
    unpacked = unpack(path, work, ParseOptions())
    written = sorted(p.relative_to(work).as_posix() for p in work.rglob("*") if not p.is_dir())
    assert written == ["src/main.tex"]
    assert not (kind == "absolute" and Path("/tmp/figalign-evil.txt").exists())
    assert unpacked.root == work / "src"


def test_too_many_members_is_bad_input(tmp_path):
    files = {f"f{i}.txt": "x" for i in range(20)}
    files["main.tex"] = doc("x")
    with pytest.raises(BadInputError, match="more than 5 members"):
        run(make_tar(tmp_path / "many.tar.gz", files), tmp_path, max_archive_members=5)


def test_too_many_bytes_is_bad_input(tmp_path):
    path = make_tar(tmp_path / "big.tar.gz", {"main.tex": doc("x"), "zeros.bin": b"\0" * 200_000})
    with pytest.raises(BadInputError, match="bytes"):
        run(path, tmp_path, max_archive_bytes=100_000)


def test_gzip_bomb_single_file_is_bad_input(tmp_path):
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(b"\\documentclass{article}" + b" " * 3_000_000))
    with pytest.raises(BadInputError, match="bytes"):
        run(path, tmp_path, max_archive_bytes=1_000_000)


def test_corrupt_gzip_is_bad_input(tmp_path):
    data = gzip.compress(b"x" * 10_000 + doc("x").encode())
    path = tmp_path / "corrupt.tar.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="corrupt"):
        run(path, tmp_path)


def test_archive_without_tex_is_bad_input(tmp_path):
    path = make_tar(tmp_path / "notex.tar.gz", {"README": "hello", "a.png": png_bytes()})
    with pytest.raises(BadInputError, match="no .tex file"):
        run(path, tmp_path)


def test_pdf_only_submission_without_pdf_parser(tmp_path, monkeypatch):
    monkeypatch.setattr(latex.importlib.util, "find_spec", lambda name: None)
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(pdf_bytes()))
    with pytest.raises(BadInputError, match="PDF-only submission"):
        run(path, tmp_path)


def test_temp_dirs_are_cleaned_up(tmp_path, full_tree, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    run(make_tar(tmp_path / "a.tar.gz", full_tree), tmp_path)
    assert list((tmp_path / "tmp").iterdir()) == []


# ------------------------------------------------------------------ TeX text helpers
@pytest.mark.parametrize(
    ("tex", "text"),
    [
        (r"\textbf{Bold} and \emph{it}~text", "Bold and it text"),
        (r"pages 1--2 --- done", "pages 1–2 — done"),
        (r"50\% of $x^2 + \beta$", "50% of x^2 + β"),
        (r"a \cite[p.~3]{k} b\label{z}", "a b"),
        (r"\textcolor{red}{colored} \href{http://x}{link}", "colored link"),
        (r"\unknownmacro[opt]{kept text}", "kept text"),
        (r"\"o \'{e} \ss{} \c{c}", "ö é ß ç"),
        (r"\ref{nope}", "?"),
    ],
)
def test_to_text(tex, text):
    assert to_text(tex) == text


def test_strip_comments_keeps_escaped_percent():
    assert strip_comments("50\\% done % comment\n% whole line\nnext") == "50\\% done \nnext"
    assert strip_comments("a\\\\% comment") == "a\\\\"


def test_macro_expansion():
    macros, rest = extract_macros("\\newcommand{\\fr}[1]{Fig.~\\ref{#1}}\\def\\ours{OurNet}body \\fr{a} \\ours")
    assert rest == "body \\fr{a} \\ours"
    assert expand_macros(rest, macros) == "body Fig.~\\ref{a} OurNet"


# ------------------------------------------------------------------ registry and CLI contract
def test_registry_detects_and_parses(tmp_path, full_tree):
    path = make_tar(tmp_path / "paper.tar.gz", full_tree, gz=False)
    assert detect_kind(path) == "latex"
    paper = parse_path(path, out_dir=tmp_path / "out")
    assert paper.paper_id == "paper"
    out = paper.to_cli_json()
    json.dumps(out)
    assert out["parser"] == "latex/1.1.0" and out["figures"][0]["image_path"]


# ------------------------------------------------------------------ real arXiv e-prints
def corpus_file(name: str) -> Path:
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"shared corpus not available at {CORPUS} (../shared beside the checkout)")
    return path


def test_corpus_attention_paper(tmp_path):
    paper = run(corpus_file("1706.03762.tar.gz"), tmp_path)
    assert paper.title == "Attention Is All You Need"
    figs = [f for f in paper.figures if f.kind == "figure"]
    assert len(figs) == 5
    assert figs[0].caption == "The Transformer - model architecture."
    assert figs[1].caption.startswith("(left) Scaled Dot-Product Attention. (right) Multi-Head Attention")
    assert all(f.image is not None and Path(f.image.path).exists() for f in figs)
    assert figs[0].image.width > 100
    assert any("Figure 1" in (c.mention or "") for c in figs[0].contexts)
    assert sum(1 for f in paper.figures if f.kind == "table") == 4


def test_corpus_nested_zip(tmp_path):
    paper = run(corpus_file("QuantumBJJ_upload-nested-zip-and-tar.zip"), tmp_path)
    assert len(paper.figures) == 4
    assert paper.figures[0].image is not None  # from the nested dyn.tar.gz
    assert any("damaged archive member" in w for w in paper.warnings)


def test_corpus_macosx_and_multiple_tex(tmp_path):
    paper = run(corpus_file("pair-polarimeter_with__MACOSX_hidden.tar.gz"), tmp_path)
    assert len(paper.figures) == 9 and sum(f.image is not None for f in paper.figures) == 8
    paper = run(corpus_file("censorship_multiple_tex.tar.gz"), tmp_path)
    assert paper.title.startswith("Detecting Network-based Internet Censorship")
    assert sum(f.kind == "figure" for f in paper.figures) == 7


@pytest.mark.skipif(shutil.which("gs") is None, reason="Ghostscript (gs) is not installed")
def test_corpus_eps_paper(tmp_path):
    paper = run(corpus_file("0901.1786.tar.gz"), tmp_path)
    assert len(paper.figures) == 19 and all(f.image is not None for f in paper.figures)


def test_corpus_gzip_of_tar_with_appledouble(tmp_path):
    paper = run(corpus_file("2004.14974.gz"), tmp_path)
    assert paper.figures and all(f.image is not None for f in paper.figures if f.kind == "figure")
    assert not any("._" in w for w in paper.warnings)


@pytest.mark.skipif(os.environ.get("FIGALIGN_SLOW") is None, reason="set FIGALIGN_SLOW=1 for the whole corpus")
def test_corpus_all_parse(tmp_path):
    for src in sorted(CORPUS.glob("*")) if CORPUS.exists() else []:
        run(src, tmp_path)
