"""PoliteHttp against the replay server: retries, Retry-After, permanent errors, limits."""

from __future__ import annotations

import hashlib
import threading

import pytest

from figalign.clients.http import (
    ChecksumMismatch,
    HostRateLimiter,
    HttpStatusError,
    PoliteHttp,
    RetryPolicy,
    user_agent,
)
from figalign.clients.retry_after import parse_retry_after
from figalign.errors import BadInputError, TransientError
from tests.conftest import FIXTURES
from tests.servers.replay import Fault, ReplayServer

PAGE = (FIXTURES / "arxiv_oai" / "ListRecords_arXiv_set-physics-hep-ex_2017-12-14.xml").read_bytes()


class Sleeps:
    """Records requested sleeps and sleeps a tiny real amount so time still moves."""

    def __init__(self):
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_http(tmp_path, interval=0.0, retries=3, sleep=None, **kw) -> PoliteHttp:
    return PoliteHttp(contact_email="ops@example.org", lock_dir=tmp_path / "rl", interval=interval,
                      retry=RetryPolicy(max_retries=retries, base_s=0.01, cap_s=0.05),
                      sleep=sleep or Sleeps(), timeout=5, **kw)


@pytest.fixture
def server():
    with ReplayServer() as srv:
        yield srv


def test_user_agent_names_tool_version_and_contact(server, tmp_path):
    key = server.add("/oai", PAGE)
    make_http(tmp_path).get(server.url + "/oai")
    assert server.hits[0].user_agent == "figalign/0.1.0 (mailto:ops@example.org)"
    assert user_agent("") == "figalign/0.1.0"
    assert server.count(key) == 1


def test_503_with_retry_after_is_retried_after_the_servers_delay(server, tmp_path):
    key = server.add("/oai", PAGE)
    server.fault(key, Fault.status_code(503, retry_after=7))
    sleeps = Sleeps()
    body = make_http(tmp_path, sleep=sleeps).get(server.url + "/oai")
    assert body == PAGE
    assert server.count(key) == 2
    assert max(sleeps.calls) >= 7  # the server's 7 s, not our 0.05 s cap


def test_retries_are_bounded_and_end_transient(server, tmp_path):
    key = server.add("/oai", PAGE)
    server.fault(key, *[Fault.status_code(500)] * 10)
    with pytest.raises(TransientError):
        make_http(tmp_path, retries=2).get(server.url + "/oai")
    assert server.count(key) == 3


@pytest.mark.parametrize("status", [403, 404, 410])
def test_permanent_statuses_are_not_retried(server, tmp_path, status):
    key = server.add("/x", b"ok")
    server.fault(key, Fault.status_code(status))
    with pytest.raises(HttpStatusError) as info:
        make_http(tmp_path).get(server.url + "/x")
    assert info.value.status == status
    assert server.count(key) == 1


def test_truncated_body_is_detected_and_retried(server, tmp_path):
    key = server.add("/oai", PAGE)
    server.fault(key, Fault.truncate())
    assert make_http(tmp_path).get(server.url + "/oai") == PAGE
    assert server.count(key) == 2


def test_download_verifies_md5_and_retries_a_corrupt_transfer(server, tmp_path):
    key = server.add("/f.xml", PAGE)
    server.fault(key, Fault.corrupt())
    got = make_http(tmp_path).download(server.url + "/f.xml", md5=hashlib.md5(PAGE).hexdigest())
    assert got.path.read_bytes() == PAGE
    assert got.sha256 == hashlib.sha256(PAGE).hexdigest()
    assert server.count(key) == 2


def test_persistent_md5_mismatch_fails_and_leaves_no_temp_file(server, tmp_path):
    server.add("/f.xml", PAGE)
    http = make_http(tmp_path, retries=1)
    with pytest.raises(ChecksumMismatch):
        http.download(server.url + "/f.xml", md5="0" * 32)
    assert not list(http.tmp_dir.iterdir())


def test_size_limit_is_a_clear_permanent_error(server, tmp_path):
    server.add("/big", PAGE)
    with pytest.raises(BadInputError, match="size limit"):
        make_http(tmp_path, max_bytes=100).download(server.url + "/big")


def test_connection_refused_is_transient(tmp_path):
    with pytest.raises(TransientError):
        make_http(tmp_path, retries=0).get("http://127.0.0.1:9/none")


def test_retry_after_http_date():
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412400.0) == pytest.approx(80, abs=1)
    assert parse_retry_after("soon") is None
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00") is None  # no zone: not an HTTP date


def test_every_client_shares_the_one_retry_after_parser():
    import httpx2

    from figalign.recaption.client import _retry_after

    when = "Wed, 21 Oct 2015 07:28:00 GMT"
    response = httpx2.Response(429, headers={"Retry-After": when})
    assert _retry_after(response) == parse_retry_after(when) == 0.0  # the date form, not ignored


def test_limiter_spaces_threads_sharing_the_lock_dir(server, tmp_path):
    """Four threads, four separate limiter objects (as four processes would have): spaced."""
    key = server.add("/oai", PAGE)
    interval = 0.05

    def worker():
        http = PoliteHttp(lock_dir=tmp_path / "rl", interval=interval, timeout=5)
        for _ in range(3):
            http.get(server.url + "/oai")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times = sorted(h.at for h in server.hits if h.key == key)
    assert len(times) == 12
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= interval * 0.9


def test_limiter_per_host_override(tmp_path):
    lim = HostRateLimiter(tmp_path, 3.0, per_host={"pmc-oa-opendata.s3.amazonaws.com": 0.2})
    assert lim.interval_for("https://pmc-oa-opendata.s3.amazonaws.com/x") == 0.2
    assert lim.interval_for("https://oaipmh.arxiv.org/oai") == 3.0
