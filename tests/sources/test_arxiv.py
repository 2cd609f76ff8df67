"""arXiv OAI-PMH parsing on real recorded responses (export.arxiv.org/oai2, CC0 metadata)."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from figalign.errors import PermanentError
from figalign.sources import arxiv
from figalign.sources.disciplines import DISCIPLINES, arxiv_category_discipline, arxiv_discipline
from figalign.sources.oaipmh import BadResumptionToken, parse_page
from tests.conftest import FIXTURES

OAI = FIXTURES / "arxiv_oai"
BASE = "https://arxiv.org"


def records(name: str, verb: str = "ListRecords"):
    page = parse_page((OAI / name).read_bytes(), verb)
    return page, arxiv.parse_page_records(page, BASE)


def getrecord(arxiv_id: str):
    from figalign.parsers.xmlsafe import parse_xml_bytes
    from figalign.sources.oaipmh import NS

    root = parse_xml_bytes((OAI / f"GetRecord_arXiv_{arxiv_id}.xml").read_bytes())
    return arxiv.parse_record(root.find("oai:GetRecord/oai:record", NS), BASE)


def test_list_records_page_parses_all_three_records():
    page, recs = records("ListRecords_arXiv_set-physics-hep-ex_2017-12-14.xml")
    assert page.token is None
    assert [r.external_id for r in recs] == ["1706.05371", "1706.09418", "1707.00874"]
    first = recs[0]
    assert first.title == "Evaluation of Silicon Photomultipliers for use as Photosensors in Liquid Xenon Detectors"
    assert first.authors[:2] == ["Tyler Anderson", "Jacob Cutter"] and len(first.authors) == 13
    assert first.categories == ["physics.ins-det", "hep-ex"]
    assert first.discipline == "Physics"
    assert first.licence == "arxiv-nonexclusive"
    assert first.licence_url == "http://arxiv.org/licenses/nonexclusive-distrib/1.0/"
    assert first.published_at == dt.datetime(2017, 6, 16) and first.updated_at == dt.datetime(2017, 12, 12)
    assert first.abstract.startswith("Silicon photomultipliers (SiPMs)")
    assert recs[1].doi == "10.1140/epjc/s10052-017-5414-4"


def test_file_urls_come_from_the_configured_base():
    _, recs = records("ListRecords_arXiv_set-physics-hep-ex_2017-12-14.xml")
    files = {f.role: f.url for f in recs[0].files}
    assert files == {"eprint": "https://arxiv.org/e-print/1706.05371", "pdf": "https://arxiv.org/pdf/1706.05371"}


def test_record_without_default_namespace_and_cc_by_licence():
    rec = getrecord("1601.03238")
    assert rec.external_id == "1601.03238"
    assert rec.licence == "cc-by"
    assert rec.categories[0] == "quant-ph" and rec.discipline == "Physics"
    assert rec.authors[0] == "Planck Collaboration"
    assert rec.doi == "10.1103/PhysRevD.93.016005"  # first of a comma/semicolon list
    assert rec.updated_at == rec.published_at == dt.datetime(2016, 1, 13)


def test_math_primary_category_maps_to_mathematics():
    rec = getrecord("1401.2122")
    assert rec.categories[0] == "math.AP" and rec.discipline == "Mathematics"


@pytest.mark.parametrize("name", ["1512.07978", "1603.00997", "1603.01251", "1603.05976"])
def test_every_recorded_getrecord_parses(name):
    rec = getrecord(name)
    assert rec.external_id == name and rec.title and rec.categories and rec.licence


@pytest.mark.parametrize("cat,disc", [
    ("cs.CV", "Computer Science"), ("astro-ph.CO", "Astronomy"), ("physics.chem-ph", "Chemistry"),
    ("physics.med-ph", "Medicine"), ("physics.geo-ph", "Earth Science"), ("eess.IV", "Engineering"),
    ("q-bio.NC", "Biology"), ("stat.ML", "Mathematics"), ("hep-th", "Physics"), ("q-fin.ST", "Other"),
    ("cond-mat.mtrl-sci", "Physics"), ("math-ph", "Physics"), ("cs.SY", "Engineering"), ("made-up", "Other"),
])
def test_discipline_table(cat, disc):
    assert arxiv_category_discipline(cat) == disc
    assert disc in DISCIPLINES


def test_discipline_of_a_paper_is_its_primary_category():
    assert arxiv_discipline(["cs.LG", "q-bio.NC"]) == "Computer Science"
    assert arxiv_discipline([]) == "Other"


def _error_page(code: str) -> bytes:
    return (f'<?xml version="1.0"?><OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/">'
            f'<responseDate>2026-11-02T00:00:00Z</responseDate><request verb="ListRecords">x</request>'
            f'<error code="{code}">message</error></OAI-PMH>').encode()


def test_oai_errors():
    with pytest.raises(BadResumptionToken):
        parse_page(_error_page("badResumptionToken"), "ListRecords")
    with pytest.raises(PermanentError, match="badArgument"):
        parse_page(_error_page("badArgument"), "ListRecords")


def test_parsing_speed_is_far_above_network_rate():
    data = (OAI / "ListRecords_arXiv_set-physics-hep-ex_2017-12-14.xml").read_bytes()
    started, n = time.perf_counter(), 0
    while time.perf_counter() - started < 0.2:
        n += len(arxiv.parse_page_records(parse_page(data, "ListRecords"), BASE))
    assert n / 0.2 > 100  # the network gives ~1 page (<=1000 records) per 3 s


def test_no_records_match_is_an_empty_page():
    page = parse_page(_error_page("noRecordsMatch"), "ListRecords")
    assert page.items == [] and page.token is None
