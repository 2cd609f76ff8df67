"""A local stand-in for arXiv / PMC: replays recorded responses and injects faults.

Responses are registered by path plus query (parameter order does not matter). Faults are
queued per route and consumed one per request, so "503 once, then the real page" is
``server.fault(route, Fault.status(503, retry_after=1))``. Every request is logged with its
arrival time so tests and the benchmark can count requests and measure their spacing.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit


def route_key(path: str, params: dict[str, str] | None = None) -> str:
    """Canonical key: path and sorted query parameters."""
    split = urlsplit(path)
    items = sorted(parse_qsl(split.query) + list((params or {}).items()))
    return split.path + ("?" + urlencode(items) if items else "")


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour, used for one request."""

    kind: str  # status | truncate | corrupt
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    @classmethod
    def status_code(cls, status: int, retry_after: float | None = None, body: bytes = b"") -> "Fault":
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
        return cls("status", status, headers, body)

    @classmethod
    def truncate(cls) -> "Fault":
        return cls("truncate")

    @classmethod
    def corrupt(cls) -> "Fault":
        """Serve the body with one byte flipped (an md5 mismatch)."""
        return cls("corrupt")

    @classmethod
    def replace(cls, body: bytes) -> "Fault":
        """Serve a different 200 body once (e.g. an OAI badResumptionToken error page)."""
        return cls("replace", 200, {}, body)


@dataclass(frozen=True)
class Hit:
    at: float
    path: str
    key: str
    user_agent: str


def send_reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
    """Answer with ``body`` and ``headers`` (plus Content-Length); a client that has already
    gone (timed out, killed) only closes the connection."""
    try:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        handler.close_connection = True


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 (port chosen by the OS), used as a context manager;
    subclasses give ``_handler()`` the request handler class."""

    def __init__(self):
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def _handler(self):
        raise NotImplementedError

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class ReplayServer(LocalServer):
    """Replays registered responses; faults and hits per route (see the module doc)."""

    def __init__(self):
        self.routes: dict[str, Reply] = {}
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)
        self.hits: list[Hit] = []
        super().__init__()

    def add(self, path: str, body: bytes | str, *, params: dict[str, str] | None = None, status: int = 200,
            headers: dict[str, str] | None = None) -> str:
        key = route_key(path, params)
        data = body.encode() if isinstance(body, str) else body
        self.routes[key] = Reply(status, data, dict(headers or {}))
        return key

    def fault(self, key: str, *faults: Fault) -> None:
        with self._lock:
            self.faults[key].extend(faults)

    def count(self, prefix: str = "") -> int:
        return sum(1 for h in self.hits if h.key.startswith(prefix))

    def _next(self, key: str) -> tuple[Reply | None, Fault | None]:
        with self._lock:
            queue = self.faults.get(key)
            fault = queue.popleft() if queue else None
            return self.routes.get(key), fault

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                return None

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                key = route_key(self.path)
                with server._lock:
                    server.hits.append(Hit(time.time(), urlsplit(self.path).path, key,
                                           self.headers.get("User-Agent", "")))
                reply, fault = server._next(key)
                if fault is not None and fault.kind == "status":
                    send_reply(self, fault.status, fault.body, fault.headers)
                    return
                if reply is None:
                    send_reply(self, 404, b"not found", {})
                    return
                if fault is not None and fault.kind == "truncate":
                    self._send_truncated(reply)
                    return
                body = reply.body
                if fault is not None and fault.kind == "corrupt" and body:
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                if fault is not None and fault.kind == "replace":
                    body = fault.body or b""
                send_reply(self, reply.status, body, reply.headers)

            def _send_truncated(self, reply: Reply) -> None:
                """Promise the full length, send half, drop the connection."""
                self.send_response(reply.status)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body[: max(1, len(reply.body) // 2)])
                self.wfile.flush()
                self.close_connection = True

        return Handler
