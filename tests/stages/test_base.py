"""The stage contract: every claimed item ends with a recorded outcome, whatever happens."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from figalign.errors import BadInputError, TransientError
from figalign.stages.base import Outcome, Stage, drain, run_batch
from figalign.store.db import session_scope
from figalign.store.models import StageRun


class Toy(Stage):
    name = "toy"
    entity_type = "thing"
    max_attempts = 2

    def __init__(self):
        self.calls: list[str] = []

    def discover(self, session):
        return [str(i) for i in range(6)]

    def process(self, session, item):
        return self.outcome(item)

    def outcome(self, item):
        self.calls.append(item.entity_id)
        match int(item.entity_id):
            case 1:
                raise TransientError("server busy")
            case 2:
                raise BadInputError("encrypted PDF")
            case 3:
                raise KeyError("a bug")
            case 4:
                return Outcome.skipped("no endpoint configured")
        return Outcome.done(figures=int(item.entity_id))


def _rows(engine):
    with session_scope(engine) as s:
        return {r.entity_id: r for r in s.scalars(select(StageRun).where(StageRun.stage == "toy"))}


def test_failures_are_recorded_and_never_sink_the_batch(engine):
    stage = Toy()
    summary = run_batch(stage, engine, size=10)
    assert summary.claimed == 6 and sorted(stage.calls) == [str(i) for i in range(6)]
    rows = _rows(engine)
    assert rows["0"].status == "done" and rows["0"].output == {"figures": 0}
    assert rows["1"].status == "pending" and rows["1"].error_class == "TransientError"  # retried later
    assert rows["2"].status == "failed" and rows["2"].error_class == "BadInputError"
    assert "encrypted PDF" in rows["2"].error_message
    assert rows["3"].status == "failed" and rows["3"].error_class == "KeyError"
    assert rows["4"].status == "skipped" and rows["4"].reason == "no endpoint configured"


def test_transient_failures_retry_until_attempts_run_out(engine):
    stage = Toy()
    total = drain(stage, engine, size=10)
    assert stage.calls.count("1") == 2  # max_attempts
    rows = _rows(engine)
    assert rows["1"].status == "failed" and rows["1"].attempts == 2
    assert total.statuses["done"] == 2 and total.statuses["skipped"] == 1


def test_a_second_run_does_nothing(engine):
    drain(Toy(), engine, size=10)
    again = Toy()
    summary = drain(again, engine, size=10)
    assert again.calls == [] and summary.claimed == 0 and summary.enqueued == 0


class AsyncToy(Toy):
    """The same outcomes from a concurrent stage: ``compute_async`` raises, ``save`` records."""

    name = "toy"
    concurrent = True

    def __init__(self):
        super().__init__()
        self.in_flight = self.peak = 0
        self.entered = 0

    def async_resources(self):
        import contextlib

        @contextlib.asynccontextmanager
        async def shared():
            self.entered += 1
            yield
        return shared()

    async def compute_async(self, item, loaded):
        import asyncio

        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(0.05)
        self.in_flight -= 1
        return self.outcome(item)  # raises for items 1-3, in the event loop

    def save(self, session, item, computed):
        return computed


def test_a_concurrent_stage_runs_its_items_together_through_the_same_contract(engine):
    stage = AsyncToy()
    summary = run_batch(stage, engine, size=10)
    assert summary.claimed == 6 and sorted(stage.calls) == [str(i) for i in range(6)]
    assert stage.peak == 6 and stage.entered == 1  # all at once, sharing one set of resources
    rows = _rows(engine)
    assert rows["0"].status == "done" and rows["0"].output == {"figures": 0}
    assert rows["1"].status == "pending" and rows["1"].error_class == "TransientError"
    assert rows["2"].status == "failed" and rows["2"].error_class == "BadInputError"
    assert rows["3"].status == "failed" and rows["3"].error_class == "KeyError"
    assert rows["4"].status == "skipped" and rows["4"].reason == "no endpoint configured"
    assert all(r.lease_token is None for r in rows.values())


def test_a_concurrent_item_whose_lease_was_taken_writes_nothing(engine, monkeypatch):
    from figalign.stages import base
    from figalign.store.queue import requeue

    stage = AsyncToy()
    real = stage.compute_async

    async def taken_over(item, loaded):
        if item.entity_id == "0":
            with session_scope(engine) as s:
                requeue(s, "toy", "thing", ["0"])  # another run takes the item while it is in flight
        return await real(item, loaded)

    monkeypatch.setattr(stage, "compute_async", taken_over)
    summary = run_batch(stage, engine, size=10)
    assert summary.statuses[base.LOST] == 1
    assert _rows(engine)["0"].status == "pending" and _rows(engine)["0"].output in (None, {})


def test_plans_fit_batches_to_the_pending_work(tmp_path, monkeypatch):
    from figalign.config import load_settings
    from figalign.pipeline import plan_batches
    from figalign.store.db import get_engine
    from figalign.store.migrate import upgrade
    from figalign.store.queue import enqueue

    url = f"sqlite:///{tmp_path / 'plan.db'}"
    upgrade(url)
    settings = load_settings({"FIGALIGN_DATABASE_URL": url, "FIGALIGN_DATA_DIR": str(tmp_path / "data")})
    with session_scope(get_engine(settings)) as s:
        enqueue(s, "filter", "figure", [str(i) for i in range(3)])
    assert plan_batches("filter", 25, 16, settings, slots=4) == [1, 1, 1]  # 3 items still spread out
    with session_scope(get_engine(settings)) as s:
        enqueue(s, "filter", "figure", [str(i) for i in range(3, 1000)])
    assert plan_batches("filter", 25, 16, settings, slots=4) == [25] * 16  # capped: the next run goes on
    assert plan_batches("filter", 500, 16, settings, slots=4) == [250] * 4
    monkeypatch.setenv("FIGALIGN_WORKER_SLOTS", "x")
    with pytest.raises(Exception, match="FIGALIGN_WORKER_SLOTS"):
        plan_batches("filter", 25, 16, settings)
