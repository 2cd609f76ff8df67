"""JATS as publishers write it: internal DOCTYPE entities, eLife supplements, xref lists and ranges.

The XML here is written in the test, in the shapes PLOS (internal entity declarations) and
eLife (fig-group with child supplements, "Figure 1—figure supplement 2") publish.
"""

from __future__ import annotations

import time

import pytest

from figalign.errors import BadInputError
from figalign.parsers import jats
from figalign.parsers.options import ParseOptions
from figalign.parsers.xmlsafe import parse_xml_bytes

XLINK = 'xmlns:xlink="http://www.w3.org/1999/xlink"'
PLOS_DOCTYPE = ('<!DOCTYPE article PUBLIC "-//NLM//DTD Journal Publishing DTD v2.0 20040830//EN" '
                '"http://dtd.nlm.nih.gov/publishing/2.0/journalpublishing.dtd" [\n'
                '<!ENTITY lpar "&#x00028;">\n<!ENTITY rpar "&#x00029;">\n'
                '<!-- a comment that mentions <!ENTITY in passing -->\n'
                "<!ENTITY gas 'Group A &lpar;GAS&rpar; <italic>Streptococcus</italic>'>\n]>")


def _write(tmp_path, body: str, floats: str, prolog: str = "", name: str = "a.xml"):
    title = "On &gas;" if prolog else "On GAS"
    doc = (f'<?xml version="1.0" encoding="UTF-8"?>{prolog}<article {XLINK}><front><article-meta>'
           f"<title-group><article-title>{title}</article-title></title-group></article-meta></front>"
           f"<body>{body}{floats}</body></article>")
    path = tmp_path / name
    path.write_text(doc, encoding="utf-8")
    return path


def _parse(path, tmp_path):
    return jats.parse(path, out_dir=tmp_path / "out", pdf=None, paper_id="t",
                      options=ParseOptions(write_images=False))


def _fig(fid: str, label: str, caption: str) -> str:
    return f'<fig id="{fid}"><label>{label}</label><caption><p>{caption}</p></caption></fig>'


def test_internal_doctype_entities_are_expanded_not_refused(tmp_path):
    path = _write(tmp_path, '<sec><title>Results &lpar;main&rpar;</title><p>We show &gas; in '
                  '<xref ref-type="fig" rid="f1">Figure 1</xref>.</p></sec>',
                  _fig("f1", "Figure 1", "Counts of &gas; by age &lpar;years&rpar;."), prolog=PLOS_DOCTYPE)
    paper = _parse(path, tmp_path)
    assert paper.title == "On Group A (GAS) Streptococcus"
    assert paper.figures[0].caption == "Counts of Group A (GAS) Streptococcus by age (years)."
    ctx = paper.figures[0].contexts[0]
    assert ctx.text == "We show Group A (GAS) Streptococcus in Figure 1." and ctx.section == "Results (main)"


@pytest.mark.parametrize("subset, why", [
    ('<!ENTITY x SYSTEM "file:///etc/passwd">', "external entity 'x'"),
    ('<!ENTITY x PUBLIC "-//x//EN" "http://127.0.0.1/x">', "external entity 'x'"),
    ('<!ENTITY % p SYSTEM "http://127.0.0.1/p.dtd"> %p;', "parameter entity 'p'"),
    ('<!ENTITY x "a"><!ENTITY\nx\nSYSTEM\n"file:///etc/passwd">', "external entity 'x'"),
    ('<!ENTITY a "&b;"><!ENTITY b "&a;">', "refers to itself"),
    ("<!ENTITY x 'a > SYSTEM \"file:///etc/passwd\"'>", None),
])
def test_dangerous_declarations_are_refused_before_parsing(subset, why):
    doc = f'<?xml version="1.0"?><!DOCTYPE article [{subset}]><article><p>&x;</p></article>'.encode()
    if why is None:  # a value that only looks like an external id is text, and stays text
        root = parse_xml_bytes(doc)
        assert "".join(root.itertext()) == 'a > SYSTEM "file:///etc/passwd"'
        return
    with pytest.raises(BadInputError, match=why):
        parse_xml_bytes(doc)


def test_entity_bomb_in_an_attribute_is_refused_quickly():
    lol = ['<!ENTITY l0 "lol">'] + [f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 12)]
    doc = ('<?xml version="1.0"?><!DOCTYPE article [' + "".join(lol) + ']><article id="&l11;"/>').encode()
    start = time.perf_counter()
    with pytest.raises(BadInputError, match="entity bomb"):
        parse_xml_bytes(doc)
    assert time.perf_counter() - start < 0.5


ELIFE_FLOATS = (
    '<fig-group>' + _fig("fig1", "Figure 1.", "Main result.")
    + '<fig id="fig1s1" specific-use="child-fig"><label>Figure 1—figure supplement 1.</label>'
      "<caption><p>Replicate of the main result.</p></caption></fig>"
    + '<fig id="fig1s2" specific-use="child-fig"><label>Figure 1—figure supplement 2.</label>'
      "<caption><p>Controls.</p></caption></fig></fig-group>"
    + _fig("fig2", "Figure 2.", "Second.") + _fig("fig3", "Figure 3.", "Third.")
    + _fig("fig4", "Figure 4.", "Fourth.") + _fig("fig5", "Figure 5.", "Fifth.")
)


def _contexts(paper):
    return {f.number: [c.text for c in f.contexts] for f in paper.figures}


def test_figure_supplements_are_their_own_figures_and_citations_reach_them(tmp_path):
    body = ('<p>The replicate is in <xref ref-type="fig" rid="fig1s1">Figure 1—figure supplement 1</xref>. '
            'Everything else is main text.</p>')
    paper = _parse(_write(tmp_path, body, ELIFE_FLOATS), tmp_path)
    assert [f.number for f in paper.figures] == ["1", "1-S1", "1-S2", "2", "3", "4", "5"]
    got = _contexts(paper)
    assert got["1-S1"] == ["The replicate is in Figure 1—figure supplement 1."]
    assert got["1"] == [] and got["1-S2"] == []


def test_unlinked_supplement_mentions_resolve_to_the_supplement(tmp_path):
    body = "<p>Controls are shown in Figure 1—figure supplement 2. The design is in Figure 3.</p>"
    paper = _parse(_write(tmp_path, body, ELIFE_FLOATS), tmp_path)
    got = _contexts(paper)
    assert got["1-S2"] == ["Controls are shown in Figure 1—figure supplement 2."]
    assert got["3"] == ["The design is in Figure 3."] and got["1"] == []


def test_one_xref_with_several_rids_and_ranges_spanning_figures(tmp_path):
    body = ('<p>Both are shown (<xref ref-type="fig" rid="fig2 fig3">Figures 2 and 3</xref>). '
            'The series runs through Figures <xref ref-type="fig" rid="fig2">2</xref>–'
            '<xref ref-type="fig" rid="fig5">5</xref>. '
            'A shorter one is in <xref ref-type="fig" rid="fig3">Figs 3-4</xref>. '
            'Then <xref ref-type="fig" rid="fig2">Figure 2</xref>, <xref ref-type="fig" rid="fig5">5</xref>.</p>')
    paper = _parse(_write(tmp_path, body, ELIFE_FLOATS), tmp_path)
    got = _contexts(paper)
    both, series, short, pair = ("Both are shown (Figures 2 and 3).", "The series runs through Figures 2–5.",
                                 "A shorter one is in Figs 3-4.", "Then Figure 2, 5.")
    assert got["2"] == [both, series, pair]
    assert got["3"] == [both, series, short]
    assert got["4"] == [series, short]  # never linked by rid: only the range reaches it
    assert got["5"] == [series, pair]
    assert got["1"] == [] and got["1-S1"] == []


def _nested(depth: int, paras: int) -> bytes:
    inner = "".join(f'<p>Text {k} cites <xref ref-type="fig" rid="f1">Figure 1</xref>.</p>' for k in range(paras))
    body = "<sec>" * depth + "<title>Deep</title>" + inner + ("<p>filler</p>" * paras + "</sec>") * depth
    return (f"<article {XLINK}><body>{body}" + _fig("f1", "Figure 1", "One.") + "</body></article>").encode()


def test_context_extraction_is_linear_in_section_nesting(tmp_path):
    """Untitled nested <sec>s used to be rescanned for every paragraph (quadratic)."""
    def cost(depth: int) -> float:
        path = tmp_path / f"d{depth}.xml"
        path.write_bytes(_nested(depth, 20))
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            paper = _parse(path, tmp_path)
            best = min(best, time.perf_counter() - start)
        assert len(paper.figures[0].contexts) == 20 and paper.figures[0].contexts[0].section == "Deep"
        return best

    small, large = cost(50), cost(200)
    assert large / small < 8, f"4x the nesting cost {large / small:.1f}x the time"


def _png(path, colour, size=(60, 40)):
    from PIL import Image

    Image.new("RGB", size, colour).save(path)


def _g(href: str) -> str:
    return f'<graphic xlink:href="{href}"/>'


def _pixel(fig, fx, fy):
    from PIL import Image

    with Image.open(fig.image.path) as im:
        im = im.convert("RGB")
        return im.getpixel((int(fx * (im.width - 1)), int(fy * (im.height - 1))))


def test_fig_groups_and_multi_graphic_figures_are_whole_figures_with_panel_records(tmp_path):
    for name, colour in (("a", "red"), ("b", "blue"), ("c", "lime"), ("d", "yellow"), ("e", "black")):
        _png(tmp_path / f"{name}.png", colour)
    (tmp_path / "e.tif").write_bytes((tmp_path / "e.png").read_bytes())
    floats = (
        '<fig-group id="g1"><label>Figure 1</label><caption><p>Two panels.</p></caption>'
        f'<fig id="g1a"><label>A</label><caption><p>red one</p></caption>{_g("a")}</fig>'
        f'<fig id="g1b"><label>B</label><caption><p>blue one</p></caption>{_g("b.png")}</fig></fig-group>'
        f'<fig id="f2"><label>Figure 2</label><caption><p>Two graphics.</p></caption>{_g("c")}{_g("d")}</fig>'
        f'<fig id="f3"><label>Figure 3</label><caption><p>One picture, two formats.</p></caption>'
        f'<alternatives>{_g("e.tif")}{_g("e.png")}</alternatives></fig>'
        f'<fig id="f4"><label>Figure 4</label><caption><p>Its file is missing.</p></caption>{_g("zzz")}</fig>'
        '<fig id="f5"><label>Figure 5</label><caption><p>No graphic at all.</p></caption></fig>'
    )
    path = _write(tmp_path, "<p>Nothing.</p>", floats)
    paper = jats.parse(path, out_dir=tmp_path / "out", pdf=None, paper_id="t", options=ParseOptions())
    f1, f2, f3, f4, f5 = paper.figures
    assert [(s.label, s.caption) for s in f1.subfigures] == [("A", "red one"), ("B", "blue one")]
    assert all(s.image is not None and (s.image.width, s.image.height) == (60, 40) for s in f1.subfigures)
    assert f1.image_origin == "composite" and f1.image.width > 2 * f1.image.height
    assert _pixel(f1, 0.2, 0.5) == (255, 0, 0) and _pixel(f1, 0.8, 0.5) == (0, 0, 255)
    assert f2.image_origin == "composite" and len(f2.subfigures) == 2
    assert _pixel(f2, 0.2, 0.5) == (0, 255, 0) and _pixel(f2, 0.8, 0.5) == (255, 255, 0)
    assert f3.image_origin == "single-file" and f3.subfigures == [] and f3.image.width == 60
    assert (f4.image, f4.no_image_reason) == (None, "graphic-file-not-beside-xml")
    assert (f5.image, f5.no_image_reason) == (None, "no-graphic-in-xml")
