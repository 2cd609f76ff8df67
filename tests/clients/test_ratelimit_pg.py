"""The per-host rate limit kept in Postgres holds across processes (as across machines).

Two worker processes, each with its own engine and its own ``PostgresRateLimiter`` (they
share nothing but the database, as two machines would), send requests to one replay
server; the server's own arrival times must be ``interval`` apart. Without the shared row
(each process limiting itself) the two would interleave at half the interval.
"""

from __future__ import annotations

import multiprocessing
import time

import pytest
from sqlalchemy import text

from figalign.clients.http import PoliteHttp, RetryPolicy
from figalign.clients.ratelimit_pg import PostgresRateLimiter
from figalign.config import Settings
from figalign.store.db import make_engine
from figalign.store.migrate import upgrade
from tests.conftest import FIXTURES
from tests.servers.replay import ReplayServer

pytestmark = pytest.mark.postgres
PAGE = (FIXTURES / "arxiv_oai" / "ListRecords_arXiv_set-physics-hep-ex_2017-12-14.xml").read_bytes()
INTERVAL = 0.25


def _worker(url: str, target: str, n: int, start_at: float) -> None:
    """One 'machine': its own engine and limiter, started at the same moment as the other."""
    engine = make_engine(url)
    http = PoliteHttp(limiter=PostgresRateLimiter(engine, INTERVAL), retry=RetryPolicy(max_retries=0), timeout=5)
    time.sleep(max(0.0, start_at - time.time()))
    for _ in range(n):
        http.get(target)
    engine.dispose()


@pytest.fixture
def migrated_pg(pg_url):
    upgrade(pg_url)
    return pg_url


def test_interval_holds_across_two_processes(migrated_pg):
    with ReplayServer() as server:
        key = server.add("/oai", PAGE)
        ctx = multiprocessing.get_context("spawn")
        start_at = time.time() + 3.0  # both past their imports before the first request
        procs = [ctx.Process(target=_worker, args=(migrated_pg, server.url + "/oai", 4, start_at)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0, 0]
        times = sorted(h.at for h in server.hits if h.key == key)
    assert len(times) == 8
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= INTERVAL * 0.95, gaps


def test_a_dead_holder_frees_the_host_and_retry_after_is_booked(migrated_pg):
    engine = make_engine(migrated_pg)
    limiter = PostgresRateLimiter(engine, 0.0)
    with engine.begin() as conn:  # a worker that died holding the host, its claim lapsed
        conn.execute(text("INSERT INTO rate_limit_slots (host, next_at, holder, held_until) "
                          "VALUES ('example.org', now() - interval '1 minute', 'dead:1', now() - interval '1 s')"))
    started = time.monotonic()
    with limiter.slot("https://example.org/x") as slot:
        slot.back_off(30.0)  # the server said Retry-After: 30
    assert time.monotonic() - started < 5
    with engine.connect() as conn:
        holder, ahead = conn.execute(text("SELECT holder, extract(epoch FROM next_at - now()) "
                                          "FROM rate_limit_slots WHERE host = 'example.org'")).one()
    assert holder is None and 25 < ahead <= 31
    engine.dispose()


def test_the_store_picks_the_limiter(migrated_pg, tmp_path):
    from figalign.clients.http import HostRateLimiter

    pg = PoliteHttp.from_settings(Settings(data_dir="s3://bucket/prefix", database_url=migrated_pg))
    assert isinstance(pg.limiter, PostgresRateLimiter)
    assert "s3:" not in str(pg.tmp_dir)  # downloads are staged on local disk, not under the URL
    local = PoliteHttp.from_settings(Settings(data_dir=str(tmp_path / "data")))
    assert isinstance(local.limiter, HostRateLimiter)
    assert local.limiter.lock_dir == tmp_path / "data" / "ratelimit"
    # a SQLite store beside an s3:// data dir (one machine): lock files on local temp disk
    mixed = PoliteHttp.from_settings(Settings(data_dir="s3://bucket/prefix",
                                              database_url=f"sqlite:///{tmp_path / 's.db'}"))
    assert isinstance(mixed.limiter, HostRateLimiter) and "s3:" not in str(mixed.limiter.lock_dir)
