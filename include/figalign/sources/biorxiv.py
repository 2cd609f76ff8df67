"""bioRxiv and medRxiv over ``api.biorxiv.org``: listings with licences, PDF and JATS locations.

One endpoint serves both servers: ``GET {api}/details/{server}/{from}/{until}/{cursor}``
returns JSON ``{"messages": [{status, category, interval, funder, cursor, count,
count_new_papers, total}], "collection": [{doi, title, authors, author_corresponding,
author_corresponding_institution, date, version, type, license, category, jatsxml,
abstract, published, funder, server}]}``. Facts this client relies on, and why:

* ``cursor`` is an absolute *record offset*, not a page number, and the page size is not
  fixed by contract (older documentation says 100; a 2026 measurement found 30 on
  ``/details``). A wrong step is accepted silently, so the next cursor is always the
  previous one plus the records actually returned, and the window ends when that reaches
  ``total`` or a page comes back empty. ``cursor`` and ``total`` arrive as numbers or as
  strings.
* An empty window answers HTTP 200 with status ``no posts found``; any other non-``ok``
  status (``Server not recognized`` …) is a permanent error.
* The listing has one entry per *version* posted in the window, each with its own date,
  licence, PDF (``{content}/content/{doi}v{version}.full.pdf``) and JATS XML
  (``jatsxml``, ``…/content/early/YYYY/MM/DD/<id>.source.xml``). A paper is therefore
  keyed by DOI **and** version, as PMC is: each version is immutable, so its row and
  files never change under a later listing, and a backfill of an old window can never
  overwrite a newer version with an older one. Figures repeated across versions are
  removed by the store-wide duplicate filter (the first seen is kept).
* ``license`` is a code: ``cc_by``, ``cc_by_nc``, ``cc_by_nd``, ``cc_by_nc_nd``, ``cc0``,
  ``cc_no`` (all rights reserved). ``cc_no`` grants no reuse, so it normalises to
  ``all-rights-reserved``, which no default policy processes: such papers keep their row
  with the reason and are never fetched.
* The API does not list figure images, and the JATS XML names them only by relative
  href. The XML is still fetched (role ``jats-text``: exact captions and text for later
  use), but the parse stage does not choose that role, so bioRxiv papers go down the
  PDF path (GROBID when configured, else PyMuPDF), which crops figures from the PDF.
  Were the XML stored as ``jats``, the JATS parser would win and every figure would lack
  its image.

Server categories map to the card's disciplines in ``disciplines.preprint_discipline``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from figalign.errors import ConfigError, PermanentError, TransientError
from figalign.sources import licences
from figalign.sources.disciplines import preprint_discipline
from figalign.sources.oaipmh import BadResumptionToken
from figalign.sources.record import Dropped, FileRef, PaperRecord

log = logging.getLogger(__name__)

SERVERS = ("biorxiv", "medrxiv")
DEFAULT_API_URL = "https://api.biorxiv.org"
API_URL_ENV = "FIGALIGN_BIORXIV_API_URL"
CONTENT_URL_ENV = "FIGALIGN_BIORXIV_CONTENT_URL"  # may contain {server}
JATS_ROLE = "jats-text"
EMPTY_STATUS = "no posts found"
READ_ATTEMPTS = 3  # a 200 with unreadable JSON is re-asked this many times before giving up
_WS = re.compile(r"\s+")
_NA = {"", "na", "n/a", "none", "null"}


def default_content_url(server: str) -> str:
    """Where a server's PDFs and JATS files live: ``https://www.biorxiv.org`` / ``…medrxiv.org``."""
    return f"https://www.{server}.org"


@dataclass(frozen=True)
class DetailsPage:
    """One ``/details`` response: its entries and the paging facts from ``messages[0]``."""

    items: list[dict[str, Any]]
    cursor: int
    total: int | None
    status: str

    def next_cursor(self) -> int | None:
        """Offset of the next page, or None when the window is exhausted."""
        if not self.items:
            return None
        nxt = self.cursor + len(self.items)
        if self.total is not None and nxt >= self.total:
            return None
        return nxt


def _int(value: Any) -> int | None:
    """The API sends cursor/count/total as numbers or as strings of digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def parse_details(data: bytes, *, cursor: int, source: str = "bioRxiv API") -> DetailsPage:
    """Parse one response. Unreadable JSON is transient (a cut transfer); a wrong shape is not."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TransientError(f"{source}: unreadable page at cursor {cursor}: {exc}") from exc
    messages = obj.get("messages") if isinstance(obj, dict) else None
    if not isinstance(messages, list) or not messages or not isinstance(messages[0], dict):
        raise PermanentError(f"{source}: response has no messages block: {str(obj)[:120]}")
    msg = messages[0]
    status = str(msg.get("status", "")).strip()
    if status.lower() == EMPTY_STATUS:
        return DetailsPage([], cursor, 0, status)
    if status.lower() != "ok":
        raise PermanentError(f"{source}: status {status!r} at cursor {cursor}")
    items = obj.get("collection")
    if not isinstance(items, list):
        raise PermanentError(f"{source}: response has no collection list")
    echoed = _int(msg.get("cursor"))
    return DetailsPage([i for i in items if isinstance(i, dict)],
                       echoed if echoed is not None else cursor, _int(msg.get("total")), status)


def _text(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    if not isinstance(value, str):
        return None
    text = _WS.sub(" ", value).strip()
    return None if text.lower() in _NA else text


def _date(value: str | None) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(value[:10], "%Y-%m-%d") if value else None
    except ValueError:
        return None


def _authors(value: str | None) -> list[str]:
    """``"Surname, A.; Surname, B."`` -> one string per author."""
    return [a.strip() for a in (value or "").split(";") if a.strip()]


def rebase(url: str, server: str, content_url: str) -> str:
    """Point a server URL (``www.biorxiv.org/…``) at ``content_url`` (a mirror or replay server)."""
    split = urlsplit(url)
    if split.netloc.lower() not in (f"www.{server}.org", f"{server}.org"):
        return url
    tail = split.path + (f"?{split.query}" if split.query else "")
    return content_url.rstrip("/") + tail


def file_refs(doi: str, version: str, jatsxml: str | None, server: str, content_url: str) -> tuple[FileRef, ...]:
    """The version's PDF (parsed) and, when listed, its JATS XML (kept, not parsed: no images)."""
    stem = f"{doi.rsplit('/', 1)[-1]}v{version}"
    refs = [FileRef("pdf", f"{stem}.full.pdf", f"{content_url.rstrip('/')}/content/{doi}v{version}.full.pdf")]
    if jatsxml and jatsxml.startswith(("http://", "https://")):
        refs.append(FileRef(JATS_ROLE, f"{stem}.source.xml", rebase(jatsxml, server, content_url)))
    return tuple(refs)


def to_record(item: Mapping[str, Any], server: str, content_url: str) -> PaperRecord | Dropped:
    """One collection entry -> PaperRecord keyed (DOI, version); ``Dropped`` when it names no DOI."""
    doi = _text(item, "doi")
    version = str(_int(item.get("version")) or "")
    if not doi or not version:
        log.warning("%s entry without doi/version skipped: %s", server, str(dict(item))[:120])
        return Dropped(server, "entry without a DOI or version", doi)
    category = (_text(item, "category") or "").lower()
    date = _date(_text(item, "date"))
    code = _text(item, "license")
    return PaperRecord(
        source=server, external_id=doi, version=version,
        title=_text(item, "title"), abstract=_text(item, "abstract"), authors=_authors(_text(item, "authors")),
        categories=[category] if category else [], discipline=preprint_discipline(server, category),
        licence=licences.normalise(code), licence_url=None, doi=doi,
        published_at=date if version == "1" else None, updated_at=date,
        files=file_refs(doi, version, _text(item, "jatsxml"), server, content_url),
        extra={"license_code": code, "type": _text(item, "type"), "published_doi": _text(item, "published"),
               "server": _text(item, "server"), "author_corresponding": _text(item, "author_corresponding"),
               "author_corresponding_institution": _text(item, "author_corresponding_institution")},
    )


def _cursor_from_token(token: str | None) -> int:
    """The stored token is the next offset; anything else cannot be resumed from."""
    if token is None:
        return 0
    if not token.isdigit():
        raise BadResumptionToken("badResumptionToken", f"bioRxiv cursor token {token!r} is not an offset")
    return int(token)


@dataclass
class BiorxivSource:
    """Pages of one harvest window of bioRxiv or medRxiv; the page token is the cursor offset.

    ``set_spec`` must be empty: the API's ``category`` filter silently falls back to all
    categories on an unknown name, which would store a wrong window as complete.
    """

    http: object
    server: str = "biorxiv"
    api_url: str = DEFAULT_API_URL
    content_url: str | None = None

    def __post_init__(self) -> None:
        if self.server not in SERVERS:
            raise ConfigError(f"bioRxiv source server must be one of {SERVERS}, got {self.server!r}")
        self.content_url = self.content_url or default_content_url(self.server)

    @property
    def name(self) -> str:
        return self.server

    def page_url(self, start: dt.date, end: dt.date, cursor: int) -> str:
        return f"{self.api_url.rstrip('/')}/details/{self.server}/{start.isoformat()}/{end.isoformat()}/{cursor}"

    def pages(self, start: dt.date, end: dt.date, set_spec: str, token: str | None
              ) -> Iterator[tuple[list[PaperRecord | Dropped], str | None]]:
        """Yield (records, next cursor as text) per page, starting at ``token`` when resuming."""
        if set_spec:
            raise ConfigError(f"{self.server} harvest takes no sets (got {set_spec!r})")
        cursor = _cursor_from_token(token)
        while True:
            page = self.fetch_page(start, end, cursor)
            nxt = page.next_cursor()
            records = [to_record(i, self.server, self.content_url) for i in page.items]
            yield records, (str(nxt) if nxt is not None else None)
            if nxt is None:
                return
            cursor = nxt

    def fetch_page(self, start: dt.date, end: dt.date, cursor: int) -> DetailsPage:
        """GET and parse one page; a 200 whose JSON is cut short is asked for again (politely).

        Only the parse is re-asked here: HTTP-level trouble was already retried by the
        client, and retrying it again would multiply the back-off.
        """
        url = self.page_url(start, end, cursor)
        for attempt in range(1, READ_ATTEMPTS + 1):
            data = self.http.get(url)
            try:
                return parse_details(data, cursor=cursor, source=f"{self.server} API")
            except TransientError as exc:
                if attempt == READ_ATTEMPTS:
                    raise
                log.info("%s; asking again (%d/%d)", exc, attempt, READ_ATTEMPTS - 1)
        raise PermanentError(f"unreachable: {url}")  # the loop returns or raises


def source_from_env(http, server: str, env: Mapping[str, str] | None = None) -> BiorxivSource:
    """The production source: API and content hosts from the optional env overrides.

    ``FIGALIGN_BIORXIV_API_URL`` (default ``https://api.biorxiv.org``) and
    ``FIGALIGN_BIORXIV_CONTENT_URL`` (default ``https://www.{server}.org``) exist so that
    end-to-end runs can point both at a local replay server.
    """
    env = os.environ if env is None else env
    api = (env.get(API_URL_ENV) or "").strip() or DEFAULT_API_URL
    content = (env.get(CONTENT_URL_ENV) or "").strip()
    for name, value in ((API_URL_ENV, api), (CONTENT_URL_ENV, content)):
        if value and not value.startswith(("http://", "https://")):
            raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
    return BiorxivSource(http, server, api, content.replace("{server}", server) or None)
