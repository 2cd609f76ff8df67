"""Load the recorded arXiv responses and the PMC fixtures into a ReplayServer.

The arXiv pages are real: the recorded ListRecords page (3 records) is served as the
first page and the six recorded GetRecord records, re-wrapped verbatim in ListRecords
envelopes with resumption tokens, as the following pages. Only the envelopes are built
here; every ``<record>`` is byte-for-byte what arXiv returned.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import FIXTURES
from tests.servers.replay import ReplayServer

OAI_DIR = FIXTURES / "arxiv_oai"
PMC_DIR = FIXTURES / "pmc"
LIST_PAGE = OAI_DIR / "ListRecords_arXiv_set-physics-hep-ex_2017-12-14.xml"
GETRECORDS = ["1401.2122", "1512.07978", "1601.03238", "1603.00997", "1603.01251", "1603.05976"]
WINDOW = {"from": "2026-11-01", "until": "2026-11-02"}
_RECORD = re.compile(rb"<record>.*?</record>", re.S)
_HEAD = (b'<?xml version="1.0" encoding="UTF-8"?>\n<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/" '
         b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
         b"<responseDate>2026-11-03T00:00:00Z</responseDate><request verb=\"ListRecords\">x</request><ListRecords>")


def real_records(arxiv_id: str) -> bytes:
    data = (OAI_DIR / f"GetRecord_arXiv_{arxiv_id}.xml").read_bytes()
    return _RECORD.search(data).group(0)


def list_page(records: list[bytes], token: str | None) -> bytes:
    tok = f"<resumptionToken>{token}</resumptionToken>".encode() if token else b"<resumptionToken/>"
    return _HEAD + b"".join(records) + tok + b"</ListRecords></OAI-PMH>"


def first_page_with_token(token: str) -> bytes:
    data = LIST_PAGE.read_bytes()
    return data.replace(b"</ListRecords>", f"<resumptionToken>{token}</resumptionToken></ListRecords>".encode())


def serve_arxiv(server: ReplayServer, set_spec: str | None = "physics:hep-ex") -> dict[str, str]:
    """Three pages (3 + 3 + 3 real records) at /oai; returns the route key of each page."""
    params = {"verb": "ListRecords", "metadataPrefix": "arXiv", **WINDOW}
    if set_spec:
        params["set"] = set_spec
    keys = {"p1": server.add("/oai", first_page_with_token("tok-2"), params=params)}
    recs = [real_records(i) for i in GETRECORDS]
    keys["p2"] = server.add("/oai", list_page(recs[:3], "tok-3"), params={"verb": "ListRecords", "resumptionToken": "tok-2"})
    keys["p3"] = server.add("/oai", list_page(recs[3:], None), params={"verb": "ListRecords", "resumptionToken": "tok-3"})
    return keys


def serve_arxiv_files(server: ReplayServer, ids: list[str]) -> None:
    """Stand-in e-print/PDF bytes per id (arXiv's file bodies are not recorded in the corpus)."""
    for i in ids:
        server.add(f"/e-print/{i}", b"\x1f\x8b" + f"eprint of {i}".encode())
        server.add(f"/pdf/{i}", f"%PDF-1.5 pdf of {i}".encode())


def serve_pmc(server: ReplayServer) -> dict[str, str]:
    """PMC OAI pages at /pmc-oai/ and the bucket at /bucket/ (listings, metadata, files)."""
    keys = {
        "oai1": server.add("/pmc-oai/", (PMC_DIR / "oai" / "ListIdentifiers_page1.xml").read_bytes(),
                           params={"verb": "ListIdentifiers", "metadataPrefix": "pmc_fm", "set": "pmc-open", **WINDOW}),
        "oai2": server.add("/pmc-oai/", (PMC_DIR / "oai" / "ListIdentifiers_page2.xml").read_bytes(),
                           params={"verb": "ListIdentifiers", "resumptionToken": "pmc-tok-1"}),
    }
    for listing in (PMC_DIR / "listing").glob("*.xml"):
        pmcid = listing.stem
        server.add("/bucket/", listing.read_bytes(), params={"list-type": "2", "prefix": f"{pmcid}.", "delimiter": "/"})
    for meta in (PMC_DIR / "metadata").glob("*.json"):
        keys[meta.stem] = server.add(f"/bucket/metadata/{meta.name}", meta.read_bytes())
    for path in (PMC_DIR / "files").rglob("*"):
        if path.is_file():
            rel = path.relative_to(PMC_DIR / "files").as_posix()
            keys[rel] = server.add(f"/bucket/{rel}", path.read_bytes())
    return keys


def fixture_path(rel: str) -> Path:
    return PMC_DIR / "files" / rel
