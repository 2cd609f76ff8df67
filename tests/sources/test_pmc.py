"""PMC cloud metadata, listings and OAI identifiers, shaped as PMC documents them."""

from __future__ import annotations

import pytest

from figalign.errors import PermanentError
from figalign.sources import pmc
from tests.conftest import FIXTURES

PMC = FIXTURES / "pmc"
BASE = "https://pmc-oa-opendata.s3.amazonaws.com"


def meta(name: str) -> pmc.PmcMetadata:
    return pmc.PmcMetadata.from_json((PMC / "metadata" / name).read_bytes(), name.split(".")[0])


def test_latest_version_is_numeric_not_lexical():
    listing = (b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
               b"<CommonPrefixes><Prefix>PMC77.2/</Prefix></CommonPrefixes>"
               b"<CommonPrefixes><Prefix>PMC77.10/</Prefix></CommonPrefixes>"
               b"<CommonPrefixes><Prefix>PMC771.11/</Prefix></CommonPrefixes></ListBucketResult>")
    assert pmc.latest_version(listing, "PMC77") == 10
    assert pmc.latest_version((PMC / "listing" / "PMC1000001.xml").read_bytes(), "PMC1000001") == 2
    assert pmc.latest_version((PMC / "listing" / "PMC1000004.xml").read_bytes(), "PMC1000004") is None


def test_s3_urls_become_https_under_the_configured_base_with_md5():
    url, md5 = pmc.s3_to_https("s3://pmc-oa-opendata/PMC1.2/PMC1.2.xml?md5=abc", BASE)
    assert (url, md5) == (f"{BASE}/PMC1.2/PMC1.2.xml", "abc")
    with pytest.raises(PermanentError):
        pmc.s3_to_https("s3://other-bucket/PMC1.2/x.xml", BASE)


def test_metadata_to_record_keeps_figures_drops_supplements():
    rec = pmc.to_record(meta("PMC1000001.2.json"), BASE, None)
    assert (rec.external_id, rec.version, rec.licence) == ("PMC1000001", "2", "cc-by")
    assert [f.role for f in rec.files] == ["jats", "pdf", "media", "media", "media"]
    assert all(f.md5 and len(f.md5) == 32 for f in rec.files)
    assert rec.extra["pmid"] == "17183637"


def test_retracted_article_is_recorded_with_reason():
    rec = pmc.to_record(meta("PMC1000003.1.json"), BASE, None)
    assert rec.retracted and rec.excluded_reason == "retracted: PMC metadata is_retracted=true"


def test_metadata_for_another_article_is_refused():
    with pytest.raises(PermanentError, match="another article"):
        pmc.PmcMetadata.from_json((PMC / "metadata" / "PMC1000002.1.json").read_bytes(), "PMC1000001")


def test_oai_identifier_to_pmcid():
    assert pmc.pmcid_from_oai("oai:pubmedcentral.nih.gov:1000001") == "PMC1000001"
    assert pmc.pmcid_from_oai("oai:arXiv.org:1706.05371") is None
