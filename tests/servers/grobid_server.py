"""A local GROBID stand-in that answers with the TEI GROBID really produced for each PDF.

GROBID itself (a Java service with 2 GB of models) cannot run here. The stand-in answers
``POST /api/processFulltextDocument`` with the recorded TEI whose PDF has the same sha256
as the upload, ``500 [NO_BLOCKS]`` for any other PDF (what GROBID answers for a PDF it
cannot parse), and scripted ``503`` + ``Retry-After`` while its "pool is full".
``GET /api/isalive`` answers ``true``.

Pairs come from ``tests/fixtures/tei`` (committed) and ``../shared/corpus/grobid_tei``
when that folder is beside the checkout. ``hold_next()`` makes the next upload wait until
``release()`` (or a timeout), so a test can kill a worker while its request is in flight.
"""

from __future__ import annotations

import hashlib
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.servers.replay import send_reply

FIXTURE_TEI = Path(__file__).resolve().parents[1] / "fixtures" / "tei"
SHARED_TEI = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "grobid_tei"
NO_BLOCKS = b"[NO_BLOCKS] PDF parsing resulted in empty content"


def recorded_pairs() -> list[tuple[Path, Path]]:
    """(pdf, tei) pairs that exist here: the committed ACL pair, plus shared corpus pairs."""
    pairs = []
    for folder in (FIXTURE_TEI, SHARED_TEI):
        for pdf in sorted(folder.glob("*.pdf")) if folder.is_dir() else []:
            tei = pdf.with_name(pdf.stem + ".tei.xml")
            if tei.is_file():
                pairs.append((pdf, tei))
    return pairs


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class GrobidStandIn(ThreadingHTTPServer):
    """ThreadingHTTPServer on 127.0.0.1 (port 0); use as a context manager.

    ``uploads`` lists the sha256 of every PDF posted, in arrival order, so tests can count
    how often each paper reached GROBID.
    """

    daemon_threads = True

    def __init__(self, pairs: list[tuple[Path, Path]] | None = None, *, busy_first: int = 0, retry_after: str = "0"):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tei = {sha256(pdf.read_bytes()): tei.read_bytes() for pdf, tei in (pairs or recorded_pairs())}
        self.busy_first = busy_first
        self.retry_after = retry_after
        self.uploads: list[str] = []
        self.in_flight = 0
        self.lock = threading.Lock()
        self._hold_next = False
        self._released = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def hold_next(self) -> None:
        """Make the next upload wait (in flight) until ``release()``."""
        self._released.clear()
        self._hold_next = True

    def release(self) -> None:
        self._released.set()

    def count(self, digest: str) -> int:
        with self.lock:
            return self.uploads.count(digest)

    def answer(self, pdf: bytes) -> tuple[int, bytes, dict[str, str]]:
        """Status, body and headers for one upload (called by the handler)."""
        with self.lock:
            n = len(self.uploads)
            self.uploads.append(sha256(pdf))
            hold, self._hold_next = self._hold_next, False
        if hold:
            self._released.wait(timeout=600)
        if n < self.busy_first:
            return 503, b"", {"Retry-After": self.retry_after}
        tei = self.tei.get(sha256(pdf))
        if tei is None:
            return 500, NO_BLOCKS, {}
        return 200, tei, {"Content-Type": "application/xml"}

    def __enter__(self) -> "GrobidStandIn":
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: GrobidStandIn

    def log_message(self, *args) -> None:
        """Quiet: test output would drown in access logs."""

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if self.path == "/api/isalive":
            send_reply(self, 200, b"true", {})
        else:
            send_reply(self, 404, b"not found", {})

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/api/processFulltextDocument":
            send_reply(self, 404, b"not found", {})
            return
        pdf = _form_file(self.headers.get("Content-Type", ""), body, "input")
        if pdf is None:
            send_reply(self, 400, b"no input file", {})
            return
        with self.server.lock:
            self.server.in_flight += 1
        try:
            send_reply(self, *self.server.answer(pdf))
        finally:
            with self.server.lock:
                self.server.in_flight -= 1


def _form_file(content_type: str, body: bytes, field: str) -> bytes | None:
    """The bytes of one file field of a multipart/form-data body."""
    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    if not msg.is_multipart():
        return None
    for part in msg.iter_parts():
        if part.get_param("name", header="content-disposition") == field:
            return part.get_payload(decode=True)
    return None
