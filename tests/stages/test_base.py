"""The stage contract: every claimed item ends with a recorded outcome, whatever happens."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from figalign.errors import BadInputError, TransientError
from figalign.stages.base import Outcome, Stage, drain, run_batch
from figalign.store.db import session_scope
from figalign.store.models import StageRun
from figalign.store.queue import RunContext


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


def _retry_of(ctx_try: int) -> RunContext:
    """Try ``ctx_try`` of one mapped Airflow task instance."""
    instance = "figalign_process/run1/parse/0"
    return RunContext(owner=f"{instance}/{ctx_try}", dag_id="figalign_process", run_id="run1", task_id="parse",
                      try_number=ctx_try, instance=instance)


def test_a_retry_takes_back_every_item_its_dead_try_held_before_anything_else(engine):
    """Try 1 claimed four items and died; try 2, planned for a batch of two, claims those
    four at once (their leases have not lapsed) and ahead of the other pending items."""
    from figalign.store.queue import claim_batch, enqueue

    with session_scope(engine) as s:
        enqueue(s, "toy", "thing", [str(i) for i in range(6)])
    with session_scope(engine) as s:
        claim_batch(s, "toy", 4, ctx=RunContext("someone else"))  # ids 0-3, then let them go
    with session_scope(engine) as s:
        from figalign.store.queue import requeue

        requeue(s, "toy", "thing", ["0", "1"])  # 0, 1 back to pending; 2, 3 still held by another
    with session_scope(engine) as s:
        dead = claim_batch(s, "toy", 3, ctx=_retry_of(1))
    assert sorted(c.entity_id for c in dead) == ["0", "1", "4"]
    stage = Toy()
    summary = run_batch(stage, engine, size=2, ctx=_retry_of(2))
    assert summary.claimed == 3 and sorted(stage.calls) == ["0", "1", "4"]  # all of try 1's, "5" left
    rows = _rows(engine)
    assert rows["5"].status == "pending" and rows["0"].status == "done" and rows["0"].attempts == 2
    assert rows["2"].lease_owner == "someone else"  # another worker's live lease is left alone


def test_a_batch_never_ends_with_an_item_it_claimed_still_running(engine, monkeypatch):
    """If a batch returned with a claimed item unrecorded, the task fails, naming it, instead
    of ending "success"; its retry then claims that item first."""
    from figalign.errors import UnfinishedWork
    from figalign.stages import base

    real = base.run_sequentially

    def drops_the_last(stage, engine, items, not_ready, summary, keeper):
        real(stage, engine, items[:-1], not_ready, summary, keeper)

    monkeypatch.setattr(base, "run_sequentially", drops_the_last)
    stage = Toy()
    with pytest.raises(UnfinishedWork, match=r"stage toy, .*parse/0/1: 1 claimed item\(s\) still running: thing 5"):
        run_batch(stage, engine, size=10, ctx=_retry_of(1))
    assert _rows(engine)["5"].status == "running"
    monkeypatch.setattr(base, "run_sequentially", real)
    again = Toy()
    run_batch(again, engine, size=1, ctx=_retry_of(2), discover=False)
    assert again.calls == ["5"] and _rows(engine)["5"].status == "done"


def test_a_run_summary_fails_while_items_the_run_claimed_are_running(tmp_path):
    from figalign.config import load_settings
    from figalign.errors import UnfinishedWork
    from figalign.pipeline import render_summary
    from figalign.store.db import get_engine
    from figalign.store.migrate import upgrade
    from figalign.store.queue import claim_batch

    url = f"sqlite:///{tmp_path / 'summary.db'}"
    upgrade(url)
    settings = load_settings({"FIGALIGN_DATABASE_URL": url, "FIGALIGN_DATA_DIR": str(tmp_path / "data")})
    engine = get_engine(settings)
    run_batch(Toy(), engine, size=3, ctx=_retry_of(1))  # 0-2 finished by run1
    other = RunContext(owner="x", dag_id="figalign_recaption", run_id="run1", task_id="recaption", try_number=1)
    with session_scope(engine) as s:
        # another DAG's run of the same name holds item 1 (pending again after its transient error)
        assert [c.entity_id for c in claim_batch(s, "toy", 1, ctx=other)] == ["1"]
    assert render_summary("run1", settings, dag_id="figalign_process")["stages"]["toy"]["counts"] == {
        "done": 1, "failed": 1}
    with session_scope(engine) as s:
        claim_batch(s, "toy", 2, ctx=_retry_of(1))  # run1 claims 3 and 4, and ends
    with pytest.raises(UnfinishedWork, match=r"run run1: 2 claimed item\(s\) still running: toy thing 3, toy thing 4"):
        render_summary("run1", settings, dag_id="figalign_process")
    render_summary(None, settings)  # the CLI's summary over every run only reports
