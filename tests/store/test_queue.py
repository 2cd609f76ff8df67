"""The claim/lease queue: exclusive claims, expired leases, bounded attempts."""

from __future__ import annotations

import datetime as dt
import threading
import time

from sqlalchemy import select, update

from figalign.store.db import make_engine, session_scope
from figalign.store.models import StageRun
import pytest

from figalign.store.queue import LeaseLost, RunContext, claim_batch, enqueue, finish


def _fill(engine, n: int, max_attempts: int = 3) -> None:
    with session_scope(engine) as s:
        assert enqueue(s, "parse", "paper", [str(i) for i in range(n)], max_attempts=max_attempts) == n


def test_enqueue_is_idempotent(engine):
    _fill(engine, 5)
    with session_scope(engine) as s:
        assert enqueue(s, "parse", "paper", ["0", "1", "9"]) == 1
        assert len(s.scalars(select(StageRun)).all()) == 6


def _worker(url: str, name: str, got: list, errors: list, start: threading.Barrier | None = None) -> None:
    engine = make_engine(url)
    ctx = RunContext(owner=name)
    try:
        if start is not None:
            start.wait(60)  # all claim at once: otherwise the first thread can drain the queue alone
        while True:
            with session_scope(engine) as s:
                batch = claim_batch(s, "parse", 7, ctx=ctx)
            if not batch:
                return
            got.extend(item.entity_id for item in batch)
            time.sleep(0.005)  # the work between claim and finish, so workers interleave
            with session_scope(engine) as s:
                for item in batch:
                    finish(s, item, "done")
    except Exception as exc:  # surfaced by the assertion below
        errors.append(exc)
    finally:
        engine.dispose()


def test_concurrent_workers_never_claim_the_same_item(engine, db_url):
    _fill(engine, 300)
    results: list[list[str]] = [[] for _ in range(4)]
    errors: list[Exception] = []
    start = threading.Barrier(4)
    threads = [threading.Thread(target=_worker, args=(db_url, f"w{i}", results[i], errors, start)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    claimed = [x for r in results for x in r]
    assert len(claimed) == len(set(claimed)) == 300
    assert sum(1 for r in results if r) >= 2, "work should spread over several workers"
    with session_scope(engine) as s:
        assert {r.status for r in s.scalars(select(StageRun))} == {"done"}


def _expire_leases(engine) -> None:
    past = dt.datetime(2000, 1, 1)
    with session_scope(engine) as s:
        s.execute(update(StageRun).values(lease_expires_at=past))


def test_expired_lease_is_reclaimed_by_another_worker(engine):
    _fill(engine, 1)
    with session_scope(engine) as s:
        first = claim_batch(s, "parse", 10, ctx=RunContext("dead-worker"))
    with session_scope(engine) as s:
        assert claim_batch(s, "parse", 10, ctx=RunContext("w2")) == []  # lease still held
    _expire_leases(engine)
    with session_scope(engine) as s:
        again = claim_batch(s, "parse", 10, ctx=RunContext("w2"))
    assert [i.entity_id for i in again] == [first[0].entity_id]
    assert again[0].attempts == 2
    with session_scope(engine) as s:
        # the dead worker comes back late: its result is refused, the new owner's stands
        with pytest.raises(LeaseLost):
            finish(s, first[0], "done")
    with session_scope(engine) as s:
        assert finish(s, again[0], "done") == "done"


def test_item_failing_past_attempt_limit_ends_failed_with_its_error(engine):
    _fill(engine, 1, max_attempts=2)
    for attempt in range(1, 3):
        with session_scope(engine) as s:
            (item,) = claim_batch(s, "parse", 10, ctx=RunContext("w"))
        assert item.attempts == attempt
        with session_scope(engine) as s:
            status = finish(s, item, "failed", error=TimeoutError(f"slow #{attempt}"), retry=True)
        assert status == ("pending" if attempt == 1 else "failed")
    with session_scope(engine) as s:
        assert claim_batch(s, "parse", 10, ctx=RunContext("w")) == []
        row = s.scalars(select(StageRun)).one()
        assert (row.status, row.attempts, row.error_class, row.error_message) == ("failed", 2, "TimeoutError", "slow #2")


def test_lease_expiring_on_last_attempt_ends_failed(engine):
    _fill(engine, 1, max_attempts=1)
    with session_scope(engine) as s:
        claim_batch(s, "parse", 10, ctx=RunContext("dies"))
    _expire_leases(engine)
    with session_scope(engine) as s:
        assert claim_batch(s, "parse", 10, ctx=RunContext("w")) == []
        row = s.scalars(select(StageRun)).one()
        assert row.status == "failed" and "attempts exhausted" in row.reason


def test_a_retried_task_takes_over_its_earlier_trys_items_at_once(engine):
    _fill(engine, 3)
    first = RunContext("d/r/parse/0/1", try_number=1, instance="d/r/parse/0")
    with session_scope(engine) as s:
        dead = claim_batch(s, "parse", 2, ctx=first)  # the try's worker dies here
    with session_scope(engine) as s:
        other = claim_batch(s, "parse", 5, ctx=RunContext("d/r/parse/1/1", try_number=1, instance="d/r/parse/1"))
    assert [i.entity_id for i in other] == ["2"]  # another task instance cannot take live leases
    retry = RunContext("d/r/parse/0/2", try_number=2, instance="d/r/parse/0")
    with session_scope(engine) as s:
        again = claim_batch(s, "parse", 5, ctx=retry)
    assert sorted(i.entity_id for i in again) == sorted(i.entity_id for i in dead)
    assert all(i.attempts == 2 for i in again)
    with session_scope(engine) as s:
        with pytest.raises(LeaseLost):  # the dead try's zombie writes nothing
            finish(s, dead[0], "done")
