"""An OAI-PMH stand-in that serves real arXiv records by the day they are stamped with.

``ListRecords`` with ``from``/``until`` answers every record stamped with a day in that
(inclusive) range, as one page, or OAI's ``noRecordsMatch`` error when there is none —
what arXiv does. The records are the recorded, real ``<record>`` elements. ``late``
records model a provider that stamps a record with a day *after* that day was listed:
each appears (stamped with its day) once the day has been listed once.
"""

from __future__ import annotations

import datetime as dt
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from tests.servers.fixtures_http import list_page
from tests.servers.replay import LocalServer, send_reply

NO_RECORDS = (b'<?xml version="1.0" encoding="UTF-8"?><OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/">'
              b'<responseDate>2026-12-01T00:00:00Z</responseDate><request verb="ListRecords">x</request>'
              b'<error code="noRecordsMatch">no records</error></OAI-PMH>')


class OaiDays(LocalServer):
    """``requests`` logs (from, until) of each listing."""

    def __init__(self, days: dict[dt.date, list[bytes]], late: dict[dt.date, list[bytes]] | None = None):
        self.days = {d: list(r) for d, r in days.items()}
        self.late = {d: list(r) for d, r in (late or {}).items()}
        self.requests: list[tuple[str, str]] = []
        super().__init__()

    def listing(self, start: dt.date, until: dt.date) -> bytes:
        """The page for [start, until]; then release late records of the days just listed."""
        with self._lock:
            self.requests.append((start.isoformat(), until.isoformat()))
            records = [r for day, recs in sorted(self.days.items()) if start <= day <= until for r in recs]
            for day in [d for d in self.late if start <= d <= until]:
                self.days.setdefault(day, []).extend(self.late.pop(day))
        return list_page(records, None) if records else NO_RECORDS

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                return None

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                if query.get("verb") != "ListRecords" or "from" not in query or "until" not in query:
                    send_reply(self, 400, b"unsupported request", {})
                    return
                body = server.listing(dt.date.fromisoformat(query["from"]), dt.date.fromisoformat(query["until"]))
                send_reply(self, 200, body, {"Content-Type": "text/xml"})

        return Handler
