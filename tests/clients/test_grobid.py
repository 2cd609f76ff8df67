"""GROBID client against a local stand-in that replays real GROBID TEI.

The stand-in (http.server on 127.0.0.1, port 0) answers processFulltextDocument with the
TEI GROBID 0.6.1 really produced for the uploaded PDF (matched by sha256 of the bytes),
503 + Retry-After while its "pool is full", and 500 for PDFs it has no TEI for, which is
what GROBID does for a PDF it cannot parse. No network is used.
"""

from __future__ import annotations

import hashlib
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from figalign.clients.grobid import GrobidClient, GrobidConfig
from figalign.clients.retry_after import parse_retry_after
from figalign.errors import ConfigError, PermanentError, TransientError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tei"
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
ACL_PDF = FIXTURES / "2020.acl-main.207.pdf"
ACL_TEI = FIXTURES / "2020.acl-main.207.tei.xml"


class StandIn:
    """State shared with the handler: recorded TEI, scripted 503s, request log, concurrency."""

    def __init__(self, pairs: list[tuple[Path, Path]]):
        self.tei = {hashlib.sha256(pdf.read_bytes()).hexdigest(): tei.read_bytes() for pdf, tei in pairs}
        self.busy_first = 0
        self.retry_after = "0"
        self.delay_s = 0.0
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0


def _handler(state: StandIn):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            return

        def _send(self, code: int, body: bytes, headers: dict | None = None):
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/api/isalive":
                self._send(200, b"true")
            else:
                self._send(404, b"not found")

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                n = len(state.requests)
            try:
                self._post(body, n)
            finally:
                with state.lock:
                    state.in_flight -= 1

        def _post(self, body: bytes, n: int):
            msg = BytesParser(policy=HTTP).parsebytes(
                b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body)
            fields: dict[str, list] = {}
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                fields.setdefault(name, []).append(
                    (part.get_filename(), payload) if part.get_filename() else payload.decode())
            with state.lock:
                state.requests.append({"path": self.path, "fields": fields})
            time.sleep(state.delay_s)
            if self.path != "/api/processFulltextDocument":
                return self._send(404, b"not found")
            if n < state.busy_first:
                return self._send(503, b"", {"Retry-After": state.retry_after})
            pdf = fields.get("input", [(None, b"")])[0][1]
            tei = state.tei.get(hashlib.sha256(pdf).hexdigest())
            if tei is None:
                return self._send(500, b"[NO_BLOCKS] PDF parsing resulted in empty content")
            self._send(200, tei, {"Content-Type": "application/xml"})

    return Handler


@pytest.fixture()
def server():
    pairs = [(ACL_PDF, ACL_TEI)]
    bmc = SHARED / "corpus" / "grobid_tei" / "0046d83a.pdf"
    if bmc.is_file():
        pairs.append((bmc, bmc.with_name("0046d83a.tei.xml")))
    state = StandIn(pairs)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()


def _client(url: str, sleeps: list | None = None, **kw) -> GrobidClient:
    cfg = GrobidConfig(url=url, timeout_s=kw.pop("timeout_s", 10), **kw)
    return GrobidClient(cfg, sleep=(sleeps.append if sleeps is not None else (lambda s: None)))


def test_returns_recorded_tei_and_sends_grobid_form(server):
    tei = _client(server.url).process_fulltext(ACL_PDF)
    assert tei == ACL_TEI.read_text(encoding="utf-8")
    (req,) = server.requests
    f = req["fields"]
    assert req["path"] == "/api/processFulltextDocument"
    assert f["input"] == [(ACL_PDF.name, ACL_PDF.read_bytes())]
    assert f["teiCoordinates"] == ["figure", "ref", "s"]
    assert f["segmentSentences"] == ["1"]
    assert f["consolidateHeader"] == ["0"] and f["consolidateCitations"] == ["0"]


def test_503_is_retried_honouring_retry_after(server):
    server.busy_first, server.retry_after = 2, "7"
    sleeps: list[float] = []
    tei = _client(server.url, sleeps).process_fulltext(ACL_PDF)
    assert "<TEI" in tei and len(server.requests) == 3
    assert sleeps == [7.0, 7.0]


def test_503_beyond_max_retries_is_transient(server):
    server.busy_first = 100
    sleeps: list[float] = []
    with pytest.raises(TransientError, match="after 3 tries"):
        _client(server.url, sleeps, max_retries=2).process_fulltext(ACL_PDF)
    assert len(server.requests) == 3 and len(sleeps) == 2


def test_unknown_pdf_500_is_permanent_without_retry(server, tmp_path):
    other = tmp_path / "other.pdf"
    other.write_bytes(b"%PDF-1.4\n% not a paper GROBID knows\n")
    with pytest.raises(PermanentError, match="500.*NO_BLOCKS"):
        _client(server.url).process_fulltext(other)
    assert len(server.requests) == 1


def test_connection_refused_is_transient_and_backs_off(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the client connects
    sleeps: list[float] = []
    client = _client(f"http://127.0.0.1:{port}", sleeps, max_retries=3, backoff_s=2.0)
    with pytest.raises(TransientError, match="after 4 tries"):
        client.process_fulltext(ACL_PDF)
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps):  # exponential back-off with jitter in [0.5, 1] x base
        assert 2.0 * 2 ** attempt * 0.5 <= delay <= 2.0 * 2 ** attempt
    assert client.is_alive() is False


def test_process_many_reports_per_pdf_and_bounds_concurrency(server, tmp_path):
    bad = tmp_path / "unknown.pdf"
    bad.write_bytes(b"%PDF-1.5\nunknown\n")
    not_pdf = tmp_path / "notes.pdf"
    not_pdf.write_text("hello")
    server.delay_s = 0.2
    pdfs = [ACL_PDF, bad, not_pdf, ACL_PDF, ACL_PDF, ACL_PDF]
    results = _client(server.url, max_concurrency=2).process_many(pdfs)
    assert [r.pdf for r in results] == pdfs
    assert [r.ok for r in results] == [True, False, False, True, True, True]
    assert results[1].error_class == "PermanentError" and "500" in results[1].error
    assert results[2].error_class == "BadInputError"
    assert server.max_in_flight == 2  # 5 uploads, never more than 2 at once
    assert len(server.requests) == 5


def test_is_alive(server):
    assert _client(server.url).is_alive() is True


def test_config_validation_and_retry_after_parsing():
    with pytest.raises(ConfigError):
        GrobidConfig(url="localhost:8070")
    with pytest.raises(ConfigError):
        GrobidConfig(url="http://x", max_concurrency=0)
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past


@pytest.mark.skipif(not (SHARED / "corpus" / "grobid_tei" / "0046d83a.pdf").is_file(),
                    reason="shared corpus ../shared/corpus/grobid_tei/0046d83a.pdf not present")
def test_tei_from_client_parses_with_crops(server, tmp_path):
    from figalign.parsers import tei as tei_parser
    from figalign.parsers.options import ParseOptions

    pdf = SHARED / "corpus" / "grobid_tei" / "0046d83a.pdf"
    out = tmp_path / "0046d83a.tei.xml"
    out.write_text(_client(server.url).process_fulltext(pdf), encoding="utf-8")
    paper = tei_parser.parse(out, out_dir=tmp_path, pdf=pdf, paper_id="bmc", options=ParseOptions())
    assert len(paper.figures) == 4 and all(f.image is not None for f in paper.figures)
