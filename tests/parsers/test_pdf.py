"""Tests of the plain-PDF parser on PDFs built in the test, bad inputs, and the real corpus.

The synthetic PDFs are drawn with PyMuPDF so every case states its geometry plainly; the
corpus cases (skipped when ../shared is absent) check the heuristics on real publisher and
arXiv layouts without copying those PDFs into the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pymupdf = pytest.importorskip("pymupdf")

from figalign.errors import BadInputError  # noqa: E402
from figalign.parsers import pdf as pdf_parser  # noqa: E402
from figalign.parsers.options import ParseOptions  # noqa: E402

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CORPUS = SHARED / "corpus"

BODY = (
    "The quick analysis of the measured samples shows a steady trend across all sites and "
    "the model agrees with the observations within the stated uncertainty in every case "
    "that we have examined during the study period of this work"
)


def body_lines(page, x: float, y: float, width: float, n: int, size: float = 10.0) -> float:
    """Write n justified-looking lines of body text; return the y after them."""
    words = BODY.split()
    per_line = max(5, int(width / (size * 2.6)))
    for i in range(n):
        chunk = " ".join(words[(i * 3) % 20:(i * 3) % 20 + per_line])
        page.insert_text((x, y), chunk, fontsize=size, fontname="tiro")
        y += size * 1.25
    return y


def draw_plot(page, rect: tuple[float, float, float, float]) -> None:
    """A small vector 'plot': frame, a polyline and two tick labels."""
    r = pymupdf.Rect(rect)
    page.draw_rect(r, color=(0, 0, 0), width=0.8)
    pts = [pymupdf.Point(r.x0 + i * r.width / 10, r.y1 - (i * i) * r.height / 120) for i in range(11)]
    page.draw_polyline(pts, color=(0, 0, 1), width=1)
    page.insert_text((r.x0 - 12, r.y1 + 2), "0", fontsize=6)
    page.insert_text((r.x1 - 4, r.y1 + 9), "10", fontsize=6)


def save(doc, path: Path) -> Path:
    doc.save(path)
    doc.close()
    return path


def parse(path: Path, tmp_path: Path, **opts):
    return pdf_parser.parse(path, out_dir=tmp_path / "out", pdf=None, paper_id="p", options=ParseOptions(**opts))


@pytest.fixture
def single_figure_pdf(tmp_path: Path) -> Path:
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    page.insert_text((72, 60), "A Study of Steady Trends in Samples", fontsize=18, fontname="hebo")
    y = body_lines(page, 72, 100, 468, 12)
    draw_plot(page, (150, y + 20, 450, y + 220))
    page.insert_text((72, y + 245), "Figure 1: Growth of the signal over ten days at all", fontsize=9, fontname="helv")
    page.insert_text((72, y + 256), "three sites, with the fitted curve.", fontsize=9, fontname="helv")
    body_lines(page, 72, y + 290, 468, 10)
    return save(doc, tmp_path / "single.pdf")


def test_figure_with_caption_below(single_figure_pdf: Path, tmp_path: Path) -> None:
    paper = parse(single_figure_pdf, tmp_path)
    assert [f.label for f in paper.figures] == ["Figure 1"]
    fig = paper.figures[0]
    assert fig.kind == "figure" and fig.number == "1" and fig.page == 0
    assert fig.caption == "Growth of the signal over ten days at all three sites, with the fitted curve."
    x0, y0, x1, y1 = fig.bbox
    assert 130 <= x0 <= 152 and 445 <= x1 <= 460
    assert y1 - y0 >= 200 and y1 - y0 <= 215
    assert fig.image is not None and Path(fig.image.path).exists() and fig.image_origin == "pdf-crop"
    assert fig.image.width > 200
    assert paper.title == "A Study of Steady Trends in Samples"


def test_no_images_when_disabled(single_figure_pdf: Path, tmp_path: Path) -> None:
    paper = parse(single_figure_pdf, tmp_path, write_images=False)
    assert paper.figures[0].bbox is not None and paper.figures[0].image is None


def test_two_column_figure_stays_in_its_column(tmp_path: Path) -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    body_lines(page, 54, 80, 240, 10)
    draw_plot(page, (80, 220, 280, 360))
    page.insert_text((54, 380), "Fig. 2. Left column figure with its own caption.", fontsize=8, fontname="helv")
    body_lines(page, 54, 410, 240, 20)
    body_lines(page, 318, 80, 240, 45)
    paper = parse(save(doc, tmp_path / "twocol.pdf"), tmp_path)
    fig = next(f for f in paper.figures if f.number == "2")
    assert fig.caption == "Left column figure with its own caption."
    assert fig.bbox[2] < 306, "a left-column figure must not reach into the right column"
    assert fig.bbox[1] >= 200 and fig.bbox[3] <= 372


def test_table_caption_above(tmp_path: Path) -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    y = body_lines(page, 72, 80, 468, 10)
    page.insert_text((72, y + 20), "Table 1: Accuracy of the three models on the test set.", fontsize=9, fontname="helv")
    top = y + 30
    for i, row in enumerate(["Model  Accuracy", "A  0.91", "B  0.87"]):
        page.draw_line((150, top + i * 16), (450, top + i * 16), color=(0, 0, 0), width=0.5)
        page.insert_text((160, top + i * 16 + 12), row, fontsize=9)
    page.draw_line((150, top + 48), (450, top + 48), color=(0, 0, 0), width=0.5)
    body_lines(page, 72, top + 80, 468, 10)
    paper = parse(save(doc, tmp_path / "table.pdf"), tmp_path)
    (tab,) = paper.figures
    assert tab.kind == "table" and tab.label == "Table 1"
    assert tab.caption == "Accuracy of the three models on the test set."
    assert tab.bbox[1] >= top - 2 and tab.bbox[3] <= top + 52


def test_body_reference_is_not_a_caption(tmp_path: Path) -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    y = body_lines(page, 72, 80, 468, 10)
    page.insert_text((72, y), "Figure 2 shows that the trend holds for every site in the", fontsize=10, fontname="tiro")
    body_lines(page, 72, y + 12.5, 468, 10)
    paper = parse(save(doc, tmp_path / "textonly.pdf"), tmp_path)
    assert paper.figures == []


def test_caption_without_graphic_has_no_box(tmp_path: Path) -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    y = body_lines(page, 72, 80, 468, 15)
    page.insert_text((72, y + 20), "Figure 4: A caption whose figure is on another page.", fontsize=9, fontname="helv")
    body_lines(page, 72, y + 50, 468, 15)
    paper = parse(save(doc, tmp_path / "nographic.pdf"), tmp_path)
    (fig,) = paper.figures
    assert fig.bbox is None and fig.image is None and fig.caption.startswith("A caption")
    assert fig.no_image_reason == "no-graphic-near-caption" and fig.image_origin is None


def test_multiline_hyphenated_caption(tmp_path: Path) -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    y = body_lines(page, 72, 80, 468, 8)
    draw_plot(page, (150, y + 20, 450, y + 150))
    lines = ["Figure 3. Temperature of the sam-", "ples measured by the calibrated", "sensor array."]
    for i, text in enumerate(lines):
        page.insert_text((72, y + 175 + i * 11), text, fontsize=9, fontname="helv")
    body_lines(page, 72, y + 230, 468, 8)
    paper = parse(save(doc, tmp_path / "hyphen.pdf"), tmp_path)
    assert paper.figures[0].caption == "Temperature of the samples measured by the calibrated sensor array."


def test_citation_contexts_with_ranges(tmp_path: Path) -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    draw_plot(page, (150, 80, 450, 200))
    page.insert_text((72, 222), "Figure 1: First result.", fontsize=9, fontname="helv")
    draw_plot(page, (150, 250, 450, 370))
    page.insert_text((72, 392), "Figure 2: Second result.", fontsize=9, fontname="helv")
    y = body_lines(page, 72, 430, 468, 6)
    page.insert_text((72, y), "Both trends are clear in Figs. 1-2 and they agree with each other.", fontsize=10, fontname="tiro")
    body_lines(page, 72, y + 12.5, 468, 6)
    paper = parse(save(doc, tmp_path / "ctx.pdf"), tmp_path)
    by_num = {f.number: f for f in paper.figures}
    for num in ("1", "2"):
        texts = [c.text for c in by_num[num].contexts]
        assert any("Figs. 1-2" in t for t in texts), texts


def test_encrypted_pdf_is_bad_input(tmp_path: Path) -> None:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "secret")
    path = tmp_path / "enc.pdf"
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="user", owner_pw="owner")
    doc.close()
    with pytest.raises(BadInputError, match="encrypted"):
        parse(path, tmp_path)


def test_corrupt_pdf_is_bad_input(single_figure_pdf: Path, tmp_path: Path) -> None:
    bad = tmp_path / "trunc.pdf"
    bad.write_bytes(single_figure_pdf.read_bytes()[:200])
    with pytest.raises(BadInputError):
        parse(bad, tmp_path)
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 50)
    with pytest.raises(BadInputError):
        parse(junk, tmp_path)


def test_zero_page_pdf_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "empty.pdf"
    path.write_bytes(
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    )
    with pytest.raises(BadInputError):
        parse(path, tmp_path)


def test_huge_page_is_skipped_with_warning(single_figure_pdf: Path, tmp_path: Path) -> None:
    doc = pymupdf.open(single_figure_pdf)
    doc.new_page(width=3000, height=3000).insert_text((72, 72), "Figure 9: on a huge page.")
    path = save(doc, tmp_path / "huge.pdf")
    paper = parse(path, tmp_path, max_page_side_pt=2000)
    assert any("page 1" in w and "skipped" in w for w in paper.warnings)
    assert [f.label for f in paper.figures] == ["Figure 1"]


def test_only_huge_pages_is_bad_input(tmp_path: Path) -> None:
    doc = pymupdf.open()
    doc.new_page(width=3000, height=3000)
    with pytest.raises(BadInputError, match="no readable page"):
        parse(save(doc, tmp_path / "allhuge.pdf"), tmp_path, max_page_side_pt=2000)


def test_max_pages_limits_work(single_figure_pdf: Path, tmp_path: Path) -> None:
    doc = pymupdf.open(single_figure_pdf)
    for _ in range(3):
        doc.new_page().insert_text((72, 72), "filler")
    paper = parse(save(doc, tmp_path / "long.pdf"), tmp_path, max_pages=2)
    assert any("first 2" in w for w in paper.warnings)


def test_registry_detects_pdf(single_figure_pdf: Path, tmp_path: Path) -> None:
    from figalign.parsers.registry import parse_path

    paper = parse_path(single_figure_pdf, out_dir=tmp_path / "o")
    assert paper.parser == "pdf" and paper.parser_version == pdf_parser.VERSION


# ---------------------------------------------------------------- real corpus
def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared corpus not available at {path} (read-only material outside the repo)")
    return path


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def test_plos_pdf_captions_match_jats(tmp_path: Path) -> None:
    folder = need(CORPUS / "jats" / "plos_pone.0000010")
    paper = parse(folder / "pone.0000010.pdf", tmp_path, write_images=False)
    from lxml import etree

    root = etree.parse(str(folder / "pone.0000010.xml"), etree.XMLParser(load_dtd=False, no_network=True, recover=True))
    gold = {}
    for fig in root.iter("fig"):
        label = "".join(fig.find("label").itertext())
        gold[label.split()[-1]] = " ".join("".join(fig.find("caption").itertext()).split())
    found = {f.number: f for f in paper.figures if f.kind == "figure"}
    assert set(found) == set(gold)
    for num, cap in gold.items():
        g, p = words(cap), words(found[num].caption)
        assert len(g & p) / len(g | p) > 0.8, (num, found[num].caption)
        assert found[num].bbox is not None


def test_docbank_page_figure_area(tmp_path: Path) -> None:
    folder = need(CORPUS / "pdf_gt" / "docbank")
    paper = parse(folder / "1805.05760_cataracts_black.pdf", tmp_path, write_images=False)
    figs = [f for f in paper.figures if f.page == 3 and f.kind == "figure"]
    assert [f.label for f in figs] == ["Figure 3"]
    x0, y0, x1, y1 = figs[0].bbox
    # DocBank: the figure spans 90-479 x 63-473 of 1000 (612 x 792 pt page)
    assert abs(x0 - 55) < 8 and abs(y0 - 50) < 8 and abs(x1 - 293) < 8 and abs(y1 - 375) < 8


def test_text_only_docbank_page_has_no_boxes(tmp_path: Path) -> None:
    folder = need(CORPUS / "pdf_gt" / "docbank")
    paper = parse(folder / "1408.2982_banach_black.pdf", tmp_path, write_images=False)
    assert not [f for f in paper.figures if f.page == 4 and f.bbox]


def test_lone_label_set_apart_from_caption_text(tmp_path: Path) -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    y = body_lines(page, 72, 80, 468, 8)
    draw_plot(page, (150, y + 20, 450, y + 150))
    page.insert_text((150, y + 175), "Fig. 5.", fontsize=8, fontname="helv")
    page.insert_text((184, y + 175), "Hash of some grayscale images.", fontsize=8, fontname="helv")
    body_lines(page, 72, y + 210, 468, 8)
    paper = parse(save(doc, tmp_path / "lone.pdf"), tmp_path)
    assert paper.figures[0].caption == "Hash of some grayscale images."
