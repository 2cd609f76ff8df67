"""A thin client for GROBID's REST API (processFulltextDocument, isalive).

Why not grobid-client-python: its ``process_pdf`` catches every exception and returns a
status code and text, so a full pool (503), a dead server and a PDF GROBID cannot read
(500) look alike to the caller, and it writes files itself. The stage runner needs the
difference: 503 / 429 / timeouts / resets are ``TransientError`` (retried here with
back-off and the server's Retry-After, then by the runner), everything else that GROBID
answers is ``PermanentError`` recorded against that one paper.

``process_many`` runs PDFs on a small thread pool; a ``BoundedSemaphore`` owned by the
client caps in-flight requests across *all* callers of one client (GROBID answers 503 as
soon as its own pool is full, so more parallelism only buys retries).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from figalign.clients.retry_after import parse_retry_after
from figalign.errors import BadInputError, ConfigError, FigalignError, PermanentError, TransientError, error_class

log = logging.getLogger(__name__)

FULLTEXT_FIELDS: tuple[tuple[str, str], ...] = (
    ("teiCoordinates", "figure"),
    ("teiCoordinates", "ref"),
    ("teiCoordinates", "s"),
    ("segmentSentences", "1"),
    ("consolidateHeader", "0"),
    ("consolidateCitations", "0"),
)
TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
MAX_BACKOFF_S = 120.0


@dataclass(frozen=True)
class GrobidConfig:
    """Where GROBID is and how hard to push it."""

    url: str
    timeout_s: float = 120.0
    max_concurrency: int = 4
    max_retries: int = 5
    backoff_s: float = 2.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"GROBID url must be http(s)://…, got {self.url!r}")
        if self.max_concurrency < 1 or self.max_retries < 0 or self.timeout_s <= 0 or self.backoff_s < 0:
            raise ConfigError("GROBID max_concurrency >= 1, max_retries >= 0, timeout_s > 0, backoff_s >= 0")


@dataclass(frozen=True)
class GrobidResult:
    """One PDF's outcome: the TEI text, or the error that stopped it (never both)."""

    pdf: Path
    tei: str | None = None
    error: str | None = None
    error_class: str | None = None

    @property
    def ok(self) -> bool:
        return self.tei is not None


class GrobidClient:
    """Synchronous GROBID client; safe to share between threads."""

    def __init__(self, config: GrobidConfig, *, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(config.max_concurrency)
        self._local = threading.local()

    @property
    def _base(self) -> str:
        return self.config.url.rstrip("/")

    def _session(self):
        """One requests.Session per thread: Session is not documented as thread-safe."""
        import requests

        if getattr(self._local, "session", None) is None:
            self._local.session = requests.Session()
        return self._local.session

    def is_alive(self) -> bool:
        """GET /api/isalive; False when GROBID is down or not ready, never raises for that."""
        import requests

        try:
            r = self._session().get(f"{self._base}/api/isalive", timeout=min(10.0, self.config.timeout_s))
        except requests.RequestException as exc:
            log.info("GROBID not reachable at %s: %s", self._base, exc)
            return False
        return r.status_code == 200 and r.text.strip().lower() == "true"

    def process_fulltext(self, pdf: Path | bytes, *, name: str = "paper.pdf") -> str:
        """TEI for one PDF, retrying transient failures with back-off; raises on failure."""
        data = _read_pdf(pdf)
        if isinstance(pdf, Path):
            name = pdf.name
        attempt = 0
        while True:
            try:
                with self._slots:
                    return self._post_once(data, name)
            except TransientError as exc:
                if attempt >= self.config.max_retries:
                    raise TransientError(f"GROBID still failing after {attempt + 1} tries: {exc}",
                                         retry_after=exc.retry_after) from exc
                delay = self._delay(attempt, exc.retry_after)
                log.info("GROBID transient failure (%s); retry %d in %.1f s", exc, attempt + 1, delay)
                self._sleep(delay)
                attempt += 1

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Server's Retry-After when given, else exponential back-off with full jitter."""
        if retry_after is not None:
            return min(retry_after, MAX_BACKOFF_S)
        return min(MAX_BACKOFF_S, self.config.backoff_s * (2 ** attempt)) * random.uniform(0.5, 1.0)

    def _post_once(self, data: bytes, name: str) -> str:
        import requests

        try:
            r = self._session().post(
                f"{self._base}/api/processFulltextDocument",
                files={"input": (name, data, "application/pdf")},
                data=list(FULLTEXT_FIELDS),
                timeout=self.config.timeout_s,
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"GROBID request failed: {type(exc).__name__}: {exc}") from exc
        except requests.RequestException as exc:
            raise PermanentError(f"GROBID request could not be made: {exc}") from exc
        return _classify(r)

    def process_many(self, pdfs: Iterable[Path]) -> list[GrobidResult]:
        """Process PDFs concurrently; one result per PDF in input order, never raising for one."""
        pdfs = [Path(p) for p in pdfs]
        with ThreadPoolExecutor(max_workers=self.config.max_concurrency, thread_name_prefix="grobid") as pool:
            return list(pool.map(self._result_for, pdfs))

    def _result_for(self, pdf: Path) -> GrobidResult:
        try:
            return GrobidResult(pdf=pdf, tei=self.process_fulltext(pdf))
        except FigalignError as exc:
            return GrobidResult(pdf=pdf, error=str(exc), error_class=error_class(exc))


def _read_pdf(pdf: Path | bytes) -> bytes:
    if isinstance(pdf, bytes):
        data = pdf
    else:
        try:
            data = Path(pdf).read_bytes()
        except OSError as exc:
            raise BadInputError(f"cannot read PDF {pdf}: {exc}") from exc
    if not data.startswith(b"%PDF"):
        raise BadInputError(f"not a PDF (starts with {data[:8]!r})")
    return data


def _classify(r) -> str:
    """Map a GROBID response to TEI text or a classified error."""
    if r.status_code == 200:
        text = r.text
        if "<TEI" not in text[:4096]:
            raise PermanentError(f"GROBID answered 200 without TEI (starts {text[:80]!r})")
        return text
    body = (r.text or "").strip().replace("\n", " ")[:300]
    if r.status_code in TRANSIENT_STATUS:
        raise TransientError(f"GROBID HTTP {r.status_code}: {body or r.reason}",
                             retry_after=parse_retry_after(r.headers.get("Retry-After")))
    if r.status_code == 204:
        raise PermanentError("GROBID extracted nothing from this PDF (HTTP 204)")
    raise PermanentError(f"GROBID HTTP {r.status_code}: {body or r.reason}")
