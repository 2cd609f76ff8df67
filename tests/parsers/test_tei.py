"""GROBID TEI parser on real GROBID output (fixture + shared corpus) and broken inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from figalign.errors import BadInputError
from figalign.parsers import tei
from figalign.parsers.options import ParseOptions
from figalign.parsers.registry import parse_path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tei"
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
ACL_TEI = FIXTURES / "2020.acl-main.207.tei.xml"
ACL_PDF = FIXTURES / "2020.acl-main.207.pdf"
BMC_TEI = SHARED / "corpus" / "grobid_tei" / "0046d83a.tei.xml"
BMC_PDF = SHARED / "corpus" / "grobid_tei" / "0046d83a.pdf"
needs_bmc = pytest.mark.skipif(not (BMC_TEI.is_file() and BMC_PDF.is_file()),
                               reason="shared corpus ../shared/corpus/grobid_tei/0046d83a.* not present")


def _parse(path: Path, out: Path, pdf: Path | None = None, paper_id: str = "p"):
    return tei.parse(path, out_dir=out, pdf=pdf, paper_id=paper_id, options=ParseOptions())


def test_acl_tei_metadata_tables_and_contexts(tmp_path):
    paper = _parse(ACL_TEI, tmp_path, ACL_PDF, paper_id="specter")
    assert paper.title == "SPECTER: Document-level Representation Learning using Citation-informed Transformers"
    assert paper.abstract.startswith("Representation learning is a critical ingredient for natural language processing")
    assert [(f.kind, f.label) for f in paper.figures] == [
        ("figure", None), ("table", "Table 1"), ("table", "Table 2"), ("table", None), ("table", "Table 3")]
    fig, t1, t2 = paper.figures[0], paper.figures[1], paper.figures[2]
    assert fig.caption == "t-SNE visualization of paper embeddings and their corresponding MAG topics."
    assert fig.id == "specter:fig#0"
    # no coords in this TEI: nothing to crop even though the PDF is given
    assert fig.page is None and fig.bbox is None and fig.image is None
    assert fig.no_image_reason == "no-coordinates-in-tei"
    assert t1.caption == "Results on the SCIDOCS evaluation suite consisting of 7 tasks."
    assert t2.caption.startswith("Ablations: Numbers are averages of metrics")  # from <note>, figDesc empty
    assert any(c.text.startswith("Table 1 presents the main results") and c.section == "Experiments" for c in t1.contexts)
    assert all("Table 2" in c.text for c in t2.contexts) and len(t2.contexts) >= 2


def test_registry_detects_tei(tmp_path):
    paper = parse_path(ACL_TEI, out_dir=tmp_path)
    assert paper.parser == "tei" and paper.paper_id == "2020.acl-main.207"


def test_parse_coords():
    assert tei.parse_coords("5,62.70,289.74,469.58,7.36;5,62.70,300.01,329.14,7.06") == [
        (4, [62.70, 289.74, 62.70 + 469.58, 289.74 + 7.36]), (4, [62.70, 300.01, 62.70 + 329.14, 300.01 + 7.06])]
    assert tei.parse_coords(None) == [] and tei.parse_coords("") == []
    for bad in ("5,1,2,3", "0,1,1,1,1", "a,1,1,1,1", "1,1,1,-3,1", "1,nan,1,1,1"):
        with pytest.raises(BadInputError):
            tei.parse_coords(bad)


@needs_bmc
def test_bmc_geometry_without_pdf(tmp_path):
    paper = _parse(BMC_TEI, tmp_path)
    assert [f.label for f in paper.figures] == ["Figure 2", "Figure 3", "Figure 5", "Figure 6"]
    assert [f.page for f in paper.figures] == [4, 5, 6, 6]  # TEI pages are 1-based
    assert paper.figures[0].bbox == pytest.approx([62.70, 289.74, 62.70 + 469.58, 300.01 + 7.06])
    assert all(f.image is None for f in paper.figures)
    # "Fig. 2 M" + "-waves ...": GROBID split the word between head and figDesc
    assert paper.figures[0].caption.startswith("M-waves during the scanning procedure")


@needs_bmc
def test_bmc_linked_and_unlinked_references(tmp_path):
    paper = _parse(BMC_TEI, tmp_path)
    f2, f3 = paper.figures[0], paper.figures[1]
    assert [c.mention for c in f2.contexts] == ["(Fig. 2)"]  # <ref target="#fig_0">
    assert f2.contexts[0].section == "Scanning the array and selecting the optimal stimulation patterns"
    assert f3.contexts and "Fig. 3" in f3.contexts[0].text  # <ref> without target, resolved by label
    assert all(not c.text.startswith("Finger extension movements") for c in f3.contexts)  # never the caption


@needs_bmc
def test_bmc_crops_are_the_graphics_not_the_caption(tmp_path):
    paper = _parse(BMC_TEI, tmp_path, BMC_PDF)
    assert paper.warnings == []
    for fig in paper.figures:
        assert fig.image is not None and Path(fig.image.path).is_file() and fig.image_origin == "pdf-crop"
        assert fig.image.width > 300 and fig.image.height > 150
        assert fig.bbox[3] - fig.bbox[1] > 100  # taller than the two caption lines GROBID boxed
    assert paper.figures[0].bbox[3] <= 289.74 + 0.01


def _edited_acl(tmp_path: Path, old: str, new: str) -> Path:
    text = ACL_TEI.read_text(encoding="utf-8")
    assert old in text
    out = tmp_path / "edited.tei.xml"
    out.write_text(text.replace(old, new, 1), encoding="utf-8")
    return out


def test_coords_on_a_page_beyond_the_pdf(tmp_path):
    path = _edited_acl(tmp_path, 'xml:id="fig_0"', 'xml:id="fig_0" coords="99,72.0,72.0,200.0,150.0"')
    paper = _parse(path, tmp_path / "out", ACL_PDF)
    fig = paper.figures[0]
    assert fig.page == 98 and fig.image is None and "outside the PDF" in fig.error
    assert fig.no_image_reason == "crop-failed"
    assert any("crop failed" in w and "13 pages" in w for w in paper.warnings)
    assert len(paper.figures) == 5


def test_figure_with_coords_is_cropped(tmp_path):
    path = _edited_acl(tmp_path, 'xml:id="fig_0"', 'xml:id="fig_0" coords="1,72.0,72.0,200.0,150.0"')
    paper = _parse(path, tmp_path / "out", ACL_PDF)
    fig = paper.figures[0]
    assert fig.page == 0 and fig.bbox == [72.0, 72.0, 272.0, 222.0]
    assert fig.image is not None  # 200 x 150 pt at 150 dpi
    assert abs(fig.image.width - 417) <= 1 and abs(fig.image.height - 312) <= 1


def test_bad_coords_attribute_is_a_warning(tmp_path):
    path = _edited_acl(tmp_path, 'xml:id="fig_0"', 'xml:id="fig_0" coords="1,72,72"')
    paper = _parse(path, tmp_path / "out", ACL_PDF)
    assert paper.figures[0].page is None and any("bad coords" in w for w in paper.warnings)


def test_tei_with_no_figures(tmp_path):
    from lxml import etree

    root = etree.fromstring(ACL_TEI.read_bytes())
    for fig in list(root.iter("{http://www.tei-c.org/ns/1.0}figure")):
        fig.getparent().remove(fig)
    path = tmp_path / "nofig.tei.xml"
    path.write_bytes(etree.tostring(root))
    paper = _parse(path, tmp_path / "out", ACL_PDF)
    assert paper.figures == [] and paper.title.startswith("SPECTER")


def test_sentence_segmented_tei_uses_s_elements(tmp_path):
    doc = """<TEI xmlns="http://www.tei-c.org/ns/1.0"><teiHeader><fileDesc><titleStmt><title>T</title></titleStmt>
    </fileDesc></teiHeader><text><body><div><head>Results</head><p><s>We ran it.</s>
    <s>The curve in <ref type="figure" target="#fig_0">Fig. 1a</ref> rises. Really</s></p></div>
    <figure xml:id="fig_0"><head>Figure 1.</head><label>1</label><figDesc>A curve.</figDesc></figure>
    </body></text></TEI>"""
    path = tmp_path / "s.tei.xml"
    path.write_text(doc)
    paper = _parse(path, tmp_path / "out")
    fig = paper.figures[0]
    assert fig.label == "Figure 1" and fig.caption == "A curve."
    assert [(c.text, c.section, c.position, c.mention) for c in fig.contexts] == [
        ("The curve in Fig. 1a rises. Really", "Results", 1, "Fig. 1a")]


@pytest.mark.skipif(not (SHARED / "corpus" / "grobid_tei").is_dir(), reason="shared corpus grobid_tei not present")
def test_old_and_pdf_less_tei_do_not_crash(tmp_path):
    old = _parse(SHARED / "corpus" / "grobid_tei" / "grobid_xslt_sample2.tei.fulltext.xml", tmp_path / "a")
    assert old.title.startswith("A Virtual Machine Introspection Based Architecture")
    assert [f.kind for f in old.figures] == ["table", "table"]
    assert old.figures[1].label == "Table 1" and old.figures[1].caption == ""
    other = _parse(SHARED / "corpus" / "grobid_tei" / "0f318087.tei.xml", tmp_path / "b")
    assert [f.label for f in other.figures] == [None, "Table 1", "Table 2"]
    assert other.figures[1].caption.startswith("VAS and SFN-SIQ scores")


def test_malformed_and_foreign_xml(tmp_path):
    bad = tmp_path / "bad.tei.xml"
    bad.write_bytes(ACL_TEI.read_bytes()[:3000])
    with pytest.raises(BadInputError, match="malformed"):
        _parse(bad, tmp_path / "o")
    jats_like = tmp_path / "a.xml"
    jats_like.write_text("<article/>")
    with pytest.raises(BadInputError, match="not a TEI"):
        _parse(jats_like, tmp_path / "o")


def test_unopenable_pdf_is_a_warning(tmp_path):
    path = _edited_acl(tmp_path, 'xml:id="fig_0"', 'xml:id="fig_0" coords="1,72.0,72.0,200.0,150.0"')
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(b"%PDF-1.4 this is not really a pdf")
    paper = _parse(path, tmp_path / "out", junk)
    assert paper.figures[0].image is None and any("cannot open PDF" in w for w in paper.warnings)
