"""Polite HTTP: one rate limit per host across threads and processes, classified errors.

arXiv and PMC ask for at most one request every few seconds per client. Airflow runs each
task in its own process, so an in-memory limiter would let N workers send N requests at
once. With a SQLite store (one machine) the limiter keeps its state in files under
``<data_dir>/ratelimit/``: a lock file taken with ``fcntl.flock`` serialises everyone on the
machine (every thread opens its own descriptor, so threads block one another as processes
do) and a timestamp file holds the earliest time the host may be asked again. With a
Postgres store (a cluster, or an ``s3://`` data dir) the state is a row per host in the
store instead (``clients/ratelimit_pg.py``), shared by every machine.

Errors are classified here and nowhere else: 429, 5xx, timeouts, resets and short bodies
are ``TransientError`` (retried with exponential back-off and jitter, honouring
``Retry-After``); 403/404/410 and other 4xx are ``PermanentError`` and never retried.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

from figalign import __version__
from figalign.clients.retry_after import parse_retry_after
from figalign.errors import BadInputError, ConfigError, PermanentError, TransientError

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 3.0
MIN_INTERVAL_ENV = "FIGALIGN_HTTP_MIN_INTERVAL_S"
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
CHUNK = 1024 * 256


class HttpStatusError(PermanentError):
    """A permanent HTTP status (403/404/410 …); ``status`` lets callers tell 404 apart."""

    def __init__(self, message: str, *, status: int, url: str):
        super().__init__(message)
        self.status = status
        self.url = url


class ChecksumMismatch(TransientError):
    """Bytes did not match the advertised md5/sha256: usually a damaged transfer, so retried."""


def user_agent(contact_email: str) -> str:
    """The User-Agent sources ask for: tool, version and a way to reach the operator."""
    contact = f" (mailto:{contact_email})" if contact_email else ""
    return f"figalign/{__version__}{contact}"


def _host_key(url: str) -> str:
    """A file-name-safe key for the host (and port) of a URL."""
    netloc = urlsplit(url).netloc.lower() or "unknown"
    return "".join(c if c.isalnum() or c in "-." else "_" for c in netloc)


class HostRateLimiter:
    """At most one request per ``interval`` seconds per host, across threads and processes."""

    def __init__(self, lock_dir: str | Path, interval: float = DEFAULT_INTERVAL_S,
                 per_host: Mapping[str, float] | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time):
        self.lock_dir = Path(lock_dir)
        self.interval = interval
        self.per_host = {_host_key(f"//{k}"): v for k, v in (per_host or {}).items()}
        self._sleep = sleep
        self._clock = clock
        self.lock_dir.mkdir(parents=True, exist_ok=True)

    def interval_for(self, url: str) -> float:
        return self.per_host.get(_host_key(url), self.interval)

    @contextlib.contextmanager
    def slot(self, url: str) -> Iterator["_Slot"]:
        """Hold the host for one request: wait for its turn, and book the next turn afterwards.

        The lock is held while waiting and during the request, so there is one connection
        per host at a time and waiters queue in order. The next turn is booked from the
        moment the request *finished*, so the server sees starts at least ``interval``
        apart whatever the network latency. Timestamps are wall-clock because the file is
        shared between processes, whose monotonic clocks do not agree.
        """
        key = _host_key(url)
        booked = _Slot(self.interval_for(url))
        stamp = self.lock_dir / f"{key}.next"
        with open(self.lock_dir / f"{key}.lock", "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                booked.waited = max(0.0, _read_stamp(stamp) - self._clock())
                if booked.waited:
                    self._sleep(booked.waited)
                yield booked
            finally:
                _write_stamp(stamp, self._clock() + booked.hold_for)
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


@dataclass
class _Slot:
    """One booked turn; ``hold_for`` grows when the server asks us to back off (Retry-After)."""

    hold_for: float
    waited: float = 0.0

    def back_off(self, seconds: float | None) -> None:
        if seconds:
            self.hold_for = max(self.hold_for, seconds)


def _read_stamp(path: Path) -> float:
    try:
        return float(path.read_text() or 0.0)
    except FileNotFoundError:
        return 0.0
    except ValueError:
        log.warning("rate-limit stamp %s unreadable; treating the host as free", path)
        return 0.0


def _write_stamp(path: Path, value: float) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(repr(value))
    os.replace(tmp, path)


def _local_scratch(name: str) -> Path:
    """A folder on this machine's temp disk (for state or temp files when the data dir is a URL)."""
    return Path(tempfile.gettempdir()) / name


@dataclass(frozen=True)
class Downloaded:
    """A verified download sitting in a temp file the caller moves or deletes."""

    path: Path
    size: int
    sha256: str
    md5: str
    content_type: str | None
    url: str


@dataclass
class RetryPolicy:
    """Exponential back-off with full jitter, capped; ``Retry-After`` wins when longer."""

    max_retries: int = 4
    base_s: float = 2.0
    cap_s: float = 120.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = min(self.cap_s, self.base_s * (2 ** attempt))
        jittered = backoff / 2 + self.rng.uniform(0, backoff / 2)
        return max(jittered, retry_after or 0.0)


class PoliteHttp:
    """GETs and streaming downloads behind the per-host limiter, with retries and a size cap."""

    def __init__(self, *, contact_email: str = "", lock_dir: str | Path | None = None,
                 interval: float = DEFAULT_INTERVAL_S, per_host: Mapping[str, float] | None = None,
                 retry: RetryPolicy | None = None, timeout: float = 60.0,
                 max_bytes: int = DEFAULT_MAX_BYTES, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep, limiter=None, tmp_dir: str | Path | None = None):
        """``lock_dir`` for the file limiter, or ``limiter`` (one with ``slot(url)``, e.g. a
        ``PostgresRateLimiter``); downloads land in ``tmp_dir`` (default: beside ``lock_dir``)."""
        if limiter is None and lock_dir is None:
            raise ConfigError("PoliteHttp needs a lock_dir or a limiter")
        self.limiter = limiter or HostRateLimiter(lock_dir, interval, per_host, sleep=sleep)
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = user_agent(contact_email)
        if tmp_dir is None:
            tmp_dir = Path(lock_dir).parent / "tmp" if lock_dir is not None else _local_scratch("figalign-dl")
        self.tmp_dir = Path(tmp_dir)
        self._sleep = sleep

    @classmethod
    def from_settings(cls, settings, **kwargs) -> "PoliteHttp":
        """The production client: the limiter the store calls for, temp files on local disk.

        A Postgres store means several machines may share the work: the per-host turns are
        then rows in it (``PostgresRateLimiter``). A SQLite store is one machine: lock files
        under the (local) data dir. Downloads are staged on local disk in either case (under
        the data dir when it is a folder, else the system temp dir) and then stored.

        ``FIGALIGN_HTTP_MIN_INTERVAL_S`` (unset in production) lowers the per-host interval
        for end-to-end tests and benchmarks against local replay servers, where arXiv's
        3 s would only add waiting; an explicit ``interval=`` argument still wins.
        """
        from figalign.location import is_url, join

        env_interval = min_interval_from_env()
        if env_interval is not None:
            kwargs.setdefault("interval", env_interval)
        if not is_url(settings.data_dir):
            kwargs.setdefault("tmp_dir", join(settings.data_dir, "tmp"))
        if settings.effective_database_url.startswith("postgresql") and "limiter" not in kwargs:
            from figalign.clients.ratelimit_pg import PostgresRateLimiter
            from figalign.store.db import get_engine

            kwargs["limiter"] = PostgresRateLimiter(get_engine(settings), kwargs.get("interval", DEFAULT_INTERVAL_S),
                                                    kwargs.get("per_host"), sleep=kwargs.get("sleep", time.sleep))
            return cls(contact_email=settings.contact_email, **kwargs)
        # SQLite with an object-store data dir: one machine still, its lock files on local disk
        lock_dir = _local_scratch("figalign-ratelimit") if is_url(settings.data_dir) else join(settings.data_dir,
                                                                                               "ratelimit")
        return cls(contact_email=settings.contact_email, lock_dir=lock_dir, **kwargs)

    def get(self, url: str, params: Mapping[str, str] | None = None, *, max_bytes: int | None = None) -> bytes:
        """The whole body of a GET, retried on transient trouble."""
        return self._with_retries(url, lambda: self._get_once(url, params, max_bytes or self.max_bytes))

    def download(self, url: str, *, md5: str | None = None, sha256: str | None = None,
                 max_bytes: int | None = None) -> Downloaded:
        """Stream a file to a temp file, verifying size and checksums; retried as a whole."""
        return self._with_retries(url, lambda: self._download_once(url, md5, sha256, max_bytes or self.max_bytes))

    def _with_retries(self, url: str, once: Callable):
        attempt = 0
        while True:
            with self.limiter.slot(url) as slot:
                try:
                    return once()
                except TransientError as exc:
                    if attempt >= self.retry.max_retries:
                        raise
                    slot.back_off(exc.retry_after)  # every worker waits, not only this one
                    delay = self.retry.delay(attempt, exc.retry_after)
                    log.info("GET %s: %s; retry %d in %.2fs", url, exc, attempt + 1, delay)
            self._sleep(delay)
            attempt += 1

    def _open(self, url: str, params: Mapping[str, str] | None) -> requests.Response:
        try:
            resp = self.session.get(url, params=params, timeout=self.timeout, stream=True)
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise TransientError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
        except requests.RequestException as exc:
            raise PermanentError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
        _raise_for_status(resp, url)
        return resp

    def _get_once(self, url: str, params, max_bytes: int) -> bytes:
        resp = self._open(url, params)
        chunks, total = [], 0
        with resp:
            for chunk in _iter_body(resp, url):
                total += len(chunk)
                _check_size(total, max_bytes, url)
                chunks.append(chunk)
        _check_length(resp, total, url)
        return b"".join(chunks)

    def _download_once(self, url: str, md5: str | None, sha256: str | None, max_bytes: int) -> Downloaded:
        resp = self._open(url, None)
        declared = resp.headers.get("Content-Length")
        if declared and declared.isdigit():
            _check_size(int(declared), max_bytes, url)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.tmp_dir, prefix=".dl-")
        h_md5, h_sha, total = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as out, resp:
                for chunk in _iter_body(resp, url):
                    total += len(chunk)
                    _check_size(total, max_bytes, url)
                    h_md5.update(chunk)
                    h_sha.update(chunk)
                    out.write(chunk)
            _check_length(resp, total, url)
            _verify(url, "md5", md5, h_md5.hexdigest())
            _verify(url, "sha256", sha256, h_sha.hexdigest())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Downloaded(Path(tmp), total, h_sha.hexdigest(), h_md5.hexdigest(),
                          resp.headers.get("Content-Type"), url)


def min_interval_from_env(env: Mapping[str, str] | None = None) -> float | None:
    """``FIGALIGN_HTTP_MIN_INTERVAL_S`` as seconds, or None when unset (the 3 s default applies)."""
    raw = (os.environ if env is None else env).get(MIN_INTERVAL_ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{MIN_INTERVAL_ENV} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{MIN_INTERVAL_ENV} must not be negative, got {raw!r}")
    return value


def _iter_body(resp: requests.Response, url: str):
    try:
        yield from resp.iter_content(CHUNK)
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError, requests.Timeout) as exc:
        raise TransientError(f"GET {url}: body cut short: {type(exc).__name__}") from exc


def _check_size(total: int, max_bytes: int, url: str) -> None:
    if total > max_bytes:
        raise BadInputError(f"GET {url}: body exceeds the size limit of {max_bytes} bytes")


def _check_length(resp: requests.Response, total: int, url: str) -> None:
    """A body shorter than its Content-Length is a cut connection, not a small file."""
    declared = resp.headers.get("Content-Length")
    encoded = resp.headers.get("Content-Encoding", "identity") not in ("", "identity")
    if declared and declared.isdigit() and not encoded and int(declared) != total:
        raise TransientError(f"GET {url}: truncated body ({total} of {declared} bytes)")


def _verify(url: str, algo: str, expected: str | None, actual: str) -> None:
    if expected and expected.lower() != actual:
        raise ChecksumMismatch(f"GET {url}: {algo} mismatch (expected {expected}, got {actual})")


def _raise_for_status(resp: requests.Response, url: str) -> None:
    status = resp.status_code
    if 200 <= status < 300:
        return
    resp.close()
    if status == 429 or status >= 500 or status == 408:
        raise TransientError(f"GET {url}: HTTP {status}", retry_after=parse_retry_after(resp.headers.get("Retry-After")))
    raise HttpStatusError(f"GET {url}: HTTP {status}", status=status, url=url)
