"""arXiv over OAI-PMH (``metadataPrefix=arXiv``): records, licences and file URLs.

The ``arXiv`` metadata format is the only OAI format that carries the licence URL, which
the licence policy needs before anything is downloaded. Elements are matched by local
name because some recorded responses drop the ``http://arxiv.org/OAI/arXiv/`` default
namespace. The format has no version number, so a paper is keyed by its id with an empty
version: a re-listing after a new version updates the same row (``updated`` changes and
fetch runs again).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass

from figalign.parsers.xmlsafe import local_name
from figalign.sources import licences
from figalign.sources.disciplines import arxiv_discipline
from figalign.sources.oaipmh import NS, OaiPage, fetch_page, request_params
from figalign.sources.record import Dropped, FileRef, PaperRecord

SOURCE = "arxiv"
METADATA_PREFIX = "arXiv"
_WS = re.compile(r"\s+")


def _fields(el) -> dict[str, object]:
    """Children by local name (first wins): one pass per element instead of one per field."""
    out: dict[str, object] = {}
    for c in el:
        tag = c.tag
        if isinstance(tag, str):
            out.setdefault(tag.rsplit("}", 1)[-1], c)
    return out


def _text(fields: dict, name: str) -> str | None:
    node = fields.get(name)
    if node is None or node.text is None:
        return None
    text = _WS.sub(" ", node.text).strip()
    return text or None


def _date(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value[:10])
    except ValueError:
        return None


def _authors(fields: dict) -> list[str]:
    node = fields.get("authors")
    if node is None:
        return []
    out = []
    for author in node:
        if local_name(author) != "author":
            continue
        parts = _fields(author)
        out.append(" ".join(p for p in (_text(parts, "forenames"), _text(parts, "keyname"),
                                         _text(parts, "suffix")) if p))
    return out


def _identifier(header) -> str | None:
    el = header.find("oai:identifier", NS) if header is not None else None
    return el.text.strip() if el is not None and el.text else None


def parse_record(record, base_url: str) -> PaperRecord | Dropped:
    """One OAI ``<record>`` -> PaperRecord; ``Dropped`` (with why) when there is nothing to fetch."""
    header = record.find("oai:header", NS)
    if header is not None and header.get("status") == "deleted":
        return Dropped(SOURCE, "deleted record", _identifier(header))
    metadata = record.find("oai:metadata", NS)
    meta = next((c for c in metadata if local_name(c) == "arXiv"), None) if metadata is not None else None
    if meta is None:
        return Dropped(SOURCE, "record without arXiv metadata", _identifier(header))
    meta = _fields(meta)
    arxiv_id = _text(meta, "id")
    if not arxiv_id:
        return Dropped(SOURCE, "record without an arXiv id", _identifier(header))
    categories = (_text(meta, "categories") or "").split()
    licence_url = _text(meta, "license")
    # arXiv records without <license> predate licence choice (before 2004): they were
    # submitted under the terms that became the non-exclusive distribution licence.
    licence = licences.normalise(licence_url) or licences.ARXIV_NONEXCLUSIVE
    doi = _text(meta, "doi")
    return PaperRecord(
        source=SOURCE,
        external_id=arxiv_id,
        version="",
        title=_text(meta, "title"),
        abstract=_text(meta, "abstract"),
        authors=_authors(meta),
        categories=categories,
        discipline=arxiv_discipline(categories),
        licence=licence,
        licence_url=licence_url,
        doi=re.split(r"[,;\s]+", doi)[0] if doi else None,
        published_at=_date(_text(meta, "created")),
        updated_at=_date(_text(meta, "updated")) or _date(_text(meta, "created")),
        files=file_refs(arxiv_id, base_url),
    )


def file_refs(arxiv_id: str, base_url: str) -> tuple[FileRef, ...]:
    """The e-print (LaTeX source, preferred by the parser) and the PDF (fallback)."""
    base = base_url.rstrip("/")
    safe = arxiv_id.replace("/", "_")
    return (FileRef("eprint", f"{safe}.eprint", f"{base}/e-print/{arxiv_id}"),
            FileRef("pdf", f"{safe}.pdf", f"{base}/pdf/{arxiv_id}"))


def parse_page_records(page: OaiPage, base_url: str) -> list[PaperRecord | Dropped]:
    return [parse_record(el, base_url) for el in page.items]


@dataclass
class ArxivSource:
    """Pages of one harvest window of arXiv, as the harvest stage consumes them."""

    http: object
    oai_url: str
    base_url: str
    name: str = SOURCE

    def pages(self, start: dt.date, end: dt.date, set_spec: str, token: str | None
              ) -> Iterator[tuple[list[PaperRecord | Dropped], str | None]]:
        """Yield (records, next token) per page, starting at ``token`` when resuming."""
        while True:
            params = request_params("ListRecords", metadata_prefix=METADATA_PREFIX, from_=start.isoformat(),
                                    until=end.isoformat(), set_spec=set_spec or None, token=token)
            page = fetch_page(self.http, self.oai_url, "ListRecords", params, source="arXiv OAI-PMH")
            token = page.token
            yield parse_page_records(page, self.base_url), token
            if not token:
                return
