"""A randomized, stateful test of the queue and the stage runner against a simple model.

Hypothesis interleaves, over a handful of items and three workers: claims of random
sizes, the stage runner processing one held item (its ``save`` writes a data row in the
fenced transaction, then succeeds, fails transiently or fails permanently), requeues (a
forced re-run or a new version), leases that expire (a stalled worker), renewals, and
killed workers (their claims simply vanish). After every step the store must agree with
the model; in particular an item's data is written, and its outcome recorded, only by the
worker holding its current lease at that moment, and a worker that lost its item writes
nothing. At the end every item ends exactly once (done or failed) with no lease left.
Runs on SQLite and on Postgres.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import Column, Integer, MetaData, String, Table, delete, func, insert, select, update

from figalign.errors import PermanentError, TransientError
from figalign.stages.base import LOST, Outcome, Stage, run_item
from figalign.store.db import session_scope
from figalign.store.models import StageRun
from figalign.store.queue import RunContext, claim_batch, enqueue, renew, requeue

ITEMS = [f"e{i}" for i in range(6)]
WORKERS = ("w0", "w1", "w2")
MAX_ATTEMPTS = 3
RESULTS = Table("test_results", MetaData(), Column("id", Integer, primary_key=True),
                Column("entity_id", String(16)), Column("token", String(32)))


class Scripted(Stage):
    """A stage whose save writes one data row, then does what the test says."""

    name = "t"
    entity_type = "thing"

    def __init__(self):
        self.behaviour = "done"

    def save(self, session, item, computed) -> Outcome:
        session.execute(insert(RESULTS).values(entity_id=item.entity_id, token=item.token))
        if self.behaviour == "transient":
            raise TransientError("endpoint busy")
        if self.behaviour == "permanent":
            raise PermanentError("bad input")
        return Outcome.done()


@dataclass
class Row:
    """The model of one stage-run row."""

    status: str = "pending"
    attempts: int = 0
    token: str | None = None
    expired: bool = False


def machine(engine):
    class QueueMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            with session_scope(engine) as s:
                s.execute(delete(RESULTS))
                s.execute(delete(StageRun))
                enqueue(s, "t", "thing", ITEMS, max_attempts=MAX_ATTEMPTS)
            with session_scope(engine) as s:
                self.run_ids = dict(s.execute(select(StageRun.entity_id, StageRun.id)).all())
            self.rows = {e: Row() for e in ITEMS}
            self.held = {w: [] for w in WORKERS}
            self.stage = Scripted()

        # -- the model's view of claiming ------------------------------------------------
        def _claimable(self) -> list[str]:
            return [e for e in sorted(ITEMS, key=self.run_ids.get)
                    if self.rows[e].status == "pending" or (self.rows[e].status == "running" and self.rows[e].expired)]

        @rule(worker=st.sampled_from(WORKERS), size=st.integers(1, 4))
        def claim(self, worker, size):
            for e in self._claimable():  # expired on the last attempt: failed, not claimed
                if self.rows[e].attempts >= MAX_ATTEMPTS:
                    self.rows[e] = Row("failed", self.rows[e].attempts)
            expected = [e for e in self._claimable() if self.rows[e].attempts < MAX_ATTEMPTS][:size]
            with session_scope(engine) as s:
                got = claim_batch(s, "t", size, ctx=RunContext(worker))
            assert [c.entity_id for c in got] == expected
            for c in got:
                self.rows[c.entity_id] = Row("running", self.rows[c.entity_id].attempts + 1, c.token)
                assert c.attempts == self.rows[c.entity_id].attempts
            self.held[worker] += got

        @precondition(lambda self: any(self.held.values()))
        @rule(data=st.data(), behaviour=st.sampled_from(["done", "done", "transient", "permanent"]))
        def process(self, data, behaviour):
            worker = data.draw(st.sampled_from([w for w in WORKERS if self.held[w]]))
            item = self.held[worker].pop(data.draw(st.integers(0, len(self.held[worker]) - 1)))
            row = self.rows[item.entity_id]
            owns = row.status == "running" and row.token == item.token
            self.stage.behaviour = behaviour
            status, _ = run_item(self.stage, engine, item)
            with session_scope(engine) as s:
                written = s.scalar(select(func.count()).select_from(RESULTS).where(RESULTS.c.token == item.token))
            if not owns:
                assert (status, written) == (LOST, 0), "a worker that lost its item must write nothing"
                return
            expected = {"done": "done", "permanent": "failed",
                        "transient": "pending" if row.attempts < MAX_ATTEMPTS else "failed"}[behaviour]
            assert status == expected
            assert written == (1 if behaviour == "done" else 0)  # a failed save rolled its data back
            self.rows[item.entity_id] = Row(expected, row.attempts)

        @rule(entity=st.sampled_from(ITEMS))
        def requeue_item(self, entity):
            with session_scope(engine) as s:
                requeue(s, "t", "thing", [entity])
            self.rows[entity] = Row()

        @rule(entity=st.sampled_from(ITEMS))
        def expire_lease(self, entity):
            if self.rows[entity].status == "running":
                with session_scope(engine) as s:
                    s.execute(update(StageRun).where(StageRun.id == self.run_ids[entity])
                              .values(lease_expires_at=dt.datetime(2000, 1, 1)))
                self.rows[entity].expired = True

        @precondition(lambda self: any(self.held.values()))
        @rule(worker=st.sampled_from(WORKERS))
        def renew_leases(self, worker):
            with session_scope(engine) as s:
                held = renew(s, self.held[worker], 120)
            expected = {c.run_id for c in self.held[worker]
                        if self.rows[c.entity_id].status == "running" and self.rows[c.entity_id].token == c.token}
            assert held == expected
            for c in self.held[worker]:
                if c.run_id in held:
                    self.rows[c.entity_id].expired = False

        @rule(worker=st.sampled_from(WORKERS))
        def kill(self, worker):
            self.held[worker] = []

        @invariant()
        def store_matches_model(self):
            with session_scope(engine) as s:
                rows = {r.entity_id: r for r in s.scalars(select(StageRun))}
            for e, model in self.rows.items():
                row = rows[e]
                assert (row.status, row.attempts, row.lease_token) == (model.status, model.attempts, model.token), e
                assert (row.lease_expires_at is not None) == (model.status == "running"), e

        def teardown(self):
            """Drain: every worker dies, leases lapse, a fresh worker finishes the rest."""
            for _ in range(MAX_ATTEMPTS + 1):
                with session_scope(engine) as s:
                    s.execute(update(StageRun).where(StageRun.status == "running")
                              .values(lease_expires_at=dt.datetime(2000, 1, 1)))
                with session_scope(engine) as s:
                    items = claim_batch(s, "t", len(ITEMS), ctx=RunContext("drain"))
                self.stage.behaviour = "done"
                for item in items:
                    assert run_item(self.stage, engine, item)[0] == "done"
            with session_scope(engine) as s:
                final = s.scalars(select(StageRun)).all()
            assert {r.status for r in final} <= {"done", "failed"}
            assert all(r.lease_token is None and r.lease_expires_at is None for r in final)

    return QueueMachine


@pytest.mark.slow
def test_queue_and_runner_keep_their_promises_under_random_interleavings(engine):
    RESULTS.metadata.create_all(engine)
    run_state_machine_as_test(machine(engine), settings=settings(
        max_examples=40, stateful_step_count=30, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
