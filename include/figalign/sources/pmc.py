"""PubMed Central: discovery over PMC's OAI-PMH, files from the PMC Cloud Service (2026 layout).

Since August 2026 the FTP service and the OA Web Service (``oa.fcgi``) are gone; article
files live only in the public S3 bucket ``pmc-oa-opendata`` (anonymous HTTPS, base URL
``FIGALIGN_PMC_BASE_URL``). Its layout, as documented by PMC and used by this client:

* ``PMC<id>.<version>/`` — one prefix per article *version*, holding that version's JATS
  XML (``PMC<id>.<version>.xml``), PDF, plain text, media and supplementary files;
* ``metadata/PMC<id>.<version>.json`` — one metadata object per version: ``pmcid``,
  ``version``, ``pmid``, ``doi``, ``license_code`` ("CC BY", "CC BY-NC-ND", "CC0",
  "TDM" …), ``is_pmc_openaccess``, ``is_manuscript``, ``is_historical_ocr``,
  ``is_retracted`` and the file URLs ``xml_url``, ``pdf_url``, ``text_url``,
  ``media_urls`` as ``s3://pmc-oa-opendata/<key>?md5=<hex>`` (the md5 verifies the bytes).
  Some copies place the same JSON at ``PMC<id>.<version>/PMC<id>.<version>.json``; that key
  is tried when the ``metadata/`` one is missing.

Versions of an article are found with an S3 ListObjectsV2 call
(``?list-type=2&prefix=PMC<id>.&delimiter=/``), whose ``CommonPrefixes`` name each
``PMC<id>.<n>/``; the numerically highest ``n`` is the current version.

Discovery of what is new in a window uses PMC's OAI-PMH ``ListIdentifiers``
(``from``/``until``, set ``pmc-open``): it is incremental by date, pages with
resumption tokens exactly like arXiv (so the same cursor logic resumes it), and costs
one request per page of identifiers. The cloud's bulk file lists would need the whole
list downloaded and diffed each day. ``media_urls`` mixes figure images with
supplementary files; only figure images (by extension) are fetched, as the issue asks.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from figalign.clients.http import HttpStatusError
from figalign.errors import PermanentError
from figalign.parsers.xmlsafe import local_name, parse_xml_bytes
from figalign.sources import licences
from figalign.sources.oaipmh import NS, fetch_page, request_params
from figalign.sources.record import Dropped, FileRef, PaperRecord

SOURCE = "pmc"
PMC_OAI_URL = "https://pmc.ncbi.nlm.nih.gov/api/oai/v1/mh/"
BUCKET = "pmc-oa-opendata"
DEFAULT_SET = "pmc-open"
FIGURE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".tif", ".tiff", ".webp", ".bmp"})
_PMCID = re.compile(r"^PMC\d+$")
_OAI_ID = re.compile(r"oai:pubmedcentral\.nih\.gov:(\d+)$")


def pmcid_from_oai(identifier: str) -> str | None:
    """``oai:pubmedcentral.nih.gov:1234567`` -> ``PMC1234567``."""
    m = _OAI_ID.search(identifier.strip())
    return f"PMC{m.group(1)}" if m else None


def s3_to_https(url: str, base_url: str) -> tuple[str, str | None]:
    """``s3://pmc-oa-opendata/KEY?md5=X`` -> (``<base>/KEY``, ``X``); https URLs pass through."""
    split = urlsplit(url)
    md5 = (parse_qs(split.query).get("md5") or [None])[0]
    if split.scheme == "s3":
        if split.netloc != BUCKET or not split.path.strip("/"):
            raise PermanentError(f"PMC metadata names a file outside {BUCKET}: {url}")
        return f"{base_url.rstrip('/')}/{split.path.lstrip('/')}", md5
    return url.split("?", 1)[0], md5


def latest_version(listing: bytes, pmcid: str) -> int | None:
    """Highest version among ``PMC<id>.<n>/`` common prefixes (numeric, not lexical)."""
    root = parse_xml_bytes(listing, source=f"S3 listing for {pmcid}")
    pattern = re.compile(rf"^{re.escape(pmcid)}\.(\d+)/$")
    versions = []
    for el in root.iter():
        if local_name(el) == "Prefix" and el.text and (m := pattern.match(el.text.strip())):
            versions.append(int(m.group(1)))
    return max(versions) if versions else None


@dataclass(frozen=True)
class PmcMetadata:
    """The per-version metadata JSON, with the fields figalign uses."""

    pmcid: str
    version: int
    license_code: str | None
    is_retracted: bool
    is_pmc_openaccess: bool | None
    is_manuscript: bool | None
    doi: str | None
    pmid: str | None
    xml_url: str | None
    pdf_url: str | None
    media_urls: tuple[str, ...]

    @classmethod
    def from_json(cls, data: bytes, expected: str) -> "PmcMetadata":
        try:
            obj = json.loads(data)
        except ValueError as exc:
            raise PermanentError(f"PMC metadata for {expected} is not JSON: {exc}") from exc
        if not isinstance(obj, dict) or str(obj.get("pmcid", "")).upper() != expected.upper():
            raise PermanentError(f"PMC metadata for {expected} names another article: {str(obj)[:80]}")
        version = obj.get("version")
        if not isinstance(version, int) or version < 1:
            raise PermanentError(f"PMC metadata for {expected} has no valid version")
        media = obj.get("media_urls") or []
        return cls(
            pmcid=expected.upper(), version=version,
            license_code=obj.get("license_code") if isinstance(obj.get("license_code"), str) else None,
            is_retracted=obj.get("is_retracted") is True,
            is_pmc_openaccess=obj.get("is_pmc_openaccess") if isinstance(obj.get("is_pmc_openaccess"), bool) else None,
            is_manuscript=obj.get("is_manuscript") if isinstance(obj.get("is_manuscript"), bool) else None,
            doi=obj.get("doi") if isinstance(obj.get("doi"), str) else None,
            pmid=str(obj["pmid"]) if obj.get("pmid") else None,
            xml_url=obj.get("xml_url") if isinstance(obj.get("xml_url"), str) else None,
            pdf_url=obj.get("pdf_url") if isinstance(obj.get("pdf_url"), str) else None,
            media_urls=tuple(u for u in media if isinstance(u, str)),
        )


def _name(https_url: str) -> str:
    return https_url.rsplit("/", 1)[-1]


def file_refs(meta: PmcMetadata, base_url: str) -> tuple[FileRef, ...]:
    """JATS XML, PDF and figure images (no supplements), each with its md5."""
    refs = []
    for role, url in (("jats", meta.xml_url), ("pdf", meta.pdf_url)):
        if url:
            https, md5 = s3_to_https(url, base_url)
            refs.append(FileRef(role, _name(https), https, md5))
    for url in meta.media_urls:
        https, md5 = s3_to_https(url, base_url)
        name = _name(https)
        if "." + name.rsplit(".", 1)[-1].lower() in FIGURE_EXTENSIONS:
            refs.append(FileRef("media", name, https, md5))
    return tuple(refs)


def to_record(meta: PmcMetadata, base_url: str, updated_at: dt.datetime | None) -> PaperRecord:
    """Metadata JSON -> PaperRecord; a retracted article is recorded with its reason."""
    return PaperRecord(
        source=SOURCE, external_id=meta.pmcid, version=str(meta.version),
        licence=licences.normalise(meta.license_code), licence_url=None, doi=meta.doi,
        updated_at=updated_at, retracted=meta.is_retracted,
        files=file_refs(meta, base_url),
        excluded_reason="retracted: PMC metadata is_retracted=true" if meta.is_retracted else None,
        extra={"license_code": meta.license_code, "pmid": meta.pmid, "is_manuscript": meta.is_manuscript,
               "is_pmc_openaccess": meta.is_pmc_openaccess},
    )


@dataclass
class PmcCloud:
    """Reads the bucket over anonymous HTTPS through the polite client."""

    http: object
    base_url: str

    def latest_version(self, pmcid: str) -> int | None:
        if not _PMCID.match(pmcid):
            raise PermanentError(f"not a PMCID: {pmcid!r}")
        listing = self.http.get(self.base_url.rstrip("/") + "/",
                                params={"list-type": "2", "prefix": f"{pmcid}.", "delimiter": "/"})
        return latest_version(listing, pmcid)

    def metadata(self, pmcid: str, version: int) -> PmcMetadata:
        base = self.base_url.rstrip("/")
        keys = (f"{base}/metadata/{pmcid}.{version}.json", f"{base}/{pmcid}.{version}/{pmcid}.{version}.json")
        for i, url in enumerate(keys):
            try:
                return PmcMetadata.from_json(self.http.get(url), pmcid)
            except HttpStatusError as exc:
                if exc.status != 404 or i == len(keys) - 1:
                    raise
        raise PermanentError(f"no metadata for {pmcid}.{version}")  # unreachable; keeps typing honest


def _datestamp(header) -> dt.datetime | None:
    el = header.find("oai:datestamp", NS)
    if el is None or not el.text:
        return None
    try:
        return dt.datetime.strptime(el.text.strip()[:10], "%Y-%m-%d")
    except ValueError:
        return None


@dataclass
class PmcSource:
    """Pages of one harvest window: OAI identifiers resolved against the cloud metadata."""

    http: object
    cloud_base_url: str
    oai_url: str = PMC_OAI_URL
    name: str = SOURCE
    metadata_prefix: str = "pmc_fm"

    def pages(self, start: dt.date, end: dt.date, set_spec: str, token: str | None
              ) -> Iterator[tuple[list[PaperRecord], str | None]]:
        cloud = PmcCloud(self.http, self.cloud_base_url)
        while True:
            params = request_params("ListIdentifiers", metadata_prefix=self.metadata_prefix,
                                    from_=start.isoformat(), until=end.isoformat(),
                                    set_spec=set_spec or DEFAULT_SET, token=token)
            page = fetch_page(self.http, self.oai_url, "ListIdentifiers", params, source="PMC OAI-PMH")
            token = page.token
            yield [self.resolve(cloud, h) for h in page.items], token
            if not token:
                return

    def resolve(self, cloud: PmcCloud, header) -> PaperRecord | Dropped:
        """One OAI header -> PaperRecord (``Dropped`` for deleted headers or unusable ids).

        An article the cloud does not hold, or whose metadata is permanently unusable
        (not JSON, names another article, 404 on both keys …), is still recorded as a
        paper row with the reason: one bad article never blocks its window. Transient
        errors propagate, so the window is retried.
        """
        ident = header.find("oai:identifier", NS)
        identifier = ident.text.strip() if ident is not None and ident.text else None
        if header.get("status") == "deleted":
            return Dropped(SOURCE, "deleted record", identifier)
        pmcid = pmcid_from_oai(identifier or "")
        if pmcid is None:
            return Dropped(SOURCE, "identifier is not a PMC OAI id", identifier)
        updated = _datestamp(header)
        try:
            version = cloud.latest_version(pmcid)
            if version is None:
                return PaperRecord(SOURCE, pmcid, "", updated_at=updated,
                                   excluded_reason="pmc: not in the PMC Article Datasets cloud bucket")
            return to_record(cloud.metadata(pmcid, version), self.cloud_base_url, updated)
        except PermanentError as exc:
            return PaperRecord(SOURCE, pmcid, "", updated_at=updated, excluded_reason=f"pmc: {exc}")
