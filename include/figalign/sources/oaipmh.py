"""Generic OAI-PMH 2.0 paging: one request per page, resumption tokens, protocol errors.

The harvest stage stores the token after each page, so a page is the unit of progress.
``noRecordsMatch`` is an empty window, not a failure. ``badResumptionToken`` (the
provider expired or forgot our token, typically after a long pause) is its own error so
the harvester can restart the window; every other OAI error is permanent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from figalign.errors import BadInputError, PermanentError, TransientError
from figalign.parsers.xmlsafe import parse_xml_bytes

OAI_NS = "http://www.openarchives.org/OAI/2.0/"
NS = {"oai": OAI_NS}


class OaiError(PermanentError):
    """An OAI-PMH ``<error code=…>`` response."""

    def __init__(self, code: str, message: str):
        super().__init__(f"OAI-PMH error {code}: {message}")
        self.code = code


class BadResumptionToken(OaiError):
    """The provider no longer accepts our resumption token; restart the window."""


@dataclass(frozen=True)
class OaiPage:
    """One page: its ``record`` (or ``header``) elements and the token for the next page."""

    items: list
    token: str | None
    complete_list_size: int | None = None


def request_params(verb: str, *, metadata_prefix: str, from_: str | None = None, until: str | None = None,
                   set_spec: str | None = None, token: str | None = None) -> dict[str, str]:
    """Query parameters of a list request. With a token, OAI allows nothing but verb + token."""
    if token:
        return {"verb": verb, "resumptionToken": token}
    params = {"verb": verb, "metadataPrefix": metadata_prefix}
    if from_:
        params["from"] = from_
    if until:
        params["until"] = until
    if set_spec:
        params["set"] = set_spec
    return params


def parse_page(data: bytes, verb: str, *, source: str = "OAI-PMH") -> OaiPage:
    """Parse a ListRecords/ListIdentifiers response into items and the next token.

    A body that is not well-formed XML is treated as a damaged transfer (transient): a
    provider that answers 200 with half a page usually answers properly next time.
    """
    try:
        root = parse_xml_bytes(data, source=source)
    except BadInputError as exc:
        raise TransientError(f"{source}: unreadable page: {exc}") from exc
    if _raise_for_error(root):
        return OaiPage([], None, 0)
    container = root.find(f"oai:{verb}", NS)
    if container is None:
        raise PermanentError(f"{source}: response has no <{verb}> element")
    tag = "oai:record" if verb == "ListRecords" else "oai:header"
    items = container.findall(tag, NS)
    token_el = container.find("oai:resumptionToken", NS)
    token = (token_el.text or "").strip() if token_el is not None else ""
    size = token_el.get("completeListSize") if token_el is not None else None
    return OaiPage(items, token or None, int(size) if size and size.isdigit() else None)


def _raise_for_error(root) -> bool:
    """Raise for OAI errors; return True for noRecordsMatch (an empty window)."""
    empty = False
    for err in root.findall("oai:error", NS):
        code = err.get("code", "")
        if code == "noRecordsMatch":
            empty = True
            continue
        message = (err.text or "").strip()
        if code == "badResumptionToken":
            raise BadResumptionToken(code, message)
        raise OaiError(code, message)
    return empty


def fetch_page(http, base_url: str, verb: str, params: Mapping[str, str], *, source: str = "OAI-PMH") -> OaiPage:
    """GET one page through the polite client and parse it; noRecordsMatch gives an empty page."""
    data = http.get(base_url, params=dict(params))
    return parse_page(data, verb, source=source)
