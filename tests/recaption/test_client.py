"""VllmClient against the local OpenAI-compatible server: shape, retries, faults, concurrency."""

from __future__ import annotations

import asyncio
import time
from dataclasses import FrozenInstanceError, replace

import pytest

from figalign.config import Settings
from figalign.errors import ConfigError, PermanentError, TransientError
from figalign.recaption.client import ContextLengthError, VllmClient, VllmConfig, classify
from figalign.recaption.prompt import ContextIn, PromptOptions, RecaptionInput, build_request, request_image_url
from tests.recaption.store_helpers import MODEL, plot_png
from tests.servers.openai_server import CONTEXT_MESSAGE, OpenAIServer, ServerState


@pytest.fixture
def server():
    with OpenAIServer(ServerState(model=MODEL, hang_s=2.0, retry_after="2")) as srv:
        yield srv


def _inp() -> RecaptionInput:
    contexts = [ContextIn(f"Figure 1 sentence {i}: " + "detail " * 60, i) for i in range(12)]
    return RecaptionInput(1, "Title", "Abstract " * 200, "Figure 1", "Caption.", plot_png(), contexts)


def _request(model: str = MODEL) -> dict:
    return build_request(_inp(), model, PromptOptions(max_tokens=256))


def _shorter(request: dict):
    calls = []

    def shorten():
        calls.append(1)
        return build_request(_inp(), request["model"], PromptOptions(max_tokens=256),
                             image_url=request_image_url(request), shrink=0.25)
    return shorten, calls


class Sleeps:
    """Records back-off delays instead of waiting them out."""

    def __init__(self):
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def run(server, coro_fn, **config):
    sleeps = Sleeps()
    cfg = VllmConfig(server.base_url, MODEL, **{"timeout_s": 5.0, "backoff_base_s": 0.5, **config})

    async def main():
        async with VllmClient(cfg, sleep=sleeps) as client:
            return await coro_fn(client)
    return asyncio.run(main()), sleeps


def test_success_returns_text_usage_and_request_id(server):
    result, sleeps = run(server, lambda c: c.complete(_request()))
    assert result.text.startswith("The figure is a line plot")
    assert result.finish_reason == "stop" and result.attempts == 1 and not result.shortened
    assert result.prompt_tokens > 256 and result.completion_tokens > 0
    assert result.request_id == "req-0" and result.endpoint == f"{server.base_url}/chat/completions"
    assert result.latency_ms > 0
    assert server.state.shape_errors == [] and len(server.state.requests) == 1
    sent = server.state.requests[0]
    assert sent["max_tokens"] == 256 and sent["model"] == MODEL
    assert sent["messages"][1]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert sleeps.delays == []


def test_429_honours_retry_after(server):
    server.state.faults.extend(["429"])
    result, sleeps = run(server, lambda c: c.complete(_request()))
    assert result.attempts == 2 and sleeps.delays == [2.0]


def test_500_is_retried_with_jittered_backoff(server):
    server.state.faults.extend(["500", "500"])
    result, sleeps = run(server, lambda c: c.complete(_request()))
    assert result.attempts == 3 and len(sleeps.delays) == 2
    assert 0 <= sleeps.delays[0] <= 0.5 and 0 <= sleeps.delays[1] <= 1.0


def test_hang_past_timeout_is_retried(server):
    server.state.faults.append("hang")
    started = time.monotonic()
    result, sleeps = run(server, lambda c: c.complete(_request()), timeout_s=0.4)
    assert result.attempts == 2 and len(sleeps.delays) == 1
    assert time.monotonic() - started < 1.9  # did not wait for the hung response


def test_transient_errors_give_up_after_max_retries(server):
    server.state.faults.extend(["500"] * 5)
    with pytest.raises(TransientError, match="HTTP 500"):
        run(server, lambda c: c.complete(_request()), max_retries=2)
    assert len(server.state.requests) == 3


def test_length_finish_reason_is_returned_not_raised(server):
    server.state.faults.append("length")
    result, _ = run(server, lambda c: c.complete(_request()))
    assert result.finish_reason == "length" and result.attempts == 1


def test_malformed_json_is_permanent_and_not_retried(server):
    server.state.faults.append("malformed")
    with pytest.raises(PermanentError, match="malformed response"):
        run(server, lambda c: c.complete(_request()))
    assert len(server.state.requests) == 1


def test_context_length_400_is_retried_once_with_shorter_context(server):
    server.state.faults.append("context")
    request = _request()
    shorten, calls = _shorter(request)
    result, sleeps = run(server, lambda c: c.complete(request, shorten=shorten))
    assert calls == [1] and result.shortened and result.attempts == 2 and sleeps.delays == []
    first, second = server.state.requests
    assert len(second["messages"][1]["content"][1]["text"]) < len(first["messages"][1]["content"][1]["text"]) / 2
    assert second["messages"][1]["content"][0] == first["messages"][1]["content"][0]  # same image


def test_context_length_twice_is_permanent(server):
    server.state.faults.extend(["context", "context"])
    request = _request()
    shorten, calls = _shorter(request)
    with pytest.raises(ContextLengthError, match="maximum context length is"):
        run(server, lambda c: c.complete(request, shorten=shorten))
    assert calls == [1] and len(server.state.requests) == 2


def test_server_context_limit_is_met_by_the_shorter_prompt(server):
    request = _request()
    text_chars = sum(len(p.get("text", "")) for m in request["messages"]
                     for p in (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}]))
    server.state.max_prompt_chars = text_chars - 100
    shorten, _ = _shorter(request)
    result, _ = run(server, lambda c: c.complete(request, shorten=shorten))
    assert result.shortened and result.finish_reason == "stop"


def test_unknown_model_is_permanent_not_context(server):
    with pytest.raises(PermanentError) as info:
        run(server, lambda c: c.complete(_request(model="other-model")))
    assert not isinstance(info.value, ContextLengthError) and "HTTP 404" in str(info.value)


def test_semaphore_bounds_requests_in_flight(server):
    server.state.latency_s = 0.15

    async def many(client):
        return await asyncio.gather(*(client.complete(_request()) for _ in range(9)))
    started = time.monotonic()
    results, _ = run(server, many, max_in_flight=3)
    elapsed = time.monotonic() - started
    assert len(results) == 9 and server.state.peak == 3
    assert elapsed >= 3 * 0.15  # three waves


def test_vllm_phrasings_classify_as_context_length():
    import httpx2
    import openai

    for message in (CONTEXT_MESSAGE.format(limit=4096, used=9000),
                    "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens "
                    "(4000 in the messages, 1000 in the completion). Please reduce the length of the messages "
                    "or completion."):
        response = httpx2.Response(400, request=httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions"))
        exc = openai.BadRequestError(message, response=response, body={"error": {"message": message}})
        assert isinstance(classify(exc), ContextLengthError)


def test_config_from_settings():
    with pytest.raises(ConfigError):
        VllmConfig.from_settings(Settings())
    with pytest.raises(ConfigError):
        VllmConfig.from_settings(replace(Settings(), vllm_base_url="http://127.0.0.1:1/v1"))
    cfg = VllmConfig.from_settings(replace(Settings(), vllm_base_url="http://127.0.0.1:1/v1/", vllm_model="m"),
                                   max_in_flight=4)
    assert (cfg.base_url, cfg.model, cfg.api_key, cfg.max_in_flight) == ("http://127.0.0.1:1/v1", "m", "EMPTY", 4)
    with pytest.raises(FrozenInstanceError):
        cfg.model = "other"  # type: ignore[misc]


def test_sends_the_request_body_unchanged_with_the_sdk_headers(server):
    """The body reaches the server as built (the SDK's transform changes nothing), with the key as bearer."""
    request = _request()
    run(server, lambda c: c.complete(request), api_key="sk-test")
    (headers,), (body,) = server.state.headers, server.state.requests
    assert body == request
    assert headers["authorization"] == "Bearer sk-test" and headers["x-stainless-retry-count"] == "0"
    assert headers["content-type"] == "application/json" and "openai/python" in headers["user-agent"].lower()


def test_connection_refused_is_transient():
    async def main():
        async with VllmClient(VllmConfig("http://127.0.0.1:1/v1", MODEL, max_retries=0)) as client:
            await client.complete(_request())
    with pytest.raises(TransientError, match="APIConnectionError"):
        asyncio.run(main())


def test_max_in_flight_requests_share_one_wave(server):
    """The connection pool carries max_in_flight requests at once."""
    server.state.latency_s = 0.2

    async def many(client):
        return await asyncio.gather(*(client.complete(_request()) for _ in range(20)))
    results, _ = run(server, many, max_in_flight=20)
    # all 20 were in flight at the server at once: one wave, not several (a wall-clock bound
    # on the same thing also timed client start-up and failed on a loaded machine)
    assert len(results) == 20 and server.state.peak == 20


def test_server_data_url_check_is_bounded_but_rejects_bad_payloads():
    import base64

    from tests.servers.openai_server import is_data_url

    payload = base64.b64encode(bytes(range(256)) * 300).decode()
    assert is_data_url("data:image/png;base64," + payload) and is_data_url("data:image/jpeg;base64,QUJD")
    for bad in ("data:image/gif;base64,QUJD", "data:image/png;base64,", "data:image/png;base64,QU JD",
                "data:image/png;base64," + payload + "!", "data:image/png;base64," + payload[:9000] + "é" + payload,
                "https://example.org/a.png", None):
        assert not is_data_url(bad), bad
