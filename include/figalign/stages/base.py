"""The one stage contract: claim a batch → process each item → record its outcome.

A stage subclass says which entities it works on (``discover``) and how to process one
(``process``). ``run_batch`` does the rest the same way for every stage: enqueue new work,
claim a leased batch, run each item in its own transaction, and record ``done``,
``skipped`` (with the reason) or ``failed`` (with error class and message). An item's
failure is data, never an exception that sinks the batch; only trouble with the batch
itself (store unreachable, config missing) raises.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from figalign.errors import ConfigError, PermanentError, TransientError
from figalign.store.db import session_scope
from figalign.store.queue import Claimed, RunContext, claim_batch, enqueue, finish

log = logging.getLogger(__name__)


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
    lease_seconds: int = 900

    def discover(self, session: Session) -> Iterable[str]:
        """Entity ids ready for this stage (enqueue ignores ones already queued)."""
        return ()

    def check_ready(self) -> str | None:
        """Return a reason when the stage cannot run at all (e.g. no endpoint configured)."""
        return None

    def process(self, session: Session, item: Claimed) -> Outcome:
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
) -> BatchSummary:
    """Claim up to ``size`` items of ``stage`` and process them, recording each outcome."""
    ctx = ctx or RunContext.local()
    summary = BatchSummary(stage.name)
    started = time.monotonic()
    if discover:
        summary.enqueued = enqueue_discovered(stage, engine)
    with session_scope(engine) as session:
        items = claim_batch(session, stage.name, size, lease_seconds=stage.lease_seconds, ctx=ctx)
    summary.claimed = len(items)
    not_ready = stage.check_ready()
    for item in items:
        summary.count(*_run_item(stage, engine, item, ctx, not_ready))
    summary.seconds = time.monotonic() - started
    log.info("stage %s: %s", stage.name, summary.as_dict())
    return summary


def _run_item(stage: Stage, engine: Engine, item: Claimed, ctx: RunContext, not_ready: str | None):
    """Process one item in its own transaction; record the outcome in another."""
    error: BaseException | None = None
    retry = False
    if not_ready:
        outcome = Outcome.skipped(not_ready)
    else:
        try:
            with session_scope(engine) as session:
                outcome = stage.process(session, item)
        except TransientError as exc:
            error, retry, outcome = exc, True, Outcome("failed", f"transient: {exc}")
        except (PermanentError, ConfigError) as exc:
            error, outcome = exc, Outcome("failed", f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # an unexpected bug in one item must not sink the batch
            log.exception("stage %s: item %s raised", stage.name, item.entity_id)
            error, outcome = exc, Outcome("failed", f"unexpected {type(exc).__name__}: {exc}")
    with session_scope(engine) as session:
        final = finish(session, item.run_id, outcome.status, owner=ctx.owner, error=error,
                       reason=outcome.reason, output=outcome.output, retry=retry)
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
