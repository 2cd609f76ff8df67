"""Async client for a vLLM OpenAI-compatible chat-completions endpoint.

Errors are classified here, where they arise: connection failures, timeouts, 429 and
5xx are ``TransientError`` (retried with exponential back-off and full jitter, honouring
``Retry-After``); a 400 saying the prompt exceeds the model's context length is retried
once with a shorter prompt; every other failure is a ``PermanentError`` for that figure.
A semaphore bounds the requests in flight from one process; the Airflow pool ``vllm``
bounds how many such processes run at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx2
import openai

from figalign.clients.retry_after import parse_retry_after
from figalign.config import Settings
from figalign.errors import ConfigError, PermanentError, TransientError

log = logging.getLogger(__name__)

# vLLM's wordings, old and new: "This model's maximum context length is N tokens. However, you
# requested M tokens ..." / "... However, your request has M input tokens. Please reduce ...".
_CONTEXT_LENGTH = re.compile(r"maximum (?:context|prompt) length is \d+ tokens|context_length_exceeded", re.I)


class ContextLengthError(PermanentError):
    """The prompt plus ``max_tokens`` does not fit the model's context window."""


@dataclass(frozen=True)
class VllmConfig:
    """Where and how to call the model; built from Settings (env or Airflow connection)."""

    base_url: str
    model: str
    api_key: str = "EMPTY"  # vLLM accepts any key unless started with --api-key
    timeout_s: float = 120.0
    max_in_flight: int = 16
    max_retries: int = 4
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> "VllmConfig":
        """Build from Settings; a missing base URL or model is a ConfigError (the batch cannot run)."""
        if not settings.vllm_base_url:
            raise ConfigError("no vLLM endpoint configured (FIGALIGN_VLLM_BASE_URL or connection figalign_vllm)")
        if not (overrides.get("model") or settings.vllm_model):
            raise ConfigError("no vLLM model configured (FIGALIGN_VLLM_MODEL or the connection's extra 'model')")
        values: dict[str, Any] = {
            "base_url": settings.vllm_base_url.rstrip("/"),
            "model": settings.vllm_model,
            "api_key": settings.vllm_api_key or "EMPTY",
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class CompletionResult:
    """One answer with what is needed to reproduce and audit it."""

    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float
    request_id: str | None
    model: str
    endpoint: str
    attempts: int
    shortened: bool
    request: dict[str, Any]


def _retry_after(response: httpx2.Response | None) -> float | None:
    """Seconds from the response's Retry-After header (seconds or an HTTP date)."""
    return None if response is None else parse_retry_after(response.headers.get("retry-after"))


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if body.get("message"):
            return str(body["message"])
    return str(exc)


def classify(exc: Exception) -> Exception:
    """Map an openai/httpx/parse exception to TransientError, ContextLengthError or PermanentError."""
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return TransientError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, openai.APIStatusError):
        status, message = exc.status_code, _error_message(exc)
        if status == 429 or status >= 500 or status == 408:
            return TransientError(f"HTTP {status}: {message}", retry_after=_retry_after(exc.response))
        if status == 400 and _CONTEXT_LENGTH.search(message):
            return ContextLengthError(f"HTTP 400: {message}")
        return PermanentError(f"HTTP {status}: {message}")
    if isinstance(exc, (openai.APIResponseValidationError, json.JSONDecodeError, UnicodeDecodeError)):
        return PermanentError(f"malformed response: {type(exc).__name__}: {str(exc)[:300]}")
    return PermanentError(f"{type(exc).__name__}: {exc}")


class VllmClient:
    """Send chat requests with bounded concurrency and classified, retried errors.

    Use as ``async with VllmClient(config) as client``. Requests go through the SDK's public
    ``chat.completions.with_raw_response.create`` (the raw response gives the request id
    header and the body to check ourselves); the SDK's own retries are off (``max_retries=0``)
    because ours honour the classification, the server's Retry-After and the context-length
    retry. ``sleep`` and ``rng`` are injectable so tests can observe back-off delays without
    waiting them out.
    """

    def __init__(self, config: VllmConfig, *, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 rng: random.Random | None = None):
        self.config = config
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._semaphore = asyncio.Semaphore(config.max_in_flight)
        http = openai.DefaultAsyncHttpxClient(limits=httpx2.Limits(
            max_connections=config.max_in_flight, max_keepalive_connections=config.max_in_flight))
        self._openai = openai.AsyncOpenAI(base_url=config.base_url, api_key=config.api_key, timeout=config.timeout_s,
                                          max_retries=0, http_client=http)

    async def __aenter__(self) -> "VllmClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._openai.close()

    @property
    def endpoint(self) -> str:
        return f"{self.config.base_url}/chat/completions"

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Delay before retry ``attempt`` (1-based): the server's hint, else full-jitter exponential."""
        if retry_after is not None:
            return min(retry_after, self.config.backoff_max_s)
        ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** (attempt - 1))
        return self._rng.uniform(0, ceiling)

    async def complete(self, request: dict[str, Any], *,
                       shorten: Callable[[], dict[str, Any]] | None = None) -> CompletionResult:
        """Send ``request``; retry transient errors; on a context-length 400 retry once with ``shorten()``."""
        shortened = False
        attempts = 0
        while True:
            try:
                result, used = await self._with_retries(request, attempts)
            except ContextLengthError:
                if shorten is None or shortened:
                    raise
                log.info("context too long; retrying once with a shorter prompt")
                request, shortened = shorten(), True
                attempts += 1
                continue
            return replace(result, attempts=used, shortened=shortened)

    async def _with_retries(self, request: dict[str, Any], attempts: int) -> tuple[CompletionResult, int]:
        retry = 0
        while True:
            attempts += 1
            try:
                return await self._send(request, attempts), attempts
            except TransientError as exc:
                retry += 1
                if retry > self.config.max_retries:
                    raise
                delay = self.backoff(retry, exc.retry_after)
                log.info("transient error (%s); retry %d in %.2fs", exc, retry, delay)
                await self._sleep(delay)

    async def _send(self, request: dict[str, Any], attempt: int) -> CompletionResult:
        """One exchange under the semaphore (back-off sleeps do not hold a slot); failures go through ``classify``."""
        async with self._semaphore:
            started = time.perf_counter()
            try:
                raw = await self._openai.chat.completions.with_raw_response.create(**request)
                payload = json.loads(raw.content)
            except (openai.OpenAIError, json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise classify(exc) from exc
            latency_ms = (time.perf_counter() - started) * 1000
        return self._result(payload, raw.headers, latency_ms, attempt, request)

    def _result(self, payload: Any, headers: Any, latency_ms: float, attempt: int,
                request: dict[str, Any]) -> CompletionResult:
        """Pick the fields we keep from a chat.completion object; anything else is malformed."""
        try:
            choice = payload["choices"][0]
            message = choice.get("message") or {}
            usage = payload.get("usage") or {}
            text = message.get("content") or ""
            finish_reason = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise PermanentError(f"malformed response: {type(exc).__name__}: {exc}") from exc
        if not isinstance(text, str):
            raise PermanentError("malformed response: message content is not text")
        return CompletionResult(
            text=text,
            finish_reason=finish_reason,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            latency_ms=latency_ms,
            request_id=headers.get("x-request-id") or payload.get("id"),
            model=payload.get("model") or request.get("model", self.config.model),
            endpoint=self.endpoint,
            attempts=attempt,
            shortened=False,
            request=request,
        )
