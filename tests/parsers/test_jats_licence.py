"""Licence and DOI as the JATS file states them: URL, licence type, or free text."""

from __future__ import annotations

import pytest

from figalign.parsers.jats import parse
from figalign.parsers.options import ParseOptions
from tests.conftest import FIXTURES

ARTICLE = """<?xml version="1.0"?>
<article xmlns:xlink="http://www.w3.org/1999/xlink"><front><article-meta>
<article-id pub-id-type="doi">10.1/x.{n}</article-id>
<title-group><article-title>T</article-title></title-group>
<permissions>{permissions}</permissions></article-meta></front><body><p>Text.</p></body></article>"""


@pytest.mark.parametrize("permissions, expected", [
    ('<license xlink:href="http://creativecommons.org/licenses/by-nc-sa/4.0/"><license-p>x</license-p></license>',
     "cc-by-nc-sa"),
    ('<license xlink:href="https://creativecommons.org/publicdomain/zero/1.0/"/>', "cc0"),
    ('<license><license-p>This is an open access article distributed under the terms of the Creative Commons '
     'Attribution License.</license-p></license>', "cc-by"),
    ('<copyright-statement>Published under the Creative Commons Attribution NonCommercial NoDerivatives '
     'licence.</copyright-statement>', "cc-by-nc-nd"),
    ('<copyright-statement>All rights reserved.</copyright-statement>', None),
])
def test_licence_read_from_permissions(tmp_path, permissions, expected):
    xml = tmp_path / "a.xml"
    xml.write_text(ARTICLE.format(n=1, permissions=permissions))
    paper = parse(xml, out_dir=tmp_path / "out", pdf=None, paper_id="a", options=ParseOptions())
    assert paper.licence == expected
    assert paper.doi == "10.1/x.1"


def test_licence_of_a_real_plos_article_from_its_copyright_statement(tmp_path):
    xml = FIXTURES / "papers" / "pone.0000010" / "pone.0000010.xml"
    paper = parse(xml, out_dir=tmp_path, pdf=None, paper_id="p", options=ParseOptions(write_images=False))
    assert (paper.licence, paper.doi) == ("cc-by", "10.1371/journal.pone.0000010")
