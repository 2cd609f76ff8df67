"""The one stage contract: claim a batch → process each item → record its outcome.

A stage subclass says which entities it works on (``discover``) and how to process one.
``run_batch`` does the rest the same way for every stage: enqueue new work, claim a leased
batch (kept alive by a ``LeaseKeeper`` while it is worked on), run each item, and record
``done``, ``skipped`` (with the reason) or ``failed`` (with error class and message). An
item's failure is data, never an exception that sinks the batch; only trouble with the
batch itself (store unreachable, config missing) raises.

One item runs in three steps, so that no transaction is ever open across network I/O:

1. ``load(session, item)`` — a short read transaction: what the work needs.
2. ``compute(item, loaded)`` — no transaction: downloads, GROBID, parsing, model calls.
3. ``save(session, item, computed)`` — one write transaction that first ``fence``s the
   item (checks, under a row lock, that this worker still holds its lease), then writes
   the results and the outcome together. A worker that lost the item writes nothing and
   counts it ``lost-lease``.

A stage whose work is only reads and writes of the store implements ``process(session,
item)``, which the default ``save`` calls inside the fenced transaction.

A network-bound stage (recaption: one HTTP request per item, minutes per batch) sets
``concurrent = True`` and implements ``compute_async`` instead of ``compute``: the batch
loads every item, then runs all their ``compute_async`` together on one event loop (inside
``async_resources()``, e.g. one shared client), and records each item's outcome as soon as
it is in, from one recording thread, through the same fenced save and the same failure
classification as a sequential item (``settle``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from figalign.errors import ConfigError, PermanentError, TransientError, UnfinishedWork
from figalign.stages.budget import Budget, BudgetedRunner, OverBudget, run_budgeted
from figalign.stages.leases import LeaseKeeper
from figalign.store.db import session_scope, transient_db_error
from figalign.store.queue import (
    Claimed,
    LeaseLost,
    RunContext,
    claim_batch,
    enqueue,
    fence,
    finish,
    unfinished_claims,
)

log = logging.getLogger(__name__)
LOST = "lost-lease"
QUARANTINE_AFTER = 2  # tries an item may go over its budget before it is quarantined


@dataclass(frozen=True)
class Outcome:
    """What happened to one item. ``output`` holds small facts (counts, ids) for audit."""

    status: str  # done | skipped | failed
    reason: str | None = None
    output: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def done(cls, **output: Any) -> "Outcome":
        return cls("done", None, output)

    @classmethod
    def skipped(cls, reason: str, **output: Any) -> "Outcome":
        return cls("skipped", reason, output)


@dataclass
class BatchSummary:
    """Counts of one batch, small enough for XCom and readable in the Airflow UI."""

    stage: str
    claimed: int = 0
    enqueued: int = 0
    statuses: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def count(self, status: str, reason: str | None) -> None:
        """Tally one item's final status (and its reason, shortened for the UI)."""
        self.statuses[status] += 1
        if reason:
            self.reasons[reason[:120]] += 1

    def add(self, batch: "BatchSummary") -> None:
        """Fold one batch's counts into a running total."""
        self.enqueued += batch.enqueued
        self.claimed += batch.claimed
        self.statuses.update(batch.statuses)
        self.reasons.update(batch.reasons)
        self.seconds += batch.seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "claimed": self.claimed,
            "enqueued": self.enqueued,
            "statuses": dict(self.statuses),
            "top_reasons": dict(self.reasons.most_common(5)),
            "seconds": round(self.seconds, 3),
        }


class Stage:
    """Base class: set ``name`` and ``entity_type``; implement ``discover`` and ``process``."""

    name: str = ""
    entity_type: str = ""
    max_attempts: int = 3
    lease_seconds: int = 120
    budget: Budget | None = None  # per item: wall time, memory, temp disk (stages.budget)
    concurrent: bool = False  # True: the batch runs every item's ``compute_async`` at once
    lanes: tuple[str, ...] = ("default",)  # kinds of worker slot its items need (see ``lane_of``)

    def async_resources(self) -> contextlib.AbstractAsyncContextManager:
        """What the concurrent items of one batch share (e.g. a client), entered once per batch."""
        return contextlib.nullcontext()

    async def compute_async(self, item: Claimed, loaded: Any) -> Any:
        """``compute`` of a concurrent stage, awaited with the batch's other items."""
        raise NotImplementedError

    def budget_setup(self) -> None:
        """Runs in the budgeted child before ``compute`` (e.g. limits derived from the budget)."""

    def warm_up(self) -> None:
        """Runs once per batch in the worker before budgeted items fork (e.g. heavy imports)."""

    def discover(self, session: Session) -> Iterable[str]:
        """Entity ids ready for this stage (enqueue ignores ones already queued)."""
        return ()

    def lane_of(self, session: Session, entity_ids: list[str]) -> dict[str, str]:
        """The lane of each item not in ``"default"`` (e.g. parse: ``grobid`` for papers that will
        call GROBID), so a plan maps each lane to a task in its own pool. Default: none."""
        return {}

    def check_ready(self) -> str | None:
        """Return a reason when the stage cannot run at all (e.g. no endpoint configured)."""
        return None

    def load(self, session: Session, item: Claimed) -> Any:
        """Read what ``compute`` needs, in a short read transaction (default: nothing)."""
        return None

    def compute(self, item: Claimed, loaded: Any) -> Any:
        """The slow part, outside any transaction: network and CPU (default: nothing)."""
        return loaded

    def save(self, session: Session, item: Claimed, computed: Any) -> Outcome:
        """Write the item's results; runs in the fenced write transaction."""
        return self.process(session, item)

    def process(self, session: Session, item: Claimed) -> Outcome:
        """Store-only work of one item, inside the fenced write transaction."""
        raise NotImplementedError


def enqueue_discovered(stage: Stage, engine: Engine) -> int:
    with session_scope(engine) as session:
        return enqueue(session, stage.name, stage.entity_type, stage.discover(session),
                       max_attempts=stage.max_attempts)


def run_batch(
    stage: Stage,
    engine: Engine,
    *,
    size: int = 50,
    ctx: RunContext | None = None,
    discover: bool = True,
    lane: str | None = None,
) -> BatchSummary:
    """Claim up to ``size`` items of ``stage`` (of ``lane`` only, when given) and process
    them, recording each outcome; raise ``UnfinishedWork`` rather than return while an
    item this task claimed is still running (``check_finished``)."""
    ctx = ctx or RunContext.local()
    summary = BatchSummary(stage.name)
    started = time.monotonic()
    if discover:
        summary.enqueued = enqueue_discovered(stage, engine)
    with session_scope(engine) as session:
        items = claim_batch(session, stage.name, size, lease_seconds=stage.lease_seconds, ctx=ctx, lane=lane)
    summary.claimed = len(items)
    not_ready = stage.check_ready()
    with LeaseKeeper(engine, items, stage.lease_seconds) as keeper:
        run = run_concurrently if stage.concurrent else run_sequentially
        run(stage, engine, items, not_ready, summary, keeper)
    summary.seconds = time.monotonic() - started
    log.info("stage %s: %s", stage.name, summary.as_dict())
    check_finished(engine, stage.name, ctx)
    return summary


def check_finished(engine: Engine, stage: str, ctx: RunContext) -> None:
    """Fail the task, visibly, if an item it claimed (in this or an earlier try) is still
    ``running``: a batch must never end "success" with work it holds unfinished. Airflow
    then retries the task, and the retry claims those items first, at once."""
    with session_scope(engine) as session:
        left = [f"{r.entity_type} {r.entity_id}" for r in unfinished_claims(session, stage, ctx)]
    if left:
        raise UnfinishedWork(f"stage {stage}, {ctx.owner}", left)


def run_sequentially(stage: Stage, engine: Engine, items: list[Claimed], not_ready: str | None,
                     summary: BatchSummary, keeper: LeaseKeeper) -> None:
    """A batch one item after another; a budgeted stage's items share one budgeted child."""
    runner = None
    if items and stage.budget is not None and not not_ready:
        stage.warm_up()
        runner = BudgetedRunner(stage.compute, stage.budget, setup=stage.budget_setup)
    with runner or contextlib.nullcontext():
        for item in items:
            if keeper.lost(item):
                summary.count(LOST, "lease taken over before the item was started")
                continue
            summary.count(*run_item(stage, engine, item, not_ready, runner=runner))
            keeper.done(item)


def run_item(stage: Stage, engine: Engine, item: Claimed, not_ready: str | None = None, *,
             runner: BudgetedRunner | None = None) -> tuple[str, str | None]:
    """load → compute → fenced save of one item; a failure is recorded, a lost lease counted."""
    def produce() -> tuple[Any, dict[str, Any]]:
        with session_scope(engine) as session:
            loaded = stage.load(session, item)
        return compute(stage, item, loaded, runner)
    return settle(stage, engine, item, produce, not_ready)


def settle(stage: Stage, engine: Engine, item: Claimed, produce: Callable[[], tuple[Any, dict[str, Any]]],
           not_ready: str | None = None) -> tuple[str, str | None]:
    """Record one item's outcome: ``produce()``'s (computed, usage) saved in the fenced write
    transaction, or its exception classified (``failure_outcome``) and recorded."""
    try:
        if not_ready:
            return record(engine, item, Outcome.skipped(not_ready))
        try:
            computed, usage = produce()
            with session_scope(engine) as session:
                fence(session, item)
                outcome = stage.save(session, item, computed)
                final = finish(session, item, outcome.status, reason=outcome.reason, output={**outcome.output, **usage})
            return final, outcome.reason
        except LeaseLost:
            raise
        except Exception as exc:  # classified below; an item's failure must not sink the batch
            outcome, retry = failure_outcome(stage, item, exc)
            return record(engine, item, outcome, error=exc, retry=retry)
    except LeaseLost as exc:
        log.warning("stage %s: item %s: %s; nothing written", stage.name, item.entity_id, exc)
        return LOST, "lease taken over by another run; nothing written"


def _given(value: Any) -> Callable[[], tuple[Any, dict[str, Any]]]:
    return lambda: (value, {})


def _raising(exc: BaseException) -> Callable[[], tuple[Any, dict[str, Any]]]:
    def produce() -> tuple[Any, dict[str, Any]]:
        raise exc
    return produce


def run_concurrently(stage: Stage, engine: Engine, items: list[Claimed], not_ready: str | None,
                     summary: BatchSummary, keeper: LeaseKeeper) -> None:
    """A concurrent stage's batch: load each item, await every ``compute_async`` together, and
    ``settle`` each item as soon as its result (or exception) is in.

    Outcomes are recorded from one thread of their own, in arrival order, so the event loop
    never waits on the store and a worker killed mid-batch loses only what was still in
    flight. If recording fails (the store, not an item), the rest stay claimed (their leases
    expire and they are retried) and the batch raises once the loop is done.
    """
    failed: list[BaseException] = []

    def record_one(item: Claimed, produce: Callable[[], tuple[Any, dict[str, Any]]]) -> None:
        if failed:
            return  # the store failed: leave the rest claimed
        try:
            summary.count(*settle(stage, engine, item, produce, not_ready))
            keeper.done(item)
        except Exception as exc:  # re-raised below, in the batch's thread
            log.exception("stage %s: recording item %s failed", stage.name, item.entity_id)
            failed.append(exc)

    loaded: dict[int, Callable[[], tuple[Any, dict[str, Any]]] | Any] = {}
    todo: list[Claimed] = []
    with ThreadPoolExecutor(1, thread_name_prefix=f"{stage.name}-record") as recorder:
        for item in items:
            if keeper.lost(item):
                summary.count(LOST, "lease taken over before the item was started")
            elif not_ready:
                recorder.submit(record_one, item, _given(None))
            else:
                try:
                    with session_scope(engine) as session:
                        loaded[item.run_id] = stage.load(session, item)
                    todo.append(item)
                except Exception as exc:  # recorded (classified) like any item's failure
                    recorder.submit(record_one, item, _raising(exc))

        async def one(item: Claimed) -> None:
            try:
                produce = _given(await stage.compute_async(item, loaded.pop(item.run_id)))
            except Exception as exc:  # recorded (classified) like any item's failure
                produce = _raising(exc)
            recorder.submit(record_one, item, produce)

        async def all_items() -> None:
            async with stage.async_resources():
                await asyncio.gather(*(one(item) for item in todo))

        if todo:
            asyncio.run(all_items())
    if failed:
        raise failed[0]


def compute(stage: Stage, item: Claimed, loaded: Any, runner: BudgetedRunner | None = None
            ) -> tuple[Any, dict[str, Any]]:
    """``stage.compute``, within the stage's budget when it has one (``stages.budget``);
    ``runner`` is the batch's budgeted child (one is made for a lone item)."""
    if stage.budget is None:
        return stage.compute(item, loaded), {}
    label = f"{stage.entity_type} {item.entity_id}"
    if runner is None:
        result, usage = run_budgeted(stage.compute, (item, loaded), stage.budget, label=label,
                                     setup=stage.budget_setup)
    else:
        result, usage = runner.run((item, loaded), label=label)
    return result, {"wall_s": usage.wall_s, "peak_mb": usage.peak_mb}


def failure_outcome(stage: Stage, item: Claimed, exc: Exception) -> tuple[Outcome, bool]:
    """(outcome, retry) of an item that raised: transient errors retry, the rest fail.

    An item over budget is retried once (the machine may have been busy) and then
    quarantined: failed with a reason that says so, never claimed again. Reasons never
    quote temp paths (``scrub_paths``).
    """
    if isinstance(exc, OverBudget):
        if item.attempts < QUARANTINE_AFTER:
            return Outcome("failed", scrub_paths(str(exc))), True
        return Outcome("failed", f"quarantined after {item.attempts} tries: {scrub_paths(str(exc))}"), False
    if isinstance(exc, TransientError) or transient_db_error(exc):
        return Outcome("failed", f"transient: {scrub_paths(str(exc))}"), True
    if isinstance(exc, (PermanentError, ConfigError)):
        return Outcome("failed", f"{type(exc).__name__}: {scrub_paths(str(exc))}"), False
    log.exception("stage %s: item %s raised", stage.name, item.entity_id, exc_info=exc)
    return Outcome("failed", f"unexpected {type(exc).__name__}: {scrub_paths(str(exc))}"), False


_TEMP_PATH = re.compile(r"[^\s'\"]*/figalign-[a-z]+-[^/\s'\"]+/")  # up to the innermost work folder


def scrub_paths(text: str) -> str:
    """Drop figalign's temp folders from a message: ``/tmp/figalign-parse-x/src/f.eps`` → ``src/f.eps``.

    A reason must name the input as its owner knows it (the paper id is on the row, the
    path inside the paper is kept), not a folder deleted by the time anyone reads it.
    """
    return _TEMP_PATH.sub("", text)


def record(engine: Engine, item: Claimed, outcome: Outcome, *, error: BaseException | None = None,
           retry: bool = False) -> tuple[str, str | None]:
    """Record an outcome with no data writes, in a fenced transaction of its own."""
    with session_scope(engine) as session:
        final = finish(session, item, outcome.status, error=error, reason=outcome.reason, output=outcome.output,
                       retry=retry, error_text=scrub_paths(str(error)) if error is not None else None)
    return final, outcome.reason


def drain(stage: Stage, engine: Engine, *, size: int = 50, ctx: RunContext | None = None,
          max_batches: int = 1000) -> BatchSummary:
    """Run batches until nothing is claimable (the CLI's way of running a stage)."""
    total = BatchSummary(stage.name)
    for i in range(max_batches):
        batch = run_batch(stage, engine, size=size, ctx=ctx, discover=(i == 0))
        total.add(batch)
        if batch.claimed == 0:
            break
    return total
