"""A local stand-in for vLLM's OpenAI-compatible ``POST /v1/chat/completions``.

It answers on 127.0.0.1 (port 0: the OS picks one), checks the request shape the way the
recaption client must send it (model, messages with an ``image_url`` data URL, integer
``max_tokens``) and injects the faults the client must survive. Responses copy vLLM's
shapes: a ``chat.completion`` object with ``choices[].message``, ``finish_reason``,
``usage`` and an ``X-Request-Id`` header; errors as ``{"error": {"message", "type",
"param", "code"}}`` with vLLM's wording for a prompt that exceeds the context length.

Faults are queued in ``server.faults`` and consumed one per request, in order:
``429`` (with ``Retry-After``), ``500``, ``hang`` (sleep past the client's timeout),
``length`` (finish_reason=length), ``malformed`` (invalid JSON body), ``context``
(vLLM's 400 for a too-long prompt), ``refusal``, ``empty``. Independently,
``max_prompt_chars`` makes the server answer the context-length 400 whenever the text
of the request is longer, as a real server with a small ``--max-model-len`` would.

Run as a script (``python tests/servers/openai_server.py --latency 0.3``) it prints its
port and serves until killed, so a benchmark can keep it in a separate process.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_REPLY = (
    "The figure is a line plot of fluorescence intensity (arbitrary units, vertical axis) against time in "
    "minutes (horizontal axis) for treated and control cells, shown in the legend as solid and dashed lines. "
    "Treated cells rise steadily while controls stay flat, which supports the paper's claim that the treatment "
    "activates the reporter within the first hour."
)
CONTEXT_MESSAGE = ("This model's maximum context length is {limit} tokens. However, your request has {used} "
                   "input tokens. Please reduce the length of the input messages.")
_DATA_URL_PREFIX = re.compile(r"data:image/(png|jpeg);base64,")
_BASE64 = re.compile(r"[A-Za-z0-9+/=]+")
# The base64 payload is checked in full up to 2 x this many characters, beyond that at both
# ends (plus ASCII-only throughout, an O(1) check): a regex over every byte of each ~86 KB body
# was a third of this stand-in's CPU per request, which shares the cores with the client.
_BASE64_SAMPLE = 4096


def is_data_url(url: Any) -> bool:
    """Whether ``url`` looks like a base64 PNG/JPEG data URL (bounded check, see _BASE64_SAMPLE)."""
    if not isinstance(url, str):
        return False
    prefix = _DATA_URL_PREFIX.match(url)
    if prefix is None:
        return False
    payload = url[prefix.end():]
    if not payload or not payload.isascii():
        return False
    if len(payload) <= 2 * _BASE64_SAMPLE:
        return _BASE64.fullmatch(payload) is not None
    return (_BASE64.fullmatch(payload, 0, _BASE64_SAMPLE) is not None
            and _BASE64.fullmatch(payload, len(payload) - _BASE64_SAMPLE) is not None)


@dataclass
class ServerState:
    """What the server does next and what it has seen (inspected by tests)."""

    model: str = "test-vlm"
    latency_s: float = 0.0
    hang_s: float = 3.0
    retry_after: str = "2"
    reply: str = DEFAULT_REPLY
    max_prompt_chars: int | None = None
    record: bool = True
    faults: collections.deque = field(default_factory=collections.deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)  # of each recorded request, names lower-cased
    shape_errors: list[str] = field(default_factory=list)
    count: itertools.count = field(default_factory=itertools.count)
    active: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self) -> None:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)

    def leave(self) -> None:
        with self.lock:
            self.active -= 1

    def next_fault(self) -> str | None:
        with self.lock:
            return self.faults.popleft() if self.faults else None


def check_shape(body: Any, model: str) -> str | None:
    """Why a request body is not what the recaption client must send (None when it is)."""
    if not isinstance(body, dict):
        return "body is not a JSON object"
    if body.get("model") != model:
        return f"model {body.get('model')!r} is not served"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] <= 0:
        return "max_tokens missing or not a positive integer"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages missing"
    images = [p for m in messages if isinstance(m.get("content"), list) for p in m["content"]
              if p.get("type") == "image_url"]
    if len(images) != 1:
        return f"expected one image_url part, got {len(images)}"
    if not is_data_url(images[0].get("image_url", {}).get("url", "")):
        return "image_url is not a base64 PNG/JPEG data URL"
    return None


def prompt_chars(body: dict[str, Any]) -> int:
    total = 0
    for message in body["messages"]:
        content = message["content"]
        total += len(content) if isinstance(content, str) else sum(len(p.get("text", "")) for p in content)
    return total


def completion(state: ServerState, body: dict[str, Any], text: str, finish_reason: str) -> dict[str, Any]:
    prompt_tokens = prompt_chars(body) // 4 + 256  # ~256 tokens for a small image
    completion_tokens = len(text) // 4
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": state.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "tool_calls": []},
                     "logprobs": None, "finish_reason": finish_reason, "stop_reason": None}],
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens,
                  "completion_tokens": completion_tokens, "prompt_tokens_details": None},
        "prompt_logprobs": None,
    }


def error_body(message: str, err_type: str, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": err_type, "param": None, "code": code}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    # TCP_NODELAY, as uvicorn (vLLM's server) sets it: with Nagle on, a response written in two
    # pieces (headers, then body) waits for the client's delayed ACK, ~40 ms added to every request.
    disable_nagle_algorithm = True
    server: "OpenAIServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base class signature
        """Quiet: tests and benchmarks would drown in access logs."""

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._json(404, error_body(f"no route {self.path}", "NotFoundError", 404))
            return
        state = self.server.state
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self._json(400, error_body("request body is not JSON", "BadRequestError", 400))
            return
        shape = check_shape(body, state.model)
        if state.record:
            with state.lock:
                state.requests.append(body)
                state.headers.append({k.lower(): v for k, v in self.headers.items()})
                if shape:
                    state.shape_errors.append(shape)
        if shape:
            status = 404 if shape.endswith("not served") else 400
            self._json(status, error_body(shape, "NotFoundError" if status == 404 else "BadRequestError", status))
            return
        state.enter()
        try:
            self._answer(state, body, state.next_fault())
        finally:
            state.leave()

    def _answer(self, state: ServerState, body: dict[str, Any], fault: str | None) -> None:
        if state.latency_s:
            time.sleep(state.latency_s)
        if fault == "hang":
            time.sleep(state.hang_s)
        if fault == "429":
            self._json(429, error_body("rate limited", "RateLimitError", 429), {"Retry-After": state.retry_after})
        elif fault == "500":
            self._json(500, error_body("engine crashed", "InternalServerError", 500))
        elif fault == "malformed":
            self._send(200, b'{"id": "chatcmpl-x", "choices": [', "application/json")
        elif fault == "context" or (state.max_prompt_chars and prompt_chars(body) > state.max_prompt_chars):
            limit = (state.max_prompt_chars or 4000) // 4
            message = CONTEXT_MESSAGE.format(limit=limit, used=prompt_chars(body) // 4 + 256)
            self._json(400, error_body(message, "BadRequestError", 400))
        else:
            text, finish = {"length": (state.reply[: len(state.reply) // 2], "length"),
                            "refusal": ("I'm sorry, but I can't help with describing this image.", "stop"),
                            "empty": ("", "stop")}.get(fault or "", (state.reply, "stop"))
            self._json(200, completion(state, body, text, finish))

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Request-Id", f"req-{next(self.server.state.count)}")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a "hang" past its timeout)


class OpenAIServer(ThreadingHTTPServer):
    """ThreadingHTTPServer bound to 127.0.0.1 with a ServerState; use as a context manager."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, state: ServerState | None = None, port: int = 0):
        super().__init__(("127.0.0.1", port), Handler)
        self.state = state or ServerState()
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def start(self) -> "OpenAIServer":
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> "OpenAIServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.3)
    ap.add_argument("--model", default="test-vlm")
    ap.add_argument("--no-record", action="store_true", help="do not keep request bodies (benchmarks)")
    args = ap.parse_args(argv)
    server = OpenAIServer(ServerState(model=args.model, latency_s=args.latency, record=not args.no_record))
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        return 0
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
